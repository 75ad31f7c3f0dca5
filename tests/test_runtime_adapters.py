"""HTTP and subprocess endpoints put at run time: refused unless the server was started with
``--allow-runtime-adapters``; with it, the server runs the adapter, replaces it when the
endpoint is put again differently, and stops it once the endpoint is deleted."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelport.settings import Settings
from tests.conftest import AppFactory, Serve, eventually, online, wait_for
from tests.upstreams import Upstream

PROGRAMS = Path(__file__).resolve().parent / "programs"
TOML = {"content-type": "application/toml"}
BOUND = 30.0
LINES = (
    "[endpoint]\n"
    'kind = "subprocess"\n'
    f"command = {orjson.dumps([sys.executable, 'lines.py']).decode()}\n"
    f"cwd = {orjson.dumps(str(PROGRAMS)).decode()}\n"
    "processes = 2\n"
    "[inputs]\n"
    'text = { type = "string", required = true }\n'
)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    service = Upstream().start()
    yield service
    service.stop()


def http_spec(url: str) -> dict[str, Any]:
    return {
        "endpoint": {"kind": "http", "url": url, "concurrency": 4},
        "inputs": {"text": {"type": "string", "required": True}},
        "outputs": {"label": {"type": "string"}, "length": {"type": "integer"}},
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def submit(url: str, **given: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/endpoints/lines/jobs",
        json={"input": given},
        headers={"prefer": "wait=20"},
        timeout=BOUND,
    )
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    assert job["status"] == "succeeded", job
    return job


async def test_adapter_specs_are_refused_without_the_flag(app_factory: AppFactory) -> None:
    app = await app_factory()
    r = await app.http.put("/endpoints/lines", content=LINES, headers=TOML)
    assert r.status_code == 403, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "--allow-runtime-adapters" in r.json()["detail"]
    assert "start a program" in r.json()["detail"]
    r = await app.http.put("/endpoints/up", json=http_spec("http://127.0.0.1:9/predict"))
    assert r.status_code == 403 and "call a URL" in r.json()["detail"]
    assert (await app.http.get("/endpoints/lines")).status_code == 404
    assert (await app.http.get("/endpoints/up")).status_code == 404
    assert not app.server.runners


async def test_a_put_http_endpoint_is_served_and_replaced(
    app_factory: AppFactory, upstream: Upstream
) -> None:
    app = await app_factory(settings=Settings(allow_runtime_adapters=True))
    spec = http_spec(f"{upstream.url}/predict")
    del spec["endpoint"]["url"]
    r = await app.http.put("/endpoints/up", json=spec)
    assert r.status_code == 422, r.text
    assert "url" in r.text
    assert (await app.http.get("/endpoints/up")).status_code == 404

    r = await app.http.put("/endpoints/up", json=http_spec(f"{upstream.url}/predict"))
    assert r.status_code == 201, r.text
    job = {"input": {"text": "hey"}}
    wait = {"Prefer": "wait=20"}
    r = await app.http.post("/endpoints/up/jobs", json=job, headers=wait)
    assert r.json()["output"] == {"label": "HEY", "length": 3}, r.text

    # The same contract calling another URL: the same revision, a new adapter.
    upstream.flaky_failures = 0
    r = await app.http.put("/endpoints/up", json=http_spec(f"{upstream.url}/flaky"))
    assert r.status_code == 200 and r.json()["revision"] == 1, r.text

    async def replaced() -> bool:
        return len([r for r in app.server.runners if r.spec.name == "up"]) == 1

    await eventually(replaced, BOUND, "the first adapter to stop")
    r = await app.http.post("/endpoints/up/jobs", json=job, headers=wait)
    assert r.json()["output"] == {"label": "ok", "length": 0}, r.text

    r = await app.http.delete("/endpoints/up", params={"drain": "false"})
    assert r.status_code == 200 and r.json()["state"] == "deleted", r.text

    async def stopped() -> bool:
        return not app.server.runners

    await eventually(stopped, BOUND, "the adapter of the deleted endpoint to stop")
    calls = upstream.calls.get("flaky", 0)
    assert calls == 1


def test_a_put_subprocess_endpoint_runs_until_it_is_replaced_or_deleted(
    serve: Serve, tmp_path: Path
) -> None:
    server = serve(["--allow-runtime-adapters", "--store", f"sqlite:///{tmp_path}/s.db"])
    server.start().wait_ready()
    r = httpx.put(f"{server.url}/endpoints/lines", content=LINES, headers=TOML, timeout=BOUND)
    assert r.status_code == 201, r.text
    assert "lines.py" not in r.text  # how it runs stays on the server
    wait_for(lambda: online(server, "lines") == 1, BOUND, f"the programs\n{server.logs()}")
    first = {submit(server.url, text=str(i))["output"]["pid"] for i in range(4)}
    assert 1 <= len(first) <= 2

    # A new revision: new programs serve it, the earlier ones are stopped.
    revised = LINES + 'mode = { type = "string", default = "echo" }\n'
    r = httpx.put(f"{server.url}/endpoints/lines", content=revised, headers=TOML, timeout=BOUND)
    assert r.status_code == 200 and r.json()["revision"] == 2, r.text
    job = submit(server.url, text="again", mode="log")
    assert job["output"]["pid"] not in first
    wait_for(lambda: not any(map(alive, first)), BOUND, "the first programs to stop")

    # Deleted with jobs queued: they finish through the adapter, then it stops.
    ids = []
    for i in range(6):
        r = httpx.post(
            f"{server.url}/endpoints/lines/jobs",
            json={"input": {"text": f"last {i}"}},
            headers={"prefer": "respond-async"},
            timeout=BOUND,
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    r = httpx.delete(f"{server.url}/endpoints/lines", timeout=BOUND)
    assert r.status_code in (200, 202), r.text
    pids = set()
    for job_id in ids:
        r = httpx.get(f"{server.url}/jobs/{job_id}", headers={"prefer": "wait=20"}, timeout=BOUND)
        assert r.json()["status"] == "succeeded", r.text
        pids.add(r.json()["output"]["pid"])
    wait_for(
        lambda: httpx.get(f"{server.url}/endpoints/lines", timeout=BOUND).status_code == 404,
        BOUND,
        "the endpoint to be deleted",
    )
    wait_for(lambda: not any(map(alive, pids)), BOUND, f"the programs to stop\n{server.logs()}")
