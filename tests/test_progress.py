"""Progress reports and cancellation points, in-process through the real app."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import modelport
from modelport.server.app import Server
from modelport.spec import FieldSpec
from tests.conftest import AppFactory, InProcessApp, eventually


class Painter(modelport.Model):
    """Paints in steps, reporting each one."""

    def setup(self) -> None:
        self.stopped = threading.Event()
        self.last_step = -1

    def predict(self, steps: int = 500, bad: bool = False) -> dict[str, int]:
        try:
            for i in range(steps):
                if bad:
                    self.progress(0.5, step="not a number")
                self.progress((i + 1) / steps, message=f"step {i + 1}/{steps}", step=i + 1)
                self.last_step = i
                time.sleep(0.005)
            return {"steps": steps}
        finally:
            self.stopped.set()

    @classmethod
    def spec(cls) -> modelport.EndpointSpec:
        spec = super().spec()
        spec.progress = {"step": FieldSpec(type="integer")}
        return spec


class Writer(modelport.Model):
    """Streams words from a generator."""

    def setup(self) -> None:
        self.stopped = threading.Event()
        self.words = 0

    def predict(self, n: int = 2000) -> Iterator[str]:
        try:
            for i in range(n):
                self.words = i + 1
                time.sleep(0.002)
                yield f"w{i} "
        finally:
            self.stopped.set()


class Quiet(modelport.Model):
    """Reports nothing while it works, until the test lets it finish; its lease is short."""

    lease_duration = 0.3

    def setup(self) -> None:
        self.release = threading.Event()

    def predict(self, text: str) -> str:
        assert self.release.wait(30)
        return text


@pytest.fixture
async def app(app_factory: AppFactory) -> InProcessApp:
    app = await app_factory([Painter, Writer, Quiet])
    for runner in app.server.runners:
        runner.heartbeat_interval = 0.1  # read for each batch, so it counts from the first
    return app


@pytest.fixture
def server(app: InProcessApp) -> Server:
    return app.server


@pytest.fixture
def http(app: InProcessApp) -> httpx.AsyncClient:
    return app.http


async def poll(
    http: httpx.AsyncClient, job_id: str, until: Any, timeout: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = (await http.get(f"/jobs/{job_id}")).json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job never reached the state: {job}"
        await asyncio.sleep(0.01)


async def test_progress_is_visible_while_running(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/painter/jobs", json={"input": {"steps": 200}}, headers={"Prefer": "wait=0"}
    )
    job_id = r.json()["id"]
    running = await poll(
        http, job_id, lambda j: j["progress"] is not None and j["status"] == "running"
    )
    progress = running["progress"]
    assert 0 < progress["fraction"] <= 1
    assert progress["message"].startswith("step ")
    assert progress["data"]["step"] >= 1
    done = (await http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=10"})).json()
    assert done["status"] == "succeeded"
    assert done["output"] == {"steps": 200}


async def test_invalid_progress_fails_the_job_naming_the_field(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/painter/jobs", json={"input": {"steps": 3, "bad": True}})
    job = r.json()
    assert job["status"] == "failed"
    assert "progress field step" in job["error"]
    assert "integer" in job["error"]


async def test_cancel_stops_a_model_at_its_next_progress_call(app: InProcessApp) -> None:
    http, painter = app.http, app.model("painter")
    r = await http.post(
        "/endpoints/painter/jobs", json={"input": {"steps": 2000}}, headers={"Prefer": "wait=0"}
    )
    job_id = r.json()["id"]
    await poll(http, job_id, lambda j: j["status"] == "running")
    cancelled = await http.post(f"/jobs/{job_id}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert await asyncio.to_thread(painter.stopped.wait, 10)
    assert painter.last_step < 1999
    final = (await http.get(f"/jobs/{job_id}")).json()
    assert final["status"] == "cancelled"


async def test_cancel_closes_a_generator(app: InProcessApp) -> None:
    http, writer = app.http, app.model("writer")
    r = await http.post(
        "/endpoints/writer/jobs", json={"input": {"n": 5000}}, headers={"Prefer": "wait=0"}
    )
    job_id = r.json()["id"]
    await poll(http, job_id, lambda j: j["status"] == "running")
    await http.post(f"/jobs/{job_id}/cancel")
    assert await asyncio.to_thread(writer.stopped.wait, 10)
    assert writer.words < 5000
    # The runner is free again: a new job runs to the end.
    done = await http.post("/endpoints/writer/jobs", json={"input": {"n": 3}})
    assert done.json()["output"] == "w0 w1 w2 "


async def test_progress_calls_are_coalesced(server: Server, http: httpx.AsyncClient) -> None:
    runner = next(r for r in server.runners if r.spec.name == "painter")
    calls: list[int] = []
    original = runner.transport.events

    async def counting(worker_id: str, events: Any) -> list[str]:
        calls.append(sum(1 for e in events if e.type == "progress"))
        return await original(worker_id, events)

    runner.transport.events = counting  # type: ignore[method-assign]
    r = await http.post("/endpoints/painter/jobs", json={"input": {"steps": 200}})
    assert r.json()["status"] == "succeeded"
    # 200 progress calls over about a second, sent at most every 0.2 s.
    assert 1 <= len(calls) <= 12


async def test_a_job_that_reports_nothing_keeps_its_lease_while_it_runs(app: InProcessApp) -> None:
    """Heartbeats go out while a batch runs even when the model emits no event: the lease
    outlives several of its durations, and the job ends on its first attempt."""
    quiet, store = app.model("quiet"), app.server.broker.store
    r = await app.http.post(
        "/endpoints/quiet/jobs", json={"input": {"text": "hi"}}, headers={"Prefer": "wait=0"}
    )
    job_id = r.json()["id"]
    running = await poll(app.http, job_id, lambda j: j["status"] == "running")
    started: float = running["started_at"]

    async def renewed() -> bool:
        job = await store.get(job_id)
        assert job is not None and job.status.value == "running", job
        return (job.lease_until or 0) > started + 4 * Quiet.lease_duration

    await eventually(renewed, 10, "the lease to be extended past four of its durations")
    quiet.release.set()
    done = (await app.http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=10"})).json()
    assert (done["status"], done["attempts"], done["output"]) == ("succeeded", 1, "hi")
