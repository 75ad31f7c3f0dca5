"""Logs per endpoint and per job: what a model prints and logs, captured in embedded and
remote workers, bounded, served as JSON and text, streamed as ``log`` events, deleted."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from modelport.settings import Settings
from modelport.stores.base import LogBounds
from modelport.worker import capture
from tests.conftest import WORKER_TOKEN, AppFactory, Serve, Workers, wait_for, worker_args
from tests.models.chatty import Chatty

WAIT = {"Prefer": "wait=20"}


def said(lines: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["level"], e["stream"], e["message"]) for e in lines]


async def test_prints_stderr_and_logging_become_the_job_s_log(app_factory: AppFactory) -> None:
    app = await app_factory([Chatty])
    http = app.http
    job = (await http.post("/endpoints/chatty/jobs", json={"input": {"word": "hi"}})).json()
    assert job["output"] == "HI"
    lines = (await http.get(f"/jobs/{job['id']}/logs")).json()
    assert said(lines) == [
        ("info", "stdout", "starting hi"),
        ("warning", "stderr", "on stderr hi"),
        ("warning", "logging", "careful with hi"),
        ("error", "logging", "bad hi"),
        ("info", "stdout", "no newline at the end"),
    ]
    assert {e["job_id"] for e in lines} == {job["id"]}
    assert all(job["created_at"] <= e["time"] <= job["completed_at"] for e in lines)
    assert [e["id"] for e in lines] == [1, 2, 3, 4, 5]

    other = (await http.post("/endpoints/chatty/jobs", json={"input": {"word": "yo"}})).json()
    everything = (await http.get("/endpoints/chatty/logs")).json()
    assert len(everything) == 10
    mine = (await http.get("/endpoints/chatty/logs", params={"job": other["id"]})).json()
    assert {e["job_id"] for e in mine} == {other["id"]} and len(mine) == 5
    assert mine[0]["message"] == "starting yo"
    worse = (await http.get("/endpoints/chatty/logs", params={"level": "warning"})).json()
    assert {e["level"] for e in worse} == {"warning", "error"} and len(worse) == 6
    errors = (await http.get("/endpoints/chatty/logs", params={"level": "ERROR"})).json()
    assert [e["message"] for e in errors] == ["bad hi", "bad yo"]
    since = (await http.get("/endpoints/chatty/logs", params={"since": other["created_at"]})).json()
    assert {e["job_id"] for e in since} == {other["id"]}
    newest = (await http.get("/endpoints/chatty/logs", params={"limit": 2})).json()
    assert [e["message"] for e in newest] == ["bad yo", "no newline at the end"]

    text = await http.get(f"/jobs/{job['id']}/logs", headers={"accept": "text/plain"})
    assert text.headers["content-type"].startswith("text/plain")
    first = text.text.splitlines()[0]
    assert first.endswith(f" INFO     {job['id']} stdout: starting hi"), first
    assert first[:4].isdigit() and first[19:24].startswith(".") and first[23] == "Z"

    # The job's event stream carries the same lines as log events, in order.
    events = await http.get(f"/jobs/{job['id']}/events", headers={"accept": "application/jsonl"})
    logged = [orjson.loads(line) for line in events.text.splitlines()]
    logged = [e for e in logged if e["event"] == "log"]
    assert [e["data"]["message"] for e in logged] == [m for _, _, m in said(lines)]

    gone = await http.delete("/endpoints/chatty/logs")
    assert gone.json() == {"endpoint": "chatty", "deleted": 10}
    assert (await http.get("/endpoints/chatty/logs")).json() == []
    assert (await http.get(f"/jobs/{job['id']}/logs")).json() == []


async def test_bad_log_queries_are_refused_naming_the_parameter(app_factory: AppFactory) -> None:
    app = await app_factory([Chatty])
    for params, word in [
        ({"since": "yesterday"}, "since"),
        ({"since": "nan"}, "since"),
        ({"level": "loud"}, "level"),
        ({"limit": "0"}, "limit"),
        ({"limit": "x"}, "limit"),
    ]:
        r = await app.http.get("/endpoints/chatty/logs", params=params)
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith(word), r.text
    assert (await app.http.get("/endpoints/nope/logs")).status_code == 404
    assert (await app.http.get("/jobs/nope/logs")).status_code == 404


async def test_a_model_printing_a_flood_is_bounded_per_job_and_per_endpoint(
    app_factory: AppFactory,
) -> None:
    settings = Settings(log_max_entries=1000, log_max_bytes=1_000_000)
    app = await app_factory([Chatty], settings=settings)
    http = app.http
    job = (
        await http.post(
            "/endpoints/chatty/jobs", json={"input": {"word": "x", "lines": 100_000}}, headers=WAIT
        )
    ).json()
    assert job["status"] == "succeeded"
    lines = (await http.get(f"/jobs/{job['id']}/logs", params={"limit": 10_000})).json()
    messages = [e["message"] for e in lines]
    # the first lines as they came, a note of what was left out, then the last ones
    assert len(messages) == capture.HEAD + 1 + capture.TAIL
    assert messages[4:6] == ["line 0 of x", "line 1 of x"]
    left_out = 100_000 + 5 - capture.HEAD - capture.TAIL
    assert messages[capture.HEAD] == (
        f"{left_out} lines left out: a job's log keeps its first {capture.HEAD} lines and its"
        f" last {capture.TAIL}"
    )
    assert messages[-2:] == ["line 99999 of x", "no newline at the end"]
    for _ in range(2):
        await http.post(
            "/endpoints/chatty/jobs", json={"input": {"word": "y", "lines": 2000}}, headers=WAIT
        )
    kept = (await http.get("/endpoints/chatty/logs", params={"limit": 10_000})).json()
    assert len(kept) == 1000  # the endpoint's bound: the newest lines
    assert kept[-1]["message"] == "no newline at the end" and kept[-1]["job_id"] != job["id"]
    stored = await app.server.broker.store.logs("chatty", limit=10_000)
    assert sum(len(e["message"]) + 64 for e in stored) <= 1_000_000


def test_a_remote_worker_process_ships_its_model_s_logs(serve: Serve, workers: Workers) -> None:
    server = serve(["--store", "memory://", "--worker-token", WORKER_TOKEN]).start().wait_ready()
    workers(worker_args(server, "tests/models/chatty.py:Chatty")).start()

    def online() -> bool:
        r = httpx.get(f"{server.url}/endpoints/chatty", timeout=5)
        return r.status_code == 200 and r.json()["workers_online"] > 0

    wait_for(online, 60, "the remote worker")
    r = httpx.post(
        f"{server.url}/endpoints/chatty/jobs",
        json={"input": {"word": "far"}},
        headers=WAIT,
        timeout=30,
    )
    job = r.json()
    assert job["status"] == "succeeded", r.text
    lines = httpx.get(f"{server.url}/jobs/{job['id']}/logs", timeout=5).json()
    assert said(lines)[:2] == [
        ("info", "stdout", "starting far"),
        ("warning", "stderr", "on stderr far"),
    ]
    assert {e["worker"] for e in lines} == {job["worker"]}


def test_log_bounds_default_to_a_week_of_at_most_16_mib() -> None:
    bounds = Settings().log_bounds
    assert bounds == LogBounds(10_000, 16 * 1024 * 1024, 7 * 86_400.0)


async def test_two_servers_over_redis_share_the_logs(
    app_factory: AppFactory, redis_url: str
) -> None:
    a = await app_factory([Chatty], store=redis_url)
    b = await app_factory(store=redis_url)
    job = await b.http.post("/endpoints/chatty/jobs", json={"input": {"word": "ab"}}, headers=WAIT)
    assert job.json()["status"] == "succeeded", job.text
    on_b = (await b.http.get(f"/jobs/{job.json()['id']}/logs")).json()
    assert [e["message"] for e in on_b][:1] == ["starting ab"]
    assert (await a.http.get("/endpoints/chatty/logs")).json() == on_b
    assert (await b.http.delete("/endpoints/chatty/logs")).json()["deleted"] == 5
    assert (await a.http.get("/endpoints/chatty/logs")).json() == []
