"""The capacity model's numbers (docs/capacity.md), measured: Redis commands per job for
each phase of the job path, counted with ``INFO commandstats`` around real processes (an
API server on Redis, a remote worker), must agree with the document within 20%.

``pytest tests/test_capacity.py -s`` prints the measured table (and bytes and CPU)."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from modelport.wire import Event, WorkerInfo
from modelport.worker.http import HttpTransport
from tests.conftest import (
    ROOT,
    WORKER_TOKEN,
    RedisServer,
    Serve,
    ServerProcess,
    Workers,
    online,
    wait_for,
    worker_args,
)
from tests.test_scale_e2e import api_servers, submit_all, wait_all

pytestmark = pytest.mark.e2e

N = 200
HEARTBEATS = 50
SLEEPY = "tests/models/remote.py:Sleepy"
DOC = ROOT / "docs" / "capacity.md"
PHASES = ("submit", "lease+result", "heartbeat", "event", "read")


class Probe:
    """Counts Redis commands (all clients) and discounts the ones it sends itself."""

    def __init__(self, port: int) -> None:
        self.redis = redis.Redis(port=port)
        self.own: Counter[str] = Counter()
        self.usec: dict[int, int] = {}
        self.last_usec = 0
        """Redis's CPU time (µs) over the last phase."""

    def stats(self) -> Counter[str]:
        self.own["info"] += 2
        raw = self.redis.info("commandstats")
        calls = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.items()})
        # The process's CPU: commandstats' usec counts a script's inner commands twice.
        cpu = self.redis.info("cpu")
        self.usec[id(calls)] = int(1e6 * (cpu["used_cpu_user"] + cpu["used_cpu_sys"]))
        return calls

    def delta(self, before: Counter[str]) -> Counter[str]:
        after = self.stats()
        self.last_usec = self.usec[id(after)] - self.usec[id(before)]
        out = Counter({k: after[k] - before[k] for k in after}) - self.own
        self.own.clear()
        self.own["info"] += 2  # the stats() that ends this phase shows in the next one
        return +out

    def used_memory(self) -> int:
        self.own["info"] += 1
        return int(self.redis.info("memory")["used_memory"])

    def zcard(self, key: str) -> int:
        self.own["zcard"] += 1
        return int(self.redis.zcard(key))


