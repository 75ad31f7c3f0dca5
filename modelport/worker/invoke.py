"""Calling the model: one batch on the model thread, its answers turned into results.

A ``predict_batch`` model gets the batch's inputs in one call; any other model gets
``predict(**input)`` once per job. A generator (sync or async) streams its chunks as output
events, and its output is the chunks joined or listed, or the value it returns if not None;
``Model.progress`` reports through the :class:`~modelport.worker.events.Events`. A model
error becomes the job's error (type and text, never a traceback); a :class:`TransientError`
requeues the job.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import math
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import orjson
import pydantic

from modelport import _context as context
from modelport import logs
from modelport.errors import first_error
from modelport.model import Model, runner_call
from modelport.spec import EndpointSpec
from modelport.wire import Event, LeasedJob, Result
from modelport.worker import capture
from modelport.worker.events import Events

if TYPE_CHECKING:  # imported where they are used: a model run in this process may need none
    import asyncio

    from modelport.media import outputs as media_outputs

log = logging.getLogger("modelport.worker")

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_SCALARS = (str, int, float, bool)
_PLAIN = frozenset({dict, list, str, int, float, bool, type(None)})
"""Types of output that are never a generator or a coroutine."""


class JobAbandoned(Exception):
    """The job was cancelled or its lease lost while the model worked on it."""


class TransientError(Exception):
    """Raised by ``predict``: this attempt failed for a reason another attempt may not meet
    (an upstream that could not be reached, a program that crashed); the job goes back to
    the queue until its ``max_attempts``, then fails with this message."""


def describe(exc: BaseException) -> str:
    """The message a client sees for a model error: type and text, never a traceback."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Invoker:
    def __init__(self, model: Model, spec: EndpointSpec, buffer: Events) -> None:
        self.model = model
        self.spec = spec
        self.buffer = buffer
        self.batched = type(model).predict_batch is not Model.predict_batch
        self._text = spec.output is not None and spec.output.type == "string"
        self.job_times: collections.deque[float] = collections.deque(maxlen=32)
        """Seconds each of the latest one-at-a-time ``predict`` calls took."""

    def compute(self, jobs: list[LeasedJob], loop: asyncio.AbstractEventLoop) -> list[Result]:
        """Call the model for one batch (on the model thread) and turn its answers into results."""
        with _kept():  # put back after the failure is logged, with the batch's job ids
            try:
                if self.batched:
                    ids = [j.id for j in jobs]
                    reporter, logger, check, _ = self._contexts(ids, loop)
                    context.set_reporter(reporter)
                    context.set_logger(logger)
                    context.set_checker(check)
                    logs.job_id.set(",".join(ids))
                    with capture.capturing(ids, self._log(loop)):
                        outputs = self.model.predict_batch([self._inputs(j.input) for j in jobs])
                    if not isinstance(outputs, list) or len(outputs) != len(jobs):
                        got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
                        raise TypeError(
                            f"predict_batch must return a list of {len(jobs)} outputs, got {got}"
                        )
                else:
                    outputs = [output for _, output in self._predicted(jobs, loop)]
            except JobAbandoned as e:
                return [Result(j.id, j.endpoint, j.attempt, error=describe(e)) for j in jobs]
            except Exception as e:
                log.exception("model %s failed on a batch of %d", self.spec.name, len(jobs))
                retry = self.spec.retry_failed_batches
                return [
                    Result(j.id, j.endpoint, j.attempt, error=describe(e), retry=retry)
                    for j in jobs
                ]
        return [_result(j, out, self.spec) for j, out in zip(jobs, outputs, strict=True)]

    def compute_each(
        self,
        jobs: Claims,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Result], None],
    ) -> None:
        """Call ``predict`` for each job in turn (on the model thread), handing each result to
        ``deliver`` as soon as it is made (on this thread: it must be thread-safe), until no
        job is left to claim. A job cancelled before its turn is not started."""

        def started() -> Iterator[LeasedJob]:  # a job cancelled meanwhile is not started
            while (job := jobs.claim()) is not None:
                if job.id not in self.buffer.abandoned:
                    yield job
                    continue
                error = describe(JobAbandoned("the job was cancelled before it started"))
                deliver(Result(job.id, job.endpoint, job.attempt, error=error))

        with _kept():
            for job, output in self._predicted(started(), loop):
                deliver(_result(job, output, self.spec))

    def outputs_unwatched(
        self, jobs: Iterable[tuple[str, dict[str, Any]]], loop: asyncio.AbstractEventLoop
    ) -> Iterator[tuple[Any, str | None]]:
        """Each (job id, input)'s output as JSON values and None, or None and its error, in
        turn: what :meth:`compute` makes of them for a model without ``predict_batch``, for
        jobs whose events nobody receives (``modelport pipe``). The same calls and checks,
        with the contexts bound once for all the jobs, no log lines made of what the model
        prints (it still reaches the streams), and no :class:`LeasedJob` or :class:`Result`
        around each: a stream of light jobs spends its time in the model."""
        ids = [""]  # the job at hand
        contexts = self._contexts(ids, loop)
        chunk = contexts[3]
        capture.install()
        predict = self.model.predict
        direct, names = runner_call(self.model) or (predict, None)
        times = self.job_times
        clock = time.perf_counter
        with _kept():
            context.restore(contexts)
            for job_id, inputs in jobs:
                ids[0] = job_id
                logs.job_id.set(job_id)
                started = clock()
                try:
                    output = direct(**inputs) if inputs.keys() == names else predict(**inputs)
                    if type(output) not in _PLAIN:
                        output = _collect(output, chunk)
                    if self._text and isinstance(output, list) and not output:
                        output = ""  # as _predict: an Iterator[str] that yielded nothing
                except JobAbandoned as e:
                    log.info("job %s stopped: %s", job_id, e)
                    output = e
                except Exception as e:
                    log.exception("model %s failed on job %s", self.spec.name, job_id)
                    output = e
                times.append(clock() - started)
                yield _converted(output, self.spec)

    def _predicted(
        self, jobs: Iterable[LeasedJob], loop: asyncio.AbstractEventLoop
    ) -> Iterator[tuple[LeasedJob, Any]]:
        """``predict`` on each job in turn (on the model thread): each job with its output,
        or the exception it raised. ``Model.progress``, ``context.log``, ``context.check``,
        chunks and printed lines reach the job at hand: what they call is made once, for a
        list naming that job, rather than for each job, and set again before each (a
        nested call of another model unbinds them when it ends). The caller puts back what
        was there (:func:`_kept`)."""
        ids = [""]  # the job at hand
        contexts = self._contexts(ids, loop)
        emit = self._log(loop)
        for job in jobs:
            ids[0] = job.id
            logs.job_id.set(job.id)
            context.restore(contexts)
            yield job, self._predict(job, contexts[3], capture.capturing(ids, emit))

    def _predict(
        self,
        job: LeasedJob,
        chunk: Callable[[Any], None],
        captured: AbstractContextManager[Any] | None,
    ) -> Any:
        """``predict`` on one job, inside ``captured`` if given: its output, or the exception
        it raised."""
        started = time.perf_counter()
        try:
            if captured is None:
                output = _collect(self.model.predict(**job.input), chunk)
            else:
                with captured:
                    output = _collect(self.model.predict(**job.input), chunk)
            if isinstance(output, list) and not output and self._text:
                return ""  # an Iterator[str] that yielded nothing wrote the empty text
            return output
        except JobAbandoned as e:
            log.info("job %s stopped: %s", job.id, e)
            return e
        except Exception as e:
            log.exception("model %s failed on job %s", self.spec.name, job.id)
            return e
        finally:
            self.job_times.append(time.perf_counter() - started)

    async def compute_async(self, job: LeasedJob) -> list[Result]:
        """Call the model's ``predict_async`` (a coroutine or an async generator) for one
        job, as a task on the event loop: for a model that waits on I/O with many jobs in
        flight (an adapter), with no thread for each. ``context.log``, ``context.check``,
        ``context.chunk`` and ``Model.progress`` reach the job (the task has its own)."""
        import asyncio

        loop = asyncio.get_running_loop()
        contexts = self._contexts([job.id], loop)
        context.restore(contexts)
        logs.job_id.set(job.id)
        started = time.perf_counter()
        chunk = contexts[3]
        try:
            output = await _collect_async(self.model.predict_async(**job.input), chunk)  # type: ignore[attr-defined]
        except JobAbandoned as e:
            output = e
        except Exception as e:
            log.exception("model %s failed on job %s", self.spec.name, job.id)
            output = e
        finally:
            self.job_times.append(time.perf_counter() - started)
        return [_result(job, output, self.spec)]

    def _contexts(
        self, job_ids: list[str], loop: asyncio.AbstractEventLoop
    ) -> tuple[context.Reporter, context.Logger, Callable[[], None], Callable[[Any], None]]:
        """What ``Model.progress``, ``context.log``, ``context.check`` and a streamed chunk
        call for these jobs (in the order :func:`context.restore` sets them); a chunk is
        checked, then becomes an ``output`` event of the first. A caller may point
        ``job_ids`` at the job at hand as it goes."""

        def check() -> None:
            self._check(job_ids)

        def chunk(value: Any) -> None:
            self._check(job_ids)
            self.buffer.emit(Event(job_ids[0], "output", jsonable(value)), loop)

        return self._reporter(job_ids, loop), self._logger(job_ids, loop), check, chunk

    def _logger(self, job_ids: list[str], loop: asyncio.AbstractEventLoop) -> context.Logger:
        """What ``context.log`` calls on the model thread: a ``log`` event for each job."""

        def record(level: str, message: str, fields: dict[str, Any]) -> None:
            data = {"level": level, "message": message, "time": time.time(), **fields}
            for job_id in job_ids:
                self.buffer.emit(Event(job_id, "log", data), loop)

        return record

    def _log(self, loop: asyncio.AbstractEventLoop) -> capture.Emit:
        """What a job's printed and logged lines are sent with."""

        def emit(job_id: str, data: dict[str, Any]) -> None:
            self.buffer.emit(Event(job_id, "log", data), loop)

        return emit

    def _reporter(self, job_ids: list[str], loop: asyncio.AbstractEventLoop) -> context.Reporter:
        """What ``Model.progress`` calls on the model thread for these jobs."""
        previews: dict[str, media_outputs.Previews] = {}  # of the job at hand, made on its first

        def report(fraction: float | None, message: str | None, data: dict[str, Any]) -> None:
            self._check(job_ids)
            if fraction is not None and not 0.0 <= fraction <= 1.0:
                raise ValueError(f"progress fraction must be between 0 and 1, got {fraction}")
            if "preview" in data or (data and self.spec.media_outputs):
                from modelport.media import outputs as media_outputs

                if job_ids[0] not in previews:  # the ids change when bound for many jobs
                    previews.clear()
                    previews[job_ids[0]] = media_outputs.Previews(self.buffer.progress_interval)
                data = previews[job_ids[0]].encode(self.spec, data, final=fraction == 1.0)
            if data:
                declared = data
                if "preview" in data and "preview" not in self.spec.progress:
                    declared = {k: v for k, v in data.items() if k != "preview"}
                try:
                    self.spec.progress_model.model_validate(declared)
                except pydantic.ValidationError as e:
                    raise ValueError(f"progress field {first_error(e.errors())}") from None
            update = {"fraction": fraction, "message": message, "data": data}
            for job_id in job_ids:
                self.buffer.emit(Event(job_id, "progress", update), loop)

        return report

    def _inputs(self, values: dict[str, Any]) -> dict[str, Any]:
        """A batch item's media inputs as the model's objects (``predict`` does it itself)."""
        if not self.spec.media_inputs:
            return values
        from modelport.media import outputs as media_outputs

        return {
            k: media_outputs.to_model(self.spec.media_inputs[k], v)
            if k in self.spec.media_inputs
            else v
            for k, v in values.items()
        }

    def _check(self, job_ids: list[str]) -> None:
        if any(j in self.buffer.abandoned for j in job_ids):
            raise JobAbandoned("the job was cancelled while it ran")


