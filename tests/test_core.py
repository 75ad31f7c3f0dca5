"""The Broker: job lifecycle, leases, batching windows and retries, on an in-memory store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from modelport.core import Broker
from modelport.errors import Conflict, InvalidInput, NotFound, Overloaded
from modelport.server.streaming import job_events
from modelport.spec import EndpointSpec, FieldSpec
from modelport.stores import store_from_url
from modelport.stores.memory import MemoryStore
from modelport.wire import Event, JobRecord, JobStatus, LeasedJob, Result, WorkerInfo

BOUND = 2.0
"""A safety net for awaits that should finish at once; never the thing a test waits for."""


class FakeClock:
    """The broker's wall clock, moved only by the test."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def endpoint(name: str = "echo", **settings: Any) -> EndpointSpec:
    return EndpointSpec(name=name, inputs={"x": FieldSpec(type="integer")}, **settings)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Watched(MemoryStore):
    """The memory store, telling a test when a task of its choosing has looked at the queue or
    read a job still under way."""

    def __init__(self) -> None:
        super().__init__()
        self._looked: dict[asyncio.Task[Any], asyncio.Event] = {}
        self.leased: list[str] = []
        """The ids of the jobs leases took from the queue, in order."""

    def looked(self, task: asyncio.Task[Any]) -> asyncio.Event:
        return self._looked.setdefault(task, asyncio.Event())

    def _note(self) -> None:
        task = asyncio.current_task()
        if task in self._looked:
            self._looked[task].set()

    async def lease(
        self,
        endpoint: str,
        worker_id: str,
        limit: int,
        now: float,
        lease_until: float,
        revision: int | None = None,
    ) -> list[JobRecord]:
        leased = await super().lease(endpoint, worker_id, limit, now, lease_until, revision)
        self.leased += [job.id for job in leased]
        self._note()
        return leased

    async def get(self, job_id: str) -> JobRecord | None:
        job = await super().get(job_id)
        if job is not None and not job.status.final:
            self._note()
        return job


@pytest.fixture
async def broker(clock: FakeClock) -> AsyncIterator[Broker]:
    b = Broker(Watched(), clock=clock)
    b.add_endpoint(endpoint(lease_duration=10.0, max_attempts=2))
    b.add_endpoint(endpoint("labels", outputs={"label": FieldSpec(type="string", required=True)}))
    yield b
    await b.stop()


def join(broker: Broker, name: str = "w1", endpoints: tuple[str, ...] = ("echo",)) -> str:
    return broker.register(WorkerInfo(name=name, endpoints=list(endpoints), max_batch_size=8)).id


async def settle(broker: Broker, task: asyncio.Task[Any]) -> None:
    """Return once ``task`` (a lease or a wait, just spawned) is parked on its wake-up.

    It is once it has read the store and not returned: the broker awaits nothing between
    that read and its wake-up, and this test resumes only after the task's step ended.
    """
    assert isinstance(broker.store, Watched)
    await asyncio.wait_for(broker.store.looked(task).wait(), BOUND)
    assert not task.done(), "the task should still be waiting"


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


def ok(job: LeasedJob, output: Any) -> Result:
    return Result(job.id, job.endpoint, job.attempt, output=output)


async def test_submit_then_get(broker: Broker, clock: FakeClock) -> None:
    job = await broker.submit("echo", {"x": 1})
    assert job.status is JobStatus.QUEUED
    assert job.input == {"x": 1}
    assert job.created_at == clock.now
    assert job.max_attempts == 2
    assert job.attempts == 0
    assert await broker.get(job.id) == job
    assert await broker.position(job) == 0


async def test_idempotent_submit_returns_the_same_job(broker: Broker) -> None:
    first = await broker.submit("echo", {"x": 1}, idempotency_key="k")
    again = await broker.submit("echo", {"x": 1}, idempotency_key="k")
    assert again.id == first.id
    with pytest.raises(InvalidInput, match="Idempotency-Key 'k' was already used") as refused:
        await broker.submit("echo", {"x": 2}, idempotency_key="k")
    assert refused.value.errors[0]["field"] == "Idempotency-Key"
    assert await broker.store.queue_depths() == {"echo": {"queued": 1, "running": 0}}


