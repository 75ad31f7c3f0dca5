"""A model run in this process, through the worker's own code path: the same validation as
the server's submit, the same :class:`~modelport.worker.invoke.Invoker` call, the same check
of the output against the endpoint's outputs. What ``run``, ``pipe`` and ``test`` share."""

from __future__ import annotations

import functools
import itertools
import logging
import math
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pydantic

from modelport.errors import InvalidRequest, ModelportError, invalid
from modelport.model import Model
from modelport.spec import EndpointSpec
from modelport.wire import Event, LeasedJob
from modelport.worker.events import Events
from modelport.worker.invoke import Invoker

if TYPE_CHECKING:
    import asyncio

OnEvent = Callable[[Event], None]

_NO_LOOP = cast("asyncio.AbstractEventLoop", None)
"""The event loop the invoker is given: it only hands it to the sink with each event, which
sends nothing (a coroutine ``predict`` runs in ``asyncio.run``), so a model run in this
process neither makes one nor loads asyncio."""


@dataclass
class Outcome:
    """One input's answer: an output, or the error a client of the server would see."""

    output: Any = None
    error: str | None = None


class _Sink(Events):
    """Events handed straight to a callback on the model's own thread (nothing to send)."""

    def __init__(self) -> None:
        super().__init__(progress_interval=0.0)
        self.on_event: OnEvent | None = None

    def emit(self, event: Event, loop: asyncio.AbstractEventLoop) -> None:
        if self.on_event is not None:
            self.on_event(event)


def validate(spec: EndpointSpec, data: Any) -> dict[str, Any]:
    """An input as the server's submit validates it: same checks, same messages."""
    if not isinstance(data, dict):
        raise InvalidRequest(f"an input must be a JSON object, got {type(data).__name__}")
    try:
        parsed = spec.request_model.model_validate({"input": data})
    except pydantic.ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        raise invalid(errors, strip="input") from None
    value: dict[str, Any] = parsed.input.model_dump()  # type: ignore[attr-defined]
    return value


def load_target(target: str, endpoint: str | None = None) -> type[Model]:
    """The one model class a command-line target names (``--endpoint`` picks among several)."""
    from modelport.loader import load_models

    try:
        classes = load_models(target)
    except ModelportError:
        raise
    except Exception as e:  # the model file itself fails to import
        if "--debug" in sys.argv:
            traceback.print_exc()
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ModelportError(f"{target}: cannot load it: {text}") from e
    if endpoint is not None:
        named = [c for c in classes if c.endpoint_name() == endpoint]
        if not named:
            names = ", ".join(c.endpoint_name() for c in classes)
            raise ModelportError(f"{target}: no endpoint {endpoint!r} (it has {names})")
        return named[0]
    if len(classes) > 1:
        names = ", ".join(c.endpoint_name() for c in classes)
        raise ModelportError(f"{target} has several models ({names}): pick one with --endpoint")
    return classes[0]


class LocalModel:
    """One model instance, set up once, called one input (or one batch) at a time."""

    def __init__(self, cls: type[Model]) -> None:
        self.cls = cls
        self.spec: EndpointSpec = cls.spec()
        self.model = cls()
        self._sink = _Sink()
        self._invoker = Invoker(self.model, self.spec, self._sink)
        self._loop = _NO_LOOP
        self._ids = itertools.count(1)
        logging.getLogger("modelport").addHandler(logging.NullHandler())

    @property
    def batched(self) -> bool:
        return self._invoker.batched

    def setup(self) -> None:
        self.model.setup()

    def close(self) -> None:
        """Nothing to release any more (there is no event loop): kept for the modes written
        against it."""

    def validate(self, data: Any) -> dict[str, Any]:
        """The input as the server's submit validates it: same checks, same messages, and
        media (a file's bytes, a data URL) converted per the spec as the server does."""
        return self._media(validate(self.spec, data))

    def validate_many(self, data: Sequence[Any]) -> list[dict[str, Any] | ModelportError]:
        """:meth:`validate` on each input: its value, or the error it raised. All the inputs
        are checked in one call when they are all valid; when one is not, each is checked
        alone, so every message is the one :meth:`validate` gives."""
        if all(type(x) is dict for x in data):
            try:
                values = self._many.dump_python(self._many.validate_python(data))
            except pydantic.ValidationError:
                pass
            else:
                if not self.spec.media_inputs:
                    return values  # type: ignore[no-any-return]
                return [self._error_or(self._media, x) for x in values]
        return [self._error_or(self.validate, x) for x in data]

    @staticmethod
    def _error_or(
        check: Callable[[Any], dict[str, Any]], data: Any
    ) -> dict[str, Any] | ModelportError:
        try:
            return check(data)
        except ModelportError as e:
            return e

    @functools.cached_property
    def _many(self) -> pydantic.TypeAdapter[list[Any]]:
        """Validates a list of inputs (each as the ``input`` of a submit body) at once."""
        inputs = self.spec.request_model.model_fields["input"].annotation
        return pydantic.TypeAdapter(list[inputs])  # type: ignore[valid-type]

    def _media(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Media inputs converted per the spec, as the server does."""
        if not self.spec.media_inputs:
            return inputs
        from modelport.media.prepare import has_media, limits_of, prepare
        from modelport.settings import Limits

        return (
            prepare(self.spec, inputs, limits_of(Limits()))
            if has_media(self.spec, inputs)
            else inputs
        )

    def call(
        self, inputs: Sequence[dict[str, Any]], on_event: OnEvent | None = None
    ) -> list[Outcome]:
        """Run validated inputs as one batch (``predict_batch``) or one by one (``predict``)."""
        jobs = [
            LeasedJob(f"local-{next(self._ids)}", self.spec.name, dict(x), 1, math.inf)
            for x in inputs
        ]
        self._sink.on_event = on_event
        try:
            results = self._invoker.compute(jobs, self._loop)
        finally:
            self._sink.on_event = None
        return [
            Outcome(error=r.error) if r.error is not None else self._checked(r.output)
            for r in results
        ]

    def call_each(self, inputs: Iterable[dict[str, Any]]) -> Iterator[tuple[Any, str | None]]:
        """Validated inputs run one by one, each outcome as soon as it is made, as (output,
        None) or (None, error), with nobody told of their events (what ``pipe`` needs); a
        ``predict_batch`` model gets them as one batch."""
        if self.batched:
            for outcome in self.call(list(inputs)):
                yield outcome.output, outcome.error
            return
        jobs = zip(map("local-{}".format, self._ids), inputs, strict=False)  # ids never end
        output_error = self.spec.output_error
        for output, error in self._invoker.outputs_unwatched(jobs, self._loop):
            if error is None:
                error = output_error(output)
                if error is not None:
                    output = None
            yield output, error

    def _checked(self, output: Any) -> Outcome:
        error = self.spec.output_error(output)
        return Outcome(output=output) if error is None else Outcome(error=error)
