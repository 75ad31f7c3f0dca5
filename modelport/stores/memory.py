"""The in-memory store: the executable spec of :class:`JobStore`, for tests and development."""

from __future__ import annotations

import copy
import dataclasses
import heapq
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from modelport.errors import Overloaded
from modelport.keys import Allowance, Bucket, spend
from modelport.stores.base import LogBounds, Update, full_queue, log_matches, log_size
from modelport.wire import Event, JobRecord, JobStatus


class MemoryStore:
    """Keeps everything in this process; nothing survives a restart."""

    shared = False

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._queues: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self._keys: dict[tuple[str, str], str] = {}
        self._seq = 0
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._blobs: dict[str, dict[str, tuple[str, bytes]]] = {}
        self._workers: dict[str, tuple[dict[str, Any], float]] = {}
        self._specs: dict[str, dict[str, Any]] = {}
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._deliveries: dict[str, bytes] = {}
        self._cache_groups: dict[str, dict[str, None]] = defaultdict(dict)
        """Per group, its keys in the order they were stored (oldest first)."""
        self._api_keys: dict[str, dict[str, Any]] = {}
        self._buckets: dict[str, Bucket] = {}
        self._logs: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self._log_bytes: dict[str, int] = defaultdict(int)
        self._log_ids: dict[str, int] = defaultdict(int)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        pass

    async def insert(self, job: JobRecord, limit: int | None = None) -> JobRecord:
        try:
            orjson.dumps(job.input)
        except TypeError as e:  # the same refusal as the stores that serialize
            raise ValueError(f"input cannot be stored as JSON: {e}") from None
        if job.idempotency_key is not None:
            existing = self._keys.get((job.endpoint, job.idempotency_key))
            if existing is not None:
                return copy.deepcopy(self._jobs[existing])
        if limit is not None:
            queued = (await self.queue_depths()).get(job.endpoint, {}).get("queued", 0)
            if queued >= limit:
                raise Overloaded(full_queue(job.endpoint, queued, limit))
        if job.idempotency_key is not None:
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
        self,
        endpoint: str,
        worker_id: str,
        limit: int,
        now: float,
        lease_until: float,
        revision: int | None = None,
    ) -> list[JobRecord]:
        queue = self._queues.get(endpoint)
        leased: list[JobRecord] = []
        passed: list[tuple[int, str]] = []
        while queue and len(leased) < limit:
            entry = heapq.heappop(queue)
            job = self._jobs.get(entry[1])
            if job is None or job.status is not JobStatus.QUEUED:
                continue  # cancelled, expired or purged since it was queued: dropped lazily
            if revision is not None and job.revision != revision:
                passed.append(entry)
                continue
            job.status = JobStatus.RUNNING
            job.worker_id = worker_id
            job.attempts += 1
            job.started_at = now
            job.lease_until = lease_until
            leased.append(copy.deepcopy(job))
        for entry in passed:
            heapq.heappush(queue, entry)  # type: ignore[arg-type]
        return leased

    async def extend(self, worker_id: str, job_ids: Sequence[str], lease_until: float) -> list[str]:
        return [job.id for job in self._extend(worker_id, job_ids, lease_until)]

    def _extend(
        self,
        worker_id: str,
        job_ids: Iterable[str],
        lease_until: float,
        renew_below: float | None = None,
    ) -> list[JobRecord]:
        """The jobs of ``job_ids`` that ``worker_id`` holds (running), their leases extended to
        ``lease_until`` (with ``renew_below``, only those that end before it)."""
        jobs = (self._jobs.get(job_id) for job_id in job_ids)
        held = [
            j
            for j in jobs
            if j is not None and j.status is JobStatus.RUNNING and j.worker_id == worker_id
        ]
        for job in held:
            if renew_below is None or (job.lease_until or 0.0) < renew_below:
                job.lease_until = lease_until
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

    async def queued_job_bytes(self) -> dict[str, float]:
        sizes: dict[str, list[int]] = defaultdict(list)
        for j in self._jobs.values():
            if j.status is JobStatus.QUEUED:
                sizes[j.endpoint].append(len(orjson.dumps(j.input)))
        return {ep: sum(s) / len(s) for ep, s in sizes.items()}

    async def add_events(
        self,
        events: Sequence[Event],
        *,
        holder: str | None = None,
        lease_until: float = 0.0,
        renew_below: float | None = None,
    ) -> list[Event]:
        if holder is not None:
            held = self._extend(
                holder, dict.fromkeys(e.job_id for e in events), lease_until, renew_below
            )
            ids = {job.id for job in held}
            events = [e for e in events if e.job_id in ids]
        stored = []
        for event in events:
            log = self._events[event.job_id]
            copied = dataclasses.replace(event, id=len(log) + 1, data=copy.deepcopy(event.data))
            log.append(copied)
            stored.append(dataclasses.replace(copied))
        return stored

    async def events(self, job_id: str, after: int = 0, limit: int = 10_000) -> list[Event]:
        log = self._events.get(job_id, [])
        return [
            dataclasses.replace(e, data=copy.deepcopy(e.data)) for e in log[after : after + limit]
        ]

    async def purge(self, completed_before: float, limit: int, endpoint: str | None = None) -> int:
        doomed = [
            j
            for j in self._jobs.values()
            if j.status.final
            and j.completed_at is not None
            and j.completed_at < completed_before
            and (endpoint is None or j.endpoint == endpoint)
        ][:limit]
        for job in doomed:
            del self._jobs[job.id]
            self._events.pop(job.id, None)
            self._blobs.pop(job.id, None)
            if job.idempotency_key is not None:
                self._keys.pop((job.endpoint, job.idempotency_key), None)
        return len(doomed)

    async def put_blob(
        self, job_id: str, name: str, mime: str, data: bytes, ttl: float | None
    ) -> None:
        self._blobs.setdefault(job_id, {})[name] = (mime, data)

    async def get_blob(self, job_id: str, name: str) -> tuple[str, bytes] | None:
        return self._blobs.get(job_id, {}).get(name)

    async def oldest_queued(self, endpoint: str, limit: int) -> list[JobRecord]:
        queued = sorted(
            (
                j
                for j in self._jobs.values()
                if j.endpoint == endpoint and j.status is JobStatus.QUEUED
            ),
            key=lambda j: j.seq,
        )
        return [copy.deepcopy(j) for j in queued[:limit]]

    async def put_worker(self, worker: dict[str, Any], ttl: float) -> None:
        self._workers[worker["id"]] = (copy.deepcopy(worker), time.time() + ttl)

    async def get_worker(self, worker_id: str) -> dict[str, Any] | None:
        entry = self._workers.get(worker_id)
        if entry is None or entry[1] < time.time():
            return None
        return copy.deepcopy(entry[0])

    async def list_workers(self) -> list[dict[str, Any]]:
        now = time.time()
        return [copy.deepcopy(w) for w, expires in self._workers.values() if expires >= now]

    async def delete_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def put_spec(self, spec: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        if replace or spec["name"] not in self._specs:
            self._specs[spec["name"]] = copy.deepcopy(spec)
        return copy.deepcopy(self._specs[spec["name"]])

    async def specs(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(s) for _, s in sorted(self._specs.items())]

    async def cache_get(self, key: str) -> Any | None:
        entry = self._cache.get(key)
        if entry is None or entry[1] <= time.time():
            return None
        return orjson.loads(entry[0])

    async def cache_add(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> Any | None:
        present = await self.cache_get(key)
        if present is not None:
            return present
        await self.cache_put(key, value, ttl, group, max_entries)
        return None

    async def cache_put(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> None:
        self._cache[key] = (orjson.dumps(value), time.time() + ttl)
        keys = self._cache_groups[group]
        keys.pop(key, None)
        keys[key] = None
        while keys:  # expired entries go, oldest first, so the group keeps only live ones
            oldest = next(iter(keys))
            entry = self._cache.get(oldest)
            if entry is not None and entry[1] > time.time():
                break
            del keys[oldest]
            self._cache.pop(oldest, None)
        while max_entries is not None and len(keys) > max_entries:
            oldest = next(iter(keys))
            del keys[oldest]
            self._cache.pop(oldest, None)

    async def cache_delete(self, key: str, group: str) -> None:
        self._cache.pop(key, None)
        self._cache_groups[group].pop(key, None)

    async def put_delivery(self, delivery: dict[str, Any]) -> None:
        self._deliveries[delivery["id"]] = orjson.dumps(delivery)

    async def claim_deliveries(
        self, now: float, limit: int, hold_until: float
    ) -> list[dict[str, Any]]:
        found = [orjson.loads(raw) for raw in self._deliveries.values()]
        due = sorted(
            (d for d in found if d["due"] is not None and d["due"] <= now), key=lambda d: d["due"]
        )
        claimed = []
        for d in due[:limit]:
            d["due"] = hold_until
            self._deliveries[d["id"]] = orjson.dumps(d)
            claimed.append(d)
        return claimed

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        found = [orjson.loads(raw) for raw in self._deliveries.values()]
        return [d for d in found if d["job_id"] == job_id]

    async def publish(self, topic: str) -> None:
        pass

    def subscribe(self, callback: Callable[[str], None]) -> None:
        pass

    async def put_key(self, key: dict[str, Any]) -> None:
        self._api_keys[key["id"]] = copy.deepcopy(key)

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        key = self._api_keys.get(key_id)
        return None if key is None else copy.deepcopy(key)

    async def find_key(self, key_hash: str) -> dict[str, Any] | None:
        for key in self._api_keys.values():
            if key["hash"] == key_hash:
                return copy.deepcopy(key)
        return None

    async def list_keys(self) -> list[dict[str, Any]]:
        keys = sorted(self._api_keys.values(), key=lambda k: (k["created_at"], k["id"]))
        return copy.deepcopy(keys)

    async def delete_key(self, key_id: str) -> bool:
        self._buckets.pop(key_id, None)
        return self._api_keys.pop(key_id, None) is not None

    async def touch_key(self, key_id: str, at: float) -> None:
        key = self._api_keys.get(key_id)
        if key is not None:
            key["last_used"] = at

    async def spend(
        self,
        bucket: str,
        now: float,
        rate: float | None,
        burst: int,
        quota: int | None,
        window: int,
        window_end: float,
    ) -> Allowance:
        allowance, self._buckets[bucket] = spend(
            self._buckets.get(bucket), now, rate, burst, quota, window, window_end
        )
        return allowance

    async def queued_by(self, owner: str) -> int:
        return sum(
            1 for j in self._jobs.values() if j.owner == owner and j.status is JobStatus.QUEUED
        )

    async def add_logs(
        self, endpoint: str, entries: Sequence[dict[str, Any]], bounds: LogBounds, now: float
    ) -> None:
        lines = self._logs[endpoint]
        for entry in entries:
            self._log_ids[endpoint] += 1
            lines.append({**entry, "id": self._log_ids[endpoint]})
            self._log_bytes[endpoint] += log_size(entry)
        oldest = now - bounds.max_age
        while lines and (
            len(lines) > bounds.max_entries
            or self._log_bytes[endpoint] > bounds.max_bytes
            or lines[0]["time"] < oldest
        ):
            self._log_bytes[endpoint] -= log_size(lines.popleft())

    async def logs(
        self,
        endpoint: str,
        *,
        since: float | None = None,
        job_id: str | None = None,
        level: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        found = [e for e in self._logs.get(endpoint, ()) if log_matches(e, since, job_id, level)]
        return copy.deepcopy(found[-limit:] if limit else [])

    async def delete_logs(self, endpoint: str) -> int:
        lines = self._logs.pop(endpoint, deque())
        self._log_bytes.pop(endpoint, None)
        return len(lines)
