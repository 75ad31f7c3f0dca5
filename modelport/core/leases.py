"""The worker's verbs: lease a batch (a long poll that fills it within the endpoint's batch
window), heartbeat, record events, finish with results, hand back, leave."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from modelport.core import transitions
from modelport.core.jobs import Jobs
from modelport.core.registry import Worker
from modelport.core.wakeups import Taker
from modelport.errors import Conflict
from modelport.settings import Limits
from modelport.spec import EndpointSpec
from modelport.stores.base import LOG_LEVELS, JobStore, Update
from modelport.wire import Event, JobRecord, JobStatus, LeasedJob, Result, storable

log = logging.getLogger("modelport.core")

RUNNING = frozenset({JobStatus.RUNNING})


class Leases:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.registry = jobs.registry
        self.wakeups = jobs.wakeups
        self.tallies = jobs.tallies
        self.metrics = jobs.metrics
        self.clock: Callable[[], float] = jobs.clock

    async def lease(
        self, worker_id: str, max_jobs: int, wait: float, batches: int = 1
    ) -> list[LeasedJob]:
        """Up to ``max_jobs`` jobs: wait up to ``wait`` s for the first, then fill the batch
        for at most the endpoint's ``max_batch_wait`` after the first arrived.

        ``batches`` > 1 takes that many of the endpoint's batches at once (a worker that
        runs quick jobs one at a time takes several, to spend one round trip on them).
        """
        worker = self.registry.worker(worker_id)
        deadline = asyncio.get_running_loop().time() + wait
        jobs: list[JobRecord] = []
        try:
            await self._fill(worker, jobs, max_jobs, batches, deadline)
        except asyncio.CancelledError:
            # The long poll was abandoned (the worker hung up): hand back what it took.
            await asyncio.shield(self.release(worker_id, [j.id for j in jobs]))
            raise
        worker.last_seen = self.clock()
        if jobs:
            self.metrics.batch_leased(jobs[0].endpoint, len(jobs))  # a batch as the worker got it
        for job in jobs:
            self.wakeups.changed(job.id)
        return [
            LeasedJob(j.id, j.endpoint, j.input, j.attempts, j.lease_until or 0.0) for j in jobs
        ]

    async def _fill(
        self, worker: Worker, jobs: list[JobRecord], max_jobs: int, batches: int, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        window_end: float | None = None
        while not self.wakeups.closing.done() and worker.id in self.registry.workers:
            signals = [self.wakeups.work_future(name) for name in worker.info.endpoints]
            signals.append(self.wakeups.closing)
            taking: dict[str, int | None] = {}
            for name in worker.info.endpoints:
                revision = worker.revisions.get(name)
                spec = self.registry.spec_of(name, revision)
                if spec is None or not self.registry.takes_work(name):
                    continue  # deleted, disabled, or a revision no longer kept
                room = min(max_jobs, spec.max_batch_size * batches) - len(jobs)
                if room <= 0 or (jobs and jobs[0].endpoint != name):
                    continue
                now = self.clock()
                until = now + spec.lease_duration
                got = await self.store.lease(name, worker.id, room, now, until, revision)
                if got:
                    self.tallies.depth(name).value -= len(got)
                    if window_end is None:
                        window_end = loop.time() + spec.max_batch_wait
                    jobs += got
                if len(got) < room:
                    taking[name] = revision
            if jobs:
                taking = {n: r for n, r in taking.items() if n == jobs[0].endpoint}
            first = self._spec(worker, jobs[0].endpoint) if jobs else None
            full = min(max_jobs, first.max_batch_size * batches) if first is not None else 0
            if jobs and len(jobs) >= full:
                break
            remaining = (window_end if window_end is not None else deadline) - loop.time()
            if remaining <= 0:
                break
            handed = await self._wait(worker, signals, remaining, taking)
            if handed is not None:
                spec = self._spec(worker, handed.endpoint)
                if window_end is None and spec is not None:
                    window_end = loop.time() + spec.max_batch_wait
                jobs.append(handed)

    async def _wait(
        self,
        worker: Worker,
        signals: list[asyncio.Future[Any]],
        timeout: float,
        taking: dict[str, int | None],
    ) -> JobRecord | None:
        """Wait for a signal, offering the long poll to submits of the endpoints in
        ``taking`` (see :class:`Taker`): the job one of them handed it, if any."""
        if not taking or self.store.shared:
            await asyncio.wait(signals, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            return None
        taker = Taker(worker.id, taking)
        self.wakeups.offer(taker)
        for signal in signals:
            signal.add_done_callback(taker.wake)
        try:
            async with asyncio.timeout(timeout):
                return await taker.handed
        except TimeoutError:
            # A job still on its way finds the poll gone and is queued (see Jobs._hand);
            # one handed in the very step the time ran out is this poll's.
            return taker.job()
        except asyncio.CancelledError:
            job = taker.job()
            if job is not None:  # handed just before the poll was abandoned: back it goes
                self.wakeups.background(self.release(taker.worker_id, [job.id]))
            raise
        finally:
            for signal in signals:
                signal.remove_done_callback(taker.wake)
            self.wakeups.withdraw(taker)

    async def _keep_logs(self, worker: Worker, events: Sequence[Event]) -> None:
        """Log lines into their endpoints' logs (bounded there), each as the shared contract
        shapes it (done in :meth:`events`: the job's event has the same shape for its
        stream)."""
        endpoints: dict[str, str] = {}
        lines: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            if event.type != "log":
                continue
            endpoint = endpoints.get(event.job_id)
            if endpoint is None:
                if len(worker.info.endpoints) == 1:
                    endpoint = worker.info.endpoints[0]
                else:
                    job = await self.store.get(event.job_id)
                    if job is None:
                        continue
                    endpoint = job.endpoint
                endpoints[event.job_id] = endpoint
            entry = {"job_id": event.job_id, **event.data, "worker": worker.id}
            lines.setdefault(endpoint, []).append(entry)
        now = self.clock()
        for endpoint, entries in lines.items():
            await self.store.add_logs(endpoint, entries, self.jobs.limits.log_bounds, now)

    def _spec(self, worker: Worker, endpoint: str) -> EndpointSpec | None:
        """The spec of the revision of ``endpoint`` this worker serves."""
        return self.registry.spec_of(endpoint, worker.revisions.get(endpoint))

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]:
        """Extend the leases of jobs the worker still holds; return those ids."""
        worker = self.registry.worker(worker_id)
        if not job_ids:
            return []
        until = self.clock() + self.registry.lease_duration(worker)
        return await self.store.extend(worker_id, job_ids, until)

    async def events(self, worker_id: str, events: Sequence[Event]) -> list[str]:
        """Record progress, output chunks and log lines of held jobs (extending their leases).

        Events of jobs the worker no longer holds are dropped; returns the ids it holds.
        """
        worker = self.registry.worker(worker_id)
        job_ids = list(dict.fromkeys(e.job_id for e in events))
        if not job_ids:
            return []
        for event in events:  # a log line: the shape the endpoint's log and the stream share
            if event.type == "log":
                event.data = log_line(event.data, self.clock())
        # Kept only for jobs the worker holds, their leases extended: one store write. A lease
        # extended less than a tenth of it ago is left as it is: a stream's chunks come many a
        # second, and need not each rewrite it.
        now = self.clock()
        duration = self.registry.lease_duration(worker)
        kept = await self.store.add_events(
            events,
            holder=worker_id,
            lease_until=now + duration,
            renew_below=now + duration * RENEW_AFTER,
        )
        held: dict[str, list[Event]] = {}
        for event in kept:
            held.setdefault(event.job_id, []).append(event)
        if any(e.type == "log" for e in kept):
            await self._keep_logs(worker, kept)
        latest = {e.job_id: e.data for e in kept if e.type == "progress"}
        if latest:
            await self.store.update(
                [
                    Update(j, RUNNING, {"progress": p}, worker_id=worker_id)
                    for j, p in latest.items()
                ]
            )
        for job_id, stored in held.items():
            self.wakeups.changed(job_id, stored)  # a stream here sends them without a read
        return [j for j in job_ids if j in held]

    async def finish(self, worker_id: str, results: Sequence[Result]) -> list[bool]:
        """Record final outputs or errors; a result for a job no longer held is refused."""
        worker = self.registry.worker(worker_id)
        now = self.clock()
        for r in results:
            if r.endpoint not in worker.info.endpoints:
                raise Conflict(f"worker {worker_id} does not serve endpoint {r.endpoint!r}")
        specs = {r.endpoint: self._spec(worker, r.endpoint) for r in results}
        results = await _files(self.store, specs, results, self.jobs.limits)
        stored = await self.store.update(
            [self._outcome(worker_id, r, now, specs[r.endpoint]) for r in results]
        )
        finished = [job for job in stored if job is not None and job.status.final]
        for job in stored:
            if job is None:
                continue
            if job.status.final:
                self.jobs.finished(job)
            else:
                self.metrics.job_requeued(job.endpoint)
                self.wakeups.new_work(job.endpoint)
        timed = [j for j in finished if j.started_at is not None and j.completed_at is not None]
        if timed:
            # Jobs of one batch share its time, so a job's cost is the batch time over its size.
            batch_time = max(j.completed_at - j.started_at for j in timed)  # type: ignore[operator]
            worker.jobs_done += len(timed)
            worker.compute_time += batch_time
            self.tallies.timed(timed[0].endpoint, batch_time / len(timed))
        return [
            job is not None or await self._recorded(worker_id, r)
            for job, r in zip(stored, results, strict=True)
        ]

    async def _recorded(self, worker_id: str, r: Result) -> bool:
        """Whether a refused result repeats one already recorded (a worker resends results
        whose delivery it could not confirm): the same worker, attempt and outcome."""
        job = await self.store.get(r.job_id)
        if job is None or job.worker_id != worker_id or job.attempts != r.attempt:
            return False
        if r.error is None:
            return job.status is JobStatus.SUCCEEDED and job.output == r.output
        return job.status is JobStatus.FAILED and job.error == r.error

    def _outcome(self, worker_id: str, r: Result, now: float, spec: EndpointSpec | None) -> Update:
        error = r.error if r.error is not None else _check_output(r, spec)
        if error is None:
            return transitions.succeed(r.job_id, worker_id, r.attempt, r.output, now)
        attempts = spec.max_attempts if spec is not None else 1
        if r.error is not None and r.retry and r.attempt < attempts:
            return transitions.retry(r.job_id, worker_id, r.attempt, error)
        return transitions.fail(r.job_id, worker_id, r.attempt, error, now)

    async def release(self, worker_id: str, job_ids: Sequence[str]) -> None:
        """Put jobs a worker never started back at the front of the queue, attempt uncounted."""
        updates = []
        for job_id in job_ids:
            job = await self.store.get(job_id)
            if job is not None and job.worker_id == worker_id:
                updates.append(transitions.release(job))
        for job in await self.store.update(updates):
            if job is not None:
                self.wakeups.new_work(job.endpoint)

    async def leave(self, worker_id: str) -> None:
        """A worker leaves: its unfinished jobs go back to the queue at once."""
        self.registry.worker(worker_id)
        for job in await self.store.running(worker_id):
            await self.lost(job, f"worker {worker_id} left before finishing the job")
        worker = await self.registry.forget(worker_id)
        self.tallies.cancelled.pop(worker_id, None)
        for name in worker.info.endpoints:
            self.wakeups.new_work(name)  # its long polls wake and see it gone

    def take_cancelled(self, worker_id: str) -> list[str]:
        """Jobs this worker holds that were cancelled since it last asked."""
        return sorted(self.tallies.cancelled.pop(worker_id, ()))

    async def lost(self, job: JobRecord, why: str) -> None:
        """The job's worker is gone: requeue it (or fail it, out of attempts)."""
        (updated,) = await self.store.update([transitions.lost(job, why, self.clock())])
        if updated is None:
            return
        log.warning(
            "job %s %s: %s (attempt %d of %d)",
            job.id,
            "failed" if updated.status.final else "requeued",
            why,
            job.attempts,
            job.max_attempts,
        )
        if updated.status.final:
            self.jobs.finished(updated)
        else:
            self.metrics.job_requeued(updated.endpoint)
            self.wakeups.changed(updated.id)
            self.wakeups.new_work(updated.endpoint)


