"""In-process HTTP tests: the real app and lifespan through httpx.ASGITransport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import modelport
from modelport.server.app import Server, Settings
from modelport.spec import spec_from_toml
from tests.conftest import AppFactory, InProcessApp, eventually
from tests.models.basic import Add, Fails, Shapes, Slow

ROOT = Path(__file__).resolve().parent.parent


class Gate(modelport.Model):
    """Blocks until the test opens the gate, so a test can see a job while it runs."""

    def setup(self) -> None:
        import threading

        self.opened = threading.Event()
        self.entered = threading.Event()

    def predict(self, n: int) -> int:
        self.entered.set()
        assert self.opened.wait(10)
        return n


@pytest.fixture
async def app(app_factory: AppFactory) -> InProcessApp:
    txt2img = spec_from_toml(ROOT / "examples/txt2img/txt2img.toml")
    return await app_factory(
        [Add, Fails, Shapes, Slow, Gate],
        [txt2img],
        settings=Settings(max_body_size=2000, default_wait=5.0),
    )


@pytest.fixture
def server(app: InProcessApp) -> Server:
    return app.server


@pytest.fixture
def http(app: InProcessApp) -> httpx.AsyncClient:
    return app.http


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:modelport:problem:")
    return body


async def test_submit_waits_and_answers_the_finished_job(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/add/jobs", json={"input": {"a": 2, "b": 3}})
    assert r.status_code == 200
    job = r.json()
    assert job["status"] == "succeeded"
    assert job["output"] == {"sum": 5.0}
    assert job["attempts"] == 1
    assert job["queue_time"] >= 0 and job["compute_time"] >= 0
    assert r.headers["x-request-id"]


async def test_every_answer_to_a_submit_carries_one_request_id(http: httpx.AsyncClient) -> None:
    """A sane X-Request-ID of the client's comes back; otherwise the server makes one. Once,
    on an answer, a refusal and a stream alike."""
    given = {"X-Request-ID": "client-7.a:b"}
    answers = [
        await http.post("/endpoints/add/jobs", json={"input": {"a": 1}}, headers=given),
        await http.post("/endpoints/add/jobs", json={"input": {"a": "x"}}, headers=given),
        await http.post("/endpoints/nope/jobs", json={"input": {}}, headers=given),
        await http.post(
            "/endpoints/add/jobs",
            json={"input": {"a": 1}},
            headers={**given, "Accept": "text/event-stream"},
        ),
        await http.get("/endpoints", headers=given),
    ]
    assert [r.status_code for r in answers] == [200, 422, 404, 200, 200]
    for r in answers:
        assert r.headers.get_list("x-request-id") == ["client-7.a:b"]
    made = await http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
    other = await http.post(
        "/endpoints/add/jobs", json={"input": {"a": 1}}, headers={"X-Request-ID": "bad id!"}
    )
    ids = [made.headers.get_list("x-request-id"), other.headers.get_list("x-request-id")]
    assert all(len(i) == 1 and i[0] not in ("", "bad id!") for i in ids) and ids[0] != ids[1]


async def test_defaults_fill_in(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/add/jobs", json={"input": {"a": 2}})
    assert r.json()["output"] == {"sum": 3.0}
    assert r.json()["input"] == {"a": 2.0, "b": 1.0}


async def test_respond_async_gives_202_and_location(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/slow/jobs",
        json={"input": {"n": 1, "seconds": 0}},
        headers={"Prefer": "respond-async"},
    )
    assert r.status_code == 202
    location = r.headers["location"]
    assert location == f"/jobs/{r.json()['id']}"
    done = await http.get(location, headers={"Prefer": "wait=5"})
    assert done.status_code == 200
    assert done.json()["status"] == "succeeded"
    assert done.json()["output"] == {"n": 1}


async def test_wait_bound_answers_202_when_not_done(app: InProcessApp) -> None:
    http, gate = app.http, app.model("gate")
    r = await http.post(
        "/endpoints/gate/jobs", json={"input": {"n": 7}}, headers={"Prefer": "wait=0"}
    )
    assert r.status_code == 202
    job_id = r.json()["id"]
    assert await asyncio.to_thread(gate.entered.wait, 5)
    running = await http.get(f"/jobs/{job_id}")
    assert running.json()["status"] == "running"
    gate.opened.set()
    done = await http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=5"})
    assert done.json()["status"] == "succeeded"
    assert done.json()["output"] == 7


async def test_queue_position_of_queued_jobs(app: InProcessApp) -> None:
    http, gate = app.http, app.model("gate")
    first = await http.post(
        "/endpoints/gate/jobs", json={"input": {"n": 1}}, headers={"Prefer": "respond-async"}
    )
    assert await asyncio.to_thread(gate.entered.wait, 5)
    ids = []
    for n in range(3):
        r = await http.post(
            "/endpoints/gate/jobs", json={"input": {"n": n}}, headers={"Prefer": "respond-async"}
        )
        ids.append(r.json()["id"])
        assert r.json()["queue_position"] == n
    third = await http.get(f"/jobs/{ids[2]}")
    assert third.json()["status"] == "queued"
    assert third.json()["queue_position"] == 2
    cancelled = await http.post(f"/jobs/{ids[0]}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    assert (await http.get(f"/jobs/{ids[2]}")).json()["queue_position"] == 1
    gate.opened.set()
    for job_id in [first.json()["id"], ids[1], ids[2]]:
        done = await http.get(f"/jobs/{job_id}", headers={"Prefer": "wait=5"})
        assert done.json()["status"] == "succeeded"
    assert (await http.get(f"/jobs/{ids[0]}")).json()["status"] == "cancelled"


async def test_validation_names_every_failing_field(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/shapes/jobs",
        json={"input": {"text": "TOO LONG", "count": 9, "flag": 1, "mode": "warp", "bogus": 1}},
    )
    body = problem(r, 422)
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"text", "count", "flag", "mode", "bogus"}
    assert "less than or equal to 3" in fields["count"]
    assert "boolean" in fields["flag"]
    assert "bogus" in fields["bogus"]


async def test_validation_of_lists_and_types(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/shapes/jobs", json={"input": {"tags": ["a", 2], "count": "2"}})
    fields = {e["field"] for e in problem(r, 422)["errors"]}
    assert fields == {"tags.1", "count"}
    r = await http.post("/endpoints/shapes/jobs", json={"input": {"tags": ["a", "b", "c"]}})
    assert [e["field"] for e in problem(r, 422)["errors"]] == ["tags"]
    ok = await http.post(
        "/endpoints/shapes/jobs",
        json={"input": {"tags": ["a"], "extra": {"k": [1, 2]}, "ratio": 1, "mode": "slow"}},
    )
    assert ok.status_code == 200
    assert ok.json()["output"]["extra"] == {"k": [1, 2]}
    assert ok.json()["output"]["ratio"] == 1.0


async def test_unknown_top_level_field_and_missing_input(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/add/jobs", json={"input": {"a": 1}, "callback": "x"})
    assert problem(r, 422)["errors"] == [
        {"field": "callback", "message": "unknown field 'callback'"}
    ]
    r = await http.post("/endpoints/add/jobs", json={})
    assert problem(r, 422)["errors"] == [{"field": "a", "message": "Field required"}]
    r = await http.post("/endpoints/add/jobs", json=[1, 2])
    problem(r, 422)
    r = await http.post("/endpoints/add/jobs", json={"input": "text"})
    problem(r, 422)


async def test_malformed_json_is_400(http: httpx.AsyncClient) -> None:
    for body in [b"{bad", b"", b"\xff\xfe", b'{"input": {"a": 1}']:
        r = await http.post("/endpoints/add/jobs", content=body)
        assert problem(r, 400)["detail"]


async def test_body_over_limit_is_413(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/shapes/jobs", json={"input": {"text": "a" * 5000}})
    problem(r, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 500

    r = await http.post("/endpoints/shapes/jobs", content=chunks())
    problem(r, 413)


async def test_unknown_endpoint_job_and_route_are_404(http: httpx.AsyncClient) -> None:
    assert "nope" in problem(await http.post("/endpoints/nope/jobs", json={}), 404)["detail"]
    problem(await http.get("/endpoints/nope"), 404)
    problem(await http.get("/jobs/doesnotexist"), 404)
    problem(await http.post("/jobs/doesnotexist/cancel"), 404)
    problem(await http.get("/no/such/route"), 404)
    problem(await http.get("/endpoints/add/jobs"), 405)


async def test_one_title_per_problem_type(http: httpx.AsyncClient) -> None:
    ours = problem(await http.get("/jobs/doesnotexist"), 404)
    starlettes = problem(await http.get("/no/such/route"), 404)
    assert (starlettes["type"], starlettes["title"]) == (ours["type"], ours["title"])
    assert ours["title"] == "Not found"
    assert problem(await http.get("/endpoints/add/jobs"), 405)["title"] == "Method not allowed"


async def test_unknown_endpoint_404_lists_the_endpoints(http: httpx.AsyncClient) -> None:
    listed = "the endpoints are: add, fails, gate, shapes, slow, txt2img"
    detail = problem(await http.post("/endpoints/ad/jobs", json={"input": {}}), 404)["detail"]
    assert detail == f"no endpoint named 'ad' (did you mean 'add'?); {listed}"
    detail = problem(await http.get("/endpoints/zzz"), 404)["detail"]
    assert detail == f"no endpoint named 'zzz'; {listed}"


async def test_inputs_sent_without_the_envelope_get_the_corrected_body(
    http: httpx.AsyncClient,
) -> None:
    body = problem(await http.post("/endpoints/add/jobs", json={"a": 2, "b": 3}), 422)
    assert body["detail"] == 'the inputs go under "input": send {"input":{"a":2,"b":3}}'
    assert body["errors"] == [{"field": "input", "message": body["detail"]}]
    long = problem(await http.post("/endpoints/add/jobs", json={"a": "x" * 500}), 422)
    assert long["detail"].startswith('the inputs go under "input": send {"input":{"a":"xxx')
    assert len(long["detail"]) < 250
    # A body with "input" keeps its own field errors.
    mixed = problem(await http.post("/endpoints/add/jobs", json={"input": {}, "a": 2}), 422)
    assert {e["field"] for e in mixed["errors"]} == {"a"}


async def test_job_status_header(server: Server, http: httpx.AsyncClient) -> None:
    ok = await http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
    assert (ok.status_code, ok.headers["x-job-status"]) == (200, "succeeded")
    failed = await http.post("/endpoints/fails/jobs", json={"input": {"x": -1}})
    assert (failed.status_code, failed.headers["x-job-status"]) == (200, "failed")
    again = await http.get(f"/jobs/{failed.json()['id']}")
    assert again.headers["x-job-status"] == "failed"
    queued = await http.post(
        "/endpoints/txt2img/jobs", json={"input": {"prompt": "x"}}, headers={"Prefer": "wait=0"}
    )
    assert (queued.status_code, queued.headers["x-job-status"]) == (202, "queued")
    cancelled = await http.post(f"/jobs/{queued.json()['id']}/cancel")
    assert cancelled.headers["x-job-status"] == "cancelled"


async def test_model_exception_fails_only_that_job(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    r = await http.post("/endpoints/fails/jobs", json={"input": {"x": -1}})
    assert r.status_code == 200
    job = r.json()
    assert job["status"] == "failed"
    assert job["error"] == "ValueError: x must not be negative, got -1"
    assert "Traceback" not in r.text
    assert any("Traceback" in (rec.exc_text or "") or rec.exc_info for rec in caplog.records)
    ok = await http.post("/endpoints/fails/jobs", json={"input": {"x": 4}})
    assert ok.json()["output"] == 8


async def test_cancel_finished_job_is_409(http: httpx.AsyncClient) -> None:
    r = await http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
    problem(await http.post(f"/jobs/{r.json()['id']}/cancel"), 409)


async def test_idempotency_key_returns_the_same_job(http: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await http.post("/endpoints/add/jobs", json={"input": {"a": 1}}, headers=headers)
    again = await http.post("/endpoints/add/jobs", json={"input": {"a": 1}}, headers=headers)
    assert first.json()["id"] == again.json()["id"]
    other = await http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
    assert other.json()["id"] != first.json()["id"]


async def test_full_queue_is_429_with_retry_after(server: Server, http: httpx.AsyncClient) -> None:
    server.broker.specs["txt2img"].max_queue_length = 2  # no worker serves txt2img here
    for _ in range(2):
        r = await http.post(
            "/endpoints/txt2img/jobs",
            json={"input": {"prompt": "a"}},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202
    r = await http.post("/endpoints/txt2img/jobs", json={"input": {"prompt": "a"}})
    problem(r, 429)
    assert int(r.headers["retry-after"]) >= 1
    depths = await server.broker.store.queue_depths()
    assert depths["txt2img"]["queued"] == 2


async def test_toml_endpoint_without_worker_accepts_and_queues(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/endpoints/txt2img/jobs", json={"input": {"prompt": "a cat"}}, headers={"Prefer": "wait=0"}
    )
    assert r.status_code == 202
    assert r.json()["status"] == "queued"
    assert r.json()["input"] == {"prompt": "a cat", "num_samples": 1, "seed": -1, "size": 16}
    listing = {e["name"]: e for e in (await http.get("/endpoints")).json()}
    assert listing["txt2img"]["workers_online"] == 0
    assert listing["txt2img"]["queue_depth"] == 1
    assert listing["add"]["workers_online"] == 1


async def test_endpoint_detail_has_schemas_limits_workers(http: httpx.AsyncClient) -> None:
    body = (await http.get("/endpoints/add")).json()
    assert body["input_schema"]["properties"]["b"]["maximum"] == 100
    assert body["input_schema"]["required"] == ["a"]
    assert body["limits"]["max_attempts"] == 3
    assert [w["state"] for w in body["workers"]] == ["online"]
    assert body["description"] == "Adds two numbers."


async def test_openapi_is_built_from_the_registry(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert "/endpoints/add/jobs" in spec["paths"]
    assert "/endpoints/txt2img/jobs" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert schemas["AddInput"]["properties"]["b"]["minimum"] == -100
    assert schemas["Txt2imgInput"]["properties"]["prompt"]["maxLength"] == 2000
    docs = await http.get("/docs")
    assert docs.status_code == 200
    assert "/docs/static/swagger-ui-bundle.js" in docs.text
    assert "http" not in docs.text.replace("http-equiv", "")  # no CDN
    js = await http.get("/docs/static/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


async def test_health(server: Server, http: httpx.AsyncClient) -> None:
    assert (await http.get("/health/live")).json() == {"status": "ok"}
    ready = await http.get("/health/ready")
    assert ready.status_code == 200


async def test_not_ready_until_setup_finished(app_factory: AppFactory) -> None:
    import threading

    release = threading.Event()

    class Loading(modelport.Model):
        def setup(self) -> None:
            assert release.wait(10)

        def predict(self, x: int) -> int:
            return x

    app = await app_factory([Loading], ready=False)
    http = app.http
    assert (await http.get("/health/live")).status_code == 200
    not_ready = await http.get("/health/ready")
    assert "loading" in problem(not_ready, 503)["detail"]
    queued = await http.post(
        "/endpoints/loading/jobs", json={"input": {"x": 1}}, headers={"Prefer": "wait=0"}
    )
    assert queued.status_code == 202
    release.set()
    await app.ready()
    assert (await http.get("/health/ready")).status_code == 200
    done = await http.get(f"/jobs/{queued.json()['id']}", headers={"Prefer": "wait=5"})
    assert done.json()["output"] == 1


async def test_failed_setup_keeps_endpoint_not_ready(app_factory: AppFactory) -> None:
    class Broken(modelport.Model):
        def setup(self) -> None:
            raise RuntimeError("weights missing")

        def predict(self, x: int) -> int:
            return x

    app = await app_factory([Broken], ready=False)

    async def failed() -> bool:
        return "broken" in app.server.setup_errors

    await eventually(failed, 10, "setup() to fail")
    body = problem(await app.http.get("/health/ready"), 503)
    assert "weights missing" in body["detail"]


async def test_async_client_in_process(app: InProcessApp) -> None:
    async with modelport.AsyncClient("http://test", transport=app.transport()) as client:
        assert await client.predict("add", a=1, b=2) == {"sum": 3.0}
        assert await client.predict("add", {"a": 5}) == {"sum": 6.0}
        job = await client.submit("slow", n=3, seconds=0)
        await job.wait(timeout=5)
        assert job.status == "succeeded" and job.output == {"n": 3}
        with pytest.raises(modelport.JobFailed, match="must not be negative"):
            await client.predict("fails", x=-2)
        with pytest.raises(modelport.InvalidInput) as info:
            await client.predict("add", a="one")
        assert info.value.errors[0]["field"] == "a"
        with pytest.raises(modelport.NotFound):
            await client.predict("nope")
        names = [e["name"] for e in await client.endpoints()]
        assert "add" in names and "txt2img" in names
        queued = await client.submit("txt2img", prompt="x")
        with pytest.raises(modelport.TimedOut):
            await queued.wait(timeout=0.2)
        await queued.cancel()
        assert queued.status == "cancelled"


async def test_metrics_count_jobs_by_outcome(http: httpx.AsyncClient) -> None:
    await http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
    await http.post("/endpoints/fails/jobs", json={"input": {"x": -1}})
    await http.post(
        "/endpoints/txt2img/jobs", json={"input": {"prompt": "q"}}, headers={"Prefer": "wait=0"}
    )
    r = await http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'modelport_jobs_submitted_total{endpoint="add"} 1.0' in text
    assert 'modelport_jobs_finished_total{endpoint="add",outcome="succeeded"} 1.0' in text
    assert 'modelport_jobs_finished_total{endpoint="fails",outcome="failed"} 1.0' in text
    assert 'modelport_queue_depth{endpoint="txt2img"} 1.0' in text
    assert 'modelport_workers_online{endpoint="add"} 1.0' in text
    assert 'modelport_job_compute_seconds_count{endpoint="add"} 1.0' in text
    assert 'modelport_batch_size_count{endpoint="add"} 1.0' in text
