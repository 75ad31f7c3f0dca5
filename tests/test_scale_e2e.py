"""End-to-end scale-out: several API server processes on one Redis, workers and clients
spread over them, servers and Redis going away."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelport import Client
from tests.conftest import (
    WORKER_TOKEN,
    RedisServer,
    Serve,
    ServerProcess,
    Workers,
    online,
    wait_for,
    worker_args,
)

pytestmark = pytest.mark.e2e

SLEEPY = "tests/models/remote.py:Sleepy"
TICKER = "tests/models/stream.py:Ticker"


def api_servers(serve: Serve, store: str, n: int, *extra: str) -> list[ServerProcess]:
    servers = [
        serve(["--worker-token", WORKER_TOKEN, "--store", store, *extra]).start() for _ in range(n)
    ]
    return [s.wait_ready() for s in servers]


async def submit_all(
    urls: list[str], endpoint: str, inputs: list[dict[str, Any]], concurrency: int = 32
) -> list[httpx.Response]:
    """Submit every input (respond-async), spreading them over the servers round-robin."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(i: int, body: dict[str, Any]) -> httpx.Response:
            async with gate:
                return await http.post(
                    f"{urls[i % len(urls)]}/endpoints/{endpoint}/jobs",
                    json={"input": body},
                    headers={"Prefer": "respond-async"},
                )

        return await asyncio.gather(*(one(i, b) for i, b in enumerate(inputs)))


