"""The broker: one facade over the parts of the core, each with one concern.

    registry     endpoint specs and workers
    jobs         the client's verbs: submit, get, wait, cancel, position, ETA
    cache        in front of the queue: precomputed tables and the result cache
    webhooks     jobs' events POSTed to their subscribers, from a queue in the store
    endpoints    endpoints at run time: put (a new revision), disable, enable, delete
    leases       the worker's verbs: lease, heartbeat, events, finish, release, leave
    reaper       the time limits: lease expiry, queue time, timeouts, result TTLs
    wakeups      futures for waiters here, announcements for the other servers
    transitions  the state machine as a table: the store updates of each move

Routes translate HTTP to these calls; stores only store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

from modelport.core.cache import ResultCache
from modelport.core.endpoints import Endpoints
from modelport.core.jobs import Jobs
from modelport.core.leases import Leases
from modelport.core.reaper import Reaper
from modelport.core.registry import Registry, Worker
from modelport.core.tallies import Tallies
from modelport.core.wakeups import Wakeups
from modelport.core.webhooks import Webhooks
from modelport.metrics import Metrics
from modelport.settings import Limits
from modelport.spec import EndpointSpec
from modelport.stores.base import JobStore
from modelport.wire import WorkerInfo


class Broker:
    """Owns the job state machine on top of a :class:`JobStore`.

    ``limits`` are the server-wide ones; keyword arguments override single fields of it.
    """

    def __init__(
        self,
        store: JobStore,
        limits: Limits | None = None,
        *,
        clock: Callable[[], float] = time.time,
        **overrides: Any,
    ) -> None:
        self.store = store
        self.limits = dataclasses.replace(limits or Limits(), **overrides)
        self.metrics = Metrics()
        self.wakeups = Wakeups(store)
        self.registry = Registry(
            store,
            instance=self.wakeups.instance,
            offline_after=self.limits.offline_after,
            clock=clock,
            background=self.wakeups.background,
        )
        self.tallies = Tallies()
        self.jobs = Jobs(
            store, self.registry, self.wakeups, self.tallies, self.metrics, self.limits, clock
        )
        self.leases = Leases(self.jobs)
        self.cache = ResultCache(self.jobs)
        self.webhooks = Webhooks(self.jobs)
        self.endpoints = Endpoints(self.jobs)
        self.reaper = Reaper(self.leases, self.limits, self.endpoints)
        self.wakeups.on_endpoints = self.registry.sync_specs
        self.clock = clock
        self._reaping: asyncio.Task[None] | None = None
        self._counting: asyncio.Task[None] | None = None
        self.stats = self.jobs.stats
        self.specs = self.registry.specs
        self.workers = self.registry.workers
        self.instance = self.wakeups.instance
        self.offline_after = self.limits.offline_after

        # The verbs, as the parts define them.
        self.add_endpoint = self.registry.add_endpoint
        self.spec = self.registry.spec
        self.find_spec = self.registry.find_spec
        self.sync_specs = self.registry.sync_specs
        self.register = self.registry.register
        self.worker = self.registry.worker
        self.local_worker_id = self.registry.local_worker_id
        self.all_workers = self.registry.all_workers
        self.workers_online = self.registry.workers_online
        self.put_endpoint = self.endpoints.put
        self.set_endpoint_state = self.endpoints.set_state
        self.delete_endpoint = self.endpoints.delete
        self.submit = self.jobs.submit
        self.answer = self.cache.submit
        self.get = self.jobs.get
        self.wait = self.jobs.wait
        self.cancel = self.jobs.cancel
        self.position = self.jobs.position
        self.eta = self.jobs.eta
        self.lease = self.leases.lease
        self.heartbeat = self.leases.heartbeat
        self.events = self.leases.events
        self.finish = self.leases.finish
        self.release = self.leases.release
        self.leave = self.leases.leave
        self.take_cancelled = self.leases.take_cancelled
        self.reap = self.reaper.reap
        self.watch = self.wakeups.watch
        self.unwatch = self.wakeups.unwatch

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock every part reads (a test may swap it)."""
        return self.jobs.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.registry.clock = self.jobs.clock = self.leases.clock = clock

    async def start(self) -> None:
        await self.store.open()
        await self.registry.publish_specs()
        await self.registry.load()  # the endpoints added at run time (here before a restart)
        if self.store.shared:
            self.store.subscribe(self.wakeups.on_message)
        else:
            await self.reaper.recover_local_jobs()
        self._reaping = asyncio.create_task(self.reaper.run(), name="modelport-reaper")
        self._counting = asyncio.create_task(self.stats.run(self.store), name="modelport-stats")
        await self.webhooks.start()

    def closing(self) -> None:
        """The server is going down: end every long poll and wait now, with what it has."""
        self.wakeups.close()

    async def stop(self) -> None:
        self.closing()
        await self.webhooks.stop()
        for task in (self._reaping, self._counting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.cache.close()
        await self.store.close()

    async def join(
        self,
        info: WorkerInfo,
        specs: Sequence[EndpointSpec] = (),
        *,
        worker_id: str | None = None,
        owner: str | None = None,
    ) -> Worker:
        """Register a worker, its specs checked against the store shared with the other
        servers; on a conflict found there, the worker leaves again. ``owner`` is the id of
        the credential it registered with."""
        await self.registry.sync_specs()
        worker = self.registry.register(info, specs, worker_id=worker_id, owner=owner)
        conflict = await self.registry.record_shared(info, specs)
        if conflict is not None:
            await self.leave(worker.id)
            raise conflict
        return worker
