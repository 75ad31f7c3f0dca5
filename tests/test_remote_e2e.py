"""End-to-end with real processes: an API server and remote `modelport worker` processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from modelport import Client
from tests.conftest import (
    WORKER_TOKEN,
    Serve,
    ServerProcess,
    WorkerProcess,
    Workers,
    online,
    wait_for,
    worker_args,
)

pytestmark = pytest.mark.e2e

SLEEPY = "tests/models/remote.py:Sleepy"
BATCHER = "tests/models/remote.py:Batcher"
PAIR = "tests/models/remote.py:Pair"


def api_server(serve: Serve, tmp_path: Path) -> ServerProcess:
    server: ServerProcess = serve(
        ["--worker-token", WORKER_TOKEN, "--store", f"sqlite:///{tmp_path}/jobs.db"]
    )
    return server.start().wait_ready()


def online_pids(server: ServerProcess, endpoint: str) -> set[int]:
    r = httpx.get(f"{server.url}/endpoints/{endpoint}", timeout=5)
    if r.status_code != 200:
        return set()
    return {w["metadata"]["pid"] for w in r.json()["workers"] if w["state"] == "online"}


def test_kill_9_of_a_worker_holding_jobs_loses_none(
    serve: Serve, workers: Workers, tmp_path: Path, trace: Path
) -> None:
    server = api_server(serve, tmp_path)
    first: WorkerProcess = workers(worker_args(server, SLEEPY)).start()
    second: WorkerProcess = workers(worker_args(server, SLEEPY)).start()
    wait_for(lambda: online(server, "sleepy") == 2, 60, "two workers online")
    with Client(server.url) as c:
        jobs = [c.submit("sleepy", n=n, seconds=0.3) for n in range(12)]
        # Wait until a worker process is computing a job, then cut that worker's power.
        wait_for(lambda: "start" in trace.read_text(), 30, "a job to start")
        first_start = next(
            line for line in trace.read_text().splitlines() if line.startswith("start")
        )
        victim_pids = {int(first_start.split()[2])}
        victim = first if _group_has(first, victim_pids) else second
        victim.kill_all()
        finals = [c.job(j.id).wait(timeout=60) for j in jobs]
    assert [j.status for j in finals] == ["succeeded"] * 12
    assert [j.output["n"] for j in finals] == list(range(12))
    assert all(j.output["pid"] not in victim_pids for j in finals)
    retried = [j for j in finals if j.data["attempts"] > 1]
    assert retried, "the killed worker held at least one job, which must have run again"


def _group_has(worker: WorkerProcess, pids: set[int]) -> bool:
    assert worker.proc is not None
    return any(os.getpgid(pid) == worker.proc.pid for pid in pids if _alive(pid))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_300_jobs_while_workers_are_killed_and_restarted(
    serve: Serve, workers: Workers, tmp_path: Path, trace: Path
) -> None:
    server = api_server(serve, tmp_path)
    pool = [workers(worker_args(server, SLEEPY)).start() for _ in range(2)]
    wait_for(lambda: online(server, "sleepy") >= 1, 60, "a worker online")
    rng = random.Random(7)
    with Client(server.url) as c:
        jobs = []
        for n in range(300):
            jobs.append(c.submit("sleepy", n=n, seconds=0.005))
            if n % 60 == 30:
                index = rng.randrange(len(pool))
                pool[index].kill_all()
                pool[index] = workers(worker_args(server, SLEEPY)).start()
        finals = [c.job(j.id).wait(timeout=120) for j in jobs]
    assert Counter(j.status for j in finals) == {"succeeded": 300}
    assert sorted(j.output["n"] for j in finals) == list(range(300))
    done = Counter(
        int(line.split()[1]) for line in trace.read_text().splitlines() if line.startswith("done")
    )
    assert set(done) == set(range(300))


def test_sigterm_drains_without_failing_a_job(
    serve: Serve, workers: Workers, tmp_path: Path, trace: Path
) -> None:
    server = api_server(serve, tmp_path)
    worker: WorkerProcess = workers(worker_args(server, SLEEPY)).start()
    wait_for(lambda: online(server, "sleepy") == 1, 60, "the worker online")
    with Client(server.url) as c:
        running = c.submit("sleepy", n=1, seconds=1.5)
        wait_for(lambda: "start 1" in trace.read_text(), 30, "the job to start")
        waiting = c.submit("sleepy", n=2, seconds=0)
        worker.terminate()
        assert worker.proc is not None
        assert worker.proc.wait(timeout=30) == 0
        finished = running.wait(timeout=10)
        assert finished.status == "succeeded" and finished.data["attempts"] == 1
        # The worker left without taking more work: the second job waits for another worker.
        assert waiting.refresh().status == "queued"
        assert online(server, "sleepy") == 0
        workers(worker_args(server, SLEEPY)).start()
        assert waiting.wait(timeout=60).status == "succeeded"


def test_batch_size_8_model_gets_real_batches(
    serve: Serve, workers: Workers, tmp_path: Path, trace: Path
) -> None:
    server = api_server(serve, tmp_path)
    workers(worker_args(server, BATCHER)).start()
    wait_for(lambda: online(server, "batcher") == 1, 60, "the worker online")
    with Client(server.url) as c:
        jobs = [c.submit("batcher", n=n) for n in range(64)]
        outputs = [c.job(j.id).result(timeout=60) for j in jobs]
    assert outputs == [n * 10 for n in range(64)]
    sizes = [int(line.split()[1]) for line in trace.read_text().splitlines()]
    assert sum(sizes) == 64
    assert max(sizes) == 8
    assert len(sizes) <= 16, f"64 jobs should need few batches, got {sizes}"


def test_a_concurrency_2_model_runs_two_jobs_at_once_in_one_process(
    serve: Serve, workers: Workers, tmp_path: Path, trace: Path
) -> None:
    server = api_server(serve, tmp_path)
    workers(worker_args(server, PAIR)).start()
    wait_for(lambda: online(server, "pair") == 2, 60, "both lanes of the worker online")
    with Client(server.url) as c:
        jobs = [c.submit("pair", n=n) for n in range(6)]
        finals = [c.job(j.id).wait(timeout=60) for j in jobs]
    # Each job returns only once a second one ran beside it (the barrier would break).
    assert [(f.status, f.data.get("error")) for f in finals] == [("succeeded", None)] * 6
    assert len({f.data["output"]["pid"] for f in finals}) == 1
    assert len({f.data["worker"] for f in finals}) == 2
    assert [line.split()[0] for line in trace.read_text().splitlines()] == ["setup"]


def test_devices_are_dealt_out_and_workers_describe_themselves(
    serve: Serve, workers: Workers, tmp_path: Path
) -> None:
    server = api_server(serve, tmp_path)
    workers([*worker_args(server, SLEEPY, processes=3), "--devices", "3, 5"]).start()
    wait_for(lambda: online(server, "sleepy") == 3, 60, "three worker processes online")
    listed = httpx.get(f"{server.url}/endpoints/sleepy", timeout=5).json()["workers"]
    by_slot = {w["metadata"]["slot"]: w["metadata"] for w in listed}
    # Each process sees only its GPU (in turn); none loaded torch, so each computes on the CPU.
    assert {slot: m["cuda_visible_devices"] for slot, m in by_slot.items()} == {
        0: "3",
        1: "5",
        2: "3",
    }
    assert {m["device"] for m in by_slot.values()} == {"cpu"}
    assert {m["model"]["class"] for m in by_slot.values()} == {"remote.py:Sleepy"}


def test_a_bad_devices_list_is_refused() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "worker",
            SLEEPY,
            "--server",
            "http://127.0.0.1:9",
            "--token",
            WORKER_TOKEN,
            "--devices",
            "0,,1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "--devices: give GPU ids separated by commas, got '0,,1'" in done.stderr


def test_crashed_child_is_restarted_and_its_jobs_requeued_at_once(
    serve: Serve, workers: Workers, tmp_path: Path, trace: Path
) -> None:
    server = api_server(serve, tmp_path)
    # Slow's lease is 60 s: a requeue that waited for expiry would time this test out.
    workers(worker_args(server, "tests/models/basic.py:Slow", processes=2)).start()
    wait_for(lambda: online(server, "slow") == 2, 60, "two worker processes online")
    with Client(server.url) as c:
        job = c.submit("slow", n=5, seconds=2)
        wait_for(lambda: job.refresh().status == "running", 30, "the job to run")
        pids = {w["id"]: w["metadata"]["pid"] for w in c.endpoint("slow")["workers"]}
        holder = job.data["worker"]
        victim = pids[holder]
        os.kill(victim, signal.SIGKILL)
        final = job.wait(timeout=20)
        assert final.status == "succeeded"
        assert final.data["attempts"] == 2
        assert final.data["worker"] != holder
    wait_for(
        lambda: online(server, "slow") == 2 and victim not in online_pids(server, "slow"),
        60,
        "the crashed process replaced",
    )