async def wait_all(urls: list[str], job_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Each job's final record, asked of a server other than the one it was submitted to;
    a server that is gone is skipped for the next."""
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=timeout + 10) as http:

        async def one(i: int, job_id: str) -> dict[str, Any]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            k = i + 1
            async with gate:
                while loop.time() < deadline:
                    url = urls[k % len(urls)]
                    try:
                        r = await http.get(f"{url}/jobs/{job_id}", headers={"Prefer": "wait=10"})
                    except httpx.TransportError:
                        k += 1
                        continue
                    if r.status_code == 503 and "retry-after" in r.headers:
                        # The store is switching (a Sentinel failover): back off as told.
                        await asyncio.sleep(min(float(r.headers["retry-after"]), 2.0))
                        continue
                    assert r.status_code == 200, r.text
                    if r.json()["status"] in ("succeeded", "failed", "cancelled", "expired"):
                        return dict(r.json())
                raise AssertionError(f"job {job_id} not final after {timeout} s")

        return await asyncio.gather(*(one(i, j) for i, j in enumerate(job_ids)))


def test_two_servers_share_jobs_workers_and_results(
    serve: Serve, workers: Workers, redis_url: str, trace: Path
) -> None:
    a, b = api_servers(serve, redis_url, 2)
    workers(worker_args(a, SLEEPY)).start()
    workers(worker_args(b, SLEEPY)).start()
    # Each server lists both workers: the registry lives in the store.
    wait_for(lambda: online(a, "sleepy") == 2 and online(b, "sleepy") == 2, 60, "2 workers")
    inputs = [{"n": n, "seconds": 0.002} for n in range(500)]
    answers = asyncio.run(submit_all([a.url, b.url], "sleepy", inputs))
    assert Counter(r.status_code for r in answers) == {202: 500}
    finals = asyncio.run(wait_all([a.url, b.url], [r.json()["id"] for r in answers], 120))
    assert Counter(f["status"] for f in finals) == {"succeeded": 500}
    assert sorted(f["output"]["n"] for f in finals) == list(range(500))
    done = Counter(line.split()[1] for line in trace.read_text().splitlines() if "done" in line)
    assert len(done) == 500 and set(done.values()) == {1}, "each job ran exactly once"
    # Jobs submitted to one server were computed by the worker connected to the other.
    pids = Counter(f["output"]["pid"] for f in finals)
    assert len(pids) == 2, pids


def test_a_result_streams_to_a_client_waiting_on_another_server(
    serve: Serve, workers: Workers, redis_url: str
) -> None:
    a, b = api_servers(serve, redis_url, 2)
    workers(worker_args(b, TICKER)).start()
    # The endpoint exists only because a worker brought it to b; a learns it from the store.
    wait_for(lambda: online(a, "ticker") == 1, 60, "the ticker worker, seen from a")
    with httpx.stream(
        "POST",
        f"{a.url}/endpoints/ticker/jobs",
        json={"input": {"n": 5, "every": 0.05}},
        headers={"Accept": "application/jsonl"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        items = [orjson.loads(line) for line in r.iter_lines() if line]
    kinds = [i["event"] for i in items]
    assert kinds == ["queued", "started", *["output"] * 5, "succeeded"], items
    assert items[-1]["data"]["output"] == "w0 w1 w2 w3 w4 "
    with Client(b.url) as c:
        assert c.predict("ticker", n=3, every=0) == "w0 w1 w2 "


def test_kill_9_of_one_server_loses_no_accepted_job(
    serve: Serve, workers: Workers, redis_url: str
) -> None:
    a, b = api_servers(serve, redis_url, 2)
    workers(worker_args(a, SLEEPY)).start()
    orphan = workers(worker_args(b, SLEEPY)).start()
    wait_for(lambda: online(a, "sleepy") == 2, 60, "2 workers")
    inputs = [{"n": n, "seconds": 0.01} for n in range(200)]
    answers = asyncio.run(submit_all([a.url, b.url], "sleepy", inputs))
    assert Counter(r.status_code for r in answers) == {202: 200}
    wait_for(lambda: online(a, "sleepy") == 2 and _some_done(a), 60, "work under way")
    b.kill()  # with queued and running jobs, and a worker connected to it
    # Clients go on with the surviving server; b's worker holds leases nobody renews, which
    # expire, so its jobs run again on a's worker.
    more = asyncio.run(submit_all([a.url], "sleepy", [{"n": n} for n in range(200, 250)]))
    assert Counter(r.status_code for r in more) == {202: 50}
    ids = [r.json()["id"] for r in answers + more]
    finals = asyncio.run(wait_all([a.url], ids, 120))
    assert Counter(f["status"] for f in finals) == {"succeeded": 250}
    assert sorted(f["output"]["n"] for f in finals) == list(range(250))
    # Its server is gone, so a SIGTERM could not drain it: it would retry until killed.
    orphan.kill_all()


def _some_done(server: ServerProcess) -> bool:
    r = httpx.get(f"{server.url}/metrics", timeout=5)
    return 'modelport_jobs_finished_total{endpoint="sleepy",outcome="succeeded"}' in r.text


def test_restarted_servers_finish_1000_queued_jobs(
    serve: Serve, workers: Workers, redis_url: str
) -> None:
    a, b = api_servers(serve, redis_url, 2)
    first = workers(worker_args(a, SLEEPY)).start()
    wait_for(lambda: online(b, "sleepy") == 1, 60, "the worker, seen from b")
    first.stop()  # it leaves; its endpoint stays defined in the store
    wait_for(lambda: online(a, "sleepy") == 0, 60, "the worker gone")
    inputs = [{"n": n, "seconds": 0} for n in range(1000)]
    answers = asyncio.run(submit_all([a.url, b.url], "sleepy", inputs))
    assert Counter(r.status_code for r in answers) == {202: 1000}
    a.stop()
    b.kill()
    # New servers on the same Redis find the queue as it was, and workers drain it.
    c, d = api_servers(serve, redis_url, 2)
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{c.url}/endpoints/sleepy").json()["queue_depth"] == 1000
    workers(worker_args(c, SLEEPY)).start()
    workers(worker_args(d, SLEEPY)).start()
    finals = asyncio.run(wait_all([c.url, d.url], [r.json()["id"] for r in answers], 180))
    errors = [f["error"] for f in finals if f["status"] != "succeeded"]
    assert Counter(f["status"] for f in finals) == {"succeeded": 1000}, errors[:5]
    assert sorted(f["output"]["n"] for f in finals) == list(range(1000))


def test_the_queue_limit_holds_across_servers(serve: Serve, redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "echo.toml"
    config.write_text(
        '[endpoint]\nname = "echo"\n[inputs]\ntext = { type = "string" }\n'
        '[outputs]\ntext = { type = "string" }\n'
    )
    a, b = api_servers(serve, redis_url, 2, "--config", str(config), "--max-queue-length", "50")
    # No worker: the jobs stay queued.
    answers = asyncio.run(
        submit_all([a.url, b.url], "echo", [{"text": str(n)} for n in range(200)], 64)
    )
    codes = Counter(r.status_code for r in answers)
    assert codes == {202: 50, 429: 150}, codes
    assert all(r.headers.get("retry-after") for r in answers if r.status_code == 429)
    assert all(
        r.headers["content-type"].startswith("application/problem+json")
        for r in answers
        if r.status_code == 429
    )
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{b.url}/endpoints/echo").json()["queue_depth"] == 50
        for r in answers:
            if r.status_code == 202:  # every accepted job is whole and queued
                job = http.get(f"{a.url}/jobs/{r.json()['id']}").json()
                assert job["status"] == "queued"


def test_redis_going_away_answers_503_then_recovers(
    own_redis: RedisServer, serve: Serve, workers: Workers
) -> None:
    # own_redis first, so it stops last: a worker draining against a server without its
    # Redis would retry its last results until its stop timed out.
    (server,) = api_servers(serve, own_redis.url, 1)
    workers(worker_args(server, SLEEPY)).start()
    wait_for(lambda: online(server, "sleepy") == 1, 60, "the worker")
    with Client(server.url) as c:
        assert c.predict("sleepy", n=1, seconds=0)["n"] == 1
    own_redis.kill()
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{server.url}/endpoints/sleepy/jobs", json={"input": {"n": 2}})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"]
        assert "redis" in r.json()["detail"]
        assert http.get(f"{server.url}/health/ready").status_code == 503
        assert http.get(f"{server.url}/health/live").status_code == 200
        own_redis.start()  # empty: this Redis keeps nothing on disk
        # The worker re-registers (its spec comes back with it) and work resumes.
        wait_for(lambda: _predicts(server.url, random.randrange(100, 200)), 60, "recovery")


def _predicts(url: str, n: int) -> bool:
    try:
        r = httpx.post(f"{url}/endpoints/sleepy/jobs", json={"input": {"n": n}}, timeout=10)
    except httpx.TransportError:
        return False
    return r.status_code == 200 and r.json()["output"]["n"] == n


def test_serve_processes_shares_one_port_over_redis(serve: Serve, redis_url: str) -> None:
    (server,) = api_servers(serve, redis_url, 1, "tests/models/basic.py:Add", "--processes", "2")
    instances: set[str] = set()
    # Each request on a new connection: the kernel hands connections to either process.
    for i in range(200):
        with httpx.Client(timeout=30) as http:
            r = http.post(f"{server.url}/endpoints/add/jobs", json={"input": {"a": i, "b": 1}})
        assert r.status_code == 200, r.text
        assert r.json()["output"] == {"sum": i + 1}
        instances.add(r.json()["worker"].split(":")[1])
        if len(instances) == 2:
            break
    assert len(instances) == 2, "both processes served requests"
    # A job submitted through one process is visible through either.
    with Client(server.url) as c:
        job = c.submit("add", a=2, b=3)
    for _ in range(10):  # new connections, so either process answers
        with Client(server.url) as c:
            assert c.job(job.id).wait(timeout=30).output == {"sum": 5}
    with pytest.raises(RuntimeError, match="needs a store they can share"):
        api_servers(serve, "memory://", 1, "tests/models/basic.py:Add", "--processes", "2")
