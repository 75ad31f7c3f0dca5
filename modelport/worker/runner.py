"""The worker runner: lease a batch, run the model off the event loop, report results.

The same runner serves a model inside ``modelport serve`` (through :class:`LocalTransport`,
no HTTP hop) and on remote hosts (through an HTTP transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson
import pydantic

from modelport import _context as context
from modelport.core import Broker
from modelport.errors import NotFound
from modelport.model import Model
from modelport.spec import EndpointSpec
from modelport.wire import LeasedJob, Result, WorkerInfo

log = logging.getLogger("modelport.worker")

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Transport(Protocol):
    """How a runner talks to the server: the worker API, as calls."""

    async def register(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec], worker_id: str | None
    ) -> str: ...

    async def lease(self, worker_id: str, max_jobs: int, wait: float) -> list[LeasedJob]: ...

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]: ...

    async def progress(
        self, worker_id: str, updates: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[str]: ...

    async def results(self, worker_id: str, results: Sequence[Result]) -> list[bool]: ...

    async def leave(self, worker_id: str) -> None: ...


class LocalTransport:
    """The worker API called in-process, for models served inside the API server."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def register(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec], worker_id: str | None
    ) -> str:
        wid = worker_id or self.broker.local_worker_id(info.name)
        return self.broker.register(info, specs, worker_id=wid).id

    async def lease(self, worker_id: str, max_jobs: int, wait: float) -> list[LeasedJob]:
        return await self.broker.lease(worker_id, max_jobs, wait)

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]:
        return await self.broker.heartbeat(worker_id, job_ids)

    async def progress(
        self, worker_id: str, updates: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[str]:
        return await self.broker.progress(worker_id, updates)

    async def results(self, worker_id: str, results: Sequence[Result]) -> list[bool]:
        return await self.broker.finish(worker_id, results)

    async def leave(self, worker_id: str) -> None:
        await self.broker.leave(worker_id)


def describe(exc: BaseException) -> str:
    """The message a client sees for a model error: type and text, never a traceback."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Runner:
    """Runs one model instance: one batch at a time on one dedicated thread."""

    def __init__(
        self,
        model: Model,
        transport: Transport,
        *,
        name: str | None = None,
        lease_wait: float = 20.0,
        heartbeat_interval: float = 2.0,
        progress_interval: float = 0.2,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.spec: EndpointSpec = type(model).spec()
        self.transport = transport
        self.name = name or self.spec.name
        self.lease_wait = lease_wait
        self.metadata = metadata or {}
        self.ready = asyncio.Event()
        self.worker_id: str | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{self.spec.name}")
        self._batched = type(model).predict_batch is not Model.predict_batch
        self._draining = asyncio.Event()
        self.registered = asyncio.Event()
        self._abandoned: set[str] = set()
        self._lock = threading.Lock()
        self._pending_progress: dict[str, dict[str, Any]] = {}
        self._progress_ready = asyncio.Event()
        self.progress_interval = progress_interval
        self.heartbeat_interval = heartbeat_interval

    async def setup(self) -> None:
        """Run the model's ``setup()`` off the event loop."""
        await self._in_thread(self.model.setup)

    async def run(self) -> None:
        """Register, then lease and compute batches until :meth:`drain` or cancellation."""
        if not self.ready.is_set():
            await self.setup()
            self.ready.set()
        await self._register()
        try:
            while not self._draining.is_set():
                jobs = await self._lease()
                if jobs:
                    await self.run_batch(jobs)
            if self.worker_id is not None:
                await self.transport.leave(self.worker_id)
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def drain(self) -> None:
        """Stop leasing; the batch in hand is finished and reported, then the worker leaves."""
        self._draining.set()

    async def _register(self) -> None:
        info = WorkerInfo(
            name=self.name,
            endpoints=[self.spec.name],
            max_batch_size=self.spec.max_batch_size,
            metadata=self.metadata,
        )
        self.worker_id = await self.transport.register(info, [self.spec], self.worker_id)
        self.registered.set()

    async def _lease(self) -> list[LeasedJob]:
        assert self.worker_id is not None
        lease = asyncio.ensure_future(
            self.transport.lease(self.worker_id, self.spec.max_batch_size, self.lease_wait)
        )
        stop = asyncio.ensure_future(self._draining.wait())
        try:
            await asyncio.wait({lease, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not lease.done():
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await lease
            return []
        try:
            return lease.result()
        except NotFound:
            log.warning("the server does not know worker %s; registering again", self.worker_id)
            await self._register()
            return []

    async def run_batch(self, jobs: list[LeasedJob]) -> None:
        beat = asyncio.create_task(self._pump([j.id for j in jobs]))
        try:
            results = await self._in_thread(self._compute, jobs, asyncio.get_running_loop())
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        self._abandoned.difference_update(j.id for j in jobs)
        await self._report(results)

    async def _report(self, results: list[Result]) -> None:
        for _ in range(3):
            assert self.worker_id is not None
            try:
                await self.transport.results(self.worker_id, results)
                return
            except NotFound:
                await self._register()
        log.error("results for %d jobs could not be delivered", len(results))

    async def _pump(self, job_ids: list[str]) -> None:
        """While a batch runs: send coalesced progress and heartbeats, and learn of cancels."""
        assert self.worker_id is not None
        loop = asyncio.get_running_loop()
        interval = min(self.spec.lease_duration / 3, self.heartbeat_interval)
        next_beat = loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                    await self._progress_ready.wait()
            try:
                if self._progress_ready.is_set():
                    self._progress_ready.clear()
                    with self._lock:
                        pending, self._pending_progress = self._pending_progress, {}
                    held = set(await self.transport.progress(self.worker_id, list(pending.items())))
                    self._abandoned.update(j for j in pending if j not in held)
                    await asyncio.sleep(self.progress_interval)  # at most one send per interval
                if loop.time() >= next_beat:
                    held = set(await self.transport.heartbeat(self.worker_id, job_ids))
                    # Jobs no longer held were cancelled or lost: stop them where the model allows.
                    self._abandoned.update(j for j in job_ids if j not in held)
                    next_beat = loop.time() + interval
            except Exception:
                log.warning("progress or heartbeat failed; retrying", exc_info=True)
                next_beat = loop.time() + interval

    def _reporter(self, job_ids: list[str], loop: asyncio.AbstractEventLoop) -> context.Reporter:
        """What ``Model.progress`` calls on the model thread for these jobs."""

        def report(fraction: float | None, message: str | None, data: dict[str, Any]) -> None:
            if any(j in self._abandoned for j in job_ids):
                raise JobAbandoned("the job was cancelled while it ran")
            if fraction is not None and not 0.0 <= fraction <= 1.0:
                raise ValueError(f"progress fraction must be between 0 and 1, got {fraction}")
            if data:
                try:
                    self.spec.progress_model.model_validate(data)
                except pydantic.ValidationError as e:
                    first = e.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    raise ValueError(f"progress field {where}: {first['msg']}") from None
            update = {"fraction": fraction, "message": message, "data": data}
            with self._lock:
                wake = not self._pending_progress
                for job_id in job_ids:
                    self._pending_progress[job_id] = update
            if wake:
                loop.call_soon_threadsafe(self._progress_ready.set)

        return report

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _compute(self, jobs: list[LeasedJob], loop: asyncio.AbstractEventLoop) -> list[Result]:
        """Call the model for one batch (on the model thread) and turn its answers into results."""
        try:
            if self._batched:
                context.set_reporter(self._reporter([j.id for j in jobs], loop))
                outputs = self.model.predict_batch([j.input for j in jobs])
                if not isinstance(outputs, list) or len(outputs) != len(jobs):
                    got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
                    raise TypeError(
                        f"predict_batch must return a list of {len(jobs)} outputs, got {got}"
                    )
            else:
                outputs = [self._one(j, loop) for j in jobs]
        except JobAbandoned as e:
            return [Result(j.id, j.endpoint, j.attempt, error=describe(e)) for j in jobs]
        except Exception as e:
            log.exception("model %s failed on a batch of %d", self.spec.name, len(jobs))
            retry = self.spec.retry_failed_batches
            return [
                Result(j.id, j.endpoint, j.attempt, error=describe(e), retry=retry) for j in jobs
            ]
        finally:
            context.set_reporter(None)
        return [self._result(j, out) for j, out in zip(jobs, outputs, strict=True)]

    def _one(self, job: LeasedJob, loop: asyncio.AbstractEventLoop) -> Any:
        context.set_reporter(self._reporter([job.id], loop))
        try:
            return _collect(self.model.predict(**job.input), lambda: job.id in self._abandoned)
        except JobAbandoned as e:
            log.info("job %s stopped: %s", job.id, e)
            return e
        except Exception as e:
            log.exception("model %s failed on job %s", self.spec.name, job.id)
            return e

    def _result(self, job: LeasedJob, output: Any) -> Result:
        if isinstance(output, BaseException):
            return Result(job.id, job.endpoint, job.attempt, error=describe(output))
        try:
            value = orjson.loads(orjson.dumps(_collect(output), option=_JSON_OPTIONS))
        except (TypeError, orjson.JSONEncodeError) as e:
            return Result(
                job.id, job.endpoint, job.attempt, error=f"the output is not JSON-serializable: {e}"
            )
        return Result(job.id, job.endpoint, job.attempt, output=value)


class JobAbandoned(Exception):
    """The job was cancelled or its lease lost while the model worked on it."""


def _collect(output: Any, abandoned: Callable[[], bool] = lambda: False) -> Any:
    """A generator's chunks as one output: text joined, anything else listed.

    Between chunks the job is checked: a cancelled job's generator is closed there.
    """
    if isinstance(output, types.GeneratorType):
        chunks = []
        for chunk in output:
            if abandoned():
                output.close()
                raise JobAbandoned("the job was cancelled while it ran")
            chunks.append(chunk)
        if chunks and all(isinstance(c, str) for c in chunks):
            return "".join(chunks)
        return chunks
    if inspect.isawaitable(output):
        raise TypeError("predict must be a plain function or generator, not a coroutine")
    return output
