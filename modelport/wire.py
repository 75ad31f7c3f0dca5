"""The wire contract: job states, the job record and the shapes workers exchange.

Defined once and shared by the server, the stores, the worker runner and the client.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})


def new_job_id() -> str:
    """A job id that sorts by creation time: 12 hex digits of milliseconds + 64 random bits."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(8)}"


@dataclass(slots=True)
class JobRecord:
    """One request to one endpoint, as the store keeps it."""

    id: str
    endpoint: str
    input: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    seq: int = 0
    output: Any = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int = 0
    max_attempts: int = 3
    worker_id: str | None = None
    lease_until: float | None = None
    idempotency_key: str | None = None

    def public(self, *, queue_position: int | None = None) -> dict[str, Any]:
        """The job as clients see it: no lease bookkeeping."""
        body: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "progress": self.progress,
            "attempts": self.attempts,
            "worker": self.worker_id,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "queue_time": _span(self.created_at, self.started_at),
            "compute_time": _span(self.started_at, self.completed_at),
        }
        if queue_position is not None:
            body["queue_position"] = queue_position
        return body

    def for_worker(self) -> dict[str, Any]:
        """The job as a worker receives it in a lease."""
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "input": self.input,
            "attempt": self.attempts,
            "lease_until": self.lease_until,
        }


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(end - start, 6)


@dataclass(slots=True)
class Event:
    """One entry in a job's event log: ``queued``, ``started``, ``progress``, ``output``
    (a streamed chunk), ``log``, or the final ``succeeded``/``failed``/``cancelled``/``expired``.

    ``type`` is the event's name (the wire's ``event`` key; :attr:`event` says the same).
    ``id`` counts 1, 2, 3, ... over a job's stored events (``progress``, ``output``,
    ``log``), so a client resumes after one with ``Last-Event-ID``; it is 0 for the state
    events (``queued``, ``started``, the final one), which are not stored and have no id.
    """

    job_id: str
    type: str
    data: Any = None
    id: int = 0
    time: float = field(default_factory=time.time)

    @property
    def event(self) -> str:
        """The event's name, as the wire calls it: the same as :attr:`type`."""
        return self.type


@dataclass(slots=True)
class LeasedJob:
    """A job a worker holds: what the runner needs to compute and report it."""

    id: str
    endpoint: str
    input: dict[str, Any]
    attempt: int
    lease_until: float


@dataclass(slots=True)
class Result:
    """A worker's final word on one leased job: an output, or an error message."""

    job_id: str
    endpoint: str
    attempt: int
    output: Any = None
    error: str | None = None
    retry: bool = False


@dataclass(slots=True)
class WorkerInfo:
    """What a worker says about itself when it registers."""

    name: str
    endpoints: list[str]
    max_batch_size: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
