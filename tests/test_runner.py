"""The worker runner against an in-process broker: when it asks for the next batch."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest

import modelport
from modelport.core import Broker
from modelport.errors import NotFound, SpecError
from modelport.modes.local import LocalModel
from modelport.server.app import Server
from modelport.server.local import LocalTransport
from modelport.stores.memory import MemoryStore
from modelport.wire import Event, JobRecord, JobStatus, LeasedJob, Result
from modelport.worker.runner import EMPTY_PAUSE, Runner
from tests.conftest import AppFactory

BOUND = 10.0
"""A safety net for waits on events that come at once; never what a test waits for."""


class Gated(modelport.Model):
    """Batches of two; the second batch waits until the test opens the gate."""

    name = "gated"
    max_batch_size = 2

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []
        self.second_started = threading.Event()
        self.gate = threading.Event()

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.batches.append([i["n"] for i in inputs])
        if len(self.batches) == 2:
            self.second_started.set()
            self.gate.wait(BOUND)
        return [{"n": i["n"]} for i in inputs]

    def predict(self, n: int) -> dict[str, Any]:
        raise AssertionError("predict_batch serves every batch")


class Talkative(modelport.Model):
    """No predict_batch, batches of three: each call prints, logs, reports progress and
    streams, all naming its word."""

    name = "talkative"
    max_batch_size = 3

    def predict(self, word: str) -> Iterator[str]:
        print(f"printed {word}")
        logging.getLogger("talkative").warning("logged %s", word)
        self.progress(0.5, message=f"half of {word}")
        yield f"chunk {word}"


class Inner(modelport.Model):
    name = "inner"

    def predict(self, word: str) -> str:
        return word.upper()


class Outer(modelport.Model):
    """No predict_batch, batches of three: each call first calls another model in this
    process (whose end unbinds the contexts of the thread), then reports progress."""

    name = "outer"
    max_batch_size = 3

    def __init__(self) -> None:
        super().__init__()
        self.inner = LocalModel(Inner)

    def predict(self, word: str) -> str:
        (outcome,) = self.inner.call([{"word": word}])
        self.progress(0.5, message=f"half of {word}")
        return str(outcome.output)


class Recording(LocalTransport):
    """The in-process transport, noting the ``wait`` of every lease request, and how many jobs
    the worker held as each lease returned: a worker comes to hold more only through a lease,
    so the largest of these is the most it ever held at once."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.waits: list[float] = []
        self.held: list[int] = []
        self.asked = asyncio.Event()
        """Set at the first lease request (the runner parks in it in that step)."""

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        self.waits.append(wait)
        self.asked.set()
        jobs = await super().lease(worker_id, max_jobs, wait, results, batches)
        self.held.append(len(await self.broker.store.running(worker_id)))
        return jobs


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    b = Broker(MemoryStore())
    b.add_endpoint(Gated.spec())
    await b.start()
    yield b
    await b.stop()


async def run_six_jobs(broker: Broker, prefetch_below: float) -> tuple[Runner, Recording, int]:
    """Six queued jobs, batches of two; returns the most jobs the worker held at once."""
    jobs = [await broker.submit("gated", {"n": n}) for n in range(6)]
    model = Gated()
    transport = Recording(broker)
    runner = Runner(model, transport, lease_wait=0.2, prefetch_below=prefetch_below)
    task = asyncio.create_task(runner.run())
    try:
        assert await asyncio.to_thread(model.second_started.wait, BOUND)
        model.gate.set()
        finals = [await broker.wait(j.id, BOUND) for j in jobs]
        assert [f.status for f in finals] == [JobStatus.SUCCEEDED] * 6
        assert [f.output for f in finals] == [{"n": n} for n in range(6)]
        assert model.batches == [[0, 1], [2, 3], [4, 5]]
    finally:
        model.gate.set()
        runner.drain()
        await asyncio.wait_for(task, BOUND)
    return runner, transport, max(transport.held)


async def test_a_quick_model_with_a_full_batch_leases_the_next_one_while_it_runs(
    broker: Broker,
) -> None:
    _, transport, held = await run_six_jobs(broker, prefetch_below=60.0)
    # A lease that did not long-poll brought the third batch while the second ran.
    assert held == 4
    assert 0.0 in transport.waits


async def test_a_slow_model_holds_one_batch_at_a_time(broker: Broker) -> None:
    _, transport, held = await run_six_jobs(broker, prefetch_below=0.0)
    assert held == 2
    assert 0.0 not in transport.waits


