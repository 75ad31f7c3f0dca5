"""The job state machine as data: the allowed moves, and one function per move that returns
the store :class:`~modelport.stores.base.Update` for it.

    queued ──lease──▶ running ──succeed──▶ succeeded
      │  ▲              │ ├────fail / time_out──▶ failed
      │  └─retry/requeue/release─┘ │
      ├──expire──▶ expired         │
      ├──refuse──▶ failed          │
      └──cancel──▶ cancelled ◀─────┘ (cancel)

These functions are the only code that knows which fields a move sets or clears; the broker
decides *when* a move happens, the store applies it atomically (compare-and-set on the
source states, the holding worker and the attempt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelport.stores.base import Update
from modelport.wire import JobRecord, JobStatus

QUEUED = JobStatus.QUEUED
RUNNING = JobStatus.RUNNING


@dataclass(frozen=True, slots=True)
class Move:
    """One allowed move: from any of ``sources`` to ``target``."""

    name: str
    sources: frozenset[JobStatus]
    target: JobStatus
    attempt_counted: bool = True
    """False for a move that hands a job back as if it never started (``release``)."""


def _move(name: str, sources: set[JobStatus], target: JobStatus, **kw: Any) -> Move:
    return Move(name, frozenset(sources), target, **kw)


MOVES: dict[str, Move] = {
    m.name: m
    for m in (
        _move("lease", {QUEUED}, RUNNING),  # applied by JobStore.lease, the one batch verb
        _move("succeed", {RUNNING}, JobStatus.SUCCEEDED),
        _move("fail", {RUNNING}, JobStatus.FAILED),
        _move("time_out", {RUNNING}, JobStatus.FAILED),
        _move("retry", {RUNNING}, QUEUED),
        _move("requeue", {RUNNING}, QUEUED),
        _move("release", {RUNNING}, QUEUED, attempt_counted=False),
        _move("cancel", {QUEUED, RUNNING}, JobStatus.CANCELLED),
        _move("expire", {QUEUED}, JobStatus.EXPIRED),
        _move("refuse", {QUEUED}, JobStatus.FAILED),
    )
}

ALLOWED: frozenset[tuple[JobStatus, JobStatus]] = frozenset(
    (source, m.target) for m in MOVES.values() for source in m.sources
)
"""Every (from, to) pair the state machine allows; a final state has no way out."""


def allowed(source: JobStatus, target: JobStatus) -> bool:
    return (source, target) in ALLOWED


def _queued(**changes: Any) -> dict[str, Any]:
    return {"status": QUEUED, "worker_id": None, "lease_until": None, "started_at": None, **changes}


def _final(status: JobStatus, now: float, **changes: Any) -> dict[str, Any]:
    return {"status": status, "completed_at": now, "lease_until": None, **changes}


def _held(
    move: str, job_id: str, worker_id: str | None, attempt: int | None, changes: Any
) -> Update:
    return Update(job_id, MOVES[move].sources, changes, worker_id=worker_id, attempt=attempt)


def succeed(job_id: str, worker_id: str, attempt: int, output: Any, now: float) -> Update:
    """The worker holding the job on this attempt finished it with ``output``."""
    changes = _final(JobStatus.SUCCEEDED, now, output=output, error=None)
    return _held("succeed", job_id, worker_id, attempt, changes)


def fail(job_id: str, worker_id: str | None, attempt: int, error: str, now: float) -> Update:
    """The job failed for good with ``error``."""
    return _held("fail", job_id, worker_id, attempt, _final(JobStatus.FAILED, now, error=error))


def time_out(job: JobRecord, limit: float, now: float) -> Update:
    """The job computed longer than ``limit`` seconds."""
    error = f"the job took longer than {limit:g} s (timeout)"
    changes = _final(JobStatus.FAILED, now, error=error)
    return _held("time_out", job.id, job.worker_id, job.attempts, changes)


def retry(job_id: str, worker_id: str, attempt: int, error: str) -> Update:
    """The model failed in a way worth another attempt: back in the queue, error kept."""
    return _held("retry", job_id, worker_id, attempt, _queued(error=error))


def requeue(job: JobRecord) -> Update:
    """The job's worker is gone (lease lost, left, restarted): back in the queue."""
    return _held("requeue", job.id, job.worker_id, job.attempts, _queued())


def release(job: JobRecord) -> Update:
    """The worker hands back a job it never started: the attempt does not count."""
    changes = _queued(attempts=job.attempts - 1)
    return _held("release", job.id, job.worker_id, job.attempts, changes)


def cancel(job_id: str, now: float, why: str = "cancelled by the client") -> Update:
    """The client (or an admin deleting its endpoint) cancelled the job, queued or running."""
    changes = _final(JobStatus.CANCELLED, now, error=why)
    return Update(job_id, MOVES["cancel"].sources, changes)


def expire(job: JobRecord, limit: float, now: float) -> Update:
    """No worker started the job within ``limit`` seconds of its submit."""
    error = f"no worker started the job within {limit:g} s (max_queue_time)"
    changes = {"status": JobStatus.EXPIRED, "completed_at": now, "error": error}
    return Update(job.id, MOVES["expire"].sources, changes, attempt=0)


def refuse(job: JobRecord, why: str, now: float) -> Update:
    """A queued job no worker can run any more (its endpoint's revision is gone): failed."""
    changes = {"status": JobStatus.FAILED, "completed_at": now, "error": why}
    return Update(job.id, MOVES["refuse"].sources, changes, attempt=job.attempts)


def lost(job: JobRecord, why: str, now: float) -> Update:
    """The job's worker is gone: requeued while attempts remain, else failed saying why."""
    if job.attempts < job.max_attempts:
        return requeue(job)
    error = f"gave up after {job.attempts} attempts: {why}"
    return fail(job.id, job.worker_id, job.attempts, error, now)
