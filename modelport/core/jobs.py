"""The client's verbs: submit, get, wait for, cancel a job; its queue position and ETA."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from modelport.core import transitions
from modelport.core.registry import Registry
from modelport.core.stats import Stats
from modelport.core.tallies import Depth, Tallies
from modelport.core.wakeups import Taker, Wakeups
from modelport.errors import Conflict, InvalidInput, NotFound, Overloaded
from modelport.metrics import Metrics
from modelport.settings import Limits
from modelport.spec import EndpointSpec
from modelport.stores.base import JobStore, full_queue
from modelport.wire import JobRecord, JobStatus, new_job_id

FRESH_COUNT = 0.25
"""Seconds a queue depth read from the store answers submits before it is read again."""
_TIMER_SLACK = 0.001
"""A wait woken this close to its deadline has timed out (a timer may fire a little early)."""


class Jobs:
    def __init__(
        self,
        store: JobStore,
        registry: Registry,
        wakeups: Wakeups,
        tallies: Tallies,
        metrics: Metrics,
        limits: Limits,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.registry = registry
        self.wakeups = wakeups
        self.tallies = tallies
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        self.stats = Stats(wakeups.instance)

    async def submit(
        self,
        endpoint: str,
        inputs: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        owner: str | None = None,
        revision: int | None = None,
        spec: EndpointSpec | None = None,
    ) -> JobRecord:
        """Queue a job. ``owner`` is the id of the API key submitting it; its idempotency
        keys are its own (another key's same key is another job). ``revision`` is that of
        the spec the input was validated against (default: the current one); ``spec`` the
        endpoint's spec, when the caller has just looked it up."""
        if spec is None:
            spec = await self.registry.find_spec(endpoint)
        self.registry.check_open(endpoint)
        if revision is None:
            revision = self.registry.revision(endpoint)
        depth, limit = await self._check_room(spec)
        validated = self.registry.spec_of(endpoint, revision) or spec
        if owner is not None and idempotency_key is not None:
            idempotency_key = f"{owner}/{idempotency_key}"
        job = JobRecord(
            id=new_job_id(endpoint),
            endpoint=endpoint,
            input=inputs,
            created_at=self.clock(),
            max_attempts=spec.max_attempts,
            idempotency_key=idempotency_key,
            owner=owner,
            revision=revision,
            model_version=validated.version,
        )
        taker = self._taker(endpoint, revision, idempotency_key, depth)
        if taker is not None:
            return await self._hand(job, taker, validated)
        depth.inflight += 1
        try:
            stored = await self.store.insert(job, limit)
        except Overloaded:
            self.metrics.job_rejected(endpoint)
            raise
        finally:
            depth.inflight -= 1
        if stored.id == job.id:
            self.metrics.job_submitted(endpoint)
            depth.value += 1
            self.wakeups.new_work(endpoint)
        elif stored.input != inputs:
            # A reused key with another input is a client bug; answering with the first job
            # would hand back a result for a request the client did not make this time.
            message = (
                f"Idempotency-Key {idempotency_key!r} was already used for job {stored.id} of "
                f"{endpoint!r} with a different input; resend that input to get that job, or "
                "use a new key for a new request"
            )
            raise InvalidInput(message, errors=[{"field": "Idempotency-Key", "message": message}])
        return stored

    def _taker(
        self, endpoint: str, revision: int, idempotency_key: str | None, depth: Depth
    ) -> Taker | None:
        """A long poll waiting for this job, when it may skip the queue: nothing queued
        before it here, and no idempotency key (whose job may already be stored)."""
        if idempotency_key is not None or depth.value > 0 or depth.inflight > 0:
            return None
        return self.wakeups.claim(endpoint, revision)

    async def _hand(self, job: JobRecord, taker: Taker, spec: EndpointSpec) -> JobRecord:
        """Store ``job`` running for the long poll ``taker`` and hand it over: one store
        write where a queued job costs two (its insert, then its lease)."""
        job.status = JobStatus.RUNNING
        job.worker_id = taker.worker_id
        job.attempts = 1
        job.started_at = job.created_at
        job.lease_until = job.created_at + spec.lease_duration
        try:
            stored = await self.store.insert(job)
        except BaseException:
            taker.hand(None)
            raise
        self.metrics.job_submitted(job.endpoint)
        if not taker.hand(stored):  # the poll ended meanwhile: the job waits in the queue
            (queued,) = await self.store.update([transitions.release(stored)])
            stored = queued or stored
            self.tallies.depth(job.endpoint).value += 1
            self.wakeups.new_work(job.endpoint)
        return stored

    async def _check_room(self, spec: EndpointSpec) -> tuple[Depth, int | None]:
        """Refuse a submit to a full queue; else the limit the store must check itself.

        A count read at most :data:`FRESH_COUNT` s ago answers most submits; near the limit,
        and always when other servers share the store, the store checks the limit as it
        inserts.
        """
        limit = spec.max_queue_length or self.limits.max_queue_length
        depth = self.tallies.depth(spec.name)
        now = time.monotonic()
        if depth.value >= limit or now - depth.read_at > FRESH_COUNT:
            counts = await self.store.queue_depths()
            depth.value, depth.read_at = counts.get(spec.name, {}).get("queued", 0), now
        if depth.value >= limit:
            self.metrics.job_rejected(spec.name)
            raise Overloaded(full_queue(spec.name, depth.value, limit))
        exact = self.store.shared or depth.value + depth.inflight + 1 >= limit
        return depth, limit if exact else None

    async def get(self, job_id: str) -> JobRecord:
        job = await self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    async def wait(self, job_id: str, timeout: float, *, job: JobRecord | None = None) -> JobRecord:
        """The job once it is final, or as it is when ``timeout`` seconds have passed.

        ``job`` is the record as the caller just saw it, which saves reading it again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            done = self.wakeups.done_future(job_id)
            try:
                if job is None or job.status.final:
                    job = await self.get(job_id)
                remaining = deadline - loop.time()
                if job.status.final or remaining <= 0 or self.wakeups.closing.done():
                    return job
                # A timer that resolves the future with None (as "look again" does) costs the
                # hot path less than a timeout context; the clock then says which it was.
                timer = loop.call_at(deadline, _wake, done)
                try:
                    final = await done
                finally:
                    timer.cancel()
                if final is None and deadline - loop.time() < _TIMER_SLACK:
                    return await self.get(job_id)
                if final is not None:
                    return final
                job = None  # changed elsewhere (another server): read it again
            finally:
                self.wakeups.forget_done(job_id, done)

    async def cancel(self, job_id: str) -> JobRecord:
        for _ in range(3):
            job = await self.get(job_id)
            if job.status is JobStatus.CANCELLED:
                return job
            if job.status.final:
                raise Conflict(f"job {job_id} already {job.status.value}; it cannot be cancelled")
            (updated,) = await self.store.update([transitions.cancel(job_id, self.clock())])
            if updated is not None:
                if job.status is JobStatus.RUNNING and job.worker_id is not None:
                    self.tallies.cancelled.setdefault(job.worker_id, set()).add(job_id)
                self.finished(updated)
                return updated
        raise Conflict(f"job {job_id} changed while being cancelled; try again")

    def finished(self, job: JobRecord) -> None:
        self.metrics.job_finished(job)
        self.stats.finished(job)
        self.wakeups.finished(job)

    async def position(self, job: JobRecord) -> int | None:
        return await self.store.position(job) if job.status is JobStatus.QUEUED else None

    async def eta(self, job: JobRecord, position: int) -> float | None:
        """Seconds until a queued job is likely finished, from recent compute times."""
        per_job = self.tallies.job_time.get(job.endpoint)
        if per_job is None:
            return None
        workers = len(await self.registry.workers_online(job.endpoint))
        if workers == 0:
            return None
        return round((position + 1) * per_job / workers, 3)


def _wake(fut: asyncio.Future[JobRecord | None]) -> None:
    if not fut.done():
        fut.set_result(None)
