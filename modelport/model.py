"""The base class users subclass to serve a model.

    class Iris(modelport.Model):
        def setup(self) -> None:
            self.clf = train()

        def predict(self, sepal_length: float = Input(ge=0, le=10), ...) -> dict[str, Any]:
            return {"label": ...}

Serving loops live in :mod:`modelport.worker`, never here.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import sys
import threading
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pydantic

from modelport import _context as context
from modelport.errors import SpecError
from modelport.spec import (
    SERVING_KEYS,
    EndpointSpec,
    FieldSpec,
    check_spec,
    config_disagreements,
    declared_default,
    python_types,
    spec_error,
    spec_from_signature,
    spec_from_toml,
)

_SPEC_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(EndpointSpec)}
"""Each serving setting's default, declared once, by :class:`EndpointSpec`."""


def _predict_undefined(self: Model, **inputs: Any) -> Any:
    raise NotImplementedError(
        f"{type(self).__name__} must define predict(self, ...) or predict_batch(self, inputs)"
    )


class Model:
    """A servable model: override :meth:`setup` and :meth:`predict` (or :meth:`predict_batch`)."""

    name: ClassVar[str | None] = None
    """Endpoint name; defaults to the class name in lower case."""
    config: ClassVar[str | None] = None
    """A TOML spec file (relative to the class's module) that declares the inputs instead."""
    version: ClassVar[str] = _SPEC_DEFAULTS["version"]
    title: ClassVar[str] = _SPEC_DEFAULTS["title"]
    kind: ClassVar[str] = _SPEC_DEFAULTS["kind"]
    max_batch_size: ClassVar[int] = _SPEC_DEFAULTS["max_batch_size"]
    max_batch_wait: ClassVar[float] = _SPEC_DEFAULTS["max_batch_wait"]
    lease_duration: ClassVar[float] = _SPEC_DEFAULTS["lease_duration"]
    max_attempts: ClassVar[int] = _SPEC_DEFAULTS["max_attempts"]
    max_queue_length: ClassVar[int | None] = _SPEC_DEFAULTS["max_queue_length"]
    retry_failed_batches: ClassVar[bool] = _SPEC_DEFAULTS["retry_failed_batches"]
    """Requeue a batch's jobs (up to max_attempts) when predict_batch raises, not fail them."""
    max_queue_time: ClassVar[float | None] = _SPEC_DEFAULTS["max_queue_time"]
    """Seconds a job may wait for a worker before it is ``expired`` (server default if None)."""
    timeout: ClassVar[float | None] = _SPEC_DEFAULTS["timeout"]
    """Seconds a job may compute before it fails (server default if None)."""
    result_ttl: ClassVar[float | None] = _SPEC_DEFAULTS["result_ttl"]
    """Seconds a finished job is kept before it is deleted (server default if None)."""
    cache_ttl: ClassVar[float | None] = _SPEC_DEFAULTS["cache_ttl"]
    """Seconds a result is answered again, without queueing, for an identical validated
    input (no result cache if None)."""
    cache_max_entries: ClassVar[int | None] = _SPEC_DEFAULTS["cache_max_entries"]
    """The most results the cache keeps for this endpoint, oldest dropped first (None: no bound)."""
    precomputed: ClassVar[str | None] = _SPEC_DEFAULTS["precomputed"]
    """A table of precomputed predictions (a ``modelport batch`` SQLite output) answered from."""
    fallback: ClassVar[bool] = _SPEC_DEFAULTS["fallback"]
    """Whether an input missing from the ``precomputed`` table goes to the model (else 404)."""
    metadata: ClassVar[dict[str, Any]] = {}
    """What the model declares about itself: ``training_args``, ``metrics``, ``labels`` and
    any other JSON (merged over a TOML config's ``[metadata]``); ``GET
    /endpoints/{name}/metadata`` shows it with each worker's :meth:`info`."""
    concurrency: ClassVar[int] = 1
    """Batches one model instance runs at once, each on its own thread, in the API server
    (embedded) and in each worker process; ``setup()`` still runs once. Raise it only for a
    thread-safe ``predict`` that waits on I/O or releases the GIL, such as a generator
    streaming tokens to several clients at once."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        predict = cls.__dict__.get("predict")
        if inspect.isfunction(predict) and not hasattr(predict, "__modelport_call__"):
            cls.predict = _callable_directly(predict)

    def setup(self) -> None:
        """Load weights and warm up; called once per process before the first job."""

    predict: Callable[..., Any] = _predict_undefined
    """Compute one output from one validated input: ``def predict(self, x: float = Input(ge=0))
    -> dict[str, float]``. Declared as a callable, not a method, so each model gives it its
    own signature without a type checker calling the override incompatible.

    Called directly (``Sentiment().predict(text="good")``, in a unit test or a notebook),
    it gets the declared defaults of the inputs left out, and a parameter declared as a
    pydantic model, dataclass or enum gets one built from a dict, as when served."""

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        """Compute one output per input; an exception in the list fails only its own job."""
        outputs: list[Any] = []
        for item in inputs:
            try:
                outputs.append(self.predict(**item))
            except Exception as e:
                outputs.append(e)
        return outputs

    def info(self) -> dict[str, Any]:
        """What the worker registry shows about the loaded model besides its class and version
        (weights, dtype, ...): JSON-able, called once after ``setup()``."""
        return {}

    def progress(
        self, fraction: float | None = None, message: str | None = None, **data: Any
    ) -> None:
        """Report the current job's progress: a fraction in [0, 1], a message, [progress] fields.

        Cheap to call in a tight loop (updates are coalesced); raises if the job was cancelled,
        which stops the model there.
        """
        context.report(fraction, message, data)

    @classmethod
    def endpoint_name(cls) -> str:
        return cls.name or cls.__name__.lower()

    @classmethod
    def spec(cls) -> EndpointSpec:
        """The endpoint contract, from the TOML ``config`` or from ``predict``'s signature."""
        settings = {key: getattr(cls, key) for key in SERVING_KEYS}
        if cls.config is not None:
            spec = spec_from_toml(_beside(cls, cls.config), name=cls.endpoint_name())
            if cls.name and spec.name != cls.name:
                raise SpecError(
                    f"{cls.__qualname__}: name {cls.name!r} differs from"
                    f" {cls.config}'s {spec.name!r}"
                )
            for key, value in settings.items():
                if value != getattr(Model, key):
                    setattr(spec, key, value)
            spec.metadata = {**spec.metadata, **cls.metadata}
            check_spec(spec)
            if cls.predict is not Model.predict:
                disagreements = config_disagreements(cls.predict, spec)
                if disagreements:
                    raise spec_error(
                        disagreements, f"{_name(cls)}: predict() and {cls.config} disagree"
                    )
            return spec
        if cls.predict is Model.predict and cls.predict_batch is Model.predict_batch:
            raise SpecError(f"{cls.__qualname__}: define predict(self, ...) with typed parameters")
        if cls.predict is Model.predict:
            raise SpecError(
                f"{cls.__qualname__}: a predict_batch model also needs a typed predict signature "
                "or a TOML config declaring its inputs"
            )
        return spec_from_signature(
            cls.predict,
            name=cls.endpoint_name(),
            description=inspect.cleandoc(cls.__doc__ or ""),
            version=cls.version,
            title=cls.title,
            kind=cls.kind,
            where=_name(cls),
            metadata=dict(cls.metadata),
            **settings,
        )