RENEW_AFTER = 0.9
"""An event extends its job's lease once less than this part of it is left."""

MAX_LOG_LINE = 8192
"""Characters of one log line kept (the rest is cut, saying so)."""
_STREAMS = frozenset({"stdout", "stderr", "logging"})


def log_line(data: Any, now: float) -> dict[str, Any]:
    """A log event's data as the contract shapes it (``level``, ``message``, ``time``,
    ``stream``), whatever a worker sent: unknown levels are ``info``, long lines are cut."""
    raw = data if isinstance(data, dict) else {"message": data}
    level = str(raw.get("level", "info")).lower()
    message = raw.get("message")
    message = message if isinstance(message, str) else "" if message is None else str(message)
    if len(message) > MAX_LOG_LINE:
        message = message[:MAX_LOG_LINE] + f"... [{len(message) - MAX_LOG_LINE} characters cut]"
    at = raw.get("time")
    stream = raw.get("stream")
    return {
        "level": level if level in LOG_LEVELS else "info",
        "message": message,
        "time": float(at) if isinstance(at, int | float) and not isinstance(at, bool) else now,
        "stream": stream if stream in _STREAMS else "logging",
    }


def _check_output(r: Result, spec: EndpointSpec | None) -> str | None:
    """Why the output cannot be kept (not JSON the store keeps, or not the outputs that
    the spec of the revision the worker serves declares), or None."""
    try:
        storable(r.output)
    except ValueError as e:
        return f"the model's output cannot be stored: {e}"
    return None if spec is None else spec.output_error(r.output)


async def _files(
    store: JobStore,
    specs: dict[str, EndpointSpec | None],
    results: Sequence[Result],
    limits: Limits,
) -> Sequence[Result]:
    """Large media outputs become files of their jobs (not kept inline in the records)."""
    if not any(s is not None and s.media_outputs for s in specs.values()):
        return results
    from modelport.media.blobs import offload

    out = []
    for r in results:
        spec = specs[r.endpoint]
        out.append(r if spec is None else (await offload(store, spec, [r], limits))[0])
    return out
