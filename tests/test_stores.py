"""The JobStore contract: one suite, run against every backend.

A new backend joins by adding its URL to ``BACKENDS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import Overloaded, Unavailable
from modelport.stores import JobStore, Update, store_from_url
from modelport.stores.base import LogBounds
from modelport.stores.redis import RedisStore
from modelport.wire import Event, JobRecord, JobStatus, new_job_id

BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "memory": lambda request, tmp: "memory://",
    "sqlite": lambda request, tmp: f"sqlite:///{tmp / 'jobs.db'}",
    "redis": lambda request, tmp: str(request.getfixturevalue("redis_url")),
    "redis-cluster": lambda request, tmp: str(request.getfixturevalue("redis_cluster_url")),
    "redis-sentinel": lambda request, tmp: str(request.getfixturevalue("redis_sentinel_url")),
}

QUEUED = frozenset({JobStatus.QUEUED})
RUNNING = frozenset({JobStatus.RUNNING})
ACTIVE = QUEUED | RUNNING
NOW = 1_000.0
LEASE_UNTIL = NOW + 60


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    s = store_from_url(BACKENDS[request.param](request, tmp_path))
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def job(endpoint: str = "echo", **fields: Any) -> JobRecord:
    fields.setdefault("input", {"x": 1})
    return JobRecord(id=new_job_id(endpoint), endpoint=endpoint, created_at=NOW - 10, **fields)


async def insert(store: JobStore, n: int, endpoint: str = "echo") -> list[JobRecord]:
    return [await store.insert(job(endpoint, input={"n": i})) for i in range(n)]


async def lease_one(store: JobStore, worker: str = "w1", endpoint: str = "echo") -> JobRecord:
    (leased,) = await store.lease(endpoint, worker, 1, NOW, LEASE_UNTIL)
    return leased


def requeue(j: JobRecord) -> Update:
    changes = {"status": JobStatus.QUEUED, "worker_id": None, "lease_until": None}
    return Update(j.id, RUNNING, changes, worker_id=j.worker_id, attempt=j.attempts)


def ids(jobs: list[JobRecord]) -> list[str]:
    return [j.id for j in jobs]


async def test_insert_assigns_increasing_seq(store: JobStore) -> None:
    jobs = await insert(store, 3)
    seqs = [j.seq for j in jobs]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 3
    assert seqs[0] > 0
    other = await store.insert(job("other"))  # ordered within its own queue
    assert other.seq > 0
    later = await store.insert(job())
    assert later.seq > seqs[-1]


async def test_inserted_job_reads_back_equal(store: JobStore) -> None:
    original = job(input={"prompt": "a cat"}, max_attempts=5, idempotency_key="k1", owner="key-1")
    stored = await store.insert(original)
    got = await store.get(original.id)
    assert got == stored
    assert got is not None
    assert got.id == original.id
    assert got.endpoint == "echo"
    assert got.status is JobStatus.QUEUED
    assert got.input == {"prompt": "a cat"}
    assert got.created_at == NOW - 10
    assert got.max_attempts == 5
    assert got.idempotency_key == "k1"
    assert got.owner == "key-1"
    assert (got.attempts, got.worker_id, got.started_at, got.lease_until) == (0, None, None, None)
    assert (got.output, got.error, got.progress, got.completed_at) == (None, None, None, None)


@pytest.fixture(params=["memory", "sqlite"])
async def unshared(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    """A store only one server uses: the stores that take jobs inserted running."""
    s = store_from_url(BACKENDS[request.param](request, tmp_path))
    assert not s.shared
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_a_job_inserted_running_is_held_by_its_worker(unshared: JobStore) -> None:
    store = unshared
    queued = await store.insert(job())
    handed = job(status=JobStatus.RUNNING, worker_id="w1", attempts=1)
    handed.started_at, handed.lease_until = NOW, NOW + 10
    stored = await store.insert(handed)
    assert await store.get(handed.id) == stored
    assert (stored.status, stored.worker_id, stored.attempts) == (JobStatus.RUNNING, "w1", 1)
    assert (stored.started_at, stored.lease_until) == (NOW, NOW + 10)
    assert (await store.queue_depths())["echo"] == {"queued": 1, "running": 1}
    assert ids(await store.lease("echo", "w2", 10, NOW, LEASE_UNTIL)) == [queued.id]
    assert await store.lease("echo", "w2", 10, NOW, LEASE_UNTIL) == []
    assert ids(await store.running("w1")) == [handed.id]
    assert ids(await store.expired(NOW + 15, 100)) == [handed.id]


async def test_get_unknown_is_none(store: JobStore) -> None:
    assert await store.get("no-such-job") is None


async def test_idempotency_key_returns_the_existing_job(store: JobStore) -> None:
    first = await store.insert(job(idempotency_key="same"))
    again = await store.insert(job(idempotency_key="same", input={"x": 2}))
    assert again.id == first.id
    assert again.input == {"x": 1}
    assert await store.queue_depths() == {"echo": {"queued": 1, "running": 0}}
    elsewhere = await store.insert(job("other", idempotency_key="same"))
    assert elsewhere.id != first.id
    unkeyed = [await store.insert(job()) for _ in range(2)]
    assert unkeyed[0].id != unkeyed[1].id


async def test_inserts_of_one_turn_keep_their_order_and_each_its_own_row(
    store: JobStore,
) -> None:
    # Plain inserts, one with a key and one with a queue limit, all in one loop turn (the
    # sqlite store writes the plain ones of a turn in runs of one statement each).
    made = [
        job(input={"n": 0}),
        job(input={"n": 1}),
        job(input={"n": 2}, idempotency_key="k"),
        job(input={"n": 3}),
        job(input={"n": 4}),
    ]
    limits = [None, None, None, 100, None]
    stored = await asyncio.gather(
        *(store.insert(j, limit) for j, limit in zip(made, limits, strict=True))
    )
    assert [j.input["n"] for j in stored] == [0, 1, 2, 3, 4]
    seqs = [j.seq for j in stored]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    for j in stored:
        assert await store.get(j.id) == j  # its seq is its own row's
    leased = await store.lease("echo", "w1", 10, NOW, LEASE_UNTIL)
    assert ids(leased) == ids(stored)


async def test_concurrent_inserts_with_one_key_make_one_job(store: JobStore) -> None:
    stored = await asyncio.gather(
        *(store.insert(job(idempotency_key="race", input={"n": n})) for n in range(3))
    )
    assert len({j.id for j in stored}) == 1
    # Each caller sees the input the key was first given with (the core compares it).
    assert len({j.input["n"] for j in stored}) == 1
    assert await store.queue_depths() == {"echo": {"queued": 1, "running": 0}}


async def test_idempotency_key_still_returns_a_finished_job(store: JobStore) -> None:
    first = await store.insert(job(idempotency_key="k"))
    leased = await lease_one(store)
    done = {"status": JobStatus.SUCCEEDED, "output": {"y": 2}, "lease_until": None}
    await store.update([Update(leased.id, RUNNING, done)])
    again = await store.insert(job(idempotency_key="k"))
    assert again.id == first.id
    assert again.status is JobStatus.SUCCEEDED
    assert again.output == {"y": 2}


async def test_insert_with_a_limit_refuses_a_full_queue_and_stores_nothing(
    store: JobStore,
) -> None:
    outcomes = await asyncio.gather(
        *(store.insert(job(input={"n": i}), limit=3) for i in range(5)), return_exceptions=True
    )
    accepted = [o for o in outcomes if isinstance(o, JobRecord)]
    refused = [o for o in outcomes if isinstance(o, Overloaded)]
    assert (len(accepted), len(refused)) == (3, 2), outcomes
    assert "limit 3" in str(refused[0])
    assert await store.queue_depths() == {"echo": {"queued": 3, "running": 0}}
    for o in outcomes:
        if isinstance(o, Overloaded):
            continue
        assert await store.get(o.id) is not None  # type: ignore[union-attr]
    await store.insert(job("other"), limit=1)  # the limit is per endpoint
    await lease_one(store)  # running jobs do not count
    assert (await store.insert(job(), limit=3)).status is JobStatus.QUEUED
    with pytest.raises(Overloaded):
        await store.insert(job(), limit=3)
    # A repeated idempotency key finds its job even when the queue is full.
    keyed = await store.insert(job("keyed", idempotency_key="k"), limit=1)
    assert (await store.insert(job("keyed", idempotency_key="k"), limit=1)).id == keyed.id


async def test_lease_takes_oldest_first_up_to_limit(store: JobStore) -> None:
    jobs = await insert(store, 3)
    leased = await store.lease("echo", "w1", 2, NOW, LEASE_UNTIL)
    assert ids(leased) == ids(jobs[:2])
    for j in leased:
        assert j.status is JobStatus.RUNNING
        assert j.worker_id == "w1"
        assert j.attempts == 1
        assert j.started_at == NOW
        assert j.lease_until == LEASE_UNTIL
        assert await store.get(j.id) == j
    rest = await store.lease("echo", "w2", 10, NOW, LEASE_UNTIL)
    assert ids(rest) == [jobs[2].id]
    assert await store.lease("echo", "w3", 10, NOW, LEASE_UNTIL) == []


async def test_lease_respects_the_endpoint(store: JobStore) -> None:
    a = await insert(store, 2, "a")
    b = await insert(store, 1, "b")
    assert ids(await store.lease("b", "w1", 5, NOW, LEASE_UNTIL)) == ids(b)
    assert await store.lease("c", "w1", 5, NOW, LEASE_UNTIL) == []
    assert ids(await store.lease("a", "w1", 5, NOW, LEASE_UNTIL)) == ids(a)


async def test_lease_of_one_revision_passes_over_the_others_in_order(store: JobStore) -> None:
    jobs = [
        await store.insert(job(input={"n": i}, revision=1 + i % 2, model_version=f"v{1 + i % 2}"))
        for i in range(6)
    ]
    assert [j.revision for j in jobs] == [1, 2, 1, 2, 1, 2]
    got = await store.get(jobs[1].id)
    assert got is not None and (got.revision, got.model_version) == (2, "v2")
    second = await store.lease("echo", "w2", 2, NOW, LEASE_UNTIL, revision=2)
    assert ids(second) == [jobs[1].id, jobs[3].id]
    assert all(j.revision == 2 for j in second)
    assert await store.lease("echo", "w3", 5, NOW, LEASE_UNTIL, revision=3) == []
    assert ids(await store.lease("echo", "w1", 5, NOW, LEASE_UNTIL, revision=1)) == ids(jobs[0::2])
    assert ids(await store.lease("echo", "w2", 5, NOW, LEASE_UNTIL)) == [jobs[5].id]
    assert (await store.queue_depths())["echo"] == {"queued": 0, "running": 6}


async def test_a_leased_job_is_not_leased_twice(store: JobStore) -> None:
    jobs = await insert(store, 4)
    batches = await asyncio.gather(
        *(store.lease("echo", f"w{i}", 2, NOW, LEASE_UNTIL) for i in range(4))
    )
    leased = [j.id for batch in batches for j in batch]
    assert sorted(leased) == sorted(ids(jobs))
    assert len(set(leased)) == len(leased)


async def test_lease_skips_jobs_that_are_no_longer_queued(store: JobStore) -> None:
    jobs = await insert(store, 3)
    cancel = {"status": JobStatus.CANCELLED, "error": "cancelled"}
    (cancelled,) = await store.update([Update(jobs[0].id, ACTIVE, cancel)])
    assert cancelled is not None
    assert ids(await store.lease("echo", "w1", 5, NOW, LEASE_UNTIL)) == ids(jobs[1:])
    after = await store.get(jobs[0].id)
    assert after is not None
    assert after.status is JobStatus.CANCELLED
    assert after.attempts == 0


async def test_requeued_job_keeps_its_place_at_the_front(store: JobStore) -> None:
    jobs = await insert(store, 3)
    first = await lease_one(store)
    assert first.id == jobs[0].id
    (back,) = await store.update([requeue(first)])
    assert back is not None
    assert back.status is JobStatus.QUEUED
    assert back.worker_id is None
    assert back.attempts == 1
    assert await store.position(back) == 0
    assert await store.position(jobs[1]) == 1
    again = await store.lease("echo", "w2", 2, NOW + 1, LEASE_UNTIL + 1)
    assert ids(again) == ids(jobs[:2])
    assert again[0].attempts == 2
    assert again[0].worker_id == "w2"
    assert again[0].started_at == NOW + 1


async def test_update_is_compare_and_set(store: JobStore) -> None:
    await insert(store, 1)
    held = await lease_one(store, "w1")
    done = {"status": JobStatus.SUCCEEDED, "output": {"y": 1}, "completed_at": NOW + 5}
    refused = [
        Update(held.id, QUEUED, done),
        Update(held.id, RUNNING, done, worker_id="w2"),
        Update(held.id, RUNNING, done, worker_id="w1", attempt=2),
        Update("no-such-job", RUNNING, done),
    ]
    assert await store.update(refused) == [None, None, None, None]
    assert await store.get(held.id) == held

    (updated,) = await store.update([Update(held.id, RUNNING, done, worker_id="w1", attempt=1)])
    assert updated is not None
    assert updated.status is JobStatus.SUCCEEDED
    assert updated.output == {"y": 1}
    assert updated.completed_at == NOW + 5
    assert updated.worker_id == "w1"  # unchanged fields stay
    assert await store.get(held.id) == updated
    assert await store.update([Update(held.id, RUNNING, {"output": 2}, worker_id="w1")]) == [None]
    assert await store.get(held.id) == updated


async def test_update_applies_each_update_on_its_own(store: JobStore) -> None:
    await insert(store, 2)
    a, b = await store.lease("echo", "w1", 2, NOW, LEASE_UNTIL)
    results = await store.update(
        [
            Update(a.id, QUEUED, {"error": "not me"}),
            Update(b.id, RUNNING, {"progress": {"fraction": 0.5}}, worker_id="w1"),
        ]
    )
    assert results[0] is None
    assert results[1] is not None
    assert results[1].progress == {"fraction": 0.5}
    assert results[1].status is JobStatus.RUNNING
    assert await store.get(a.id) == a


async def test_updates_of_one_shape_each_find_their_job(store: JobStore) -> None:
    """A batch's results (the same fields, conditions and worker): each applies to its own
    job or is refused on its own, answered in the order given."""
    jobs = await insert(store, 5)
    held = await store.lease("echo", "w1", 4, NOW, LEASE_UNTIL)
    by_id = {j.id: j for j in held}

    def done(job_id: str, attempt: int, n: int) -> Update:
        changes = {"status": JobStatus.SUCCEEDED, "output": {"n": n}, "completed_at": NOW + n}
        return Update(job_id, RUNNING, changes, worker_id="w1", attempt=attempt)

    ids_ = [j.id for j in jobs]  # the last one is still queued
    updates = [done(ids_[3], 1, 3), done(ids_[0], 1, 0), done(ids_[1], 2, 1)]
    updates += [done(ids_[4], 1, 4), done(ids_[2], 1, 2), done("no-such-job", 1, 9)]
    results = await store.update(updates)
    assert [r.id if r else None for r in results] == [ids_[3], ids_[0], None, None, ids_[2], None]
    for r in results:
        if r is not None:
            assert r.status is JobStatus.SUCCEEDED and r.output == {"n": ids_.index(r.id)}
            assert r.input == by_id[r.id].input and r.worker_id == "w1"
    assert await store.get(ids_[1]) == by_id[ids_[1]]  # refused: another attempt
    assert (await store.queue_depths())["echo"] == {"queued": 1, "running": 1}


async def test_updates_naming_their_fields_in_another_order_each_apply_as_given(
    store: JobStore,
) -> None:
    await insert(store, 2)
    a, b = await store.lease("echo", "w1", 2, NOW, LEASE_UNTIL)
    first = {"status": JobStatus.SUCCEEDED, "output": {"y": "a"}, "completed_at": NOW + 1}
    second = {"completed_at": NOW + 2, "output": {"y": "b"}, "status": JobStatus.FAILED}
    got = await store.update(
        [
            Update(a.id, RUNNING, first, worker_id="w1"),
            Update(b.id, RUNNING, second, worker_id="w1"),
        ]
    )
    assert [(j.status, j.output, j.completed_at) for j in got if j is not None] == [
        (JobStatus.SUCCEEDED, {"y": "a"}, NOW + 1),
        (JobStatus.FAILED, {"y": "b"}, NOW + 2),
    ]


async def test_updates_that_set_a_field_to_none_for_some_jobs_only(store: JobStore) -> None:
    """One shape of update, a field None in some (the sqlite store writes a field None in
    every update of a statement as NULL in the statement itself)."""
    await insert(store, 4)
    held = await store.lease("echo", "w1", 4, NOW, LEASE_UNTIL)
    outputs = [None, {"y": 1}, None, {"y": 3}]
    changes = [
        {"status": JobStatus.SUCCEEDED, "output": out, "lease_until": None, "error": None}
        for out in outputs
    ]
    got = await store.update(
        [Update(j.id, RUNNING, c, worker_id="w1") for j, c in zip(held, changes, strict=True)]
    )
    for j, out in zip(got, outputs, strict=True):
        assert j is not None and (j.output, j.lease_until, j.error) == (out, None, None)
        assert await store.get(j.id) == j
    # one at a time, a None among values
    (more,) = await insert(store, 1)
    leased = await lease_one(store)
    assert leased.id == more.id
    progress = {"status": JobStatus.RUNNING, "progress": None, "lease_until": NOW + 5}
    (one,) = await store.update([Update(leased.id, RUNNING, progress, worker_id="w1")])
    assert one is not None and (one.progress, one.lease_until) == (None, NOW + 5)


async def test_update_without_changes_reports_whether_it_matches(store: JobStore) -> None:
    (queued,) = await insert(store, 1)
    assert await store.update([Update(queued.id, QUEUED)]) == [await store.get(queued.id)]
    assert await store.update([Update(queued.id, RUNNING)]) == [None]


async def test_extend_only_extends_jobs_the_worker_holds(store: JobStore) -> None:
    await insert(store, 3)
    mine = await lease_one(store, "w1")
    theirs = await lease_one(store, "w2")
    finished = await lease_one(store, "w1")
    await store.update([Update(finished.id, RUNNING, {"status": JobStatus.SUCCEEDED})])
    (queued,) = await insert(store, 1)

    held = await store.extend(
        "w1", [mine.id, theirs.id, finished.id, queued.id, "no-such-job"], NOW + 500
    )
    assert held == [mine.id]
    got_mine = await store.get(mine.id)
    got_theirs = await store.get(theirs.id)
    assert got_mine is not None and got_theirs is not None
    assert got_mine.lease_until == NOW + 500
    assert got_theirs.lease_until == LEASE_UNTIL
    assert await store.get(queued.id) == queued
    assert await store.extend("w1", [], NOW + 600) == []


async def test_expired_returns_running_jobs_whose_lease_ended(store: JobStore) -> None:
    await insert(store, 4)
    (early,) = await store.lease("echo", "w1", 1, NOW, NOW + 10)
    (late,) = await store.lease("echo", "w2", 1, NOW, NOW + 20)
    (done,) = await store.lease("echo", "w3", 1, NOW, NOW + 5)
    await store.update([Update(done.id, RUNNING, {"status": JobStatus.SUCCEEDED})])

    assert await store.expired(NOW + 5, 100) == []
    assert await store.expired(NOW + 10, 100) == []  # ends at, not before, now
    assert ids(await store.expired(NOW + 15, 100)) == [early.id]
    assert sorted(ids(await store.expired(NOW + 25, 100))) == sorted([early.id, late.id])
    assert len(await store.expired(NOW + 25, 1)) == 1
    (still,) = await store.expired(NOW + 15, 100)
    assert still.status is JobStatus.RUNNING
    assert still.worker_id == "w1"


async def test_extended_lease_is_not_expired(store: JobStore) -> None:
    await insert(store, 1)
    (held,) = await store.lease("echo", "w1", 1, NOW, NOW + 10)
    await store.extend("w1", [held.id], NOW + 30)
    assert await store.expired(NOW + 20, 100) == []
    assert ids(await store.expired(NOW + 31, 100)) == [held.id]


async def test_running_lists_all_or_one_workers_jobs(store: JobStore) -> None:
    await insert(store, 5)
    a1, a2 = await store.lease("echo", "w1", 2, NOW, LEASE_UNTIL)
    b = await lease_one(store, "w2")
    done = await lease_one(store, "w2")
    await store.update([Update(done.id, RUNNING, {"status": JobStatus.FAILED})])

    assert sorted(ids(await store.running())) == sorted([a1.id, a2.id, b.id])
    assert sorted(ids(await store.running("w1"))) == sorted([a1.id, a2.id])
    assert ids(await store.running("w2")) == [b.id]
    assert await store.running("nobody") == []


async def test_position_counts_queued_jobs_ahead(store: JobStore) -> None:
    jobs = await insert(store, 4)
    (elsewhere,) = await insert(store, 1, "other")
    assert [await store.position(j) for j in jobs] == [0, 1, 2, 3]
    assert await store.position(elsewhere) == 0
    await lease_one(store)
    cancel = {"status": JobStatus.CANCELLED}
    await store.update([Update(jobs[2].id, QUEUED, cancel)])
    assert await store.position(jobs[1]) == 0
    assert await store.position(jobs[3]) == 1


async def test_position_deep_in_a_long_queue(store: JobStore) -> None:
    jobs = await asyncio.gather(*(store.insert(job(input={"n": i})) for i in range(5000)))
    await store.lease("echo", "w1", 10, NOW, LEASE_UNTIL)
    await store.update([Update(jobs[100].id, QUEUED, {"status": JobStatus.CANCELLED})])
    assert await store.position(jobs[50]) == 40
    assert await store.position(jobs[4500]) == 4489
    assert await store.position(jobs[-1]) == 4988
    assert await store.queue_depths() == {"echo": {"queued": 4989, "running": 10}}


async def test_queue_depths_count_queued_and_running_per_endpoint(store: JobStore) -> None:
    assert await store.queue_depths() == {}
    await insert(store, 4, "a")
    await insert(store, 1, "b")
    await insert(store, 1, "c")
    await store.lease("a", "w1", 1, NOW, LEASE_UNTIL)
    finished = await lease_one(store, "w1", "a")
    await store.update([Update(finished.id, RUNNING, {"status": JobStatus.SUCCEEDED})])
    c = await lease_one(store, "w1", "c")
    await store.update([Update(c.id, RUNNING, {"status": JobStatus.FAILED})])

    depths = await store.queue_depths()
    assert depths["a"] == {"queued": 2, "running": 1}
    assert depths["b"] == {"queued": 1, "running": 0}
    assert depths.get("c", {"queued": 0, "running": 0}) == {"queued": 0, "running": 0}


NESTED: dict[str, Any] = {
    "text": 'héllo wörld — 世界 🎉 \u0000 "quoted" \\ back',
    "floats": [0.1, -0.0, 1e-300, 1.7976931348623157e308, 2.5, 1.0],
    "ints": [0, -7, 2**53 + 1, 2**63 - 1, -(2**63)],
    "flags": [True, False, None],
    "nested": {"deep": [[[]], {"a": {"b": {"c": ["d"]}}}], "empty": {}},
    "ключ": "значение",
}


def assert_same_json(got: Any, want: Any) -> None:
    """Equal, and with the same types (so 1.0 stays a float and True stays a bool)."""
    assert type(got) is type(want), (got, want)
    if isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            assert_same_json(got[key], want[key])
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_json(g, w)
    else:
        assert got == want


async def test_events_count_from_one_and_resume_after_any_id(store: JobStore) -> None:
    (j,) = await insert(store, 1)
    stored = await store.add_events([Event(j.id, "output", f"c{i}") for i in range(3)])
    assert [e.id for e in stored] == [1, 2, 3]
    assert [e.data for e in await store.events(j.id, 1)] == ["c1", "c2"]
    assert [e.id for e in await store.events(j.id, 0, limit=2)] == [1, 2]
    # Any id a client may resume after (up to 2**63 - 1) is an empty answer, not an error.
    for after in (3, 10**6, 2**63 - 10_000, 2**63 - 1):
        assert await store.events(j.id, after) == []


async def test_events_for_a_holder_keep_only_its_jobs_and_extend_their_leases(
    store: JobStore,
) -> None:
    await insert(store, 3)
    mine, theirs = await lease_one(store, "w1"), await lease_one(store, "w2")
    (queued,) = await store.oldest_queued("echo", 10)
    sent = [Event(j.id, "output", j.id[-4:]) for j in (mine, theirs, queued, mine)]
    kept = await store.add_events(sent, holder="w1", lease_until=LEASE_UNTIL + 30)
    assert [(e.job_id, e.id) for e in kept] == [(mine.id, 1), (mine.id, 2)]
    assert [e.data for e in await store.events(mine.id)] == [mine.id[-4:]] * 2
    assert await store.events(theirs.id) == await store.events(queued.id) == []
    leases = {j.id: j.lease_until for j in await store.running()}
    assert leases == {mine.id: LEASE_UNTIL + 30, theirs.id: LEASE_UNTIL}


async def test_events_renew_only_the_leases_that_end_before_renew_below(
    store: JobStore,
) -> None:
    """A stream's chunks come many a second: each need not rewrite its job's lease while
    half of it is left (Redis rewrites it: a write costs it no more than a read)."""
    await insert(store, 2)
    soon, late = await lease_one(store), await lease_one(store)
    await store.extend("w1", [late.id], LEASE_UNTIL + 40)
    sent = [Event(j.id, "output", "c") for j in (soon, late)]
    kept = await store.add_events(
        sent, holder="w1", lease_until=LEASE_UNTIL + 60, renew_below=LEASE_UNTIL + 30
    )
    assert sorted(e.job_id for e in kept) == sorted([soon.id, late.id])
    leases = {j.id: j.lease_until for j in await store.running()}
    renewed_late = LEASE_UNTIL + 60 if isinstance(store, RedisStore) else LEASE_UNTIL + 40
    assert leases == {soon.id: LEASE_UNTIL + 60, late.id: renewed_late}
    assert await store.add_events(sent, holder="w2", renew_below=LEASE_UNTIL) == []


async def test_input_output_and_progress_round_trip(store: JobStore) -> None:
    inserted = await store.insert(job(input=NESTED))
    got = await store.get(inserted.id)
    assert got is not None
    assert_same_json(got.input, NESTED)

    held = await lease_one(store)
    assert_same_json(held.input, NESTED)
    progress = {"fraction": 0.25, "message": "étape 1/4", "data": {"step": 1, "preview": NESTED}}
    await store.update([Update(held.id, RUNNING, {"progress": progress})])
    output = {"images": ["🖼"], "scores": [0.5, 1.0], "meta": NESTED}
    done = {"status": JobStatus.SUCCEEDED, "output": output}
    (finished,) = await store.update([Update(held.id, RUNNING, done)])
    assert finished is not None
    for record in (finished, await store.get(held.id)):
        assert record is not None
        assert_same_json(record.output, output)
        assert_same_json(record.progress, progress)
        assert_same_json(record.input, NESTED)


@pytest.mark.parametrize("output", [0, 0.0, False, "", [], {}, "plain", [1, "a"]])
async def test_non_object_outputs_round_trip(store: JobStore, output: Any) -> None:
    await insert(store, 1)
    held = await lease_one(store)
    await store.update(
        [Update(held.id, RUNNING, {"status": JobStatus.SUCCEEDED, "output": output})]
    )
    got = await store.get(held.id)
    assert got is not None
    assert_same_json(got.output, output)


async def test_integers_beyond_64_bits_are_refused(store: JobStore) -> None:
    """Request validation refuses integers beyond 64 bits; a store handed one refuses it too."""
    with pytest.raises(ValueError, match="64-bit"):
        await store.insert(job(input={"n": 2**64, "neg": -(2**70)}))


async def test_a_job_that_cannot_be_stored_fails_alone(store: JobStore) -> None:
    """Jobs inserted at the same moment are independent: one bad input fails only itself."""
    good = job(input={"n": 1})
    bad = job(input={"n": 2**64})
    outcomes = await asyncio.gather(store.insert(good), store.insert(bad), return_exceptions=True)
    assert isinstance(outcomes[0], JobRecord), outcomes[0]
    assert await store.get(good.id) is not None


async def test_endpoint_specs_first_writer_wins_unless_replaced(store: JobStore) -> None:
    first, second = {"name": "e", "version": "1"}, {"name": "e", "version": "2"}
    assert await store.put_spec(first) == first
    assert await store.put_spec(second) == first
    assert await store.put_spec(second, replace=True) == second
    await store.put_spec({"name": "d", "inputs": {"x": {"type": "integer"}}})
    assert await store.specs() == [{"name": "d", "inputs": {"x": {"type": "integer"}}}, second]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_durable_stores_keep_jobs_across_close_and_reopen(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = BACKENDS[backend](request, tmp_path)
    first = store_from_url(url)
    await first.open()
    jobs = [await first.insert(job(input={"n": i}, idempotency_key=f"k{i}")) for i in range(3)]
    held = await lease_one(first)
    cancel = {"status": JobStatus.CANCELLED, "error": "stop"}
    assert await first.update([Update(jobs[1].id, QUEUED, cancel)]) != [None]
    before = {j.id: await first.get(j.id) for j in jobs}
    await first.close()

    second = store_from_url(url)
    await second.open()
    try:
        assert {j.id: await second.get(j.id) for j in jobs} == before
        assert ids(await second.running("w1")) == [held.id]
        assert await second.queue_depths() == {"echo": {"queued": 1, "running": 1}}
        assert (await second.insert(job(idempotency_key="k0"))).id == jobs[0].id
        newer = await second.insert(job())
        assert newer.seq > jobs[-1].seq
        assert ids(await second.lease("echo", "w2", 5, NOW, LEASE_UNTIL)) == [
            jobs[2].id,
            newer.id,
        ]
    finally:
        await second.close()


async def test_sqlite_recounts_a_file_written_before_it_kept_counts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = store_from_url(f"sqlite:///{path}")
    await first.open()
    await insert(first, 3)
    await lease_one(first)
    await first.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            "DROP TRIGGER jobs_count_insert; DROP TRIGGER jobs_count_leave;"
            " DROP TRIGGER jobs_count_enter; DROP TRIGGER jobs_count_delete; DROP TABLE counts;"
        )
    second = store_from_url(f"sqlite:///{path}")
    await second.open()
    try:
        assert await second.queue_depths() == {"echo": {"queued": 2, "running": 1}}
        await insert(second, 1)
        assert await second.queue_depths() == {"echo": {"queued": 3, "running": 1}}
    finally:
        await second.close()


async def earlier_file(tmp_path: Path, script: str) -> tuple[Path, JobRecord]:
    """A sqlite file holding one queued job, then changed by ``script`` to look as an earlier
    version of the store wrote it."""
    path = tmp_path / "old.db"
    first = store_from_url(f"sqlite:///{path}")
    await first.open()
    (old,) = await insert(first, 1)
    await first.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(script)
    return path, old


async def test_sqlite_reads_a_file_written_before_jobs_had_revisions(tmp_path: Path) -> None:
    path, old = await earlier_file(
        tmp_path,
        "ALTER TABLE jobs DROP COLUMN revision; ALTER TABLE jobs DROP COLUMN model_version;",
    )
    second = store_from_url(f"sqlite:///{path}")
    await second.open()
    try:
        got = await second.get(old.id)
        assert got is not None and (got.revision, got.model_version) == (1, None)
        assert ids(await second.lease("echo", "w", 5, NOW, LEASE_UNTIL, revision=1)) == [old.id]
    finally:
        await second.close()


async def test_sqlite_queue_indexes_hold_queued_jobs_only(tmp_path: Path) -> None:
    """A file with the earlier whole-table queue indexes gets the partial ones: finishing a
    job touches no queue index, and the queue's reads still use an index."""
    path, old = await earlier_file(
        tmp_path,
        "DROP INDEX jobs_queued; DROP INDEX jobs_queued_owner;"
        " CREATE INDEX jobs_queue ON jobs (endpoint, status, seq);"
        " CREATE INDEX jobs_owner ON jobs (owner) WHERE status = 'queued';",
    )
    second = store_from_url(f"sqlite:///{path}")
    await second.open()
    try:
        assert ids(await second.lease("echo", "w", 5, NOW, LEASE_UNTIL)) == [old.id]
        await second.insert(job("echo", owner="key1"))
        assert await second.queued_by("key1") == 1
    finally:
        await second.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        indexes = {r[0]: r[1] for r in db.execute("SELECT name, sql FROM sqlite_master")}
        assert "jobs_queue" not in indexes and "jobs_owner" not in indexes
        assert "WHERE status = 'queued'" in indexes["jobs_queued"]
        assert "owner IS NOT NULL" in indexes["jobs_queued_owner"]
        plans = {
            "lease": "SELECT seq FROM jobs WHERE endpoint = 'echo' AND status = 'queued'"
            " ORDER BY seq LIMIT 5",
            "queued_by": "SELECT count(*) FROM jobs WHERE owner = 'key1' AND status = 'queued'",
        }
        used = {
            name: " ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
            for name, sql in plans.items()
        }
        assert "jobs_queued " in used["lease"] + " ", used
        assert "jobs_queued_owner" in used["queued_by"], used


