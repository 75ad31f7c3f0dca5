"""The reaper: the time limits, applied every ``reap_interval``. Expired leases are requeued
(or failed, out of attempts), jobs that waited too long expire, jobs that computed too long
fail, and old results are deleted."""

from __future__ import annotations

import asyncio
import logging

from modelport.core import transitions
from modelport.core.endpoints import Endpoints
from modelport.core.leases import Leases
from modelport.core.registry import LOCAL_PREFIX
from modelport.settings import Limits
from modelport.stores.base import Update

log = logging.getLogger("modelport.core")

BATCH = 1000
"""Jobs handled per kind per round."""
PURGE_EVERY = 30
"""Rounds between deletions of old results, unless the last one left some due (then every
round deletes up to :data:`BATCH` per endpoint, so a busy server keeps up: 2,000 jobs/s per
endpoint at the default interval)."""


def stop_if_cancelled() -> None:
    """Raise the cancellation a driver swallowed (redis-py's pipelines can lose one that
    arrives mid-command), so a loop told to stop does stop."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Reaper:
    def __init__(self, leases: Leases, limits: Limits, endpoints: Endpoints) -> None:
        self.leases = leases
        self.endpoints = endpoints
        self.jobs = leases.jobs
        self.store = leases.store
        self.registry = leases.registry
        self.limits = limits
        self._purged_at = 0.0
        self._backlog = False

    async def reap(self) -> int:
        """One round; returns how many jobs were handled."""
        handled = 0
        now = self.jobs.clock()
        for job in await self.store.expired(now, BATCH):
            self.jobs.metrics.lease_lost(job.endpoint)
            await self.leases.lost(job, f"the lease of worker {job.worker_id} expired")
            handled += 1
        await self.endpoints.refuse_orphans()
        await self.endpoints.settle_all()
        specs = list(self.registry.specs.values())
        for spec in specs:
            limit = spec.max_queue_time or self.limits.max_queue_time
            if limit is not None:
                handled += await self._expire_waiting(spec.name, now, limit)
        if self.limits.timeout is not None or any(s.timeout for s in specs):
            handled += await self._fail_slow(now)
        if self._backlog or now - self._purged_at >= PURGE_EVERY * self.limits.reap_interval:
            self._purged_at = now
            self._backlog = False
            for spec in specs:
                ttl = spec.result_ttl or self.limits.result_ttl
                if ttl is not None and await self.store.purge(now - ttl, BATCH, spec.name) >= BATCH:
                    self._backlog = True  # more are due: purge again next round, not in 15 s
        return handled

    async def _expire_waiting(self, endpoint: str, now: float, limit: float) -> int:
        updates = []
        for job in await self.store.oldest_queued(endpoint, BATCH):
            if job.created_at >= now - limit:
                break  # the queue is in submit order
            if job.attempts:
                continue  # it started once; only a wait for the first start is limited
            updates.append(transitions.expire(job, limit, now))
        return await self._apply(updates)

    async def _fail_slow(self, now: float) -> int:
        updates = []
        for job in await self.store.running():
            spec = self.registry.specs.get(job.endpoint)
            limit = (spec.timeout if spec else None) or self.limits.timeout
            if limit is None or job.started_at is None or now - job.started_at <= limit:
                continue
            updates.append(transitions.time_out(job, limit, now))
        return await self._apply(updates)

    async def _apply(self, updates: list[Update]) -> int:
        final = [job for job in await self.store.update(updates) if job is not None]
        for job in final:
            self.jobs.finished(job)
        return len(final)

    async def recover_local_jobs(self) -> None:
        """Embedded workers die with the server that ran them, so their leases are void now."""
        for job in await self.store.running():
            if job.worker_id is not None and job.worker_id.startswith(LOCAL_PREFIX):
                await self.leases.lost(job, "the server restarted while the job was running")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.limits.reap_interval)
            try:
                await self.reap()
            except Exception:
                log.exception("lease expiry check failed; retrying")
            stop_if_cancelled()
