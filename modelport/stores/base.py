"""The storage protocol: verbs only. Policy (states, retries, expiry) lives in the core."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelport.keys import Allowance
from modelport.wire import Event, JobRecord, JobStatus

CHANGEABLE = frozenset(
    {
        "status",
        "output",
        "error",
        "progress",
        "started_at",
        "completed_at",
        "worker_id",
        "lease_until",
        "attempts",
    }
)


def full_queue(endpoint: str, queued: int, limit: int) -> str:
    """The message of a refusal for a full queue."""
    return f"endpoint {endpoint!r} has {queued} queued jobs (limit {limit})"


@dataclass(frozen=True, slots=True)
class Update:
    """Change one job if, and only if, it is still as expected (compare-and-set)."""

    job_id: str
    expect: frozenset[JobStatus]
    changes: dict[str, Any] = field(default_factory=dict)
    worker_id: str | None = None
    """When given, the job must be held by this worker."""
    attempt: int | None = None
    """When given, the job must be on this attempt."""

    def matches(self, job: JobRecord) -> bool:
        return (
            job.status in self.expect
            and (self.worker_id is None or job.worker_id == self.worker_id)
            and (self.attempt is None or job.attempts == self.attempt)
        )


LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
"""The levels of a model's log lines, by rank (a query for ``warning`` gets errors too)."""


@dataclass(frozen=True, slots=True)
class LogBounds:
    """What an endpoint's log keeps: the newest ``max_entries`` lines, of at most
    ``max_bytes`` of message text in all, none older than ``max_age`` seconds."""

    max_entries: int = 10_000
    max_bytes: int = 16 * 1024 * 1024
    max_age: float = 7 * 86_400.0


def log_size(entry: dict[str, Any]) -> int:
    """What a log line counts against ``max_bytes``: its message, plus a little for the rest."""
    return len(entry["message"]) + 64


def log_matches(entry: dict[str, Any], since: float | None, job_id: str | None, level: int) -> bool:
    """Whether a stored log line answers a :meth:`JobStore.logs` query."""
    return (
        (since is None or entry["time"] >= since)
        and (job_id is None or entry["job_id"] == job_id)
        and LOG_LEVELS.get(entry["level"], 0) >= level
    )


