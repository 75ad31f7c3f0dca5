"""The core: job lifecycle, leases, batching windows and retries, written once for every store.

Routes translate HTTP to these calls; stores only store. Waiters in this process (a
request waiting for its result, a worker long-polling for jobs) are woken by futures,
never by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic

from modelport.errors import Conflict, NotFound, Overloaded, SpecError, ValidationError
from modelport.metrics import Metrics
from modelport.spec import EndpointSpec, spec_differences, spec_from_dict, storable
from modelport.stores.base import JobStore, Update, full_queue
from modelport.wire import (
    Event,
    JobRecord,
    JobStatus,
    LeasedJob,
    Result,
    WorkerInfo,
    new_job_id,
)

log = logging.getLogger("modelport.core")

ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
RUNNING = frozenset({JobStatus.RUNNING})
LOCAL_PREFIX = "local:"
WORKER_TTL = 3600.0
"""Seconds a silent worker stays listed (as offline) in a shared store."""
SAVE_EVERY = 5.0
"""Seconds between saves of a busy worker's record to a shared store."""


@dataclass
class Worker:
    """A worker as the server sees it."""

    id: str
    info: WorkerInfo
    joined_at: float
    last_seen: float
    jobs_done: int = 0
    compute_time: float = 0.0
    saved_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.info.name,
            "endpoints": self.info.endpoints,
            "max_batch_size": self.info.max_batch_size,
            "metadata": self.info.metadata,
            "joined_at": self.joined_at,
            "last_seen": self.last_seen,
            "jobs_done": self.jobs_done,
            "compute_time": self.compute_time,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Worker:
        info = WorkerInfo(
            data["name"], list(data["endpoints"]), data["max_batch_size"], data["metadata"]
        )
        return cls(
            data["id"],
            info,
            data["joined_at"],
            data["last_seen"],
            data["jobs_done"],
            data["compute_time"],
        )

    def public(self, now: float, offline_after: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.info.name,
            "state": "online" if now - self.last_seen <= offline_after else "offline",
            "last_seen": self.last_seen,
            "max_batch_size": self.info.max_batch_size,
            "metadata": self.info.metadata,
            "jobs_done": self.jobs_done,
            "mean_compute_time": self.compute_time / self.jobs_done if self.jobs_done else None,
        }


@dataclass
class _Depth:
    value: int = 0
    """Queued jobs as last counted, plus those this server queued since."""
    read_at: float = field(default=-1.0)
    inflight: int = 0
    """Submits on their way into the store."""


