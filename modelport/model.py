"""The base class users subclass to serve a model.

    class Iris(modelport.Model):
        def setup(self) -> None:
            self.clf = train()

        def predict(self, sepal_length: float = Input(ge=0, le=10), ...) -> dict[str, Any]:
            return {"label": ...}

Serving loops live in :mod:`modelport.worker`, never here.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from modelport import _context as context
from modelport.errors import SpecError
from modelport.spec import (
    SERVING_KEYS,
    EndpointSpec,
    check_spec,
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
    concurrency: ClassVar[int] = 1
    """Batches one model instance runs at once, each on its own thread, in the API server
    (embedded) and in each worker process; ``setup()`` still runs once. Raise it only for a
    thread-safe ``predict`` that waits on I/O or releases the GIL, such as a generator
    streaming tokens to several clients at once."""

    def setup(self) -> None:
        """Load weights and warm up; called once per process before the first job."""

    predict: Callable[..., Any] = _predict_undefined
    """Compute one output from one validated input: ``def predict(self, x: float = Input(ge=0))
    -> dict[str, float]``. Declared as a callable, not a method, so each model gives it its
    own signature without a type checker calling the override incompatible."""

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
            check_spec(spec)
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


def _beside(cls: type, relative: str) -> Path:
    path = Path(relative)
    if path.is_absolute():
        return path
    module = sys.modules.get(cls.__module__)
    origin = getattr(module, "__file__", None)
    return (Path(origin).parent if origin else Path.cwd()) / path
