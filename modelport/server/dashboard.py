"""The admin dashboard's data: ``GET /admin/overview`` (one JSON document: endpoints,
the last hour's series, workers, running and queued jobs, recent jobs) and
``GET /admin/events`` (the same document as an SSE ``overview`` event every
:data:`REFRESH` seconds). Both need an admin key or an admin session.

One dashboard costs one overview per :data:`REFRESH` seconds: a handful of store reads,
none per job, so an open dashboard costs a busy server next to nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from modelport.server.messages import json_response
from modelport.server.streaming import SSE, EventStream, sse_line

if TYPE_CHECKING:
    from modelport.server.app import Server

REFRESH = 2.0
"""Seconds between two overviews on ``/admin/events``."""
QUEUED_SHOWN = 20
"""Queued jobs listed per endpoint."""


class Dashboard:
    def __init__(self, server: Server) -> None:
        self.server = server

    async def overview(self) -> dict[str, Any]:
        broker = self.server.broker
        store = broker.store
        await broker.sync_specs()
        depths = await store.queue_depths()
        now = broker.clock()
        names = sorted(broker.specs)
        endpoints = [await self.server.summary(broker.specs[name], depths) for name in names]
        workers = [
            {**w.public(now, broker.offline_after), "endpoints": w.info.endpoints}
            for w in await broker.all_workers()
        ]
        running = [_brief(job.public()) for job in await store.running()]
        queued = []
        for name in names:
            if depths.get(name, {}).get("queued"):
                queued += [
                    _brief(j.public()) for j in await store.oldest_queued(name, QUEUED_SHOWN)
                ]
        stats = await broker.stats.read(store, shared=store.shared)
        return {
            "time": now,
            "endpoints": endpoints,
            "series": stats["endpoints"],
            "step": stats["step"],
            "since": stats["since"],
            "workers": workers,
            "running": running,
            "queued": queued,
            "recent": stats["recent"],
        }

    async def get(self, request: Request) -> Response:
        return json_response(await self.overview())

    async def events(self, request: Request) -> EventStream:
        closing = self.server.broker.wakeups.closing

        async def lines() -> AsyncIterator[bytes]:
            while not closing.done():
                yield sse_line((None, "overview", await self.overview()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(closing), REFRESH)

        return EventStream(lines(), SSE)


_BRIEF = (
    "id",
    "endpoint",
    "status",
    "worker",
    "created_at",
    "started_at",
    "revision",
    "model_version",
)
"""The fields of a job the dashboard lists (with its progress and the start of its error)."""


def _brief(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the dashboard lists it: no input or output (they may be large)."""
    progress = job.get("progress") or {}
    return {k: job.get(k) for k in _BRIEF} | {
        "progress": {k: progress.get(k) for k in ("fraction", "message")} if progress else None,
        "error": None if job.get("error") is None else str(job["error"])[:300],
    }