class Pair(modelport.Model):
    """Two jobs at once on one instance: each waits at a barrier until the other arrives."""

    concurrency = 2

    def __init__(self) -> None:
        super().__init__()
        self.setups = 0
        self.barrier = threading.Barrier(2, timeout=BOUND)

    def setup(self) -> None:
        self.setups += 1

    def predict(self, n: int) -> dict[str, Any]:
        self.barrier.wait()  # broken (and the job failed) unless a second job runs meanwhile
        return {"n": n}


async def test_concurrency_runs_batches_of_one_instance_side_by_side(
    app_factory: AppFactory,
) -> None:
    server = (await app_factory([Pair])).server  # both lanes ready
    assert [r.name for r in server.runners] == ["pair#1", "pair#2"]
    (model,) = {id(r.model): r.model for r in server.runners}.values()
    assert isinstance(model, Pair)
    assert model.setups == 1
    jobs = [await server.broker.submit("pair", {"n": n}) for n in range(4)]
    finals = [await server.broker.wait(j.id, BOUND) for j in jobs]
    assert [(f.status, f.error) for f in finals] == [(JobStatus.SUCCEEDED, None)] * 4
    assert len({f.worker_id for f in finals}) == 2
    online = await server.broker.workers_online("pair")
    assert sorted(w.info.name for w in online) == ["pair#1", "pair#2"]


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2", 2000])
def test_a_bad_concurrency_is_refused_naming_the_class(value: Any) -> None:
    bad = type("Bad", (Pair,), {"concurrency": value})
    with pytest.raises(SpecError, match=r"Bad: concurrency must be an integer from 1 to 1024"):
        Server([bad], store="memory://")


class InFlight(Recording):
    """A lease without a long poll that the server answered but whose answer is still on
    its way (``arrive`` lets it in), or that fails (``fail``)."""

    def __init__(self, broker: Broker, fail: bool = False) -> None:
        super().__init__(broker)
        self.sent = asyncio.Event()
        self.arrive = asyncio.Event()
        self.fail = fail

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        if wait > 0:
            return await super().lease(worker_id, max_jobs, wait, results, batches)
        self.sent.set()
        if self.fail:
            raise RuntimeError("the connection broke")
        jobs = await super().lease(worker_id, max_jobs, wait, results, batches)
        await self.arrive.wait()
        return jobs


async def start_six(broker: Broker, transport: InFlight) -> tuple[list[Any], Gated, Runner, Any]:
    jobs = [await broker.submit("gated", {"n": n}) for n in range(6)]
    model = Gated()
    runner = Runner(model, transport, lease_wait=0.2, prefetch_below=60.0)
    task = asyncio.create_task(runner.run())
    assert await asyncio.to_thread(model.second_started.wait, BOUND)
    await asyncio.wait_for(transport.sent.wait(), BOUND)
    return jobs, model, runner, task


async def test_draining_runs_the_batch_a_prefetch_already_leased(broker: Broker) -> None:
    transport = InFlight(broker)
    jobs, model, runner, task = await start_six(broker, transport)
    # While the leased batch's answer is on its way; drain() gives up what it gives up (a
    # long poll) at once, so the answer arrives after that.
    runner.drain()
    transport.arrive.set()
    model.gate.set()
    await asyncio.wait_for(task, BOUND)
    finals = [await broker.get(j.id) for j in jobs]
    # Given up, the prefetched jobs would wait for the worker to leave and lose an attempt.
    assert [(f.status, f.attempts) for f in finals] == [(JobStatus.SUCCEEDED, 1)] * 6
    assert model.batches == [[0, 1], [2, 3], [4, 5]]


async def test_a_failed_prefetch_still_reports_what_was_computed(broker: Broker) -> None:
    transport = InFlight(broker, fail=True)
    jobs, model, _, task = await start_six(broker, transport)
    model.gate.set()
    with pytest.raises(RuntimeError, match="the connection broke"):
        await asyncio.wait_for(task, BOUND)
    finals = [await broker.get(j.id) for j in jobs]
    # The first batch's results rode on the failed lease, the second's were computed meanwhile.
    assert [f.status for f in finals] == [JobStatus.SUCCEEDED] * 4 + [JobStatus.QUEUED] * 2