async def test_wait_returns_as_soon_as_a_worker_finishes(broker: Broker, clock: FakeClock) -> None:
    wid = join(broker)
    job = await broker.submit("echo", {"x": 3})
    (leased,) = await broker.lease(wid, 1, wait=0)
    waiter = spawn(broker.wait(job.id, timeout=60))
    await settle(broker, waiter)

    clock.advance(2.5)
    assert await broker.finish(wid, [ok(leased, {"y": 6})]) == [True]
    done = await asyncio.wait_for(waiter, BOUND)
    assert done.status is JobStatus.SUCCEEDED
    assert done.output == {"y": 6}
    assert done.attempts == 1
    assert done.worker_id == wid
    assert done.completed_at == clock.now
    assert done.public()["compute_time"] == 2.5
    assert await broker.get(job.id) == done


async def test_wait_with_no_time_returns_the_job_as_it_is(broker: Broker) -> None:
    job = await broker.submit("echo", {"x": 3})
    assert (await broker.wait(job.id, timeout=0)).status is JobStatus.QUEUED


async def test_wait_on_a_finished_job_returns_at_once(broker: Broker) -> None:
    job = await broker.submit("echo", {"x": 3})
    await broker.cancel(job.id)
    got = await asyncio.wait_for(broker.wait(job.id, timeout=60), BOUND)
    assert got.status is JobStatus.CANCELLED


async def test_lease_without_jobs_returns_nothing_after_wait(broker: Broker) -> None:
    wid = join(broker)
    assert await broker.lease(wid, 4, wait=0) == []


async def test_lease_long_poll_wakes_as_soon_as_a_job_is_submitted(broker: Broker) -> None:
    wid = join(broker)
    loop = asyncio.get_running_loop()
    poll = spawn(broker.lease(wid, 1, wait=60))
    await settle(broker, poll)
    started = loop.time()
    job = await broker.submit("echo", {"x": 7})
    (leased,) = await asyncio.wait_for(poll, BOUND)
    assert loop.time() - started < 0.5
    assert leased.id == job.id
    assert leased.input == {"x": 7}
    assert leased.attempt == 1
    stored = await broker.get(job.id)
    assert stored.status is JobStatus.RUNNING
    assert stored.worker_id == wid


async def test_a_submit_hands_its_job_to_a_waiting_long_poll(
    broker: Broker, clock: FakeClock
) -> None:
    wid = join(broker)
    poll = spawn(broker.lease(wid, 1, wait=60))
    await settle(broker, poll)
    job = await broker.submit("echo", {"x": 7})
    (leased,) = await asyncio.wait_for(poll, BOUND)
    assert leased.id == job.id
    assert leased.attempt == 1
    assert leased.lease_until == clock.now + 10.0
    assert isinstance(broker.store, Watched)
    assert broker.store.leased == []  # stored running: never queued, never leased
    stored = await broker.get(job.id)
    assert stored.status is JobStatus.RUNNING
    assert (stored.worker_id, stored.attempts, stored.started_at) == (wid, 1, clock.now)
    assert await broker.store.queue_depths() == {"echo": {"queued": 0, "running": 1}}
    assert await broker.finish(wid, [ok(leased, {"y": 14})]) == [True]
    assert (await broker.get(job.id)).output == {"y": 14}


async def test_a_job_handed_to_an_abandoned_long_poll_goes_back_to_the_queue(
    broker: Broker,
) -> None:
    wid = join(broker)
    poll = spawn(broker.lease(wid, 1, wait=60))
    await settle(broker, poll)
    job = await broker.submit("echo", {"x": 7})
    poll.cancel()  # the worker hung up before its long poll saw the job
    with contextlib.suppress(asyncio.CancelledError):
        await poll
    other = join(broker, "w2")
    (leased,) = await asyncio.wait_for(broker.lease(other, 1, wait=BOUND), BOUND)
    assert leased.id == job.id
    assert leased.attempt == 1  # handing back does not count an attempt


