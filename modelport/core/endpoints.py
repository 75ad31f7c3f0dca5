"""Endpoints at run time: add or replace one (a new revision), disable and enable it, delete
it (draining its queue first, or cancelling it), and refuse the queued jobs of a revision no
worker serves any more. Every change is written to the store and announced, so the other
servers sharing it follow at once."""

from __future__ import annotations

import logging
from typing import Any

from modelport.core import transitions
from modelport.core.jobs import Jobs
from modelport.core.registry import Endpoint
from modelport.spec import EndpointSpec

log = logging.getLogger("modelport.core")

BATCH = 1000
"""Jobs handled per round when cancelling a deleted endpoint's or refusing a revision's."""


class Endpoints:
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.registry = jobs.registry
        self.wakeups = jobs.wakeups

    async def _changed(self, name: str) -> None:
        await self.registry.save(name)
        self.wakeups.endpoints_changed(name)

    async def put(self, spec: EndpointSpec) -> tuple[Endpoint, bool]:
        """Add the endpoint, or make ``spec`` its next revision; (its state, whether it is
        new). The same spec again changes nothing. A disabled or deleting endpoint that is
        put again is enabled."""
        await self.registry.sync_specs()
        new = spec.name not in self.registry.specs
        state, changed = self.registry.define(spec)
        if state.state != "enabled":
            state.state, state.reason, changed = "enabled", None, True
        if changed:
            await self._changed(spec.name)
            log.info("endpoint %s is at revision %d", spec.name, state.revision)
        return state, new

    async def set_state(self, name: str, enabled: bool, reason: str | None) -> Endpoint:
        """Disable (submits refused with ``reason``, queued jobs wait) or enable it."""
        await self.registry.find_spec(name)
        state = self.registry.endpoint(name)
        if state.state == "deleting":
            return state  # a deletion is not undone by an enable; PUT defines it again
        self.registry.set_state(name, "enabled" if enabled else "disabled", reason)
        await self._changed(name)
        return state

    async def delete(self, name: str, *, drain: bool) -> dict[str, Any]:
        """Refuse new submits, then remove the endpoint once its queued and running jobs are
        done (``drain``) or at once, its jobs cancelled."""
        await self.registry.find_spec(name)
        reason = "DELETE /endpoints/" + name
        self.registry.set_state(name, "deleting", reason, drain)
        await self._changed(name)
        return await self.settle(name)

    async def settle(self, name: str) -> dict[str, Any]:
        """Advance a deletion: cancel what is left (no drain), remove it once nothing is."""
        state = self.registry.endpoints.get(name)
        if state is None or state.state != "deleting":
            return {"name": name, "state": "deleted" if name in self.registry.deleted else "-"}
        if not state.drain:
            await self._cancel_all(name)
        depth = (await self.store.queue_depths()).get(name, {})
        queued, running = depth.get("queued", 0), depth.get("running", 0)
        if queued or running:
            return {"name": name, "state": "deleting", "queued": queued, "running": running}
        self.registry.remove(name)
        await self._changed(name)
        log.info("endpoint %s deleted", name)
        return {"name": name, "state": "deleted", "queued": 0, "running": 0}

    async def settle_all(self) -> None:
        """The reaper's round: finish the deletions whose jobs are done."""
        for name, state in list(self.registry.endpoints.items()):
            if state.state == "deleting":
                await self.settle(name)

    async def _cancel_all(self, name: str) -> None:
        why = f"cancelled: endpoint {name!r} was deleted"
        now = self.jobs.clock()
        ids = [j.id for j in await self.store.oldest_queued(name, BATCH)]
        ids += [j.id for j in await self.store.running() if j.endpoint == name]
        for job in await self.store.update([transitions.cancel(i, now, why) for i in ids]):
            if job is None:
                continue
            if job.worker_id is not None:
                self.jobs.tallies.cancelled.setdefault(job.worker_id, set()).add(job.id)
            self.jobs.finished(job)

    async def refuse_orphans(self) -> None:
        """Fail the queued jobs of earlier revisions that no online worker serves: they were
        validated against a spec no worker runs any more, and no other worker may run them."""
        for name, state in list(self.registry.endpoints.items()):
            if not state.earlier:
                continue
            queued = await self.store.oldest_queued(name, BATCH)
            revisions = {j.revision for j in queued} - {state.revision}
            for revision in sorted(revisions):
                if await self.registry.workers_online(name, revision):
                    continue
                why = (
                    f"endpoint {name!r} was replaced by revision {state.revision} before the"
                    f" job ran, and no worker serves revision {revision}, which its input was"
                    " validated against; submit it again"
                )
                now = self.jobs.clock()
                updates = [
                    transitions.refuse(j, why, now) for j in queued if j.revision == revision
                ]
                for job in await self.store.update(updates):
                    if job is not None:
                        self.jobs.finished(job)