class Closing(LocalTransport):
    """A server going down: it answers every long poll at once, with no job."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.asked: list[float] = []
        self.thrice = asyncio.Event()

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        assert not results
        self.asked.append(asyncio.get_running_loop().time())
        if len(self.asked) == 3:
            self.thrice.set()
        return []


@pytest.mark.parametrize("width", [1, 2], ids=["one-lane", "two-lanes"])
async def test_a_runner_pauses_between_long_polls_answered_at_once(
    broker: Broker, width: int
) -> None:
    model = Gated()
    model.jobs_in_flight = width  # type: ignore[attr-defined]
    transport = Closing(broker)
    runner = Runner(model, transport, lease_wait=0.2)
    assert runner.width == width
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(transport.thrice.wait(), BOUND)
    runner.drain()
    await asyncio.wait_for(task, BOUND)
    first, second, third = transport.asked[:3]
    # Not a busy loop of lease requests while the server is going down.
    assert second - first >= EMPTY_PAUSE * 0.99 and third - second >= EMPTY_PAUSE * 0.99


class Described(Gated):
    """Tells the registry about its weights."""

    def info(self) -> dict[str, Any]:
        return {"weights": "iris-v2.bin", "params": 1234}


class Broken(Gated):
    def info(self) -> dict[str, Any]:
        raise OSError("no such file")


@pytest.mark.parametrize(
    ("model", "extra"),
    [(Described, {"weights": "iris-v2.bin", "params": 1234}), (Broken, {})],
)
async def test_workers_describe_their_device_and_model(
    model: type[Gated], extra: dict[str, Any]
) -> None:
    broker = Broker(MemoryStore())  # the worker defines its endpoint
    await broker.start()
    runner = Runner(model(), LocalTransport(broker), metadata={"host": "here"})
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(runner.registered.wait(), BOUND)
        assert runner.worker_id is not None
        metadata = broker.worker(runner.worker_id).info.metadata
    finally:
        runner.drain()
        await asyncio.wait_for(task, BOUND)
        await broker.stop()
    # No torch in this process: the CPU, whatever CUDA_VISIBLE_DEVICES says.
    assert metadata["host"] == "here"
    assert metadata["device"] == "cpu"
    assert metadata["model"] == {
        "class": f"{__name__}:{model.__qualname__}",
        "version": "1",
        **extra,
    }


class Forgetful(LocalTransport):
    """A server that forgot the worker once (restarted on a store without it): the first
    lease request carrying results is refused before they are recorded."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.registrations = 0
        self.refused: list[Result] = []
        self.reported: list[Result] = []

    async def register(self, *args: Any) -> str:
        self.registrations += 1
        return await super().register(*args)

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        if results and not self.refused:
            self.refused = list(results)
            raise NotFound(f"no worker {worker_id}")
        return await super().lease(worker_id, max_jobs, wait, results, batches)

    async def results(self, worker_id: str, results: Sequence[Result]) -> list[bool]:
        self.reported += results
        return await super().results(worker_id, results)


async def test_results_a_forgetting_server_refused_are_sent_again_once_registered(
    broker: Broker,
) -> None:
    jobs = [await broker.submit("gated", {"n": n}) for n in range(2)]
    transport = Forgetful(broker)
    model = Gated()
    model.gate.set()
    runner = Runner(model, transport, lease_wait=0.2)
    task = asyncio.create_task(runner.run())
    try:
        finals = [await broker.wait(j.id, BOUND) for j in jobs]
        assert [(f.status, f.output) for f in finals] == [
            (JobStatus.SUCCEEDED, {"n": 0}),
            (JobStatus.SUCCEEDED, {"n": 1}),
        ]
        assert {r.job_id for r in transport.refused} == {j.id for j in jobs}
        assert transport.reported == transport.refused  # sent on their own, once registered
        assert transport.registrations == 2
    finally:
        runner.drain()
        await asyncio.wait_for(task, BOUND)


async def test_drain_gives_up_a_long_poll_at_once_and_the_worker_leaves(broker: Broker) -> None:
    transport = Recording(broker)
    runner = Runner(Gated(), transport, lease_wait=60.0)  # a poll BOUND could not wait out
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(transport.asked.wait(), BOUND)
        assert transport.waits == [60.0]
        runner.drain()
        await asyncio.wait_for(task, BOUND)
    finally:
        runner.drain()
        task.cancel()
    assert broker.registry.workers == {}
    job = await broker.submit("gated", {"n": 1})
    assert (await broker.get(job.id)).status is JobStatus.QUEUED  # handed to no one


class Held(modelport.Model):
    """One input at a time; ``n == 0`` waits until the test opens the gate."""

    name = "held"

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def predict(self, n: int) -> dict[str, Any]:
        if n == 0:
            self.gate.wait(BOUND)
        return {"n": n}


async def start_held(
    broker: Broker, transport: LocalTransport
) -> tuple[Held, list[JobRecord], Runner, asyncio.Task[None]]:
    """Three queued jobs of :class:`Held` (job 0 waits at the gate), and a runner that
    leases all three at once, as after quick jobs: as many as it computes in its hold budget."""
    broker.add_endpoint(Held.spec())
    model = Held()
    jobs = [await broker.submit("held", {"n": n}) for n in range(3)]
    runner = Runner(model, transport, lease_wait=0.2)
    runner._invoker.job_times.append(1e-5)
    return model, jobs, runner, asyncio.create_task(runner.run())


