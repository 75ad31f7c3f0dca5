"""Models that take one job at a time (no batching declared): what the model sees stays
the same however the machinery amortises its work, each result goes out as soon as its job
is done, and a job held ahead by one worker goes back to the queue when the job before it
runs long (so an idle worker can start it)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import modelport
from modelport import Client
from modelport.core import Broker
from modelport.server.app import Server
from modelport.server.local import LocalTransport
from modelport.stores.memory import MemoryStore
from modelport.wire import JobStatus
from modelport.worker.runner import HOLD_BUDGET, Runner
from tests.conftest import (
    WORKER_TOKEN,
    Serve,
    Workers,
    online,
    wait_for,
    worker_args,
)

BOUND = 30.0


class Recorder(modelport.Model):
    """Notes the thread and the inputs of every call, and how many calls overlap."""

    name = "recorder"

    def setup(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.running = 0
        self.most = 0

    def predict(self, n: int) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.calls.append((threading.current_thread().name, {"n": n}))
        time.sleep(0.0005 if n % 7 else 0.003)  # mostly quick, now and then slower
        with self.lock:
            self.running -= 1
        return n * 2


class Recorder2(Recorder):
    name = "recorder2"
    concurrency = 2


@pytest.mark.parametrize("model", [Recorder, Recorder2], ids=["concurrency-1", "concurrency-2"])
async def test_predict_gets_one_input_per_call_and_at_most_concurrency_calls(
    model: type[Recorder],
) -> None:
    server = Server([model], store="memory://")
    async with server.lifespan(None):  # type: ignore[arg-type]
        for runner in server.runners:
            await asyncio.wait_for(runner.ready.wait(), BOUND)
        for round_ in range(3):  # later rounds lease ahead: recent jobs were quick
            jobs = [
                await server.broker.submit(model.name, {"n": round_ * 100 + n}) for n in range(40)
            ]
            finals = [await server.broker.wait(j.id, BOUND) for j in jobs]
            assert [f.output for f in finals] == [j.input["n"] * 2 for j in jobs]
    instance = server.runners[0].model
    assert isinstance(instance, Recorder)
    assert sorted(args["n"] for _, args in instance.calls) == sorted(
        r * 100 + n for r in range(3) for n in range(40)
    )
    assert all(set(args) == {"n"} for _, args in instance.calls)
    assert 1 <= instance.most <= model.concurrency
    threads = {thread for thread, _ in instance.calls}
    assert len(threads) <= model.concurrency


class Gate(modelport.Model):
    """Answers at once, except for ``hold``, which waits for the test to open the gate."""

    name = "gate"

    def setup(self) -> None:
        self.opened = threading.Event()
        self.holding = threading.Event()
        self.started: list[int] = []

    def predict(self, n: int, hold: bool = False) -> int:
        self.started.append(n)
        if hold:
            self.holding.set()
            assert self.opened.wait(BOUND)
        return n


@pytest.fixture
async def gate() -> AsyncIterator[tuple[Broker, Runner, Gate]]:
    broker = Broker(MemoryStore())
    broker.add_endpoint(Gate.spec())
    await broker.start()
    model = Gate()
    model.setup()
    runner = Runner(model, LocalTransport(broker), lease_wait=0.2)
    runner.ready.set()
    # Recent jobs were quick, so the runner leases several at once.
    runner._invoker.job_times.extend([1e-5] * 8)
    assert runner._lease_size()[0] > 3
    yield broker, runner, model
    model.opened.set()
    runner.drain()
    await broker.stop()


async def test_a_result_is_not_held_back_by_a_slower_neighbour(
    gate: tuple[Broker, Runner, Gate],
) -> None:
    broker, runner, model = gate
    quick = await broker.submit("gate", {"n": 1})
    slow = await broker.submit("gate", {"n": 2, "hold": True})
    after = await broker.submit("gate", {"n": 3})
    task = asyncio.create_task(runner.run())
    try:
        done = await broker.wait(quick.id, BOUND)
        assert done.status is JobStatus.SUCCEEDED and done.output == 1
        # On a loaded machine the quick job may itself outlast the hold budget, and the slow
        # one go back before it started (then it is leased again): wait until it is in.
        assert await asyncio.to_thread(model.holding.wait, BOUND)
        assert (await broker.get(slow.id)).status is JobStatus.RUNNING  # still in the model
        # The job held behind the slow one goes back to the queue, its attempt uncounted.
        deadline = time.monotonic() + BOUND
        while (await broker.get(after.id)).status is not JobStatus.QUEUED:
            assert time.monotonic() < deadline, "the held job was never handed back"
            await asyncio.sleep(HOLD_BUDGET)
        assert (await broker.get(after.id)).attempts == 0
        model.opened.set()
        finals = [await broker.wait(j.id, BOUND) for j in (slow, after)]
        assert [(f.status, f.output, f.attempts) for f in finals] == [
            (JobStatus.SUCCEEDED, 2, 1),
            (JobStatus.SUCCEEDED, 3, 1),
        ]
        assert model.started == [1, 2, 3]
    finally:
        model.opened.set()
        runner.drain()
        await asyncio.wait_for(task, BOUND)


@pytest.mark.e2e
def test_two_remote_workers_share_quick_jobs_while_one_is_busy(
    serve: Serve, workers: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = tmp_path / "release"
    monkeypatch.setenv("MODELPORT_TEST_RELEASE", str(release))  # the workers inherit it
    server = serve(["--worker-token", WORKER_TOKEN, "--store", f"sqlite:///{tmp_path}/j.db"])
    server.start().wait_ready()
    for _ in range(2):
        workers(worker_args(server, "tests/models/remote.py:Held")).start()
    wait_for(lambda: online(server, "held") == 2, 60, "two workers online")
    with Client(server.url) as c:
        for _ in range(3):  # both workers learn the jobs are quick, and lease ahead
            warm = [c.submit("held", n=n) for n in range(30)]
            for job in warm:
                job.wait(timeout=BOUND)
        slow = c.submit("held", n=-1, hold=True)  # runs until released
        quick = [c.submit("held", n=n) for n in range(20)]
        for job in quick:
            job.wait(timeout=BOUND)
            assert job.status == "succeeded", job.data
        # Every quick job finished while the slow one still ran: none stayed held behind it.
        assert slow.refresh().status == "running"
        pids = {job.output["pid"] for job in quick}
        release.touch()
        slow.wait(timeout=BOUND)
        assert slow.status == "succeeded"
        assert slow.output["pid"] not in pids or len(pids) == 2