def concurrency_of(cls: type[Model]) -> int:
    """A model class's ``concurrency``, checked."""
    value = cls.concurrency
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise SpecError(
            f"{cls.__qualname__}: concurrency must be an integer from 1 to 1024, got {value!r}"
        )
    return value


def _name(cls: type) -> str:
    """The class's name as its module spells it (``Sentiment``, ``Outer.Inner``)."""
    return cls.__qualname__.rsplit("<locals>.", 1)[-1]


class _Call:
    """How to call one model class's ``predict`` directly: the defaults to fill in and the
    parameters to build declared Python objects for."""

    def __init__(self, cls: type[Model], func: Callable[..., Any]) -> None:
        self.signature = inspect.signature(func)
        params = [p for name, p in self.signature.parameters.items() if name != "self"]
        named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        self.defaults: dict[str, Any] = {}
        self.required: list[str] = []
        hints = _hints(func)
        for p in named:
            value = declared_default(hints.get(p.name), p.default)
            if value is ...:
                self.required.append(p.name)
            else:
                self.defaults[p.name] = value
        if cls.config is not None and any(p.kind is p.VAR_KEYWORD for p in params):
            for key, f in cls.spec().inputs.items():  # predict(**inputs): the file's defaults
                if key not in self.defaults and not f.required:
                    self.defaults[key] = f.default
        self.adapters = {
            name: pydantic.TypeAdapter(hint) for name, hint in python_types(func).items()
        }
        self.media = _media_inputs(cls)
        self._spread = any(p.kind is p.VAR_KEYWORD for p in params)
        """Media inputs, decoded (or, in a direct call, converted) for the model."""
        self.names = frozenset(p.name for p in named) | frozenset(self.defaults)
        """With exactly these keyword arguments (as the runner calls it) there is nothing
        to fill in."""
        self.simple = not self.adapters and not self.media

    def arguments(
        self, model: Model, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        bound = self.signature.bind_partial(model, *args, **kwargs)
        given = bound.arguments
        missing = [name for name in self.required if name not in given]
        if missing:
            names = ", ".join(repr(m) for m in missing)
            raise TypeError(f"{_name(type(model))}.predict() missing required input {names}")
        for name, value in self.defaults.items():
            if name in self.signature.parameters:
                if name not in given:
                    given[name] = copy.deepcopy(value)
            else:  # a config's input, into ``**inputs``
                given.setdefault(_var_keyword(self.signature), {}).setdefault(
                    name, copy.deepcopy(value)
                )
        for name, adapter in self.adapters.items():
            if given.get(name) is not None:
                given[name] = adapter.validate_python(given[name])
        if self.media:
            from modelport.media.outputs import to_model

            spread = given.get(_var_keyword(self.signature), {}) if self._spread else {}
            for name, f in self.media.items():
                for where in (given, spread):
                    if where.get(name) is not None:
                        where[name] = to_model(f, where[name])
        return bound.args, bound.kwargs


def _media_inputs(cls: type[Model]) -> dict[str, FieldSpec]:
    try:
        return cls.spec().media_inputs
    except SpecError:  # serving reports it; a direct call goes ahead without conversion
        return {}


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # spec() reports it; a direct call goes ahead without the hints
        return {}


def _var_keyword(signature: inspect.Signature) -> str:
    return next(p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD)


_PLAN = "__modelport_predict_plan__"
_plans_lock = threading.Lock()


def _call_of(cls: type[Model], func: Callable[..., Any]) -> _Call:
    """The class's plan, kept on the class itself: one dict lookup on the hot path."""
    call: _Call | None = cls.__dict__.get(_PLAN)
    if call is None:
        with _plans_lock:
            call = cls.__dict__.get(_PLAN) or _Call(cls, func)
            setattr(cls, _PLAN, call)
    return call


def runner_call(model: Model) -> tuple[Callable[..., Any], frozenset[str]] | None:
    """``model.predict``'s own function bound to ``model``, and the keyword arguments with
    which the wrapper of :func:`_callable_directly` calls it as it is (nothing to fill in or
    build); None when there is no such call. For a stream of small calls (``modelport
    pipe``), which would spend more in the wrapper's checks than in a light model."""
    bound = model.predict
    wrapper = getattr(bound, "__func__", None)
    func = getattr(wrapper, "__wrapped__", None)
    if (
        func is None
        or getattr(bound, "__self__", None) is not model
        or not getattr(wrapper, "__modelport_call__", False)
    ):
        return None
    plan = _call_of(type(model), func)
    return (functools.partial(func, model), plan.names) if plan.simple else None


def _callable_directly(func: Callable[..., Any]) -> Callable[..., Any]:
    """``predict`` as the class defines it, plus what a direct call needs: defaults declared
    with ``Input(...)`` or in the TOML config filled in, pydantic models / dataclasses /
    enums built from JSON values. ``inspect.signature`` still sees the original."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def call_async(self: Model, *args: Any, **kwargs: Any) -> Any:
            plan = _call_of(type(self), func)
            if plan.simple and not args and kwargs.keys() == plan.names:
                return await func(self, **kwargs)
            args, kwargs = plan.arguments(self, args, kwargs)
            return await func(*args, **kwargs)

        call_async.__modelport_call__ = True  # type: ignore[attr-defined]
        return call_async

    @functools.wraps(func)
    def call(self: Model, *args: Any, **kwargs: Any) -> Any:
        plan = _call_of(type(self), func)
        if plan.simple and not args and kwargs.keys() == plan.names:  # as the runner calls it
            return func(self, **kwargs)
        args, kwargs = plan.arguments(self, args, kwargs)
        return func(*args, **kwargs)

    call.__modelport_call__ = True  # type: ignore[attr-defined]
    return call


def _beside(cls: type, relative: str) -> Path:
    path = Path(relative)
    if path.is_absolute():
        return path
    module = sys.modules.get(cls.__module__)
    origin = getattr(module, "__file__", None)
    return (Path(origin).parent if origin else Path.cwd()) / path
