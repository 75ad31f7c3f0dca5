"""The in-memory store: the executable spec of :class:`JobStore`, for tests and development."""

from __future__ import annotations

import copy
import heapq
from collections import defaultdict
from collections.abc import Sequence

import orjson

from modelport.stores.base import Update
from modelport.wire import JobRecord, JobStatus


class MemoryStore:
    """Keeps everything in this process; nothing survives a restart."""

    shared = False

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._queues: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._keys: dict[tuple[str, str], str] = {}
        self._seq = 0

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def insert(self, job: JobRecord) -> JobRecord:
        try:
            orjson.dumps(job.input)
        except TypeError as e:  # the same refusal as the stores that serialize
            raise ValueError(f"input cannot be stored as JSON: {e}") from None
        if job.idempotency_key is not None:
            existing = self._keys.get((job.endpoint, job.idempotency_key))
            if existing is not None:
                return copy.deepcopy(self._jobs[existing])
            self._keys[(job.endpoint, job.idempotency_key)] = job.id
        self._seq += 1
        job = copy.deepcopy(job)
        job.seq = self._seq
        self._jobs[job.id] = job
        heapq.heappush(self._queues[job.endpoint], (job.seq, job.id))
        return copy.deepcopy(job)

    async def get(self, job_id: str) -> JobRecord | None:
        job = self._jobs.get(job_id)
        return None if job is None else copy.deepcopy(job)

    async def lease(
        self, endpoint: str, worker_id: str, limit: int, now: float, lease_until: float
    ) -> list[JobRecord]:
        queue = self._queues.get(endpoint)
        leased: list[JobRecord] = []
        while queue and len(leased) < limit:
            _, job_id = heapq.heappop(queue)
            job = self._jobs[job_id]
            if job.status is not JobStatus.QUEUED:
                continue  # cancelled or expired while queued: dropped lazily
            job.status = JobStatus.RUNNING
            job.worker_id = worker_id
            job.attempts += 1
            job.started_at = now
            job.lease_until = lease_until
            leased.append(copy.deepcopy(job))
        return leased

    async def extend(self, worker_id: str, job_ids: Sequence[str], lease_until: float) -> list[str]:
        held = []
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is not None and job.status is JobStatus.RUNNING and job.worker_id == worker_id:
                job.lease_until = lease_until
                held.append(job_id)
        return held

    async def update(self, updates: Sequence[Update]) -> list[JobRecord | None]:
        out: list[JobRecord | None] = []
        for u in updates:
            job = self._jobs.get(u.job_id)
            if job is None or not u.matches(job):
                out.append(None)
                continue
            for key, value in u.changes.items():
                setattr(job, key, value)
            if job.status is JobStatus.QUEUED:
                heapq.heappush(self._queues[job.endpoint], (job.seq, job.id))
            out.append(copy.deepcopy(job))
        return out

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        found = [
            copy.deepcopy(j)
            for j in self._jobs.values()
            if j.status is JobStatus.RUNNING and j.lease_until is not None and j.lease_until < now
        ]
        return found[:limit]

    async def running(self, worker_id: str | None = None) -> list[JobRecord]:
        return [
            copy.deepcopy(j)
            for j in self._jobs.values()
            if j.status is JobStatus.RUNNING and (worker_id is None or j.worker_id == worker_id)
        ]

    async def position(self, job: JobRecord) -> int:
        return sum(
            1
            for j in self._jobs.values()
            if j.endpoint == job.endpoint and j.status is JobStatus.QUEUED and j.seq < job.seq
        )

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        depths: dict[str, dict[str, int]] = defaultdict(lambda: {"queued": 0, "running": 0})
        for j in self._jobs.values():
            if j.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                depths[j.endpoint][j.status.value] += 1
        return dict(depths)
