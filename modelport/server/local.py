"""The worker API called in-process, for models served inside the API server: the runner's
transport beside the broker, as httpx keeps ``ASGITransport`` beside its other transports."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from modelport.core import Broker
from modelport.spec import EndpointSpec
from modelport.wire import Event, LeasedJob, Result, WorkerInfo


class LocalTransport:
    """A :class:`modelport.worker.transport.Transport` with no HTTP hop."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def register(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec], worker_id: str | None
    ) -> str:
        wid = worker_id or self.broker.local_worker_id(info.name)
        return (await self.broker.join(info, specs, worker_id=wid)).id

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        if results:
            await self.broker.finish(worker_id, results)
            # A step for whoever the results woke (a request waiting for its job answers
            # now), before looking in the store for this worker's next jobs: over HTTP the
            # lease is a task of its own, and waits its turn the same way.
            await asyncio.sleep(0)
        return await self.broker.lease(worker_id, max_jobs, wait, batches)

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]:
        return await self.broker.heartbeat(worker_id, job_ids)

    async def events(self, worker_id: str, events: Sequence[Event]) -> list[str]:
        return await self.broker.events(worker_id, events)

    async def results(self, worker_id: str, results: Sequence[Result]) -> list[bool]:
        return await self.broker.finish(worker_id, results)

    async def release(self, worker_id: str, job_ids: Sequence[str]) -> None:
        await self.broker.release(worker_id, job_ids)

    async def leave(self, worker_id: str) -> None:
        await self.broker.leave(worker_id)