async def redis_store(url: str) -> JobStore:
    s = store_from_url(url)
    await s.open()
    return s


async def test_redis_announcements_reach_the_other_servers(redis_url: str) -> None:
    await announcements_reach_the_other(await redis_store(redis_url), await redis_store(redis_url))


async def announcements_reach_the_other(first: JobStore, second: JobStore) -> None:
    """What ``first`` publishes, ``second`` hears (both open; both closed after)."""
    try:
        heard: asyncio.Queue[str] = asyncio.Queue()
        second.subscribe(heard.put_nowait)
        # The subscription is made in the background: publish until it is heard (bounded).
        async with asyncio.timeout(10):
            while heard.empty():
                await first.publish("q:echo")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await heard.get()
                        break
        await first.publish("j:abc")
        async with asyncio.timeout(5):
            while (topic := await heard.get()) != "j:abc":
                assert topic == "q:echo"
    finally:
        await first.close()
        await second.close()


async def test_redis_prefixes_keep_deployments_apart(redis_server: str) -> None:
    a = await redis_store(redis_server + "?prefix=deploy-a-" + new_job_id("x") + ":")
    b = await redis_store(redis_server + "?prefix=deploy-b-" + new_job_id("x") + ":")
    try:
        stored = await a.insert(job())
        assert await b.get(stored.id) is None
        assert await b.queue_depths() == {}
        assert await b.lease("echo", "w1", 10, NOW, LEASE_UNTIL) == []
        assert ids(await a.lease("echo", "w1", 10, NOW, LEASE_UNTIL)) == [stored.id]
    finally:
        await a.close()
        await b.close()


