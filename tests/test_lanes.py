"""A runner with several jobs in flight (an adapter's ``concurrency`` or ``processes``):
quick jobs are leased several at a time and their results reported together, never more
than its lanes run at once, and a job held ahead goes back to the queue when the running
ones get slow (so an idle worker can start it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar

import pytest

import modelport
from modelport.core import Broker
from modelport.server.local import LocalTransport
from modelport.stores.memory import MemoryStore
from modelport.wire import JobStatus, LeasedJob, Result
from modelport.worker.runner import HOLD_BUDGET, Runner

BOUND = 30.0


class Lanes(modelport.Model):
    """Two jobs at once, on the event loop; ``hold`` waits for the test to open the gate."""

    name = "lanes"
    jobs_in_flight: ClassVar[int] = 2

    def setup(self) -> None:
        self.opened = asyncio.Event()
        self.started: list[int] = []
        self.running = 0
        self.most = 0

    def predict(self, n: int, hold: bool = False) -> int:
        raise AssertionError("served on the loop")

    async def predict_async(self, n: int, hold: bool = False) -> int:
        self.started.append(n)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if hold:
                await asyncio.wait_for(self.opened.wait(), BOUND)
            return n
        finally:
            self.running -= 1


class Counting(LocalTransport):
    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.leases = 0
        self.reports: list[int] = []

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        jobs = await super().lease(worker_id, max_jobs, wait, results, batches)
        self.leases += bool(jobs)
        return jobs

    async def results(self, worker_id: str, results: Sequence[Result]) -> list[bool]:
        self.reports.append(len(results))
        return await super().results(worker_id, results)


class Rig:
    def __init__(self) -> None:
        self.broker = Broker(MemoryStore())
        self.broker.add_endpoint(Lanes.spec())
        self.model = Lanes()
        self.model.setup()
        self.transport = Counting(self.broker)
        self.runner = Runner(self.model, self.transport, lease_wait=0.2)
        self.runner.ready.set()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig()
    await rig.broker.start()
    assert rig.runner.width == 2
    yield rig
    rig.model.opened.set()
    rig.runner.drain()
    if rig.task is not None:
        await asyncio.wait_for(rig.task, BOUND)
    await rig.broker.stop()


async def test_quick_jobs_are_leased_several_at_a_time_and_run_two_at_once(rig: Rig) -> None:
    broker, model, transport = rig.broker, rig.model, rig.transport
    jobs = [await broker.submit("lanes", {"n": n}) for n in range(60)]
    rig.start()
    finals = [await broker.wait(j.id, BOUND) for j in jobs]
    assert [(f.status, f.output, f.attempts) for f in finals] == [
        (JobStatus.SUCCEEDED, n, 1) for n in range(60)
    ]
    assert sorted(model.started) == list(range(60))
    assert model.most <= 2
    assert transport.leases < 20  # one round trip for many jobs
    assert sum(transport.reports) == 60


async def test_a_job_held_ahead_goes_back_when_the_running_ones_are_slow(rig: Rig) -> None:
    broker, runner, model = rig.broker, rig.runner, rig.model
    quick = await broker.submit("lanes", {"n": 1})
    slow = [await broker.submit("lanes", {"n": n, "hold": True}) for n in (2, 3)]
    after = await broker.submit("lanes", {"n": 4})
    rig.start()
    done = await broker.wait(quick.id, BOUND)
    assert done.status is JobStatus.SUCCEEDED
    deadline = time.monotonic() + BOUND
    while model.started != [1, 2, 3]:
        assert time.monotonic() < deadline, f"the slow jobs never both started: {model.started}"
        await asyncio.sleep(HOLD_BUDGET)
    # Leased behind the slow ones (the runner had just seen a quick job), then handed back.
    deadline = time.monotonic() + BOUND
    while (job := await broker.get(after.id)).status is not JobStatus.QUEUED:
        assert time.monotonic() < deadline, f"the held job was never handed back: {job}"
        await asyncio.sleep(HOLD_BUDGET)
    assert job.attempts == 0
    model.opened.set()
    finals = [await broker.wait(j.id, BOUND) for j in (*slow, after)]
    assert [(f.status, f.output, f.attempts) for f in finals] == [
        (JobStatus.SUCCEEDED, n, 1) for n in (2, 3, 4)
    ]
    assert runner.width == 2 and model.most == 2