class Broker:
    """Owns the job state machine on top of a :class:`JobStore`."""

    def __init__(
        self,
        store: JobStore,
        *,
        max_queue_length: int = 10_000,
        reap_interval: float = 0.5,
        offline_after: float = 30.0,
        max_queue_time: float | None = None,
        timeout: float | None = None,
        result_ttl: float | None = 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_queue_time = max_queue_time
        self.timeout = timeout
        self.result_ttl = result_ttl
        self._purged_at = 0.0
        self.specs: dict[str, EndpointSpec] = {}
        self.max_queue_length = max_queue_length
        self.reap_interval = reap_interval
        self.offline_after = offline_after
        self.clock = clock
        self.instance = secrets.token_hex(4)
        self.workers: dict[str, Worker] = {}
        self._done: dict[str, list[asyncio.Future[JobRecord | None]]] = {}
        self._signals: dict[str, asyncio.Future[None]] = {}
        self._depths: dict[str, _Depth] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.metrics = Metrics()
        self._cancelled: dict[str, set[str]] = {}
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}
        self._closing_future: asyncio.Future[None] | None = None
        self._job_time: dict[str, float] = {}
        self._outbox: list[str] = []
        self._publishing: set[asyncio.Future[None]] = set()

    def add_endpoint(self, spec: EndpointSpec) -> None:
        self.specs[spec.name] = spec

    def spec(self, name: str) -> EndpointSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise NotFound(f"no endpoint named {name!r}") from None

    async def find_spec(self, name: str) -> EndpointSpec:
        """An endpoint's spec, looked for in the shared store if this server does not know it
        (a worker may have brought it to another server)."""
        if name not in self.specs:
            await self.sync_specs()
        return self.spec(name)

    async def sync_specs(self) -> None:
        """Learn the endpoints that workers brought to the other servers sharing the store."""
        if not self.store.shared:
            return
        for data in await self.store.specs():
            if data.get("name") not in self.specs:
                try:
                    spec = spec_from_dict(data)
                except (SpecError, TypeError, ValueError) as e:
                    log.warning("ignoring a stored spec that does not load: %s", e)
                    continue
                self.specs.setdefault(spec.name, spec)

    async def start(self) -> None:
        await self.store.open()
        if self.store.shared:
            # This server's own endpoints (config file, local models) are the contract.
            for spec in list(self.specs.values()):
                await self.store.put_spec(spec.to_dict(), replace=True)
            self.store.subscribe(self._on_message)
        else:
            await self._recover_local_jobs()
        self._reaper = asyncio.create_task(self._reap_forever(), name="modelport-reaper")

    @property
    def _closing(self) -> asyncio.Future[None]:
        if self._closing_future is None:
            self._closing_future = asyncio.get_running_loop().create_future()
        return self._closing_future

    def closing(self) -> None:
        """The server is going down: end every long poll now, with what it has."""
        if not self._closing.done():
            self._closing.set_result(None)
        futures: list[asyncio.Future[Any]] = []
        for done in self._done.values():
            futures += done
        for watchers in self._watchers.values():
            futures += watchers
        for fut in futures:
            if not fut.done():
                fut.set_result(None)

    async def stop(self) -> None:
        self.closing()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.store.close()

    # ---- client side

    async def submit(
        self, endpoint: str, inputs: dict[str, Any], *, idempotency_key: str | None = None
    ) -> JobRecord:
        spec = await self.find_spec(endpoint)
        depth, limit = await self._check_room(spec)
        job = JobRecord(
            id=new_job_id(),
            endpoint=endpoint,
            input=inputs,
            created_at=self.clock(),
            max_attempts=spec.max_attempts,
            idempotency_key=idempotency_key,
        )
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
            self._signal(endpoint)
        elif stored.input != inputs:
            # A reused key with another input is a client bug; answering with the first job
            # would hand back a result for a request the client did not make this time.
            message = (
                f"Idempotency-Key {idempotency_key!r} was already used for job {stored.id} of "
                f"{endpoint!r} with a different input; resend that input to get that job, or "
                "use a new key for a new request"
            )
            raise ValidationError(
                message, errors=[{"field": "Idempotency-Key", "message": message}]
            )
        return stored

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
            done: asyncio.Future[JobRecord | None] = loop.create_future()
            self._done.setdefault(job_id, []).append(done)
            try:
                if job is None or job.status.final:
                    job = await self.get(job_id)
                remaining = deadline - loop.time()
                if job.status.final or remaining <= 0 or self._closing.done():
                    return job
                try:
                    async with asyncio.timeout(remaining):
                        final = await done
                except TimeoutError:
                    return await self.get(job_id)
                if final is not None:
                    return final
                job = None  # changed elsewhere (another server): read it again
            finally:
                waiters = self._done.get(job_id)
                if waiters is not None:
                    with contextlib.suppress(ValueError):
                        waiters.remove(done)
                    if not waiters:
                        del self._done[job_id]

    async def cancel(self, job_id: str) -> JobRecord:
        for _ in range(3):
            job = await self.get(job_id)
            if job.status is JobStatus.CANCELLED:
                return job
            if job.status.final:
                raise Conflict(f"job {job_id} already {job.status.value}; it cannot be cancelled")
            changes = {
                "status": JobStatus.CANCELLED,
                "completed_at": self.clock(),
                "lease_until": None,
                "error": "cancelled by the client",
            }
            (updated,) = await self.store.update([Update(job_id, ACTIVE, changes)])
            if updated is not None:
                if job.status is JobStatus.RUNNING and job.worker_id is not None:
                    self._cancelled.setdefault(job.worker_id, set()).add(job_id)
                self._finished(updated)
                return updated
        raise Conflict(f"job {job_id} changed while being cancelled; try again")

    async def position(self, job: JobRecord) -> int | None:
        return await self.store.position(job) if job.status is JobStatus.QUEUED else None

    async def _check_room(self, spec: EndpointSpec) -> tuple[_Depth, int | None]:
        """Refuse a submit to a full queue; else the limit the store must check itself.

        A count read at most 0.25 s ago answers most submits; near the limit, and always
        when other servers share the store, the store checks the limit as it inserts.
        """
        limit = spec.max_queue_length or self.max_queue_length
        depth = self._depths.setdefault(spec.name, _Depth())
        now = time.monotonic()
        if depth.value >= limit or now - depth.read_at > 0.25:
            counts = await self.store.queue_depths()
            depth.value, depth.read_at = counts.get(spec.name, {}).get("queued", 0), now
        if depth.value >= limit:
            self.metrics.job_rejected(spec.name)
            raise Overloaded(full_queue(spec.name, depth.value, limit))
        exact = self.store.shared or depth.value + depth.inflight + 1 >= limit
        return depth, limit if exact else None

    # ---- worker side

    async def join(
        self,
        info: WorkerInfo,
        specs: Sequence[EndpointSpec] = (),
        *,
        worker_id: str | None = None,
    ) -> Worker:
        """:meth:`register`, checked against (and recorded in) the store shared with the other
        servers, so that one endpoint has one spec wherever its workers connect."""
        await self.sync_specs()
        worker = self.register(info, specs, worker_id=worker_id)
        if not self.store.shared:
            return worker
        for spec in specs:
            stored = spec_from_dict(await self.store.put_spec(spec.to_dict()))
            differences = spec_differences(stored, spec)
            if differences:  # another server took a different spec for it meanwhile
                self.specs[spec.name] = stored
                await self.leave(worker.id)
                raise Conflict(
                    f"worker {info.name!r} serves {spec.name!r} with a spec that differs from "
                    f"the server's: {'; '.join(differences)}"
                )
        return worker

    def register(
        self,
        info: WorkerInfo,
        specs: Sequence[EndpointSpec] = (),
        *,
        worker_id: str | None = None,
    ) -> Worker:
        """Admit a worker. An endpoint it brings is defined by it if no one defined it yet;
        otherwise its spec must equal the existing one (the message says what differs)."""
        brought = {s.name: s for s in specs}
        for name in info.endpoints:
            if name not in brought:
                self.spec(name)
            elif name in self.specs:
                differences = spec_differences(self.specs[name], brought[name])
                if differences:
                    raise Conflict(
                        f"worker {info.name!r} serves {name!r} with a spec that differs from "
                        f"the server's: {'; '.join(differences)}"
                    )
        for name, spec in brought.items():
            self.specs.setdefault(name, spec)
        now = self.clock()
        wid = worker_id or secrets.token_hex(8)
        previous = self.workers.get(wid)
        worker = Worker(id=wid, info=info, joined_at=now, last_seen=now)
        if previous is not None:
            worker.jobs_done, worker.compute_time = previous.jobs_done, previous.compute_time
        self.workers[wid] = worker
        self._save(worker)
        return worker

    def _save(self, worker: Worker) -> None:
        """Share a worker's record with the other servers (when the store is shared)."""
        if not self.store.shared:
            return
        worker.saved_at = worker.last_seen
        self._background(self.store.put_worker(worker.to_dict(), WORKER_TTL))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._publishing.add(task)
        task.add_done_callback(self._published)

    def local_worker_id(self, name: str) -> str:
        return f"{LOCAL_PREFIX}{self.instance}:{name}"

    def worker(self, worker_id: str) -> Worker:
        try:
            worker = self.workers[worker_id]
        except KeyError:
            raise NotFound(f"no worker with id {worker_id!r}; register first") from None
        worker.last_seen = self.clock()
        if worker.last_seen - worker.saved_at >= SAVE_EVERY:
            self._save(worker)
        return worker

    def take_cancelled(self, worker_id: str) -> list[str]:
        """Jobs this worker holds that were cancelled since it last asked."""
        return sorted(self._cancelled.pop(worker_id, ()))

    async def eta(self, job: JobRecord, position: int) -> float | None:
        """Seconds until a queued job is likely finished, from recent compute times."""
        per_job = self._job_time.get(job.endpoint)
        if per_job is None:
            return None
        workers = len(await self.workers_online(job.endpoint))
        if workers == 0:
            return None
        return round((position + 1) * per_job / workers, 3)

    async def all_workers(self) -> list[Worker]:
        """Every known worker: this server's, and with a shared store the others' too."""
        if not self.store.shared:
            return list(self.workers.values())
        known = {w["id"]: Worker.from_dict(w) for w in await self.store.list_workers()}
        for worker in self.workers.values():
            other = known.get(worker.id)
            if other is None or other.last_seen <= worker.last_seen:
                known[worker.id] = worker
        return list(known.values())

    async def workers_online(self, endpoint: str) -> list[Worker]:
        now = self.clock()
        return [
            w
            for w in await self.all_workers()
            if endpoint in w.info.endpoints and now - w.last_seen <= self.offline_after
        ]

    async def lease(self, worker_id: str, max_jobs: int, wait: float) -> list[LeasedJob]:
        """Up to ``max_jobs`` jobs: wait up to ``wait`` s for the first, then fill the batch
        for at most the endpoint's ``max_batch_wait`` after the first arrived."""
        worker = self.worker(worker_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        jobs: list[JobRecord] = []
        try:
            await self._fill(worker, jobs, max_jobs, deadline)
        except asyncio.CancelledError:
            # The long poll was abandoned (the worker hung up): hand back what it took.
            await asyncio.shield(self.release(worker_id, [j.id for j in jobs]))
            raise
        worker.last_seen = self.clock()
        for job in jobs:
            self._changed(job.id)
        return [
            LeasedJob(j.id, j.endpoint, j.input, j.attempts, j.lease_until or 0.0) for j in jobs
        ]

    async def _fill(
        self, worker: Worker, jobs: list[JobRecord], max_jobs: int, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        window_end: float | None = None
        while not self._closing.done() and worker.id in self.workers:
            signals = [self._signal_future(name) for name in worker.info.endpoints]
            signals.append(self._closing)
            for name in worker.info.endpoints:
                spec = self.specs[name]
                room = min(max_jobs, spec.max_batch_size) - len(jobs)
                if room <= 0 or (jobs and jobs[0].endpoint != name):
                    continue
                now = self.clock()
                got = await self.store.lease(name, worker.id, room, now, now + spec.lease_duration)
                if got:
                    self._depths.setdefault(name, _Depth()).value -= len(got)
                    self.metrics.batch_leased(name, len(got))
                    if window_end is None:
                        window_end = loop.time() + spec.max_batch_wait
                    jobs += got
            if jobs:
                limit = min(max_jobs, self.specs[jobs[0].endpoint].max_batch_size)
                if len(jobs) >= limit:
                    break
            assert window_end is not None or not jobs
            remaining = (window_end if window_end is not None else deadline) - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(signals, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]:
        """Extend the leases of jobs the worker still holds; return those ids."""
        worker = self.worker(worker_id)
        if not job_ids:
            return []
        lease = max(self.specs[name].lease_duration for name in worker.info.endpoints)
        return await self.store.extend(worker_id, job_ids, self.clock() + lease)

    async def events(self, worker_id: str, events: Sequence[Event]) -> list[str]:
        """Record progress, output chunks and log lines of held jobs (extending their leases).

        Events of jobs the worker no longer holds are dropped; returns the ids it holds.
        """
        worker = self.worker(worker_id)
        job_ids = list(dict.fromkeys(e.job_id for e in events))
        if not job_ids:
            return []
        lease = max(self.specs[name].lease_duration for name in worker.info.endpoints)
        held = set(await self.store.extend(worker_id, job_ids, self.clock() + lease))
        kept = [e for e in events if e.job_id in held]
        latest = {e.job_id: e.data for e in kept if e.type == "progress"}
        if latest:
            await self.store.update(
                [
                    Update(j, RUNNING, {"progress": p}, worker_id=worker_id)
                    for j, p in latest.items()
                ]
            )
        if kept:
            await self.store.add_events(kept)
        for job_id in held:
            self._changed(job_id)
        return [j for j in job_ids if j in held]

    async def finish(self, worker_id: str, results: Sequence[Result]) -> list[bool]:
        """Record final outputs or errors; a result for a job no longer held is refused."""
        worker = self.worker(worker_id)
        now = self.clock()
        for r in results:
            if r.endpoint not in worker.info.endpoints:
                raise Conflict(f"worker {worker_id} does not serve endpoint {r.endpoint!r}")
        updates = [self._result_update(worker_id, r, now) for r in results]
        stored = await self.store.update(updates)
        finished = [job for job in stored if job is not None and job.status.final]
        for job in stored:
            if job is None:
                continue
            if job.status.final:
                self._finished(job)
            else:
                self.metrics.job_requeued(job.endpoint)
                self._signal(job.endpoint)
        timed = [j for j in finished if j.started_at is not None and j.completed_at is not None]
        if timed:
            # Jobs of one batch share its time, so a job's cost is the batch time over its size.
            batch_time = max(j.completed_at - j.started_at for j in timed)  # type: ignore[operator]
            per_job = batch_time / len(timed)
            worker.jobs_done += len(timed)
            worker.compute_time += batch_time
            previous = self._job_time.get(timed[0].endpoint)
            self._job_time[timed[0].endpoint] = (
                per_job if previous is None else 0.8 * previous + 0.2 * per_job
            )
        return [
            job is not None or await self._recorded(worker_id, r)
            for job, r in zip(stored, results, strict=True)
        ]

    async def _recorded(self, worker_id: str, r: Result) -> bool:
        """Whether a refused result repeats one already recorded (a worker resends results
        whose delivery it could not confirm): the same worker, attempt and outcome."""
        job = await self.store.get(r.job_id)
        if job is None or job.worker_id != worker_id or job.attempts != r.attempt:
            return False
        if r.error is None:
            return job.status is JobStatus.SUCCEEDED and job.output == r.output
        return job.status is JobStatus.FAILED and job.error == r.error

    def _result_update(self, worker_id: str, r: Result, now: float) -> Update:
        changes: dict[str, Any]
        if r.error is None:
            error = self._check_output(r)
            if error is None:
                changes = {
                    "status": JobStatus.SUCCEEDED,
                    "error": None,
                    "output": r.output,
                    "completed_at": now,
                    "lease_until": None,
                }
                return Update(r.job_id, RUNNING, changes, worker_id=worker_id, attempt=r.attempt)
            r = Result(r.job_id, r.endpoint, r.attempt, error=error)
        assert r.error is not None
        if r.retry and r.attempt < self.spec(r.endpoint).max_attempts:
            changes = {
                "status": JobStatus.QUEUED,
                "worker_id": None,
                "lease_until": None,
                "started_at": None,
                "error": r.error,
            }
            return Update(r.job_id, RUNNING, changes, worker_id=worker_id, attempt=r.attempt)
        changes = {
            "status": JobStatus.FAILED,
            "error": r.error,
            "completed_at": now,
            "lease_until": None,
        }
        return Update(r.job_id, RUNNING, changes, worker_id=worker_id, attempt=r.attempt)

    def _check_output(self, r: Result) -> str | None:
        try:
            storable(r.output)
        except ValueError as e:
            return f"the model's output cannot be stored: {e}"
        adapter = self.spec(r.endpoint).output_adapter
        if adapter is None:
            return None
        try:
            adapter.validate_python(r.output)
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "output"
            return (
                f"the model's output does not match the endpoint's outputs: {where}: {first['msg']}"
            )
        return None

    async def release(self, worker_id: str, job_ids: Sequence[str]) -> None:
        """Put jobs a worker never started back at the front of the queue, attempt uncounted."""
        updates = []
        for job_id in job_ids:
            job = await self.store.get(job_id)
            if job is None:
                continue
            changes = {
                "status": JobStatus.QUEUED,
                "worker_id": None,
                "lease_until": None,
                "started_at": None,
                "attempts": job.attempts - 1,
            }
            updates.append(Update(job_id, RUNNING, changes, worker_id, job.attempts))
        for job in await self.store.update(updates):
            if job is not None:
                self._signal(job.endpoint)

    async def leave(self, worker_id: str) -> None:
        """A worker leaves: its unfinished jobs go back to the queue at once."""
        worker = self.worker(worker_id)
        for job in await self.store.running(worker_id):
            await self._lost(job, f"worker {worker_id} left before finishing the job")
        del self.workers[worker_id]
        self._cancelled.pop(worker_id, None)
        if self.store.shared:
            await self.store.delete_worker(worker_id)
        for name in worker.info.endpoints:
            self._signal(name)  # its long polls wake and see it gone

    # ---- lease expiry

    async def reap(self) -> int:
        """Apply the time limits: requeue or fail jobs whose lease ran out, expire jobs that
        waited too long, fail jobs that computed too long, delete old results.

        Returns how many jobs were handled.
        """
        handled = 0
        now = self.clock()
        for job in await self.store.expired(now, 1000):
            self.metrics.lease_lost(job.endpoint)
            await self._lost(job, f"the lease of worker {job.worker_id} expired")
            handled += 1
        for spec in list(self.specs.values()):
            limit = spec.max_queue_time or self.max_queue_time
            if limit is not None:
                handled += await self._expire_waiting(spec.name, now - limit, limit)
        if self.timeout is not None or any(s.timeout for s in self.specs.values()):
            handled += await self._fail_slow(now)
        if now - self._purged_at >= 30 * self.reap_interval:
            self._purged_at = now
            for spec in list(self.specs.values()):
                ttl = spec.result_ttl or self.result_ttl
                if ttl is not None:
                    await self.store.purge(now - ttl, 1000, spec.name)
        return handled

    async def _expire_waiting(self, endpoint: str, created_before: float, limit: float) -> int:
        updates = []
        for job in await self.store.oldest_queued(endpoint, 1000):
            if job.created_at >= created_before:
                break  # the queue is in submit order
            if job.attempts:
                continue  # it started once; only a wait for the first start is limited
            changes = {
                "status": JobStatus.EXPIRED,
                "completed_at": self.clock(),
                "error": f"no worker started the job within {limit:g} s (max_queue_time)",
            }
            updates.append(Update(job.id, frozenset({JobStatus.QUEUED}), changes, attempt=0))
        expired = [job for job in await self.store.update(updates) if job is not None]
        for job in expired:
            self._finished(job)
        return len(expired)

    async def _fail_slow(self, now: float) -> int:
        updates = []
        for job in await self.store.running():
            spec = self.specs.get(job.endpoint)
            limit = (spec.timeout if spec else None) or self.timeout
            if limit is None or job.started_at is None or now - job.started_at <= limit:
                continue
            changes = {
                "status": JobStatus.FAILED,
                "completed_at": now,
                "lease_until": None,
                "error": f"the job took longer than {limit:g} s (timeout)",
            }
            updates.append(Update(job.id, RUNNING, changes, job.worker_id, job.attempts))
        failed = [job for job in await self.store.update(updates) if job is not None]
        for job in failed:
            self._finished(job)
        return len(failed)

    async def _lost(self, job: JobRecord, why: str) -> None:
        expect = Update(job.id, RUNNING, worker_id=job.worker_id, attempt=job.attempts)
        if job.attempts < job.max_attempts:
            changes: dict[str, Any] = {
                "status": JobStatus.QUEUED,
                "worker_id": None,
                "lease_until": None,
                "started_at": None,
            }
            log.warning(
                "job %s requeued: %s (attempt %d of %d)",
                job.id,
                why,
                job.attempts,
                job.max_attempts,
            )
        else:
            changes = {
                "status": JobStatus.FAILED,
                "completed_at": self.clock(),
                "lease_until": None,
                "error": f"gave up after {job.attempts} attempts: {why}",
            }
            log.warning(
                "job %s failed: %s (attempt %d of %d)", job.id, why, job.attempts, job.max_attempts
            )
        (updated,) = await self.store.update(
            [Update(expect.job_id, expect.expect, changes, expect.worker_id, expect.attempt)]
        )
        if updated is None:
            return
        if updated.status.final:
            self._finished(updated)
        else:
            self.metrics.job_requeued(updated.endpoint)
            self._changed(updated.id)
            self._signal(updated.endpoint)

    async def _recover_local_jobs(self) -> None:
        # Embedded workers die with the server that ran them, so their leases are void now.
        for job in await self.store.running():
            if job.worker_id is not None and job.worker_id.startswith(LOCAL_PREFIX):
                await self._lost(job, "the server restarted while the job was running")

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                await self.reap()
            except Exception:
                log.exception("lease expiry check failed; retrying")

    # ---- wake-ups

    def _signal_future(self, endpoint: str) -> asyncio.Future[None]:
        fut = self._signals.get(endpoint)
        if fut is None or fut.done():
            fut = self._signals[endpoint] = asyncio.get_running_loop().create_future()
        return fut

    def _signal(self, endpoint: str) -> None:
        """New work for ``endpoint``: wake its long polls here and on the other servers."""
        self._wake_queue(endpoint)
        self._announce("q:" + endpoint)

    def _wake_queue(self, endpoint: str) -> None:
        fut = self._signals.pop(endpoint, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _finished(self, job: JobRecord) -> None:
        self.metrics.job_finished(job)
        for fut in self._done.pop(job.id, ()):
            if not fut.done():
                fut.set_result(job)
        self._changed(job.id)

    def _wake_job(self, job_id: str) -> None:
        for fut in self._done.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)
        for watcher in self._watchers.pop(job_id, ()):
            if not watcher.done():
                watcher.set_result(None)

    def _announce(self, topic: str) -> None:
        """Queue a topic for the other servers; one publish per event-loop turn carries all."""
        if not self.store.shared:
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush_outbox)
        self._outbox.append(topic)

    def _flush_outbox(self) -> None:
        topics, self._outbox = self._outbox, []
        message = "\n".join([f"from:{self.instance}", *dict.fromkeys(topics)])
        task = asyncio.ensure_future(self.store.publish(message))
        self._publishing.add(task)
        task.add_done_callback(self._published)

    def _published(self, task: asyncio.Future[None]) -> None:
        self._publishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not tell the other servers: %s", task.exception())

    def _on_message(self, message: str) -> None:
        """Topics another server published: wake whoever waits here."""
        lines = message.split("\n")
        if lines and lines[0] == f"from:{self.instance}":
            return
        for line in lines:
            kind, _, key = line.partition(":")
            if kind == "all":  # the store lost announcements: everyone looks again
                for name in list(self._signals):
                    self._wake_queue(name)
                for job_id in list(self._done) + list(self._watchers):
                    self._wake_job(job_id)
            elif kind == "q":
                self._wake_queue(key)
            elif kind == "j":
                self._wake_job(key)

    def watch(self, job_id: str) -> asyncio.Future[None]:
        """A future that resolves at the job's next change: started, an event, or final."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(job_id, []).append(fut)
        return fut

    def unwatch(self, job_id: str, fut: asyncio.Future[None]) -> None:
        watchers = self._watchers.get(job_id)
        if watchers is not None:
            with contextlib.suppress(ValueError):
                watchers.remove(fut)
            if not watchers:
                del self._watchers[job_id]

    def _changed(self, job_id: str) -> None:
        for fut in self._watchers.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)
        self._announce("j:" + job_id)
