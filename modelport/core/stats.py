"""The last hour of each endpoint, minute by minute, for the admin dashboard's charts.

Each server counts the jobs it sees finish (an O(1) add on the finishing path) in a
bounded in-memory series, and every :data:`FLUSH_EVERY` seconds writes its own series to
the store with the queue depths it reads then. Any server answers with the sum over every
server's series that is in the store, so servers sharing one Redis show the same charts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelport.errors import ModelportError
from modelport.stores.base import JobStore
from modelport.wire import JobRecord, JobStatus

STEP = 60
"""Seconds per point."""
POINTS = 60
"""Points kept: an hour."""
FLUSH_EVERY = 5.0
RECENT = 50
"""Finished jobs each server remembers for the dashboard's list."""
_SERVERS = "stats:servers"
_Recent = tuple[str, str, JobStatus, float, float | None, str | None, int, str | None]
"""A finished job as the dashboard's list shows it."""
_GROUP = "stats"


@dataclass
class Point:
    t: int
    """The minute's start (Unix seconds)."""
    succeeded: int = 0
    failed: int = 0
    latency: float = 0.0
    """Sum of end-to-end seconds (submit to result) of the succeeded jobs."""
    queued: int = 0
    running: int = 0

    def to_list(self) -> list[Any]:
        return [
            self.t,
            self.succeeded,
            self.failed,
            round(self.latency, 4),
            self.queued,
            self.running,
        ]


@dataclass
class Stats:
    instance: str
    clock: Callable[[], float] = time.time
    series: dict[str, deque[Point]] = field(default_factory=dict)
    recent: deque[_Recent] = field(default_factory=lambda: deque(maxlen=RECENT))

    def _point(self, endpoint: str, now: float) -> Point:
        minute = int(now // STEP * STEP)
        points = self.series.get(endpoint)
        if points is None:
            points = self.series[endpoint] = deque(maxlen=POINTS)
        if not points or points[-1].t != minute:
            points.append(Point(minute))
        return points[-1]

    def finished(self, job: JobRecord) -> None:
        """Count a job that reached its end here."""
        now = job.completed_at or self.clock()
        point = self._point(job.endpoint, now)
        if job.status is JobStatus.SUCCEEDED:
            point.succeeded += 1
            point.latency += max(0.0, now - job.created_at)
        elif job.status in (JobStatus.FAILED, JobStatus.EXPIRED):
            point.failed += 1
        # a tuple, described when read (most never are), and not the record: its input and
        # output could be large
        self.recent.append(
            (
                job.id,
                job.endpoint,
                job.status,
                job.created_at,
                job.completed_at,
                job.error,
                job.revision,
                job.model_version,
            )
        )

    def sample(self, depths: dict[str, dict[str, int]], now: float) -> None:
        """Note the queue depths read now (the most seen in a minute is kept)."""
        for endpoint, depth in depths.items():
            point = self._point(endpoint, now)
            point.queued = max(point.queued, depth.get("queued", 0))
            point.running = max(point.running, depth.get("running", 0))

    def snapshot(self) -> dict[str, Any]:
        return {
            "series": {name: [p.to_list() for p in points] for name, points in self.series.items()},
            "recent": [_described(job) for job in self.recent],
        }

    async def flush(self, store: JobStore) -> None:
        """Write this server's series to the store, and list this server there."""
        now = self.clock()
        self.sample(await store.queue_depths(), now)
        ttl = STEP * POINTS
        await store.cache_put(f"stats:{self.instance}", self.snapshot(), ttl, _GROUP)
        servers = await store.cache_get(_SERVERS) or []
        if self.instance not in servers:
            # Two servers adding themselves at once may drop one: it adds itself again on
            # its next flush, so the list heals within FLUSH_EVERY seconds.
            await store.cache_put(_SERVERS, [*servers, self.instance][-100:], ttl, _GROUP)

    async def read(self, store: JobStore, *, shared: bool) -> dict[str, Any]:
        """Every server's series summed per endpoint and minute, and their recent jobs."""
        snapshots = [self.snapshot()]
        if shared:
            for server in await store.cache_get(_SERVERS) or []:
                if server != self.instance:
                    found = await store.cache_get(f"stats:{server}")
                    if found is not None:
                        snapshots.append(found)
        return merge(snapshots, self.clock())

    async def run(self, store: JobStore) -> None:
        while True:
            with contextlib.suppress(ModelportError):  # a store hiccup skips one flush
                await self.flush(store)
            await asyncio.sleep(FLUSH_EVERY)


def _described(recent: _Recent) -> dict[str, Any]:
    job_id, endpoint, status, created_at, completed_at, error, revision, version = recent
    return {
        "id": job_id,
        "endpoint": endpoint,
        "status": status.value,
        "created_at": created_at,
        "completed_at": completed_at,
        "duration": None if completed_at is None else completed_at - created_at,
        "error": None if error is None else error[:300],
        "revision": revision,
        "model_version": version,
    }


def merge(snapshots: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """Sum snapshots into one series per endpoint (the last hour, oldest first): counts and
    latencies add up, queue depths (every server reads the same store) take the largest."""
    since = int(now // STEP * STEP) - STEP * (POINTS - 1)
    points: dict[str, dict[int, list[Any]]] = {}
    for snap in snapshots:
        for endpoint, series in snap.get("series", {}).items():
            table = points.setdefault(endpoint, {})
            for t, succeeded, failed, latency, queued, running in series:
                if t < since:
                    continue
                old = table.get(t)
                if old is None:
                    table[t] = [t, succeeded, failed, latency, queued, running]
                else:
                    old[1] += succeeded
                    old[2] += failed
                    old[3] += latency
                    old[4] = max(old[4], queued)
                    old[5] = max(old[5], running)
    endpoints = {}
    for endpoint, table in sorted(points.items()):
        endpoints[endpoint] = [
            {
                "t": t,
                "succeeded": s,
                "failed": f,
                "throughput": round((s + f) / STEP, 4),
                "latency": None if not s else round(lat / s, 4),
                "queued": q,
                "running": r,
            }
            for t, s, f, lat, q, r in (table[t] for t in sorted(table))
        ]
    recent = sorted(
        (job for snap in snapshots for job in snap.get("recent", [])),
        key=lambda job: job.get("completed_at") or 0,
        reverse=True,
    )
    return {"step": STEP, "since": since, "endpoints": endpoints, "recent": recent[: RECENT * 2]}
