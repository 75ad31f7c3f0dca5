"""The worker runner: lease a batch, run the model off the event loop, report results.

The same runner serves a model inside ``modelport serve`` (through :class:`LocalTransport`,
no HTTP hop) and on remote hosts (through an HTTP transport).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import orjson
import pydantic

from modelport import _context as context
from modelport import logs
from modelport.core import Broker
from modelport.errors import NotFound
from modelport.loader import target_of
from modelport.model import Model, concurrency_of
from modelport.spec import EndpointSpec
from modelport.wire import Event, LeasedJob, Result, WorkerInfo

log = logging.getLogger("modelport.worker")

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Transport(Protocol):
    """How a runner talks to the server: the worker API, as calls."""

    async def register(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec], worker_id: str | None
    ) -> str: ...

    async def lease(
        self, worker_id: str, max_jobs: int, wait: float, results: Sequence[Result] = ()
    ) -> list[LeasedJob]:
        """Deliver ``results`` (as :meth:`results` does), then long-poll for a batch."""

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]: ...

    async def events(self, worker_id: str, events: Sequence[Event]) -> list[str]: ...

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
        return (await self.broker.join(info, specs, worker_id=wid)).id

    async def lease(
        self, worker_id: str, max_jobs: int, wait: float, results: Sequence[Result] = ()
    ) -> list[LeasedJob]:
        if results:
            await self.broker.finish(worker_id, results)
        return await self.broker.lease(worker_id, max_jobs, wait)

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]:
        return await self.broker.heartbeat(worker_id, job_ids)

    async def events(self, worker_id: str, events: Sequence[Event]) -> list[str]:
        return await self.broker.events(worker_id, events)

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
        prefetch_below: float = 0.1,
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
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{self.name}")
        self._batched = type(model).predict_batch is not Model.predict_batch
        self._draining = asyncio.Event()
        self.registered = asyncio.Event()
        self._abandoned: set[str] = set()
        self._lock = threading.Lock()
        self._pending_events: list[Event] = []
        self._pending_progress: dict[str, Event] = {}
        self._progress_sent = -1e9
        self._events_ready = asyncio.Event()
        self._sending = asyncio.Lock()
        """Held while events are sent: they go out in order, and all before a result."""
        self.progress_interval = progress_interval
        self.heartbeat_interval = heartbeat_interval
        self.prefetch_below = prefetch_below
        self._compute_times: collections.deque[float] = collections.deque(maxlen=8)
        self._prefetched: list[str] = []
        self._description: dict[str, Any] | None = None

    async def setup(self) -> None:
        """Run the model's ``setup()`` off the event loop."""
        await self._in_thread(self.model.setup)

    async def run(self) -> None:
        """Register, then lease and compute batches until :meth:`drain` or cancellation."""
        if not self.ready.is_set():
            await self.setup()
            self.ready.set()
        await self._register()
        ahead: asyncio.Future[list[LeasedJob]] | None = None
        carried: list[Result] = []  # the results the lease in ``ahead`` delivers
        sent: list[Result] = []  # the results ``sending`` delivers
        results: list[Result] = []
        try:
            while True:
                if ahead is not None:
                    jobs, ahead, carried = await ahead, None, []
                    self._prefetched = []
                elif self._draining.is_set():
                    break
                else:
                    # The last batch's results ride on the next lease request: one round trip.
                    jobs, results = await self._lease(results), []
                if not jobs:
                    continue
                sending: asyncio.Future[None] | None = None
                if self._prefetch(jobs):  # no long poll: the results it carries must not wait
                    ahead, carried, results = (
                        asyncio.ensure_future(self._lease(results, wait=0.0)),
                        results,
                        [],
                    )
                    ahead.add_done_callback(self._hold)
                elif results:  # they go now, not after this batch
                    sending, sent, results = (
                        asyncio.ensure_future(self._report(results)),
                        results,
                        [],
                    )
                try:
                    results = await self.run_batch(jobs)
                    if sending is not None:
                        await sending
                        sent = []
                finally:
                    if sending is not None and not sending.done():
                        sending.cancel()
            if results:
                await self._report(results)
            if self.worker_id is not None:
                await self.transport.leave(self.worker_id)
        except Exception:
            # A lease or a send failed: the results it carried and the batch computed
            # meanwhile still get reported (a repeat of one that arrived is accepted).
            if carried or sent or results:
                with contextlib.suppress(Exception):
                    await self._report(carried + sent + results)
            raise
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _described(self) -> dict[str, Any]:
        """The device and the model, for the worker registry (after ``setup()``; asked once,
        as :meth:`Model.info` promises)."""
        if self._description is None:
            self._description = self._describe()
        return self._description

    def _describe(self) -> dict[str, Any]:
        cls = type(self.model)
        model: dict[str, Any] = {"class": target_of(cls)}
        model["version"] = self.spec.version
        try:
            model.update(_jsonable(self.model.info()))
        except Exception as e:
            log.warning("%s.info() failed, so the registry shows less: %s", cls.__qualname__, e)
        out: dict[str, Any] = {"device": device(), "model": model}
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            out["cuda_visible_devices"] = visible
        return out

    def _hold(self, ahead: asyncio.Future[list[LeasedJob]]) -> None:
        """The next batch arrived while this one runs: heartbeat its jobs too."""
        if not ahead.cancelled() and ahead.exception() is None:
            self._prefetched = [j.id for j in ahead.result()]

    def _prefetch(self, jobs: list[LeasedJob]) -> bool:
        """Whether to ask for the next batch while this one runs, so the round trip no longer
        idles the model: when this batch is full, of a batched model (several jobs were
        waiting), every recent batch took under ``prefetch_below`` seconds (a batch held
        meanwhile waits little), and the model has no sibling lane that could start it."""
        return (
            not self._draining.is_set()
            and self.spec.max_batch_size > 1
            and len(jobs) >= self.spec.max_batch_size
            and self.model.concurrency == 1
            and len(self._compute_times) > 0
            and max(self._compute_times) < self.prefetch_below
        )

    def drain(self) -> None:
        """Stop leasing; the batch in hand is finished and reported, then the worker leaves."""
        self._draining.set()

    async def _register(self) -> None:
        info = WorkerInfo(
            name=self.name,
            endpoints=[self.spec.name],
            max_batch_size=self.spec.max_batch_size,
            metadata={**self.metadata, **self._described()},
        )
        self.worker_id = await self.transport.register(info, [self.spec], self.worker_id)
        self.registered.set()

    async def _lease(self, results: list[Result], wait: float | None = None) -> list[LeasedJob]:
        """A batch (waiting up to ``wait`` s for one, default ``lease_wait``), after delivering
        ``results``; if the lease request fails or is given up, the results are sent on their
        own. Only a long poll is given up when draining starts: a lease without one answers at
        once, and the jobs it brings are run (given up, they would each lose an attempt)."""
        assert self.worker_id is not None
        wait = self.lease_wait if wait is None else wait
        lease = asyncio.ensure_future(
            self.transport.lease(self.worker_id, self.spec.max_batch_size, wait, results)
        )
        try:
            if wait > 0:
                stop = asyncio.ensure_future(self._draining.wait())
                try:
                    await asyncio.wait({lease, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
            else:
                await asyncio.wait({lease})
        finally:
            if not lease.done():
                lease.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lease
        if lease.cancelled():
            if results:  # they may not have arrived; the server accepts a repeat of one that did
                await self._report(results)
            return []
        try:
            return lease.result()
        except NotFound:
            log.warning("the server does not know worker %s; registering again", self.worker_id)
            await self._register()
            if results:
                await self._report(results)
            return []

    async def run_batch(self, jobs: list[LeasedJob]) -> list[Result]:
        """Compute a batch, sending its events as they come; return its results to report."""
        pump = asyncio.create_task(self._pump([j.id for j in jobs]))
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            results: list[Result] = await self._in_thread(self._compute, jobs, loop)
        finally:
            self._compute_times.append(loop.time() - started)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        await self._send_events()  # chunks made just before the end go out before the result
        self._abandoned.difference_update(j.id for j in jobs)
        return results

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
        """While a batch runs: send chunks at once, progress at most every
        ``progress_interval``, heartbeats in between, and learn which jobs were cancelled."""
        loop = asyncio.get_running_loop()
        interval = min(self.spec.lease_duration / 3, self.heartbeat_interval)
        next_beat = loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                    await self._events_ready.wait()
            try:
                if self._events_ready.is_set():
                    self._events_ready.clear()
                    # Shielded: the pump stopping must not cut a send short (its events
                    # would be lost); the final send waits for it through the lock.
                    await asyncio.shield(self._send_events())
                if loop.time() >= next_beat:
                    assert self.worker_id is not None
                    beating = job_ids + self._prefetched
                    held = set(await self.transport.heartbeat(self.worker_id, beating))
                    # Jobs no longer held were cancelled or lost: stop them where the model allows.
                    self._abandoned.update(j for j in beating if j not in held)
                    next_beat = loop.time() + interval
            except Exception:
                log.warning("sending events or a heartbeat failed; retrying", exc_info=True)
                next_beat = loop.time() + interval

    async def _send_events(self) -> None:
        async with self._sending:
            await self._send_pending()

    async def _send_pending(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        with self._lock:
            events, self._pending_events = self._pending_events, []
            progress_due = now - self._progress_sent >= self.progress_interval
            if self._pending_progress and progress_due:
                events += self._pending_progress.values()
                self._pending_progress = {}
                self._progress_sent = now
            elif self._pending_progress:
                wait = self.progress_interval - (now - self._progress_sent)
                loop.call_later(wait, self._events_ready.set)
        if events:
            assert self.worker_id is not None
            held = set(await self.transport.events(self.worker_id, events))
            self._abandoned.update(e.job_id for e in events if e.job_id not in held)

    def _emit(self, event: Event, loop: asyncio.AbstractEventLoop) -> None:
        """Queue an event from the model thread; the pump sends it."""
        with self._lock:
            wake = not self._pending_events and not self._pending_progress
            if event.type == "progress":
                self._pending_progress[event.job_id] = event
            else:
                self._pending_events.append(event)
        if wake:
            loop.call_soon_threadsafe(self._events_ready.set)

    def _reporter(self, job_ids: list[str], loop: asyncio.AbstractEventLoop) -> context.Reporter:
        """What ``Model.progress`` calls on the model thread for these jobs."""

        def report(fraction: float | None, message: str | None, data: dict[str, Any]) -> None:
            self._check(job_ids)
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
            for job_id in job_ids:
                self._emit(Event(job_id, "progress", update), loop)

        return report

    def _check(self, job_ids: list[str]) -> None:
        if any(j in self._abandoned for j in job_ids):
            raise JobAbandoned("the job was cancelled while it ran")

    def _compute(self, jobs: list[LeasedJob], loop: asyncio.AbstractEventLoop) -> list[Result]:
        """Call the model for one batch (on the model thread) and turn its answers into results."""
        try:
            if self._batched:
                context.set_reporter(self._reporter([j.id for j in jobs], loop))
                logs.job_id.set(",".join(j.id for j in jobs))
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
            logs.job_id.set(None)
        return [self._result(j, out) for j, out in zip(jobs, outputs, strict=True)]

    def _one(self, job: LeasedJob, loop: asyncio.AbstractEventLoop) -> Any:
        context.set_reporter(self._reporter([job.id], loop))
        logs.job_id.set(job.id)

        def chunk(value: Any) -> None:
            self._check([job.id])
            self._emit(Event(job.id, "output", _jsonable(value)), loop)

        try:
            output = _collect(self.model.predict(**job.input), chunk)
            text = self.spec.output is not None and self.spec.output.type == "string"
            if text and isinstance(output, list) and not output:
                return ""  # an Iterator[str] that yielded nothing wrote the empty text
            return output
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
            value = _jsonable(output)
        except (TypeError, orjson.JSONEncodeError) as e:
            return Result(
                job.id, job.endpoint, job.attempt, error=f"the output is not JSON-serializable: {e}"
            )
        return Result(job.id, job.endpoint, job.attempt, output=value)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


def device() -> str:
    """The accelerator this process computes on, as torch sees it when the model loaded torch
    (``cuda:0 NVIDIA A10G``, ``mps``), else ``cpu``. Never imports torch itself."""
    torch: Any = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                index = torch.cuda.current_device()
                return f"cuda:{index} {torch.cuda.get_device_name(index)}"
            mps = getattr(torch.backends, "mps", None)
            if mps is not None and mps.is_available():
                return "mps"
        except Exception:  # a broken driver is a CPU worker, not a crash
            log.debug("could not ask torch for its device", exc_info=True)
    return "cpu"


def lanes(
    model: Model, transport: Transport, name: str | None = None, **options: Any
) -> list[Runner]:
    """The runners of one model instance: one per batch it may run at once (its class's
    ``concurrency``), named ``name``, or ``name#2``, ``name#3``... when there are several."""
    count = concurrency_of(type(model))
    base = name or type(model).spec().name
    return [
        Runner(model, transport, name=base if count == 1 else f"{base}#{i + 1}", **options)
        for i in range(count)
    ]


async def set_up(runners: Sequence[Runner]) -> None:
    """Run the shared model's ``setup()`` once, then mark every runner of it ready."""
    await runners[0].setup()
    for runner in runners:
        runner.ready.set()


class JobAbandoned(Exception):
    """The job was cancelled or its lease lost while the model worked on it."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return orjson.loads(orjson.dumps(value, default=_encode, option=_JSON_OPTIONS))


def _encode(value: Any) -> Any:
    """What orjson cannot write itself: pydantic models (dataclasses and enums it can)."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _collect(output: Any, chunk: Callable[[Any], None]) -> Any:
    """Run a generator (sync or async) to its end, passing each chunk on as it is made.

    The output is the chunks joined (text) or listed. A coroutine is run to its value.
    """
    if inspect.isasyncgen(output) or inspect.iscoroutine(output):
        return asyncio.run(_collect_async(output, chunk))
    if not isinstance(output, types.GeneratorType):
        return output
    chunks = []
    try:
        for value in output:
            chunk(value)
            chunks.append(value)
    finally:
        output.close()
    return _joined(chunks)


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
