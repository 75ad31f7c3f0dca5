"""A model whose ``setup()`` failed: its endpoint refuses new jobs with 503 until a healthy
worker serves it, says why, and keeps the jobs it already queued for that worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

import modelport
from modelport.server.app import Server, Settings

TOKEN = "wt"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
release = threading.Event()


class Broken(modelport.Model):
    """Doubles a number."""

    def setup(self) -> None:
        assert release.wait(10)
        raise RuntimeError("weights missing")

    def predict(self, x: int) -> int:
        return 2 * x


@dataclass
class Setup:
    server: Server
    http: httpx.AsyncClient

    async def failed(self) -> None:
        """Let setup() fail, and wait until the server has recorded it."""
        release.set()
        await asyncio.wait_for(asyncio.shield(self.server._tasks[0]), 10)
        assert "broken" in self.server.setup_errors


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    release.clear()
    server = Server([Broken], store="memory://", settings=Settings(worker_token=TOKEN))
    async with server.lifespan(None):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=server.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield Setup(server, http)
        release.set()


async def state(http: httpx.AsyncClient) -> tuple[str, str | None]:
    body = (await http.get("/endpoints/broken")).json()
    listed = next(e for e in (await http.get("/endpoints")).json() if e["name"] == "broken")
    assert (listed["state"], listed["reason"]) == (body["state"], body["reason"])
    return body["state"], body["reason"]


async def test_submits_get_503_with_the_reason_and_retry_after(setup: Setup) -> None:
    http = setup.http
    assert (await state(http))[0] == "loading"
    queued = await http.post(
        "/endpoints/broken/jobs", json={"input": {"x": 1}}, headers={"Prefer": "respond-async"}
    )
    assert queued.status_code == 202, queued.text
    await setup.failed()

    refused = await http.post("/endpoints/broken/jobs", json={"input": {"x": 2}})
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    detail = refused.json()["detail"]
    assert "'broken'" in detail and "RuntimeError: weights missing" in detail
    streamed = await http.post(
        "/endpoints/broken/jobs",
        json={"input": {"x": 2}},
        headers={"Accept": "text/event-stream"},
    )
    assert streamed.status_code == 503, streamed.text

    kind, reason = await state(http)
    assert kind == "setup-failed" and reason is not None and "weights missing" in reason
    # The job queued before the failure is still there, waiting for a healthy worker.
    job = (await http.get(f"/jobs/{queued.json()['id']}")).json()
    assert job["status"] == "queued"
    assert (await http.get("/endpoints/broken")).json()["queue_depth"] == 1


async def test_a_healthy_remote_worker_makes_the_endpoint_accept_again(setup: Setup) -> None:
    http = setup.http
    queued = await http.post(
        "/endpoints/broken/jobs", json={"input": {"x": 1}}, headers={"Prefer": "respond-async"}
    )
    await setup.failed()
    assert (await http.post("/endpoints/broken/jobs", json={"input": {"x": 2}})).status_code == 503

    joined = await http.post(
        "/workers",
        json={"name": "gpu-box", "endpoints": [Broken.spec().to_dict()]},
        headers=AUTH,
    )
    assert joined.status_code == 201, joined.text
    worker_id = joined.json()["worker_id"]
    assert await state(http) == ("ready", None)
    accepted = await http.post(
        "/endpoints/broken/jobs", json={"input": {"x": 2}}, headers={"Prefer": "respond-async"}
    )
    assert accepted.status_code == 202, accepted.text

    for expected in (queued, accepted):  # in queue order, one at a time (max_batch_size 1)
        lease = await http.post(
            f"/workers/{worker_id}/lease", json={"max_jobs": 1, "wait": 0}, headers=AUTH
        )
        (job,) = lease.json()["jobs"]
        assert job["id"] == expected.json()["id"]
        result = {"job_id": job["id"], "endpoint": "broken", "attempt": job["attempt"], "output": 7}
        done = await http.post(
            f"/workers/{worker_id}/results", json={"results": [result]}, headers=AUTH
        )
        assert done.json()["accepted"] == [job["id"]]
        assert (await http.get(f"/jobs/{job['id']}")).json()["status"] == "succeeded"

    # When that worker leaves, the endpoint is back to refusing.
    assert (await http.delete(f"/workers/{worker_id}", headers=AUTH)).status_code == 204
    assert (await state(http))[0] == "setup-failed"
    assert (await http.post("/endpoints/broken/jobs", json={"input": {"x": 3}})).status_code == 503


async def test_an_endpoint_with_no_worker_yet_still_queues() -> None:
    spec = Broken.spec()
    server = Server([], [spec], store="memory://")
    async with server.lifespan(None):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=server.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            r = await http.post(
                "/endpoints/broken/jobs", json={"input": {"x": 1}}, headers={"Prefer": "wait=0"}
            )
            assert r.status_code == 202, r.text
            kind, reason = await state(http)
            assert kind == "no-workers" and reason is not None and "queue" in reason
