"""The worker runner: lease a batch, run the model off the event loop, report results.

The same runner serves a model inside ``modelport serve`` (through :class:`LocalTransport`,
no HTTP hop) and on remote hosts (through an HTTP transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson

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
        beat = asyncio.create_task(self._heartbeat([j.id for j in jobs]))
        try:
            results = await self._in_thread(self._compute, jobs)
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

    async def _heartbeat(self, job_ids: list[str]) -> None:
        assert self.worker_id is not None
        interval = min(self.spec.lease_duration / 3, self.heartbeat_interval)
        while True:
            await asyncio.sleep(interval)
            try:
                held = set(await self.transport.heartbeat(self.worker_id, job_ids))
            except Exception:
                log.warning("heartbeat failed; retrying at the next interval", exc_info=True)
                continue
            # Jobs no longer held were cancelled or lost: stop them where the model allows.
            self._abandoned.update(j for j in job_ids if j not in held)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _compute(self, jobs: list[LeasedJob]) -> list[Result]:
        """Call the model for one batch (on the model thread) and turn its answers into results."""
        try:
            if self._batched:
                outputs = self.model.predict_batch([j.input for j in jobs])
                if not isinstance(outputs, list) or len(outputs) != len(jobs):
                    got = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
                    raise TypeError(
                        f"predict_batch must return a list of {len(jobs)} outputs, got {got}"
                    )
            else:
                outputs = [self._one(j) for j in jobs]
        except Exception as e:
            log.exception("model %s failed on a batch of %d", self.spec.name, len(jobs))
            retry = self.spec.retry_failed_batches
            return [
                Result(j.id, j.endpoint, j.attempt, error=describe(e), retry=retry) for j in jobs
            ]
        return [self._result(j, out) for j, out in zip(jobs, outputs, strict=True)]

    def _one(self, job: LeasedJob) -> Any:
        try:
            return _collect(self.model.predict(**job.input), lambda: job.id in self._abandoned)
        except Exception as e:
            log.exception("model %s failed on job input", self.spec.name)
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