class Claims:
    """The jobs of one lease, claimed one at a time by the model thread; :meth:`close` takes
    back, at once, every job not claimed yet."""

    def __init__(self, jobs: list[LeasedJob]) -> None:
        self._jobs = jobs
        self._next = 0
        self._lock = threading.Lock()

    def claim(self) -> LeasedJob | None:
        with self._lock:
            if self._next >= len(self._jobs):
                return None
            self._next += 1
            return self._jobs[self._next - 1]

    def close(self) -> list[LeasedJob]:
        with self._lock:
            rest, self._next = self._jobs[self._next :], len(self._jobs)
            return rest


def _result(job: LeasedJob, output: Any, spec: EndpointSpec) -> Result:
    value, error = _converted(output, spec)
    if error is not None:
        retry = isinstance(output, TransientError)
        return Result(job.id, job.endpoint, job.attempt, error=error, retry=retry)
    return Result(job.id, job.endpoint, job.attempt, output=value)


def _converted(output: Any, spec: EndpointSpec) -> tuple[Any, str | None]:
    """What ``predict`` returned (or raised) as a job's output in JSON values and None, or
    None and the error its client sees."""
    if isinstance(output, BaseException):
        return None, describe(output)
    try:
        if spec.media_outputs:
            from modelport.media import outputs as media_outputs

            output = media_outputs.encode_output(spec, output)
        return jsonable(output), None
    except ValueError as e:  # a media value that cannot be written (MediaError)
        return None, f"the output cannot be encoded: {e}"
    except (TypeError, orjson.JSONEncodeError) as e:
        return None, f"the output is not JSON-serializable: {e}"


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types (numpy arrays and scalars, dataclasses, enums and
    pydantic models included)."""
    if isinstance(value, _SCALARS) or value is None:  # a tuple: faster than a union
        return value
    if type(value) is dict and all(map(_flat, value.items())):
        return dict(value)  # what the round trip below would make of it, made faster
    return orjson.loads(orjson.dumps(value, default=_encode, option=_JSON_OPTIONS))


def _flat(item: tuple[Any, Any]) -> bool:
    """Whether a dict item is one orjson writes and reads back as it is: an ASCII text key
    and an ASCII text, bool, None, finite float or 64-bit int value."""
    key, value = item
    if type(key) is not str or not key.isascii():
        return False
    kind = type(value)
    if kind is str:
        return value.isascii()  # type: ignore[no-any-return]
    if kind is bool or value is None:
        return True
    if kind is int:
        return -(1 << 63) <= value < 1 << 64  # type: ignore[no-any-return]
    return kind is float and math.isfinite(value)


def _encode(value: Any) -> Any:
    """What orjson cannot write itself: pydantic models (dataclasses and enums it can)."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _collect(output: Any, chunk: Callable[[Any], None]) -> Any:
    """Run a generator (sync or async) to its end, passing each chunk on as it is made.

    The output is the chunks joined (text) or listed. A coroutine is run to its value.
    """
    if type(output) in _PLAIN:
        return output
    if inspect.isasyncgen(output) or inspect.iscoroutine(output):
        import asyncio

        return asyncio.run(_collect_async(output, chunk))
    if not isinstance(output, types.GeneratorType):
        return output
    chunks = []
    try:
        while True:
            try:
                value = next(output)
            except StopIteration as end:
                returned = end.value
                break
            chunk(value)
            chunks.append(value)
    finally:
        output.close()
    return _joined(chunks) if returned is None else returned


async def _collect_async(output: Any, chunk: Callable[[Any], None]) -> Any:
    if inspect.iscoroutine(output):
        return await output
    chunks = []
    try:
        async for value in output:
            chunk(value)
            chunks.append(value)
    finally:
        await output.aclose()
    return _joined(chunks)


def _joined(chunks: list[Any]) -> Any:
    if chunks and all(isinstance(c, str) for c in chunks):
        return "".join(chunks)
    return chunks


@contextlib.contextmanager
def _kept() -> Iterator[None]:
    """The job contexts of this thread as they are, put back when the block ends: a model
    that calls another in its thread (``LocalModel``) gets its own back after that call."""
    outer, outer_job = context.bound(), logs.job_id.get()
    try:
        yield
    finally:
        context.restore(outer)
        logs.job_id.set(outer_job)