class Gated(Watched):
    """Inserts wait at a gate the test opens, telling it once one is waiting there."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def insert(self, job: JobRecord, limit: int | None = None) -> JobRecord:
        self.waiting.set()
        await self.gate.wait()
        return await super().insert(job, limit)


async def test_a_job_whose_long_poll_ended_while_it_was_stored_is_queued() -> None:
    store = Gated()
    broker = Broker(store)
    broker.add_endpoint(endpoint())
    try:
        wid = join(broker)
        poll = spawn(broker.lease(wid, 1, wait=60))
        await settle(broker, poll)
        submit = spawn(broker.submit("echo", {"x": 7}))
        await asyncio.wait_for(store.waiting.wait(), BOUND)  # claimed the poll, storing
        poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll
        store.gate.set()
        job = await asyncio.wait_for(submit, BOUND)
        assert (job.status, job.attempts, job.worker_id) == (JobStatus.QUEUED, 0, None)
        (leased,) = await asyncio.wait_for(broker.lease(join(broker, "w2"), 1, wait=0), BOUND)
        assert (leased.id, leased.attempt) == (job.id, 1)
    finally:
        await broker.stop()


async def test_lease_only_takes_jobs_of_the_workers_endpoints(broker: Broker) -> None:
    broker.add_endpoint(endpoint("other"))
    wid = join(broker)
    await broker.submit("other", {"x": 1})
    poll = spawn(broker.lease(wid, 1, wait=60))
    await settle(broker, poll)
    mine = await broker.submit("echo", {"x": 2})
    (leased,) = await asyncio.wait_for(poll, BOUND)
    assert leased.id == mine.id


async def test_batch_window_collects_later_jobs_and_ends_on_time(broker: Broker) -> None:
    window = 0.25
    broker.add_endpoint(endpoint("batch", max_batch_size=8, max_batch_wait=window))
    wid = join(broker, endpoints=("batch",))
    loop = asyncio.get_running_loop()
    first = await broker.submit("batch", {"x": 0})
    submitted: list[asyncio.Task[Any]] = []
    last_sent = asyncio.Event()

    def submit_later(x: int) -> None:
        submitted.append(spawn(broker.submit("batch", {"x": x})))
        if x == 3:
            last_sent.set()

    start = loop.time()
    # Two jobs arrive inside the window and one after it; a window that restarted at each
    # arrival would end at 0.45 s and take the last job too.
    loop.call_at(start + 0.05, submit_later, 1)
    loop.call_at(start + 0.2, submit_later, 2)
    loop.call_at(start + 0.4, submit_later, 3)
    batch = await asyncio.wait_for(broker.lease(wid, 8, wait=5), BOUND)
    elapsed = loop.time() - start

    assert [j.input["x"] for j in batch] == [0, 1, 2]
    assert batch[0].id == first.id
    # It ended at the window, not before; before the third job came is all a loaded machine
    # can be held to after it (the batch above says the same).
    assert window - 0.02 <= elapsed < 0.4
    sizes = {"endpoint": "batch"}  # one batch of 3, however its jobs came in
    registry = broker.metrics.registry
    assert registry.get_sample_value("modelport_batch_size_count", sizes) == 1
    assert registry.get_sample_value("modelport_batch_size_sum", sizes) == 3
    await asyncio.wait_for(last_sent.wait(), BOUND)
    (late,) = [j for j in await asyncio.gather(*submitted) if j.input["x"] == 3]
    assert (await broker.get(late.id)).status is JobStatus.QUEUED


async def test_full_batch_returns_without_waiting_for_the_window(broker: Broker) -> None:
    broker.add_endpoint(endpoint("batch", max_batch_size=3, max_batch_wait=30))
    wid = join(broker, endpoints=("batch",))
    await broker.submit("batch", {"x": 0})
    poll = spawn(broker.lease(wid, 8, wait=60))
    await settle(broker, poll)
    for x in (1, 2):
        await broker.submit("batch", {"x": x})
    batch = await asyncio.wait_for(poll, BOUND)
    assert [j.input["x"] for j in batch] == [0, 1, 2]


async def test_max_batch_size_and_max_jobs_are_respected(broker: Broker) -> None:
    broker.add_endpoint(endpoint("batch", max_batch_size=2))
    wid = join(broker, endpoints=("batch",))
    for x in range(5):
        await broker.submit("batch", {"x": x})
    assert [j.input["x"] for j in await broker.lease(wid, 10, wait=0)] == [0, 1]
    assert [j.input["x"] for j in await broker.lease(wid, 1, wait=0)] == [2]
    assert [j.input["x"] for j in await broker.lease(wid, 10, wait=0)] == [3, 4]


async def test_expired_lease_requeues_then_fails_after_max_attempts(
    broker: Broker, clock: FakeClock
) -> None:
    w1, w2 = join(broker, "w1"), join(broker, "w2")
    job = await broker.submit("echo", {"x": 1})
    (first,) = await broker.lease(w1, 1, wait=0)
    assert first.lease_until == clock.now + 10

    clock.advance(9.9)
    assert await broker.reap() == 0
    clock.advance(0.2)
    assert await broker.reap() == 1
    requeued = await broker.get(job.id)
    assert requeued.status is JobStatus.QUEUED
    assert requeued.attempts == 1
    assert requeued.worker_id is None
    assert requeued.lease_until is None
    assert await broker.position(requeued) == 0

    (second,) = await broker.lease(w2, 1, wait=0)
    assert second.attempt == 2
    waiter = spawn(broker.wait(job.id, timeout=60))
    await settle(broker, waiter)
    clock.advance(10.1)
    assert await broker.reap() == 1
    failed = await asyncio.wait_for(waiter, BOUND)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert failed.completed_at == clock.now
    assert failed.error is not None
    assert "gave up after 2 attempts" in failed.error
    assert f"lease of worker {w2} expired" in failed.error
    assert await broker.reap() == 0


async def test_requeued_job_wakes_a_waiting_lease(broker: Broker, clock: FakeClock) -> None:
    w1, w2 = join(broker, "w1"), join(broker, "w2")
    job = await broker.submit("echo", {"x": 1})
    await broker.lease(w1, 1, wait=0)
    poll = spawn(broker.lease(w2, 1, wait=60))
    await settle(broker, poll)
    clock.advance(11)
    await broker.reap()
    (leased,) = await asyncio.wait_for(poll, BOUND)
    assert (leased.id, leased.attempt) == (job.id, 2)


async def test_heartbeat_keeps_the_lease(broker: Broker, clock: FakeClock) -> None:
    wid = join(broker)
    job = await broker.submit("echo", {"x": 1})
    await broker.lease(wid, 1, wait=0)
    clock.advance(8)
    assert await broker.heartbeat(wid, [job.id, "no-such-job"]) == [job.id]
    clock.advance(8)
    assert await broker.reap() == 0
    assert (await broker.get(job.id)).status is JobStatus.RUNNING


async def test_result_from_a_lost_lease_is_refused(broker: Broker, clock: FakeClock) -> None:
    w1, w2 = join(broker, "w1"), join(broker, "w2")
    job = await broker.submit("echo", {"x": 1})
    (lost,) = await broker.lease(w1, 1, wait=0)
    clock.advance(11)
    await broker.reap()
    assert await broker.finish(w1, [ok(lost, {"y": "late, while queued"})]) == [False]
    assert (await broker.get(job.id)).status is JobStatus.QUEUED

    (held,) = await broker.lease(w2, 1, wait=0)
    assert await broker.finish(w1, [ok(lost, {"y": "late, while rerun"})]) == [False]
    running = await broker.get(job.id)
    assert (running.status, running.worker_id, running.output) == (JobStatus.RUNNING, w2, None)

    assert await broker.finish(w2, [ok(held, {"y": "winner"})]) == [True]
    assert await broker.finish(w1, [ok(lost, {"y": "late, after the end"})]) == [False]
    assert await broker.finish(w2, [ok(held, {"y": "twice"})]) == [False]
    final = await broker.get(job.id)
    assert final.status is JobStatus.SUCCEEDED
    assert final.output == {"y": "winner"}
    assert final.worker_id == w2


async def test_same_worker_cannot_answer_an_older_attempt(broker: Broker, clock: FakeClock) -> None:
    wid = join(broker)
    await broker.submit("echo", {"x": 1})
    (old,) = await broker.lease(wid, 1, wait=0)
    clock.advance(11)
    await broker.reap()
    (new,) = await broker.lease(wid, 1, wait=0)
    assert await broker.finish(wid, [ok(old, "stale")]) == [False]
    assert await broker.finish(wid, [ok(new, "fresh")]) == [True]
    assert (await broker.get(new.id)).output == "fresh"


async def test_retryable_error_requeues_until_max_attempts(broker: Broker) -> None:
    wid = join(broker)
    job = await broker.submit("echo", {"x": 1})
    (first,) = await broker.lease(wid, 1, wait=0)
    oom = Result(job.id, "echo", first.attempt, error="out of memory", retry=True)
    assert await broker.finish(wid, [oom]) == [True]
    assert (await broker.get(job.id)).status is JobStatus.QUEUED
    (second,) = await broker.lease(wid, 1, wait=0)
    oom = Result(job.id, "echo", second.attempt, error="out of memory", retry=True)
    assert await broker.finish(wid, [oom]) == [True]
    failed = await broker.get(job.id)
    assert (failed.status, failed.error, failed.attempts) == (
        JobStatus.FAILED,
        "out of memory",
        2,
    )


async def test_cancel_a_queued_job(broker: Broker, clock: FakeClock) -> None:
    wid = join(broker)
    job = await broker.submit("echo", {"x": 1})
    cancelled = await broker.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.completed_at == clock.now
    assert cancelled.error == "cancelled by the client"
    assert await broker.lease(wid, 1, wait=0) == []
    assert await broker.cancel(job.id) == cancelled  # cancelling twice is harmless


async def test_cancel_a_running_job_refuses_its_result(broker: Broker) -> None:
    wid = join(broker)
    job = await broker.submit("echo", {"x": 1})
    (leased,) = await broker.lease(wid, 1, wait=0)
    waiter = spawn(broker.wait(job.id, timeout=60))
    await settle(broker, waiter)
    cancelled = await broker.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert (await asyncio.wait_for(waiter, BOUND)).status is JobStatus.CANCELLED
    assert broker.take_cancelled(wid) == [job.id]  # the worker is told once
    assert broker.take_cancelled(wid) == []
    assert await broker.finish(wid, [ok(leased, {"y": 2})]) == [False]
    final = await broker.get(job.id)
    assert (final.status, final.output) == (JobStatus.CANCELLED, None)


async def test_cancel_a_finished_job_is_a_conflict(broker: Broker) -> None:
    wid = join(broker)
    job = await broker.submit("echo", {"x": 1})
    (leased,) = await broker.lease(wid, 1, wait=0)
    await broker.finish(wid, [ok(leased, {"y": 2})])
    with pytest.raises(Conflict, match="already succeeded") as e:
        await broker.cancel(job.id)
    assert e.value.status == 409
    assert (await broker.get(job.id)).status is JobStatus.SUCCEEDED


async def test_full_queue_is_overloaded_with_retry_after(broker: Broker) -> None:
    broker.add_endpoint(endpoint("small", max_queue_length=2))
    wid = join(broker, endpoints=("small",))
    for x in range(2):
        await broker.submit("small", {"x": x})
    with pytest.raises(Overloaded, match="limit 2") as e:
        await broker.submit("small", {"x": 2})
    assert e.value.status == 429
    assert e.value.retry_after >= 1
    assert e.value.headers["Retry-After"] == str(e.value.retry_after)
    assert await broker.store.queue_depths() == {"small": {"queued": 2, "running": 0}}
    await broker.lease(wid, 1, wait=0)
    assert (await broker.submit("small", {"x": 3})).status is JobStatus.QUEUED


async def test_a_burst_of_submits_fills_the_queue_exactly(tmp_path: Path) -> None:
    """Submits that arrive together (one event-loop turn) cannot overshoot the limit."""
    broker = Broker(store_from_url(f"sqlite:///{tmp_path / 'jobs.db'}"), max_queue_length=10)
    await broker.start()
    try:
        broker.add_endpoint(endpoint())
        await broker.submit("echo", {"x": -1})
        outcomes = await asyncio.gather(
            *(broker.submit("echo", {"x": i}) for i in range(30)), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, Overloaded)]
        assert len(refused) == 21, outcomes
        assert await broker.store.queue_depths() == {"echo": {"queued": 10, "running": 0}}
    finally:
        await broker.stop()


async def test_broker_queue_limit_applies_without_an_endpoint_limit(clock: FakeClock) -> None:
    broker = Broker(MemoryStore(), clock=clock, max_queue_length=1)
    broker.add_endpoint(endpoint())
    await broker.submit("echo", {"x": 1})
    with pytest.raises(Overloaded):
        await broker.submit("echo", {"x": 2})


async def test_unknown_names_are_not_found(broker: Broker) -> None:
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: broker.submit("nope", {}),
        lambda: broker.get("no-such-job"),
        lambda: broker.wait("no-such-job", 0),
        lambda: broker.cancel("no-such-job"),
        lambda: broker.lease("no-such-worker", 1, 0),
        lambda: broker.finish("no-such-worker", []),
        lambda: broker.heartbeat("no-such-worker", []),
        lambda: broker.leave("no-such-worker"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as e:
            await call()
        assert e.value.status == 404
    with pytest.raises(NotFound, match="'nope'"):
        broker.register(WorkerInfo(name="w", endpoints=["nope"]))


async def test_result_for_an_endpoint_the_worker_does_not_serve(broker: Broker) -> None:
    wid = join(broker)
    job = await broker.submit("labels", {"x": 1})
    with pytest.raises(Conflict):
        await broker.finish(wid, [Result(job.id, "labels", 1, output={"label": "a"})])


async def test_leave_requeues_the_workers_jobs_at_once(broker: Broker) -> None:
    w1, w2 = join(broker, "w1"), join(broker, "w2")
    jobs = [await broker.submit("echo", {"x": x}) for x in range(2)]
    assert len(await broker.lease(w1, 1, wait=0) + await broker.lease(w1, 1, wait=0)) == 2
    poll = spawn(broker.lease(w2, 1, wait=60))
    await settle(broker, poll)

    await broker.leave(w1)
    (woken,) = await asyncio.wait_for(poll, BOUND)
    assert (woken.id, woken.attempt) == (jobs[0].id, 2)
    requeued = await broker.get(jobs[1].id)
    assert (requeued.status, requeued.attempts, requeued.worker_id) == (JobStatus.QUEUED, 1, None)
    assert await broker.store.running(w1) == []
    with pytest.raises(NotFound):
        await broker.lease(w1, 1, wait=0)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_restart_requeues_jobs_of_embedded_workers(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"
    before = Broker(store_from_url(url), clock=clock)
    before.add_endpoint(endpoint(lease_duration=10.0))
    await before.store.open()
    local = await before.submit("echo", {"x": 1})
    remote = await before.submit("echo", {"x": 2})
    await before.store.lease("echo", before.local_worker_id("echo"), 1, clock.now, clock.now + 10)
    await before.store.lease("echo", "remote-worker", 1, clock.now, clock.now + 10)

    after = Broker(before.store if backend == "memory" else store_from_url(url), clock=clock)
    if backend == "sqlite":
        await before.store.close()
    after.add_endpoint(endpoint(lease_duration=10.0))
    await after.start()
    try:
        recovered = await after.get(local.id)
        assert recovered.status is JobStatus.QUEUED
        assert recovered.attempts == 1
        assert recovered.worker_id is None
        untouched = await after.get(remote.id)
        assert untouched.status is JobStatus.RUNNING
        assert untouched.worker_id == "remote-worker"
        wid = join(after)
        (again,) = await after.lease(wid, 1, wait=0)
        assert (again.id, again.attempt) == (local.id, 2)
    finally:
        await after.stop()


async def test_output_that_breaks_the_declared_outputs_fails_the_job(broker: Broker) -> None:
    wid = join(broker, endpoints=("labels",))
    bad_type = await broker.submit("labels", {"x": 1})
    extra = await broker.submit("labels", {"x": 2})
    good = await broker.submit("labels", {"x": 3})
    leased = await broker.lease(wid, 3, wait=0)
    assert len(leased) == 1  # labels has max_batch_size 1
    leased += await broker.lease(wid, 1, wait=0)
    leased += await broker.lease(wid, 1, wait=0)
    outputs = [{"label": 5}, {"label": "a", "score": 0.5}, {"label": "iris"}]
    assert await broker.finish(wid, [ok(j, o) for j, o in zip(leased, outputs, strict=True)]) == [
        True,
        True,
        True,
    ]

    failed = await broker.get(bad_type.id)
    assert failed.status is JobStatus.FAILED
    assert failed.output is None
    assert failed.error is not None
    assert "does not match the endpoint's outputs" in failed.error
    assert "label" in failed.error
    assert "string" in failed.error
    failed_extra = await broker.get(extra.id)
    assert failed_extra.status is JobStatus.FAILED
    assert failed_extra.error is not None
    assert "score" in failed_extra.error
    assert (await broker.get(good.id)).output == {"label": "iris"}


async def test_time_limits_expire_fail_and_purge() -> None:
    """max_queue_time expires waiting jobs, timeout fails slow ones, result_ttl deletes old ones."""
    now = [1_000.0]
    broker = Broker(MemoryStore(), clock=lambda: now[0], result_ttl=100.0, reap_interval=0.01)
    broker.add_endpoint(
        EndpointSpec(
            name="limited",
            inputs={"x": FieldSpec(type="integer")},
            max_queue_time=10.0,
            timeout=5.0,
        )
    )
    await broker.start()
    try:
        worker = broker.register(WorkerInfo("w", ["limited"], max_batch_size=1))
        slow = await broker.submit("limited", {"x": 1})
        waiting = await broker.submit("limited", {"x": 2})
        (leased,) = await broker.lease(worker.id, 1, 0)
        assert leased.id == slow.id
        now[0] += 6  # past the timeout, not past the queue limit
        assert await broker.reap() == 1
        failed = await broker.get(slow.id)
        assert failed.status is JobStatus.FAILED
        assert "longer than 5 s (timeout)" in (failed.error or "")
        assert (await broker.get(waiting.id)).status is JobStatus.QUEUED
        now[0] += 5  # the second job has now waited 11 s
        assert await broker.reap() == 1
        expired = await broker.get(waiting.id)
        assert expired.status is JobStatus.EXPIRED
        assert "within 10 s (max_queue_time)" in (expired.error or "")
        assert await broker.finish(worker.id, [Result(slow.id, "limited", 1, output=1)]) == [False]
        now[0] += 101
        await broker.reap()
        with pytest.raises(NotFound):
            await broker.get(slow.id)
        with pytest.raises(NotFound):
            await broker.get(waiting.id)
    finally:
        await broker.stop()


async def test_a_loop_stops_even_when_a_driver_swallowed_its_cancel() -> None:
    from modelport.core.reaper import stop_if_cancelled

    async def loop() -> None:
        while True:
            # What redis-py's pipeline can do with a cancel that arrives mid-command:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
            stop_if_cancelled()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_a_purge_backlog_is_worked_off_round_after_round() -> None:
    """More expired results than one purge takes: the next rounds purge again at once, not
    only every PURGE_EVERY rounds, so a busy server keeps up with its result_ttl."""
    from modelport.core.reaper import BATCH

    now = [1_000.0]
    broker = Broker(MemoryStore(), clock=lambda: now[0], result_ttl=10.0)
    broker.add_endpoint(endpoint())
    worker = join(broker)
    ids = []
    for _ in range(2 * BATCH + 5):
        ids.append((await broker.submit("echo", {"x": 1})).id)
        (leased,) = await broker.lease(worker, 1, 0)
        assert await broker.finish(worker, [ok(leased, 1)]) == [True]
    now[0] += 100
    for _ in range(3):  # three rounds in a row, with no time passing in between
        await broker.reap()
    kept = [job_id for job_id in ids if await broker.store.get(job_id) is not None]
    assert kept == []
    assert not broker.reaper._backlog


async def test_a_stream_sends_the_events_stored_here_first_in_order_and_once(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events a worker sends through this server are handed to its streams with the change,
    and go out before the stream reads the store again; one it did not hand over (stored by
    another server, say) is read, in its place."""
    wid = join(broker)
    job = await broker.submit("echo", {"x": 1})
    await broker.lease(wid, 1, wait=0)
    stream = job_events(broker, job.id, None)
    assert [item[1] for _ in range(2) if (item := await anext(stream))] == ["queued", "started"]

    await broker.store.add_events([Event(job.id, "output", "a")])  # no word to the stream
    await broker.events(wid, [Event(job.id, "output", "b")])
    assert [await anext(stream), await anext(stream)] == [(1, "output", "a"), (2, "output", "b")]

    reads: list[int] = []
    events = broker.store.events

    async def counted(job_id: str, after: int = 0, limit: int = 10_000) -> list[Event]:
        reads.append(after)
        return await events(job_id, after, limit)

    monkeypatch.setattr(broker.store, "events", counted)
    await broker.events(wid, [Event(job.id, "output", "c")])
    assert await anext(stream) == (3, "output", "c")
    assert reads == []  # sent without a read
    await broker.finish(wid, [Result(job.id, "echo", 1, output={"y": 1})])
    final = await anext(stream)
    assert final is not None and final[1] == "succeeded"
    assert reads == [3]