def _cpu_seconds(server: ServerProcess) -> float:
    assert server.proc is not None
    fields = Path(f"/proc/{server.proc.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_job(counts: Counter[str], n: int) -> dict[str, float]:
    return {k: v / n for k, v in sorted(counts.items())}


def documented() -> dict[str, float]:
    """The commands per job of each phase, from the table in docs/capacity.md."""
    found = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in PHASES:
            found[cells[0]] = float(cells[1])
    assert set(found) == set(PHASES), f"{DOC} lacks rows for {set(PHASES) - set(found)}"
    return found


async def _heartbeats(server: ServerProcess, probe: Probe) -> dict[str, tuple[Counter[str], int]]:
    """One job leased by a worker of this process's own; HEARTBEATS heartbeats for it, then
    as many progress events (each its own request, as a worker's progress_interval makes)."""
    from modelport.loader import load_models

    (model,) = load_models(SLEEPY)
    transport = HttpTransport(server.url, WORKER_TOKEN)
    try:
        worker_id = await transport.register(WorkerInfo("probe", ["sleepy"]), [model.spec()], None)
        await submit_all([server.url], "sleepy", [{"n": -1, "seconds": 0}])
        (leased,) = await transport.lease(worker_id, 1, 5)
        before = probe.stats()
        for _ in range(HEARTBEATS):
            assert await transport.heartbeat(worker_id, [leased.id]) == [leased.id]
        beats = probe.delta(before), probe.last_usec
        before = probe.stats()
        for i in range(HEARTBEATS):
            progress = Event(leased.id, "progress", {"fraction": i / HEARTBEATS})
            assert await transport.events(worker_id, [progress]) == [leased.id]
        return {"heartbeat": beats, "event": (probe.delta(before), probe.last_usec)}
    finally:
        await transport.aclose()


@pytest.fixture
def probe(own_redis: RedisServer) -> Iterator[Probe]:
    counting = Probe(own_redis.port)
    yield counting
    counting.redis.close()


def test_commands_per_job_match_the_capacity_model(
    own_redis: RedisServer, serve: Serve, workers: Workers, probe: Probe
) -> None:
    (server,) = api_servers(serve, own_redis.url, 1)
    first = workers(worker_args(server, SLEEPY)).start()  # defines the endpoint, and leaves
    wait_for(lambda: online(server, "sleepy") == 1, 60, "the worker")
    first.stop()
    wait_for(lambda: online(server, "sleepy") == 0, 60, "the worker gone")
    measured: dict[str, Counter[str]] = {}
    notes: dict[str, Any] = {}

    memory, before, cpu = probe.used_memory(), probe.stats(), _cpu_seconds(server)
    inputs = [{"n": n, "seconds": 0} for n in range(N)]
    answers = asyncio.run(submit_all([server.url], "sleepy", inputs, concurrency=16))
    assert Counter(r.status_code for r in answers) == {202: N}
    measured["submit"] = probe.delta(before)
    notes["Redis CPU µs per submit"] = probe.last_usec / N
    notes["server CPU ms per submit"] = (_cpu_seconds(server) - cpu) * 1000 / N
    notes["Redis bytes per queued job"] = (probe.used_memory() - memory) / N

    before, cpu = probe.stats(), _cpu_seconds(server)
    worker = workers(worker_args(server, SLEEPY)).start()
    wait_for(lambda: probe.zcard("modelport:d:sleepy") == N, 60, "every job done")
    measured["lease+result"] = probe.delta(before)
    notes["Redis CPU µs per job run"] = probe.last_usec / N
    notes["server CPU ms per job run"] = (_cpu_seconds(server) - cpu) * 1000 / N
    wait_for(lambda: online(server, "sleepy") == 1, 10, "the worker listed")
    worker.stop()

    for phase, (counts, usec) in asyncio.run(_heartbeats(server, probe)).items():
        measured[phase] = counts
        notes[f"Redis CPU µs per {phase}"] = usec / HEARTBEATS

    ids = [r.json()["id"] for r in answers]
    before = probe.stats()
    finals = asyncio.run(wait_all([server.url], ids, 60))
    measured["read"] = probe.delta(before)
    notes["Redis CPU µs per read"] = probe.last_usec / N
    assert Counter(f["status"] for f in finals) == {"succeeded": N}
    job_key, events_key = f"modelport:job:{ids[0]}", f"modelport:ev:{ids[0]}"
    notes["Redis bytes per finished job"] = sum(
        int(probe.redis.memory_usage(k, samples=0) or 0) for k in (job_key, events_key)
    )

    per_phase = {
        p: _per_job(measured[p], HEARTBEATS if p in ("heartbeat", "event") else N) for p in PHASES
    }
    for phase, per_job in per_phase.items():
        shown = ", ".join(f"{k} {v:.2f}" for k, v in per_job.items() if v >= 0.01)
        print(f"| {phase} | {sum(per_job.values()):.2f} | {shown} |")
    for what, value in notes.items():
        print(f"{what}: {value:.1f}")
    expected = documented()
    for phase in PHASES:
        total = sum(per_phase[phase].values())
        assert abs(total - expected[phase]) <= 0.2 * expected[phase], (
            f"{phase}: {total:.2f} commands per job measured, {expected[phase]} documented",
            per_phase[phase],
        )


def test_the_model_document_has_its_table() -> None:
    assert all(v > 0 for v in documented().values())
    assert re.search(r"1,000 workers", DOC.read_text())