class JobStore(Protocol):
    """Where jobs live. Every method is atomic on its own."""

    shared: bool
    """True when several API servers may use the store at once (so none may assume it is alone)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Return if the store answers; raise :class:`modelport.errors.Unavailable` if not."""

    async def insert(self, job: JobRecord, limit: int | None = None) -> JobRecord:
        """Store a new queued job and give it its queue ``seq``: greater than that of every
        earlier job of its endpoint (its queue's order; a store spread over several hash
        slots numbers each slot's endpoints apart, so ``seq`` orders nothing across them).

        If another job of the same endpoint has the same ``idempotency_key``, store nothing
        and return that job instead. With ``limit``, store nothing and raise
        :class:`modelport.errors.Overloaded` if the endpoint already has ``limit`` queued
        jobs (servers sharing a store need this; a server alone with its store counts).

        A store that is not ``shared`` also stores a job given as running (handed straight
        to a worker's waiting long poll: its ``worker_id``, ``attempts``, ``started_at`` and
        ``lease_until`` set), which no lease then takes.
        """

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def lease(
        self,
        endpoint: str,
        worker_id: str,
        limit: int,
        now: float,
        lease_until: float,
        revision: int | None = None,
    ) -> list[JobRecord]:
        """Move up to ``limit`` oldest queued jobs of ``endpoint`` to running for ``worker_id``
        (with ``revision``: only jobs of that revision, passing over the others).

        Each leased job has ``attempts`` incremented, ``started_at`` set to ``now`` and
        ``lease_until`` set; the jobs come back in queue order.
        """

    async def extend(self, worker_id: str, job_ids: Sequence[str], lease_until: float) -> list[str]:
        """Extend the leases this worker still holds; return the ids it still holds."""

    async def update(self, updates: Sequence[Update]) -> list[JobRecord | None]:
        """Apply each update whose expectation holds; None where it did not (or no such job)."""

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        """Running jobs whose lease ended before ``now``."""

    async def running(self, worker_id: str | None = None) -> list[JobRecord]:
        """Running jobs, all or those held by one worker."""

    async def position(self, job: JobRecord) -> int:
        """How many queued jobs of the same endpoint are ahead of this one."""

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        """Per endpoint, the number of ``queued`` and ``running`` jobs."""

    async def queued_job_bytes(self) -> dict[str, float]:
        """Per endpoint with queued jobs, the bytes one queued job takes in the store (a
        mean, possibly over a sample of the oldest)."""

    async def add_events(
        self,
        events: Sequence[Event],
        *,
        holder: str | None = None,
        lease_until: float = 0.0,
        renew_below: float | None = None,
    ) -> list[Event]:
        """Append events to their jobs' logs; return them with ids (1, 2, ... per job).

        With ``holder``, only the events of jobs that worker holds (running) are kept, and
        those jobs' leases are extended to ``lease_until``, as :meth:`extend` does: in one
        write where the store can. With ``renew_below`` too, a lease that already ends at or
        after it may be left as it is (a write saved per chunk of a stream); Redis, whose
        writes cost no more than its reads, extends them all.
        """

    async def events(self, job_id: str, after: int = 0, limit: int = 10_000) -> list[Event]:
        """A job's events with ``id > after``, oldest first."""

    async def purge(self, completed_before: float, limit: int, endpoint: str | None = None) -> int:
        """Delete up to ``limit`` final jobs (and their events) completed before the time,
        of one endpoint or of all."""

    async def oldest_queued(self, endpoint: str, limit: int) -> list[JobRecord]:
        """The first ``limit`` queued jobs of an endpoint, in queue order."""

    async def put_worker(self, worker: dict[str, Any], ttl: float) -> None:
        """Record a worker (keyed by ``worker["id"]``); forget it ``ttl`` s after the last put."""

    async def get_worker(self, worker_id: str) -> dict[str, Any] | None: ...

    async def list_workers(self) -> list[dict[str, Any]]: ...

    async def delete_worker(self, worker_id: str) -> None: ...

    async def put_blob(
        self, job_id: str, name: str, mime: str, data: bytes, ttl: float | None
    ) -> None:
        """Keep one file of a job's output (a large media value), until the job is purged
        (or ``ttl`` seconds, where the store cannot tie it to the job)."""

    async def get_blob(self, job_id: str, name: str) -> tuple[str, bytes] | None:
        """A file :meth:`put_blob` kept: its content type and bytes."""

    async def put_spec(self, spec: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        """Record an endpoint's spec (keyed by ``spec["name"]``) unless one is recorded already
        (``replace``: in any case); return the one recorded."""

    async def specs(self) -> list[dict[str, Any]]:
        """Every recorded endpoint spec."""

    async def cache_get(self, key: str) -> Any | None:
        """The value cached under ``key``, or None if there is none or it expired."""

    async def cache_add(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> Any | None:
        """Cache ``value`` under ``key`` for ``ttl`` seconds unless a live value is there;
        return that value (None when this one was stored). ``group`` (an endpoint) keeps at
        most ``max_entries`` entries: the oldest stored are dropped first."""

    async def cache_put(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` seconds, replacing what is there
        (bounded per ``group`` as :meth:`cache_add`)."""

    async def cache_delete(self, key: str, group: str) -> None:
        """Forget the value cached under ``key``."""

    async def put_delivery(self, delivery: dict[str, Any]) -> None:
        """Record a webhook delivery (keyed by ``delivery["id"]``, listed under
        ``delivery["job_id"]``); it is due at ``delivery["due"]`` (None: never again)."""

    async def claim_deliveries(
        self, now: float, limit: int, hold_until: float
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` deliveries due by ``now``, oldest due first, each made due again
        at ``hold_until`` (so one whose claimer dies is claimed again then)."""

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """A job's webhook deliveries, in the order they were first recorded."""

    async def publish(self, topic: str) -> None:
        """Tell every server sharing this store that ``topic`` changed (no-op if unshared)."""

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Have ``callback(topic)`` called, on the event loop, for topics others publish."""

    async def put_key(self, key: dict[str, Any]) -> None:
        """Record an API key (keyed by ``key["id"]``, found by ``key["hash"]``), replacing
        one with the same id."""

    async def get_key(self, key_id: str) -> dict[str, Any] | None: ...

    async def find_key(self, key_hash: str) -> dict[str, Any] | None:
        """The key whose ``hash`` this is."""

    async def list_keys(self) -> list[dict[str, Any]]:
        """Every key, oldest first."""

    async def delete_key(self, key_id: str) -> bool:
        """Forget a key (and its bucket); False if there was none."""

    async def touch_key(self, key_id: str, at: float) -> None:
        """Set a key's ``last_used`` (nothing if it is gone)."""

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
        """Atomically take one request from a bucket: :func:`modelport.keys.spend` applied to
        the bucket's stored state (a new bucket starts full)."""

    async def queued_by(self, owner: str) -> int:
        """How many queued jobs this owner has."""

    async def add_logs(
        self, endpoint: str, entries: Sequence[dict[str, Any]], bounds: LogBounds, now: float
    ) -> None:
        """Append log lines (``job_id``, ``level``, ``message``, ``time``, ``stream``) to an
        endpoint's log, each given the next ``id`` (1, 2, ... per endpoint); then drop the
        oldest lines beyond the bounds (and those older than ``now - bounds.max_age``)."""

    async def logs(
        self,
        endpoint: str,
        *,
        since: float | None = None,
        job_id: str | None = None,
        level: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """An endpoint's log lines, oldest first: those at ``time >= since``, of one job, of
        a level ranked ``level`` or above (:data:`LOG_LEVELS`); the newest ``limit``."""

    async def delete_logs(self, endpoint: str) -> int:
        """Forget an endpoint's log; how many lines there were."""
