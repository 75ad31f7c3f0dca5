"""How a runner talks to the server: the worker API, as calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelport.spec import EndpointSpec
from modelport.wire import Event, LeasedJob, Result, WorkerInfo


class Transport(Protocol):
    """Implemented over HTTP (:class:`modelport.worker.http.HttpTransport`) for remote
    workers, and in-process (``modelport.server.local.LocalTransport``) for embedded ones."""

    async def register(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec], worker_id: str | None
    ) -> str: ...

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        """Deliver ``results`` (as :meth:`results` does), then long-poll for a batch (or for
        ``batches`` of the endpoint's batches, up to ``max_jobs`` jobs)."""

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]: ...

    async def events(self, worker_id: str, events: Sequence[Event]) -> list[str]: ...

    async def results(self, worker_id: str, results: Sequence[Result]) -> list[bool]: ...

    async def release(self, worker_id: str, job_ids: Sequence[str]) -> None:
        """Hand back held jobs that were never started (their attempt does not count)."""

    async def leave(self, worker_id: str) -> None: ...