class BrokenHandBack(LocalTransport):
    """A connection that breaks when the worker hands jobs back."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.tried = asyncio.Event()

    async def release(self, worker_id: str, job_ids: Sequence[str]) -> None:
        self.tried.set()
        raise RuntimeError("the connection broke")


async def test_a_failed_hand_back_still_reports_the_result_in_hand(broker: Broker) -> None:
    """A job that outlasts the hold budget makes the runner hand back the jobs it holds;
    when that fails, the runner stops, but the result it computed still goes out."""
    transport = BrokenHandBack(broker)
    model, jobs, runner, task = await start_held(broker, transport)
    try:
        await asyncio.wait_for(transport.tried.wait(), BOUND)  # job 0 ran long
        model.gate.set()
        with pytest.raises(RuntimeError, match="the connection broke"):
            await asyncio.wait_for(task, BOUND)
    finally:
        model.gate.set()
        runner.drain()
        task.cancel()
    first = await broker.wait(jobs[0].id, BOUND)
    assert (first.status, first.output) == (JobStatus.SUCCEEDED, {"n": 0})


class SlowHandBack(LocalTransport):
    """A hand-back that takes a while on the wire, as to a remote store; notes one cut short."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.started = asyncio.Event()
        self.cut_short = False

    async def release(self, worker_id: str, job_ids: Sequence[str]) -> None:
        self.started.set()
        try:
            await asyncio.sleep(0.05)  # the round trip; the test waits on events, not on this
        except asyncio.CancelledError:
            self.cut_short = True
            raise
        await super().release(worker_id, job_ids)


async def test_a_hand_back_under_way_completes_when_the_running_job_ends(broker: Broker) -> None:
    """The job that outlasted the hold budget ending while the other jobs are being handed
    back must not cut the hand-back short: they would stay held until their leases expired."""
    transport = SlowHandBack(broker)
    model, jobs, runner, task = await start_held(broker, transport)
    try:
        await asyncio.wait_for(transport.started.wait(), BOUND)  # job 0 ran long
        model.gate.set()  # and ends while jobs 1 and 2 are on their way back
        finals = [await broker.wait(j.id, BOUND) for j in jobs]
    finally:
        model.gate.set()
        runner.drain()
        await asyncio.wait_for(task, BOUND)
    assert not transport.cut_short
    # Handed back, not lost: each ran once, on an attempt that counted once.
    assert [(f.status, f.attempts, f.output) for f in finals] == [
        (JobStatus.SUCCEEDED, 1, {"n": n}) for n in range(3)
    ]


WORDS = ("ant", "bee", "cat")


async def one_batch_of_words(model: modelport.Model) -> list[tuple[JobRecord, list[Event]]]:
    """Each of :data:`WORDS` a job of ``model`` (queued before its runner starts: one batch),
    finished, with its events."""
    broker = Broker(MemoryStore())
    broker.add_endpoint(type(model).spec())
    await broker.start()
    runner = Runner(model, LocalTransport(broker), lease_wait=0.2, progress_interval=0.0)
    task: asyncio.Task[None] | None = None
    try:
        jobs = [await broker.submit(model.spec().name, {"word": w}) for w in WORDS]
        task = asyncio.create_task(runner.run())
        finals = [await broker.wait(j.id, BOUND) for j in jobs]
        assert [f.attempts for f in finals] == [1, 1, 1]
        return [(f, await broker.store.events(f.id)) for f in finals]
    finally:
        runner.drain()
        if task is not None:
            await asyncio.wait_for(task, BOUND)
        await broker.stop()


async def test_each_job_of_a_batch_gets_its_own_logs_progress_and_chunks() -> None:
    """A model without predict_batch is called once per job of a batch: what each call
    prints, logs, reports and streams belongs to that call's job alone."""
    done = await one_batch_of_words(Talkative())
    assert [f.output for f, _ in done] == ["chunk ant", "chunk bee", "chunk cat"]
    for (_, events), word in zip(done, WORDS, strict=True):
        said = sorted(
            str(e.data.get("message") if isinstance(e.data, dict) else e.data) for e in events
        )
        assert said == sorted(
            [f"printed {word}", f"logged {word}", f"half of {word}", f"chunk {word}"]
        ), events


async def test_each_job_of_a_batch_reports_after_calling_another_model() -> None:
    done = await one_batch_of_words(Outer())
    assert [f.output for f, _ in done] == ["ANT", "BEE", "CAT"]
    for (_, events), word in zip(done, WORDS, strict=True):
        progress = [e.data["message"] for e in events if e.type == "progress"]
        assert progress == [f"half of {word}"], events
