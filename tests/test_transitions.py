"""The job state machine, tested from its table: each move's update on its own (no I/O), and
the same updates applied by every store (the contract: a store applies exactly the moves
the table allows)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelport.core import transitions
from modelport.core.transitions import ALLOWED, MOVES, allowed
from modelport.stores import JobStore, Update
from modelport.stores.base import CHANGEABLE
from modelport.wire import FINAL, JobRecord, JobStatus, new_job_id
from tests.test_stores import store  # noqa: F401  (the store contract's fixture: every backend)

Q, R = JobStatus.QUEUED, JobStatus.RUNNING
S, F, C, E = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED
NOW = 2_000.0
WORKER = "w1"

UPDATES: dict[str, Callable[[JobRecord], Update]] = {
    "succeed": lambda j: transitions.succeed(j.id, WORKER, j.attempts, {"ok": 1}, NOW),
    "fail": lambda j: transitions.fail(j.id, WORKER, j.attempts, "boom", NOW),
    "time_out": lambda j: transitions.time_out(j, 5.0, NOW),
    "retry": lambda j: transitions.retry(j.id, WORKER, j.attempts, "worth another try"),
    "requeue": transitions.requeue,
    "release": transitions.release,
    "cancel": lambda j: transitions.cancel(j.id, NOW),
    "expire": lambda j: transitions.expire(j, 5.0, NOW),
    "refuse": lambda j: transitions.refuse(j, "its endpoint's revision is gone", NOW),
}
"""Every move but ``lease`` (a store verb of its own), as the update for a given job."""


def record(status: JobStatus) -> JobRecord:
    """A job as it is in ``status`` after the usual way there (leased once by WORKER)."""
    job = JobRecord(id=new_job_id("echo"), endpoint="echo", input={"x": 1}, created_at=NOW - 10)
    if status is not Q and status is not E:
        job.attempts, job.worker_id, job.started_at, job.lease_until = 1, WORKER, NOW - 5, NOW + 60
    job.status = status
    if status.final:
        job.completed_at = NOW - 1
    return job


def test_the_table_whole() -> None:
    assert {(Q, R), (R, S), (R, F), (R, Q), (Q, C), (R, C), (Q, E), (Q, F)} == ALLOWED
    assert set(MOVES) == {"lease", *UPDATES}
    for name, move in MOVES.items():
        assert name == "lease" or callable(getattr(transitions, name)), name
        assert move.sources and not move.sources & FINAL, f"{name} leaves a final state"


@pytest.mark.parametrize("source", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_final_states_have_no_way_out(source: JobStatus, target: JobStatus) -> None:
    if source.final:
        assert not allowed(source, target)


@pytest.mark.parametrize("name", list(UPDATES))
def test_each_move_sets_and_clears_its_fields(name: str) -> None:
    move = MOVES[name]
    source = min(move.sources)  # any of them builds the same update
    job = record(source)
    update = UPDATES[name](job)
    assert update.job_id == job.id
    assert update.expect == move.sources
    assert update.changes["status"] is move.target
    assert set(update.changes) <= CHANGEABLE
    if move.target.final:
        assert update.changes["completed_at"] == NOW
        assert update.changes.get("lease_until", None) is None
    if move.target is Q:
        for cleared in ("worker_id", "lease_until", "started_at"):
            assert update.changes[cleared] is None, cleared
    if move.attempt_counted:
        assert "attempts" not in update.changes
    else:
        assert update.changes["attempts"] == job.attempts - 1
    if R in move.sources and name != "cancel":
        assert (update.worker_id, update.attempt) == (WORKER, job.attempts)


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("source", list(JobStatus))
def test_an_update_matches_exactly_the_sources_of_its_move(name: str, source: JobStatus) -> None:
    job = record(source)
    assert UPDATES[name](job).matches(job) == (source in MOVES[name].sources)


def test_lost_requeues_while_attempts_remain_then_fails() -> None:
    job = record(R)
    assert transitions.lost(job, "gone", NOW).changes["status"] is Q
    job.attempts = job.max_attempts
    last = transitions.lost(job, "gone", NOW)
    assert last.changes["status"] is F
    assert last.changes["error"] == f"gave up after {job.attempts} attempts: gone"


async def put_in(target: JobStore, status: JobStatus) -> JobRecord:
    """A stored job brought to ``status`` the way the broker would."""
    job = await target.insert(JobRecord(id=new_job_id("echo"), endpoint="echo", input={"x": 1}))
    if status is Q:
        return job
    if status is E:
        (moved,) = await target.update([Update(job.id, frozenset({Q}), {"status": E})])
        assert moved is not None
        return moved
    (leased,) = await target.lease("echo", WORKER, 1, NOW - 5, NOW + 60)
    if status is R:
        return leased
    changes: dict[str, Any] = {"status": status, "completed_at": NOW - 1, "lease_until": None}
    (moved,) = await target.update([Update(job.id, frozenset({R}), changes)])
    assert moved is not None
    return moved


@pytest.mark.parametrize("name", list(UPDATES))
@pytest.mark.parametrize("source", list(JobStatus))
async def test_every_store_applies_exactly_the_allowed_moves(
    store: JobStore,  # noqa: F811
    name: str,
    source: JobStatus,
) -> None:
    job = await put_in(store, source)
    update = UPDATES[name](job)
    (applied,) = await store.update([update])
    if source not in MOVES[name].sources:
        assert applied is None
        unchanged = await store.get(job.id)
        assert unchanged is not None and unchanged.status is source
        return
    assert applied is not None
    stored = await store.get(job.id)
    assert stored is not None
    for key, value in update.changes.items():
        assert getattr(stored, key) == value, key


@pytest.mark.parametrize("source", list(JobStatus))
async def test_every_store_leases_only_queued_jobs(
    store: JobStore,  # noqa: F811
    source: JobStatus,
) -> None:
    job = await put_in(store, source)
    leased = await store.lease("echo", "w2", 1, NOW, NOW + 60)
    assert [j.id for j in leased] == ([job.id] if allowed(source, R) else [])
    if leased:
        (got,) = leased
        assert (got.status, got.worker_id, got.attempts) == (R, "w2", job.attempts + 1)
        assert (got.started_at, got.lease_until) == (NOW, NOW + 60)
