"""Endpoints at run time: added, replaced (jobs keep their revision), disabled and deleted,
under load, with workers joining and leaving, on one server and on two sharing Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from modelport.model import Model
from modelport.server.local import LocalTransport
from modelport.settings import Settings
from modelport.worker.runner import Runner, lanes, set_up
from tests.conftest import (
    WORKER_TOKEN,
    AppFactory,
    InProcessApp,
    Serve,
    Workers,
    eventually,
    online,
    wait_for,
    worker_args,
)
from tests.models.versioned import ReverseV1, ReverseV2

BOUND = 30.0
ASYNC = {"Prefer": "respond-async"}
TOKEN = "runtime-endpoints-worker-token"
WORKER = {"Authorization": f"Bearer {TOKEN}"}
FAST = Settings(reap_interval=0.05, worker_token=TOKEN)

TOML = """\
[endpoint]
description = "Echoes a word"
max_attempts = 2

[inputs]
word = { type = "string", required = true, max_length = 20 }

[outputs]
word = { type = "string" }
"""


@contextlib.asynccontextmanager
async def serving(app: InProcessApp, model: Model, name: str) -> AsyncIterator[list[Runner]]:
    """A worker of ``model`` joined to ``app``'s broker (the worker API called in-process),
    until the block ends: then it finishes what it holds and leaves."""
    group = lanes(model, LocalTransport(app.server.broker), name, lease_wait=0.2)
    await set_up(group)
    tasks = [asyncio.create_task(r.run()) for r in group]
    try:
        yield group
    finally:
        for runner in group:
            runner.drain()
        await asyncio.wait_for(asyncio.gather(*tasks), BOUND)


async def put(http: httpx.AsyncClient, name: str, spec: Any, **kw: Any) -> httpx.Response:
    if isinstance(spec, str):
        headers = {"content-type": "application/toml", **kw.pop("headers", {})}
        return await http.put(f"/endpoints/{name}", content=spec, headers=headers, **kw)
    return await http.put(f"/endpoints/{name}", json=spec, **kw)


async def finals(http: httpx.AsyncClient, ids: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for job_id in ids:
        r = await http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=20"})
        assert r.json()["status"] not in ("queued", "running"), r.text
        out.append(r.json())
    return out


async def test_a_toml_spec_put_at_run_time_is_served_by_a_worker_that_brings_it(
    app_factory: AppFactory,
) -> None:
    app = await app_factory(settings=FAST)
    http = app.http
    r = await put(http, "echo-word", TOML)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/endpoints/echo-word"
    body = r.json()
    assert (body["name"], body["revision"], body["state"]) == ("echo-word", 1, "no-workers")
    assert body["input_schema"]["required"] == ["word"]
    assert [e["name"] for e in (await http.get("/endpoints")).json()] == ["echo-word"]
    doc = (await http.get("/openapi.json")).json()
    assert "/endpoints/echo-word/jobs" in doc["paths"]
    again = await put(http, "echo-word", TOML)
    assert (again.status_code, again.json()["revision"]) == (200, 1)  # the same spec: no change

    job = await http.post(
        "/endpoints/echo-word/jobs", json={"input": {"word": "hi"}}, headers=ASYNC
    )
    assert job.status_code == 202, job.text
    # A remote worker brings the spec the server holds, as GET /endpoints/{name} shows it.
    worker = await http.post(
        "/workers",
        json={"name": "w", "endpoints": [body["spec"]], "max_batch_size": 1},
        headers=WORKER,
    )
    assert worker.status_code == 201, worker.text
    wid = worker.json()["worker_id"]
    lease = await http.post(f"/workers/{wid}/lease", json={"wait": 5}, headers=WORKER)
    leased = lease.json()["jobs"]
    assert [j["id"] for j in leased] == [job.json()["id"]]
    result = {"job_id": leased[0]["id"], "endpoint": "echo-word", "attempt": 1}
    done = await http.post(
        f"/workers/{wid}/results",
        json={"results": [{**result, "output": {"word": "hi"}}]},
        headers=WORKER,
    )
    assert done.json()["accepted"] == [leased[0]["id"]]
    (final,) = await finals(http, [job.json()["id"]])
    assert (final["status"], final["output"], final["revision"]) == ("succeeded", {"word": "hi"}, 1)


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [
        (
            TOML.replace("[inputs]", "[inputz]"),
            {"content-type": "application/toml"},
            422,
            "[inputz]",
        ),
        ("[endpoint\n", {"content-type": "application/toml"}, 422, ""),
        (
            '{"endpoint": {"name": "other"}, "inputs": {}}',
            {"content-type": "application/json"},
            422,
            "endpoint.name",
        ),
        (
            '{"inputs": {"x": {"type": "integr"}}}',
            {"content-type": "application/json"},
            422,
            "inputs.x",
        ),
        (
            '{"precomputed": "/etc/passwd"}',
            {"content-type": "application/json"},
            422,
            "endpoint.precomputed",
        ),
        (TOML, {"content-type": "text/plain"}, 400, None),
        ("[1, 2]", {"content-type": "application/json"}, 422, ""),
    ],
)
async def test_a_wrong_spec_is_refused_naming_the_key(
    app_factory: AppFactory, body: str, headers: dict[str, str], status: int, field: str | None
) -> None:
    app = await app_factory()
    r = await app.http.put("/endpoints/word", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field:
        assert field in [e["field"] for e in r.json()["errors"]], r.text
    assert (await app.http.get("/endpoints/word")).status_code == 404


async def test_replaced_under_load_every_job_is_answered_by_its_own_revision(
    app_factory: AppFactory,
) -> None:
    app = await app_factory(settings=FAST)
    http = app.http
    assert (await put(http, "reverse", ReverseV1.spec().to_dict())).status_code == 201
    ids: list[str] = []

    async def submit(n: int, **extra: Any) -> None:
        for i in range(n):
            r = await http.post(
                "/endpoints/reverse/jobs",
                json={"input": {"text": f"job{len(ids)}", "pause": 0.005, **extra}},
                headers=ASYNC,
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
            if i % 5 == 0:
                await asyncio.sleep(0)

    async with serving(app, ReverseV1(), "reverse-v1"):
        await submit(40)  # many still queued when the endpoint is replaced
        replaced = await put(http, "reverse", ReverseV2.spec().to_dict())
        assert (replaced.status_code, replaced.json()["revision"]) == (200, 2), replaced.text
        assert replaced.json()["earlier_revisions"] == [1]
        # The old revision's input is refused now: "upper" is only in revision 2, and back.
        await submit(20, upper=True)
        async with serving(app, ReverseV2(), "reverse-v2"):
            await submit(20, upper=True)
            jobs = await finals(http, ids)
    assert len(jobs) == 80
    for job in jobs:
        assert job["status"] == "succeeded", job
        # revision 1's jobs by the v1 worker, revision 2's by the v2 worker, nothing crossed
        assert job["output"]["version"] == str(job["revision"]), job
        assert job["worker"].endswith(f"reverse-v{job['revision']}"), job
    assert [j["revision"] for j in jobs] == [1] * 40 + [2] * 40
    assert all(j["output"]["text"].isupper() for j in jobs[40:])
    # A worker bringing revision 1's spec still joins (and serves only revision 1's jobs).
    old = await http.post(
        "/workers", json={"name": "late", "endpoints": [ReverseV1.spec().to_dict()]}, headers=WORKER
    )
    assert old.status_code == 201, old.text


async def test_queued_jobs_of_a_revision_no_worker_serves_fail_saying_why(
    app_factory: AppFactory,
) -> None:
    app = await app_factory(settings=FAST)
    http = app.http
    await put(http, "reverse", ReverseV1.spec().to_dict())
    old = [
        (
            await http.post("/endpoints/reverse/jobs", json={"input": {"text": "a"}}, headers=ASYNC)
        ).json()["id"]
        for _ in range(3)
    ]
    await put(http, "reverse", ReverseV2.spec().to_dict())
    async with serving(app, ReverseV2(), "reverse-v2"):
        new = await http.post(
            "/endpoints/reverse/jobs", json={"input": {"text": "b"}}, headers={"Prefer": "wait=10"}
        )
        assert new.json()["output"] == {"text": "b", "version": "2"}
        for job in await finals(http, old):
            assert job["status"] == "failed"
            assert "replaced by revision 2" in job["error"], job
            assert "no worker serves revision 1" in job["error"], job


async def test_disabled_refuses_submits_with_the_reason_and_queued_jobs_wait(
    app_factory: AppFactory,
) -> None:
    app = await app_factory(settings=FAST)
    http = app.http
    await put(http, "reverse", ReverseV1.spec().to_dict())
    queued = (
        await http.post("/endpoints/reverse/jobs", json={"input": {"text": "q"}}, headers=ASYNC)
    ).json()["id"]
    r = await http.post("/endpoints/reverse/disable", json={"reason": "retraining"})
    assert (r.status_code, r.json()["state"], r.json()["reason"]) == (200, "disabled", "retraining")
    refused = await http.post("/endpoints/reverse/jobs", json={"input": {"text": "x"}})
    assert refused.status_code == 503
    assert refused.json()["detail"] == "endpoint 'reverse' is disabled: retraining"
    assert int(refused.headers["retry-after"]) > 0
    async with serving(app, ReverseV1(), "reverse-v1") as group:
        await eventually(lambda: _polled(app, group), BOUND, "the worker's first long poll")
        waiting = await http.get(f"/jobs/{queued}", headers={"Prefer": "wait=0.5"})
        assert waiting.json()["status"] == "queued"  # disabled: the worker takes nothing
        listed = (await http.get("/endpoints")).json()[0]
        assert (listed["state"], listed["queue_depth"]) == ("disabled", 1)
        enabled = await http.post("/endpoints/reverse/enable")
        assert enabled.status_code == 200, enabled.text
        assert enabled.json()["state"] == "ready", enabled.text
        (job,) = await finals(http, [queued])
        assert job["output"] == {"text": "q", "version": "1"}
        ok = await http.post("/endpoints/reverse/jobs", json={"input": {"text": "y"}})
        assert ok.json()["status"] == "succeeded"
    bad = await http.post("/endpoints/reverse/disable", json={"reason": 5})
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "reason")
    assert (await http.post("/endpoints/nope/disable")).status_code == 404


async def _polled(app: InProcessApp, group: list[Runner]) -> bool:
    return all(r.worker_id in app.server.broker.workers for r in group)


async def test_delete_drains_the_queue_then_refuses_the_name(app_factory: AppFactory) -> None:
    app = await app_factory(settings=FAST)
    http = app.http
    await put(http, "reverse", ReverseV1.spec().to_dict())
    ids = [
        (
            await http.post(
                "/endpoints/reverse/jobs", json={"input": {"text": str(i)}}, headers=ASYNC
            )
        ).json()["id"]
        for i in range(10)
    ]
    deleting = await http.delete("/endpoints/reverse")
    assert deleting.status_code == 202, deleting.text
    assert deleting.json() == {"name": "reverse", "state": "deleting", "queued": 10, "running": 0}
    refused = await http.post("/endpoints/reverse/jobs", json={"input": {"text": "late"}})
    assert refused.status_code == 503
    assert "being deleted" in refused.json()["detail"]
    async with serving(app, ReverseV1(), "reverse-v1"):
        jobs = await finals(http, ids)

        async def gone() -> bool:
            return (await http.get("/endpoints/reverse")).status_code == 404

        await eventually(gone, BOUND, "the drained endpoint to be removed")
    assert [j["output"]["text"] for j in jobs] == [str(i) for i in range(10)]
    assert (await http.get("/endpoints")).json() == []
    assert "/endpoints/reverse/jobs" not in (await http.get("/openapi.json")).json()["paths"]
    again = await http.post(
        "/workers", json={"name": "w", "endpoints": [ReverseV1.spec().to_dict()]}, headers=WORKER
    )
    assert again.status_code == 409
    assert "was deleted" in again.json()["detail"] and "PUT /endpoints/reverse" in again.text
    submit = await http.post("/endpoints/reverse/jobs", json={"input": {"text": "x"}})
    assert submit.status_code == 404 and "was deleted" in submit.json()["detail"]
    # PUT defines it again, as the next revision; the old jobs are still there to read.
    back = await put(http, "reverse", ReverseV1.spec().to_dict())
    assert (back.status_code, back.json()["revision"]) == (201, 2)
    assert (await http.get(f"/jobs/{ids[0]}")).json()["status"] == "succeeded"


async def test_delete_without_drain_cancels_queued_and_running_jobs(
    app_factory: AppFactory,
) -> None:
    app = await app_factory(settings=FAST)
    http = app.http
    await put(http, "reverse", ReverseV1.spec().to_dict())
    async with serving(app, ReverseV1(), "reverse-v1"):
        ids = [
            (
                await http.post(
                    "/endpoints/reverse/jobs",
                    json={"input": {"text": str(i), "pause": 0.3}},
                    headers=ASYNC,
                )
            ).json()["id"]
            for i in range(5)
        ]

        async def started() -> bool:
            return bool((await http.get(f"/jobs/{ids[0]}")).json()["status"] == "running")

        await eventually(started, BOUND, "the first job to start")
        r = await http.delete("/endpoints/reverse", params={"drain": "false"})
        assert r.json() == {"name": "reverse", "state": "deleted", "queued": 0, "running": 0}
        jobs = await finals(http, ids)
    assert {j["status"] for j in jobs} == {"cancelled"}
    assert jobs[-1]["error"] == "cancelled: endpoint 'reverse' was deleted"
    assert (await http.delete("/endpoints/reverse", params={"drain": "maybe"})).status_code == 404
    await put(http, "reverse", ReverseV1.spec().to_dict())
    bad = await http.delete("/endpoints/reverse", params={"drain": "maybe"})
    assert bad.status_code == 400 and "drain" in bad.json()["detail"]


async def test_two_servers_over_redis_follow_every_change_at_once(
    app_factory: AppFactory, redis_url: str
) -> None:
    a = await app_factory(store=redis_url, settings=FAST)
    b = await app_factory(store=redis_url, settings=FAST)
    assert (await put(a.http, "reverse", ReverseV1.spec().to_dict())).status_code == 201
    listed = (await b.http.get("/endpoints")).json()
    assert [(e["name"], e["revision"]) for e in listed] == [("reverse", 1)]
    assert "/endpoints/reverse/jobs" in (await b.http.get("/openapi.json")).json()["paths"]
    assert (await b.http.get("/docs")).status_code == 200
    ids: list[str] = []
    async with serving(a, ReverseV1(), "reverse-v1"):
        for i in range(10):
            r = await b.http.post(
                "/endpoints/reverse/jobs", json={"input": {"text": f"b{i}"}}, headers=ASYNC
            )
            ids.append(r.json()["id"])
        await a.http.post("/endpoints/reverse/disable", json={"reason": "moving"})
        assert (await b.http.get("/endpoints/reverse")).json()["state"] == "disabled"

        async def b_refuses() -> bool:
            r = await b.http.post("/endpoints/reverse/jobs", json={"input": {"text": "no"}})
            return r.status_code == 503 and r.json()["detail"].endswith("disabled: moving")

        await eventually(b_refuses, BOUND, "server b to refuse submits")
        await a.http.post("/endpoints/reverse/enable")
        replaced = await put(a.http, "reverse", ReverseV2.spec().to_dict())
        assert replaced.json()["revision"] == 2
        detail = (await b.http.get("/endpoints/reverse")).json()
        assert (detail["revision"], detail["spec"]["version"]) == (2, "2")

        async def b_takes_revision_2() -> bool:
            r = await b.http.post(
                "/endpoints/reverse/jobs",
                json={"input": {"text": "up", "upper": True}},
                headers=ASYNC,
            )
            if r.status_code == 202:
                ids.append(r.json()["id"])
            return r.status_code == 202

        await eventually(b_takes_revision_2, BOUND, "server b to validate against revision 2")
        async with serving(b, ReverseV2(), "reverse-v2"):
            jobs = await finals(b.http, ids)
    for job in jobs:
        assert job["status"] == "succeeded", job
        assert job["output"]["version"] == str(job["revision"]), job
    assert [j["revision"] for j in jobs] == [1] * 10 + [2]
    deleted = await b.http.delete("/endpoints/reverse")
    assert deleted.json()["state"] == "deleted", deleted.text
    assert (await a.http.get("/endpoints")).json() == []
    refused = await a.http.post(
        "/workers", json={"name": "w", "endpoints": [ReverseV2.spec().to_dict()]}, headers=WORKER
    )
    assert refused.status_code == 409 and "was deleted" in refused.text


def test_replaced_with_worker_processes_no_job_is_lost_or_answered_by_another_version(
    serve: Serve, workers: Workers
) -> None:
    """End to end: a real server, an endpoint put over HTTP, replaced under load while a
    worker process of each revision serves it, then deleted."""
    server = serve(["--store", "memory://", "--worker-token", WORKER_TOKEN]).start().wait_ready()
    url = server.url
    created = httpx.put(f"{url}/endpoints/reverse", json=ReverseV1.spec().to_dict(), timeout=10)
    assert created.status_code == 201, created.text
    workers(worker_args(server, "tests/models/versioned.py:ReverseV1")).start()
    wait_for(lambda: online(server, "reverse") == 1, 60, "the revision 1 worker")
    ids: list[str] = []

    def submit(n: int, **extra: Any) -> None:
        for _ in range(n):
            body = {"input": {"text": f"t{len(ids)}", "pause": 0.01, **extra}}
            r = httpx.post(f"{url}/endpoints/reverse/jobs", json=body, headers=ASYNC, timeout=10)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])

    submit(30)
    replaced = httpx.put(f"{url}/endpoints/reverse", json=ReverseV2.spec().to_dict(), timeout=10)
    assert replaced.json()["revision"] == 2, replaced.text
    submit(15, upper=True)
    workers(worker_args(server, "tests/models/versioned.py:ReverseV2")).start()
    submit(15, upper=True)
    jobs = []
    for job_id in ids:
        r = httpx.get(f"{url}/jobs/{job_id}", headers={"Prefer": "wait=30"}, timeout=40)
        jobs.append(r.json())
    assert [j["status"] for j in jobs] == ["succeeded"] * 60, [j for j in jobs if j["error"]]
    for job in jobs:
        assert job["output"]["version"] == job["model_version"] == str(job["revision"]), job
    assert [j["revision"] for j in jobs] == [1] * 30 + [2] * 30
    deleted = httpx.delete(f"{url}/endpoints/reverse", timeout=10)
    assert deleted.json()["state"] == "deleted", deleted.text
    assert httpx.get(f"{url}/endpoints", timeout=10).json() == []
