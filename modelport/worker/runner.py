"""The worker runner: lease a batch, run the model off the event loop, report results.

The same runner serves a model inside ``modelport serve`` (through the server's in-process
transport, no HTTP hop) and on remote hosts (through :class:`~modelport.worker.http.HttpTransport`).
Its parts: :mod:`~modelport.worker.invoke` calls the model, :mod:`~modelport.worker.events`
buffers what the model reports, :mod:`~modelport.worker.device` describes where it runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import statistics
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from modelport.errors import NotFound
from modelport.model import Model, concurrency_of
from modelport.spec import EndpointSpec
from modelport.wire import LeasedJob, Result, WorkerInfo
from modelport.worker.device import describe_model
from modelport.worker.events import EventBuffer
from modelport.worker.invoke import Claims, Invoker, JobAbandoned, describe
from modelport.worker.transport import Transport

__all__ = ["JobAbandoned", "Runner", "Transport", "describe", "lanes", "set_up", "tear_down"]

log = logging.getLogger("modelport.worker")

HOLD_BUDGET = 0.002
"""Seconds of recent compute a runner leases ahead at once (see ``_lease_size``, ``_ahead``)."""
MAX_AHEAD = 64
"""The most jobs a runner holds unstarted at once."""
EMPTY_PAUSE = 0.1
"""Seconds a runner waits before asking again after a long poll ended early with no job: the
server ends long polls so when it shuts down, and answers at once until it is gone."""


class Health(Protocol):
    """What a model with a health check (an HTTP adapter's ``health_url``) offers: whether it
    can serve now, asked before each lease, and how often it is worth asking."""

    interval: float

    async def ok(self) -> bool: ...


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
        self.width: int = getattr(model, "jobs_in_flight", 1)
        """Jobs run at once, each on its own thread (or, with ``predict_async``, as a task on
        the loop), leased as they go (an adapter's ``concurrency`` or ``processes``); 1 for
        a model without ``predict_async``: one batch at a time."""
        self._executor = ThreadPoolExecutor(self.width, thread_name_prefix=f"model-{self.name}")
        self._draining = asyncio.Event()
        self._long_poll: asyncio.Future[list[LeasedJob]] | None = None
        """The lease request waiting for work, which :meth:`drain` gives up at once."""
        self.registered = asyncio.Event()
        self._buffer = EventBuffer(progress_interval)
        self._invoker = Invoker(model, self.spec, self._buffer)
        # Only a lone lane leases ahead: one with siblings would hold jobs they could start.
        self._one_at_a_time = (
            not self._invoker.batched and self.spec.max_batch_size == 1 and model.concurrency == 1
        )
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
        health: Health | None = getattr(self.model, "health", None)
        if health is not None:
            self.lease_wait = min(self.lease_wait, health.interval)
            if not await self._until_healthy(health):
                return
        await self._register()
        # A model with ``predict_async`` (an adapter) runs its jobs as tasks on this loop even
        # one at a time: no thread hop for each.
        if self.width > 1 or hasattr(self.model, "predict_async"):
            try:
                await self._run_concurrent(health)
            finally:
                self._executor.shutdown(wait=False, cancel_futures=True)
            return
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
                elif health is not None and not await health.ok():
                    if results:
                        await self._report(results)
                        results = []
                    await self._pause(health)
                    continue
                else:
                    # The last batch's results ride on the next lease request: one round trip.
                    asked = asyncio.get_running_loop().time()
                    jobs, results = await self._lease(results), []
                    if not jobs:
                        await self._pause_if_early(asked)
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

    async def _run_concurrent(self, health: Health | None) -> None:
        """Keep up to :attr:`width` jobs running, each on its own thread (or, for a model
        with ``predict_async``, as a task on this loop). A lease asks for as many jobs as
        there is room for, plus as many as the lanes finish in about :data:`HOLD_BUDGET`
        seconds (held, they start as lanes free up, so one round trip serves several, and go
        back to the queue if no job finishes for that long); it is a long poll that no
        finishing job waits for. Results are reported as jobs finish: at once, or with the
        others that finish while a report is under way, in one request."""
        loop = asyncio.get_running_loop()
        on_loop = hasattr(self.model, "predict_async")
        running: dict[asyncio.Future[list[Result]], LeasedJob] = {}
        held: collections.deque[LeasedJob] = collections.deque()  # leased, not started yet
        active: list[str] = []  # the ids of the jobs held or running, which the pump heartbeats
        finished: list[Result] = []  # not reported yet
        reporting: list[Result] = []  # being reported by ``sending``
        sending: asyncio.Future[None] | None = None
        lease: asyncio.Future[list[LeasedJob]] | None = None
        wake = asyncio.Event()
        last_done = since = loop.time()  # when a running job last finished; a lease came
        asked = quiet_until = 0.0  # when the lease was asked for; no lease before (see below)
        pump = asyncio.create_task(self._pump(active))

        def ended(future: asyncio.Future[list[Result]]) -> None:
            nonlocal last_done
            job = running.pop(future)
            active.remove(job.id)
            self._buffer.abandoned.discard(job.id)
            if not future.cancelled():
                finished.extend(future.result())
            last_done = loop.time()
            wake.set()

        def start(job: LeasedJob) -> None:
            future: asyncio.Future[list[Result]]
            if on_loop:
                future = asyncio.ensure_future(self._invoker.compute_async(job))
            else:
                future = loop.run_in_executor(self._executor, self._invoker.compute, [job], loop)
            running[future] = job
            future.add_done_callback(ended)

        async def hand_back(jobs: list[LeasedJob]) -> None:
            for job in jobs:
                active.remove(job.id)
            assert self.worker_id is not None
            await self.transport.release(self.worker_id, [j.id for j in jobs])

        def woken(_: object) -> None:
            wake.set()

        try:
            while True:
                while held and len(running) < self.width:
                    start(held.popleft())
                if sending is not None and sending.done():
                    sending.result()  # a failed report stops the runner (reported below)
                    sending, reporting = None, []
                if finished and sending is None:
                    reporting, finished = finished, []
                    sending = asyncio.ensure_future(self._deliver(reporting))
                    sending.add_done_callback(woken)
                room = self.width - len(running) - len(held)
                if held and self._draining.is_set():
                    rest = list(held)
                    held.clear()
                    await hand_back(rest)
                elif held and loop.time() - max(last_done, since) > HOLD_BUDGET:
                    # The running jobs got slow: another worker may start these sooner.
                    rest = list(held)
                    held.clear()
                    await hand_back(rest)
                if (
                    lease is None
                    and room > 0
                    and not self._draining.is_set()
                    and loop.time() >= quiet_until
                ):
                    if health is not None and not await health.ok():
                        if not running and not held:
                            if finished or sending is not None:
                                await self._flush(sending, finished)
                                sending, reporting, finished = None, [], []
                            await self._pause(health)
                            continue
                    else:
                        assert self.worker_id is not None
                        size = room + self._ahead()
                        asked = loop.time()
                        lease = asyncio.ensure_future(
                            self.transport.lease(self.worker_id, size, self.lease_wait, (), size)
                        )
                        lease.add_done_callback(woken)
                        self._long_poll = lease
                if lease is None and not running and not held and sending is None:
                    if finished:
                        continue
                    if self._draining.is_set():
                        break  # every job is done and reported
                    # else quiet after an early empty lease: woken when it may ask again
                if held:  # look again when they would have waited too long
                    loop.call_at(max(last_done, since) + HOLD_BUDGET, wake.set)
                await wake.wait()
                wake.clear()
                if lease is not None and lease.done():
                    jobs = await self._leased(lease)
                    lease = self._long_poll = None
                    since = loop.time()
                    if not jobs and self._ended_early(asked):
                        quiet_until = since + EMPTY_PAUSE
                        loop.call_at(quiet_until, wake.set)
                    for job in jobs:
                        active.append(job.id)
                    held.extend(jobs)
        finally:
            self._long_poll = None
            if lease is not None:
                lease.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lease
            if held:
                with contextlib.suppress(Exception):
                    await hand_back(list(held))
            if running:  # stopped with jobs in hand: their results still go out
                await asyncio.wait(set(running))
            if sending is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sending
                if not sending.cancelled() and sending.exception() is None:
                    reporting = []
            if reporting or finished:  # a repeat of one that arrived is accepted
                with contextlib.suppress(Exception):
                    await self._report(reporting + finished)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if self.worker_id is not None:
            await self.transport.leave(self.worker_id)

    def _ahead(self) -> int:
        """How many jobs beyond the free lanes to lease: as many as the lanes finish in
        :data:`HOLD_BUDGET` seconds, judged by the median recent job (none while the jobs
        are not quick; a job slower than that has the held ones handed back)."""
        times = self._invoker.job_times
        if not times:
            return 0
        typical = statistics.median(times)
        return min(MAX_AHEAD, int(self.width * HOLD_BUDGET / max(typical, 1e-6)))

    async def _deliver(self, results: list[Result]) -> None:
        await self._send_events()  # a job's chunks go out before its result
        await self._report(results)

    async def _flush(self, sending: asyncio.Future[None] | None, results: list[Result]) -> None:
        if sending is not None:
            await sending
        if results:
            await self._deliver(results)

    def _ended_early(self, asked: float) -> bool:
        """Whether a long poll asked at ``asked`` that brought no job ended well before its
        wait (the server is going down, and answers every lease at once)."""
        return asyncio.get_running_loop().time() - asked < self.lease_wait / 2

    async def _pause_if_early(self, asked: float) -> None:
        """After a long poll with no job: wait :data:`EMPTY_PAUSE` (or until draining) if it
        ended early, so that the runner does not spin asking a server that is going down."""
        if self._ended_early(asked) and not self._draining.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EMPTY_PAUSE):
                    await self._draining.wait()

    async def _leased(self, lease: asyncio.Future[list[LeasedJob]]) -> list[LeasedJob]:
        """The jobs a finished lease brought (none if it was given up or the server forgot
        this worker, which then registers again)."""
        if lease.cancelled():
            return []
        try:
            return lease.result()
        except NotFound:
            log.warning("the server does not know worker %s; registering again", self.worker_id)
            await self._register()
            return []

    async def _until_healthy(self, health: Health) -> bool:
        """Wait until ``health`` says the model can serve; False if draining began first."""
        while not await health.ok():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(health.interval):
                    await self._draining.wait()
            if self._draining.is_set():
                return False
        return True

    async def _pause(self, health: Health) -> None:
        """Leave while the model cannot serve (it no longer counts as online, and takes no
        jobs), and join again when it can."""
        if self.worker_id is not None:
            log.warning("%s is not healthy: not serving until it is", self.spec.name)
            await self.transport.leave(self.worker_id)
            self.worker_id = None
        if await self._until_healthy(health):
            log.info("%s is healthy again: serving", self.spec.name)
            await self._register()

    def _described(self) -> dict[str, Any]:
        """The device and the model, for the worker registry (after ``setup()``; asked once,
        as :meth:`Model.info` promises)."""
        if self._description is None:
            self._description = describe_model(self.model, self.spec.version)
        return self._description

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
        if self._long_poll is not None:
            self._long_poll.cancel()

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
        size, batches = self._lease_size()
        lease = asyncio.ensure_future(
            self.transport.lease(self.worker_id, size, wait, results, batches)
        )
        if wait > 0:
            self._long_poll = lease
            if self._draining.is_set():
                lease.cancel()
        try:
            # Awaited, not through asyncio.wait: the runner resumes one loop step sooner.
            # Its being given up is told by lease.cancelled(), its failure below.
            await lease
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the runner itself is being stopped
        except Exception:
            pass  # read from lease.exception() below
        finally:
            # The lease has ended here: a runner cancelled while awaiting it cancels it, and
            # resumes only once it has ended.
            self._long_poll = None
        undelivered = lease.cancelled() or isinstance(lease.exception(), NotFound)
        jobs = await self._leased(lease)
        if undelivered and results:
            # they may not have arrived; the server accepts a repeat of one that did
            await self._report(results)
        return jobs

    def _lease_size(self) -> tuple[int, int]:
        """How many jobs to ask for, and in how many of the endpoint's batches.

        A batched model asks for one batch. A model that takes one job at a time asks for as
        many single-job batches as it has lately computed in :data:`HOLD_BUDGET` seconds, so
        that one round trip (and one store write each way) serves them all, while a job it
        holds unstarted waits no longer than about one quick job takes (another worker could
        have run it).
        """
        if not self._one_at_a_time or not self._invoker.job_times:
            return self.spec.max_batch_size, 1
        worst = max(self._invoker.job_times)
        ahead = max(1, min(MAX_AHEAD, int(HOLD_BUDGET / max(worst, 1e-6))))
        return ahead, ahead

    async def run_batch(self, jobs: list[LeasedJob]) -> list[Result]:
        """Compute a batch, sending its events as they come; return its results to report.

        Several jobs of a one-at-a-time model are computed one after the other, each result
        reported as soon as its job is done, except those made after the last report began,
        which are returned with any that could not be reported: they ride on the next lease
        request, sent at once, as a batch's results do.
        """
        if self._one_at_a_time and len(jobs) > 1:
            return await self._run_each(jobs)
        pump = _Pump(self, [j.id for j in jobs])
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            results: list[Result] = await self._in_thread(self._invoker.compute, jobs, loop)
        finally:
            self._compute_times.append(loop.time() - started)
            await pump.stop()
        await self._send_events()  # chunks made just before the end go out before the result
        self._buffer.abandoned.difference_update(j.id for j in jobs)
        return results

    async def _run_each(self, jobs: list[LeasedJob]) -> list[Result]:
        loop = asyncio.get_running_loop()
        ready: list[Result] = []
        arrived = asyncio.Event()
        claims = Claims(jobs)
        last = [loop.time()]  # when the model last finished a job

        made: collections.deque[Result] = collections.deque()
        woken = [False]  # a wakeup of the loop is under way: it collects what is in ``made``

        def collect() -> None:  # on the event loop
            woken[0] = False  # first: a result made from here on asks for a wakeup of its own
            while made:
                ready.append(made.popleft())
            last[0] = loop.time()
            arrived.set()

        def deliver(result: Result) -> None:  # on the model thread, as each result is made
            # One wakeup of the loop carries every result made before it runs: a quick
            # model's results cost the loop one wakeup per turn, not one each.
            made.append(result)
            if not woken[0]:
                woken[0] = True
                loop.call_soon_threadsafe(collect)

        handed_back: list[LeasedJob] = []  # taken back from the model by the watchdog

        async def watch() -> None:
            """A job that runs long would keep the held ones from another worker: once it
            has run for :data:`HOLD_BUDGET`, hand back every job not started yet."""
            while True:
                await asyncio.sleep(HOLD_BUDGET)
                if loop.time() - last[0] > HOLD_BUDGET:
                    break
            handed_back.extend(claims.close())
            if handed_back:
                assert self.worker_id is not None
                await self.transport.release(self.worker_id, [j.id for j in handed_back])

        pump = _Pump(self, [j.id for j in jobs])
        watchdog = asyncio.create_task(watch())
        compute = asyncio.ensure_future(
            self._in_thread(self._invoker.compute_each, claims, loop, deliver)
        )
        unsent: list[Result] = []
        try:
            while ready or not compute.done():
                if not ready:
                    waiter = asyncio.ensure_future(arrived.wait())
                    await asyncio.wait({waiter, compute}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    continue
                if compute.done():
                    break  # the last results ride on the next lease request: one round trip
                arrived.clear()
                done = ready[:]
                del ready[:]
                await self._send_events()  # a job's chunks go out before its result
                try:
                    await self._report(done)
                except Exception:
                    log.warning("reporting %d results failed; retrying", len(done), exc_info=True)
                    unsent += done
            compute.result()
            # The model claimed or was refused every job: a watchdog that took none back has
            # nothing left to do; one that did finishes handing them back (cut short, they
            # would stay held by this worker until their leases expired).
            if not handed_back:
                watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            await self._send_events()  # the chunks of the jobs in ``ready`` go out first
        except Exception:
            # The results in hand still go out (a repeat of one that arrived is accepted).
            if unsent or ready:
                with contextlib.suppress(Exception):
                    await self._report(unsent + ready)
            raise
        finally:
            if not compute.done():
                claims.close()
                await asyncio.wait({compute})
            await pump.stop()
            if not handed_back:
                watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watchdog
        self._buffer.abandoned.difference_update(j.id for j in jobs)
        return unsent + ready

    async def _report(self, results: list[Result]) -> None:
        for _ in range(3):
            assert self.worker_id is not None
            try:
                await self.transport.results(self.worker_id, results)
                return
            except NotFound:
                await self._register()
        log.error("results for %d jobs could not be delivered", len(results))

    def _beat_interval(self) -> float:
        return min(self.spec.lease_duration / 3, self.heartbeat_interval)

    async def _pump(self, job_ids: list[str], first_beat: float | None = None) -> None:
        """While a batch runs: send chunks at once, progress at most every
        ``progress_interval``, heartbeats in between (the first at ``first_beat``, by
        default an interval from now), and learn which jobs were cancelled."""
        loop = asyncio.get_running_loop()
        interval = self._beat_interval()
        next_beat = loop.time() + interval if first_beat is None else first_beat
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                    await self._buffer.ready.wait()
            try:
                if self._buffer.ready.is_set():
                    self._buffer.ready.clear()
                    # Shielded: the pump stopping must not cut a send short (its events
                    # would be lost); the final send waits for it through the lock.
                    await asyncio.shield(self._send_events())
                if loop.time() >= next_beat:
                    assert self.worker_id is not None
                    beating = job_ids + self._prefetched
                    held = set(await self.transport.heartbeat(self.worker_id, beating))
                    # Jobs no longer held were cancelled or lost: stop them where the model allows.
                    self._buffer.abandoned.update(j for j in beating if j not in held)
                    next_beat = loop.time() + interval
            except Exception:
                log.warning("sending events or a heartbeat failed; retrying", exc_info=True)
                next_beat = loop.time() + interval

    async def _send_events(self) -> None:
        assert self.worker_id is not None
        worker_id = self.worker_id
        await self._buffer.flush(lambda events: self.transport.events(worker_id, events))

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


class _Pump:
    """A batch's :meth:`Runner._pump`, started only once it has work: an event to send, or
    a heartbeat due. A quick job that reports nothing costs no task (creating, cancelling
    and awaiting one took about 10 us of the event loop per batch here)."""

    def __init__(self, runner: Runner, job_ids: list[str]) -> None:
        self._runner = runner
        self._job_ids = job_ids
        loop = asyncio.get_running_loop()
        self._first_beat = loop.time() + runner._beat_interval()
        self._task: asyncio.Task[None] | None = None
        self._timer = loop.call_at(self._first_beat, self._start)
        runner._buffer.woken = self._start
        if runner._buffer.ready.is_set():  # events left from before wait to go out
            self._start()

    def _start(self) -> None:
        if self._task is None:
            self._timer.cancel()
            self._runner._buffer.woken = None
            self._task = asyncio.create_task(self._runner._pump(self._job_ids, self._first_beat))

    async def stop(self) -> None:
        self._timer.cancel()
        if self._task is None:
            self._runner._buffer.woken = None
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


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


async def tear_down(runners: Sequence[Runner]) -> None:
    """Release what the shared model holds once its runners are done: a model with a
    ``close()`` or ``aclose()`` (an adapter's programs or connections) has it called, once."""
    if not runners:
        return
    model = runners[0].model
    try:
        if hasattr(model, "aclose"):
            await model.aclose()
        elif hasattr(model, "close"):
            model.close()
    except Exception:
        log.exception("closing %s failed", runners[0].spec.name)