async def test_redis_keeps_floats_and_text_exactly(redis_url: str) -> None:
    s = await redis_store(redis_url)
    try:
        data = {"x": 0.1 + 0.2, "tiny": 5e-324, "big": 1.7976931348623157e308, "s": "é\u2603\n"}
        stored = await s.insert(job(input=data))
        assert (await s.get(stored.id)).input == data  # type: ignore[union-attr]
    finally:
        await s.close()


async def test_redis_going_away_is_unavailable_then_recovers(own_redis: Any) -> None:
    s = await redis_store(own_redis.url)
    try:
        stored = await s.insert(job())
        own_redis.kill()
        with pytest.raises(Unavailable, match="redis store"):
            await s.get(stored.id)
        with pytest.raises(Unavailable):
            await s.insert(job())
        with pytest.raises(Unavailable):
            await s.ping()
        own_redis.start()  # the same port, empty (it keeps nothing on disk)
        await s.ping()
        again = await s.insert(job())
        assert (await s.get(again.id)) is not None
    finally:
        await s.close()


@pytest.mark.parametrize("backend", ["redis", "redis-cluster", "redis-sentinel"])
async def test_redis_closed_under_commands_in_flight_leaves_no_connection_open(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # A command that loses its connection to close() reconnects (redis-py retries); left
    # open, that connection outlived the event loop and failed a later test with an
    # unraisable ResourceWarning ("loop is closed", from asyncio's StreamWriter).
    before = open_stream_writers()
    s = await redis_store(BACKENDS[backend](request, tmp_path))
    flying = [asyncio.ensure_future(s.publish("q:echo")) for _ in range(3)]
    await s.close()
    for outcome in await asyncio.gather(*flying, return_exceptions=True):
        assert outcome is None or isinstance(outcome, Unavailable), repr(outcome)
    assert open_stream_writers() - before == set()


def open_stream_writers() -> set[int]:
    """The asyncio stream writers alive in this process whose socket is still open."""
    gc.collect()
    return {
        id(o)
        for o in gc.get_objects()
        if isinstance(o, asyncio.StreamWriter) and not o.transport.is_closing()
    }


async def test_cache_put_get_and_delete(store: JobStore) -> None:
    assert await store.cache_get("k1") is None
    await store.cache_put("k1", {"output": [1, 2.5, "x"]}, 60, "echo")
    assert await store.cache_get("k1") == {"output": [1, 2.5, "x"]}
    await store.cache_put("k1", {"output": "again"}, 60, "echo")
    assert await store.cache_get("k1") == {"output": "again"}
    await store.cache_delete("k1", "echo")
    assert await store.cache_get("k1") is None


async def test_cache_add_keeps_the_first_value(store: JobStore) -> None:
    assert await store.cache_add("k", {"job": "a"}, 60, "echo") is None
    assert await store.cache_add("k", {"job": "b"}, 60, "echo") == {"job": "a"}
    assert await store.cache_get("k") == {"job": "a"}


async def test_cache_values_expire(store: JobStore) -> None:
    await store.cache_put("short", 1, 0.05, "echo")
    await store.cache_put("long", 2, 60, "echo")
    deadline = asyncio.get_running_loop().time() + 5
    while await store.cache_get("short") is not None:
        assert asyncio.get_running_loop().time() < deadline, "the value never expired"
        await asyncio.sleep(0.01)
    assert await store.cache_get("long") == 2
    assert await store.cache_add("short", 3, 60, "echo") is None  # an expired value is absent
    assert await store.cache_get("short") == 3


async def test_cache_keeps_at_most_max_entries_per_group_oldest_dropped(store: JobStore) -> None:
    for i in range(5):
        await store.cache_put(f"e{i}", i, 60, "echo", max_entries=3)
    await store.cache_put("o0", "other", 60, "other", max_entries=1)
    assert [await store.cache_get(f"e{i}") for i in range(5)] == [None, None, 2, 3, 4]
    assert await store.cache_get("o0") == "other"
    await store.cache_put("e2", 22, 60, "echo", max_entries=3)  # stored again: newest now
    await store.cache_add("e5", 5, 60, "echo", max_entries=3)
    assert [await store.cache_get(f"e{i}") for i in range(2, 6)] == [22, None, 4, 5]


def delivery(job_id: str, n: int, due: float | None, **extra: Any) -> dict[str, Any]:
    return {"id": f"msg_{job_id}_{n}", "job_id": job_id, "due": due, "attempts": [], **extra}


async def test_deliveries_are_claimed_when_due_and_held(store: JobStore) -> None:
    await store.put_delivery(delivery("j1", 1, NOW - 5, event="started"))
    await store.put_delivery(delivery("j1", 2, NOW + 50, event="completed"))
    await store.put_delivery(delivery("j2", 1, NOW - 10, body={"x": [1, 2.5]}))
    await store.put_delivery(delivery("j2", 2, None))  # delivered: never due again
    claimed = await store.claim_deliveries(NOW, 10, NOW + 30)
    assert [d["id"] for d in claimed] == ["msg_j2_1", "msg_j1_1"]
    assert claimed[0]["body"] == {"x": [1, 2.5]} and claimed[0]["due"] == NOW + 30
    assert await store.claim_deliveries(NOW, 10, NOW + 30) == []  # held
    again = await store.claim_deliveries(NOW + 40, 10, NOW + 70)  # the hold ran out
    assert {d["id"] for d in again} == {"msg_j1_1", "msg_j2_1"}
    done = {**claimed[1], "due": None, "state": "delivered"}
    await store.put_delivery(done)
    listed = await store.deliveries("j1")
    assert [(d["id"], d.get("state")) for d in listed] == [
        ("msg_j1_1", "delivered"),
        ("msg_j1_2", None),
    ]
    assert await store.deliveries("nope") == []
    assert [d["id"] for d in await store.claim_deliveries(NOW + 100, 10, NOW + 130)] == [
        "msg_j1_2",
        "msg_j2_1",
    ]


async def test_expired_cache_entries_do_not_count_against_max_entries(store: JobStore) -> None:
    await store.cache_put("gone", 0, 0.05, "echo", max_entries=2)
    deadline = asyncio.get_running_loop().time() + 5
    while await store.cache_get("gone") is not None:
        assert asyncio.get_running_loop().time() < deadline, "the value never expired"
        await asyncio.sleep(0.01)
    await store.cache_put("a", 1, 60, "echo", max_entries=2)
    await store.cache_put("b", 2, 60, "echo", max_entries=2)
    assert [await store.cache_get(k) for k in ("a", "b")] == [1, 2]


def api_key(name: str = "app", **fields: Any) -> dict[str, Any]:
    from modelport.keys import new_key

    key, _ = new_key("client", name=name, **fields)
    return key.to_dict()


async def test_keys_are_found_by_hash_and_listed_oldest_first(store: JobStore) -> None:
    first = api_key("first", endpoints=["echo"], rate="5/s", quota="100/day", now=NOW)
    second = api_key("second", now=NOW + 1)
    await store.put_key(second)
    await store.put_key(first)
    assert await store.find_key(first["hash"]) == first
    assert await store.get_key(second["id"]) == second
    assert await store.find_key("0" * 64) is None
    assert [k["id"] for k in await store.list_keys()] == [first["id"], second["id"]]


async def test_a_deleted_key_is_gone_everywhere(store: JobStore) -> None:
    key = api_key()
    await store.put_key(key)
    assert await store.delete_key(key["id"]) is True
    assert await store.delete_key(key["id"]) is False
    assert await store.find_key(key["hash"]) is None
    assert await store.get_key(key["id"]) is None
    assert await store.list_keys() == []
    await store.touch_key(key["id"], NOW)
    assert await store.find_key(key["hash"]) is None
    assert await store.list_keys() == []


async def test_touch_records_last_use(store: JobStore) -> None:
    key = api_key()
    await store.put_key(key)
    await store.touch_key(key["id"], NOW + 5.5)
    found = await store.find_key(key["hash"])
    assert found is not None and found["last_used"] == NOW + 5.5
    (listed,) = await store.list_keys()
    assert listed["last_used"] == NOW + 5.5


async def test_put_key_replaces_the_hash_it_is_found_by(store: JobStore) -> None:
    key = api_key()
    await store.put_key(key)
    renewed = {**key, "hash": "f" * 64}
    await store.put_key(renewed)
    assert await store.find_key(key["hash"]) is None
    assert await store.find_key("f" * 64) == renewed


async def test_spend_is_a_token_bucket_with_burst(store: JobStore) -> None:
    def take(now: float) -> Any:
        return store.spend("k1", now, 2.0, 3, None, 0, DAY_END)

    assert [(await take(NOW)).allowed for _ in range(4)] == [True, True, True, False]
    refused = await take(NOW)
    assert refused.retry_after == pytest.approx(0.5)
    assert (await take(NOW + 0.5)).allowed  # one token back after 1/rate s
    assert not (await take(NOW + 0.5)).allowed
    later = await take(NOW + 100)  # refills to the burst, never beyond
    assert later.allowed and later.tokens == pytest.approx(2.0)
    other = await store.spend("k2", NOW, 2.0, 3, None, 0, DAY_END)
    assert other.allowed and other.tokens == pytest.approx(2.0)


DAY_END = NOW + 3600


async def test_spend_counts_a_daily_quota_that_a_new_window_resets(store: JobStore) -> None:
    answers = [await store.spend("k", NOW + i, None, 1, 3, 7, DAY_END) for i in range(4)]
    assert [a.allowed for a in answers] == [True, True, True, False]
    assert [a.used for a in answers] == [1, 2, 3, 3]
    assert answers[3].retry_after == pytest.approx(DAY_END - (NOW + 3))
    tomorrow = await store.spend("k", DAY_END + 1, None, 1, 3, 8, DAY_END + 86_400)
    assert tomorrow.allowed and tomorrow.used == 1


async def test_a_rate_refusal_uses_no_quota_and_a_quota_refusal_no_token(
    store: JobStore,
) -> None:
    assert (await store.spend("k", NOW, 1.0, 1, 5, 0, DAY_END)).used == 1
    refused = await store.spend("k", NOW, 1.0, 1, 5, 0, DAY_END)
    assert not refused.allowed and refused.used == 1
    for i in range(4):
        assert (await store.spend("k", NOW + 1 + i, 1.0, 1, 5, 0, DAY_END)).allowed
    over = await store.spend("k", NOW + 10, 1.0, 1, 5, 0, DAY_END)
    assert not over.allowed and over.tokens == pytest.approx(1.0)


async def test_jobs_keep_their_owner_and_queued_jobs_count_per_owner(store: JobStore) -> None:
    mine = [await store.insert(job(owner="key_a")) for _ in range(3)]
    await store.insert(job(owner="key_b"))
    await store.insert(job())
    got = await store.get(mine[0].id)
    assert got is not None and got.owner == "key_a"
    assert await store.queued_by("key_a") == 3
    assert await store.queued_by("key_b") == 1
    assert await store.queued_by("nobody") == 0
    leased = await store.lease("echo", "w1", 1, NOW, LEASE_UNTIL)
    assert leased[0].owner == "key_a"
    assert await store.queued_by("key_a") == 2
    await store.update([requeue(leased[0])])
    assert await store.queued_by("key_a") == 3
    cancel = {"status": JobStatus.CANCELLED, "completed_at": NOW}
    await store.update([Update(mine[2].id, QUEUED, cancel)])
    assert await store.queued_by("key_a") == 2


async def test_queued_job_bytes_grow_with_the_input(store: JobStore) -> None:
    assert await store.queued_job_bytes() == {}
    await store.insert(job("small", input={"t": "x"}))
    await store.insert(job("large", input={"t": "x" * 10_000}))
    sizes = await store.queued_job_bytes()
    assert set(sizes) == {"small", "large"}
    assert sizes["large"] > 10_000 > sizes["small"]
    await store.lease("large", "w1", 1, NOW, LEASE_UNTIL)
    assert set(await store.queued_job_bytes()) == {"small"}


def log_line(job_id: str, message: str, level: str = "info", at: float = NOW) -> dict[str, Any]:
    return {"job_id": job_id, "level": level, "message": message, "time": at, "stream": "stdout"}


async def test_logs_are_kept_per_endpoint_with_ids_and_filtered(store: JobStore) -> None:
    bounds = LogBounds()
    await store.add_logs("a", [log_line("j1", "one"), log_line("j2", "two", "error")], bounds, NOW)
    await store.add_logs("a", [log_line("j1", "three", "warning", NOW + 1)], bounds, NOW)
    await store.add_logs("b", [log_line("j3", "other")], bounds, NOW)
    lines = await store.logs("a")
    assert [(e["id"], e["message"]) for e in lines] == [(1, "one"), (2, "two"), (3, "three")]
    assert lines[0] == {**log_line("j1", "one"), "id": 1}
    assert [e["message"] for e in await store.logs("a", job_id="j1")] == ["one", "three"]
    assert [e["message"] for e in await store.logs("a", level=30)] == ["two", "three"]
    assert [e["message"] for e in await store.logs("a", since=NOW + 0.5)] == ["three"]
    assert [e["message"] for e in await store.logs("a", limit=2)] == ["two", "three"]
    assert [e["message"] for e in await store.logs("b")] == ["other"]
    assert await store.logs("c") == []
    assert await store.delete_logs("a") == 3
    assert await store.logs("a") == []
    assert [e["message"] for e in await store.logs("b")] == ["other"]
    await store.add_logs("a", [log_line("j1", "after")], bounds, NOW)
    assert [(e["id"], e["message"]) for e in await store.logs("a")] == [(4, "after")]


async def test_logs_are_bounded_by_count_bytes_and_age(store: JobStore) -> None:
    by_count = LogBounds(max_entries=5)
    for i in range(3):
        await store.add_logs("n", [log_line("j", f"{i}.{k}") for k in range(4)], by_count, NOW)
    assert [e["message"] for e in await store.logs("n")] == ["1.3", "2.0", "2.1", "2.2", "2.3"]
    by_bytes = LogBounds(max_bytes=3 * (100 + 64))
    for i in range(10):
        await store.add_logs("b", [log_line("j", f"{i}" * 100)], by_bytes, NOW)
    assert [e["message"][0] for e in await store.logs("b")] == ["7", "8", "9"]
    by_age = LogBounds(max_age=60)
    await store.add_logs("t", [log_line("j", "old", at=NOW - 100)], by_age, NOW - 90)
    await store.add_logs("t", [log_line("j", "new")], by_age, NOW)
    assert [e["message"] for e in await store.logs("t")] == ["new"]
    huge = LogBounds(max_bytes=1000)
    await store.add_logs("h", [log_line("j", "x" * 5000)], huge, NOW)
    assert await store.logs("h") == []  # one line over the whole bound is not kept either
