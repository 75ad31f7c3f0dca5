"""The worker API over HTTP, in process: the real app and lifespan through httpx.ASGITransport.

Each test plays a remote worker by hand (register, lease, events, results, leave) against a
server whose broker runs on a fake clock, so leases and expiry are moved by the test and the
background reaper never runs on its own (expiry is checked with ``broker.reap()``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypedDict

import httpx
import pytest

import modelport
from modelport import Input
from modelport.server.app import Server, Settings
from modelport.spec import EndpointSpec, spec_from_toml
from tests.conftest import AppFactory, InProcessApp

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "wt"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BOUND = 5.0
"""A safety net for awaits that should finish at once; never the thing a test waits for."""
START = 1_000_000.0


class Label(TypedDict):
    label: str
    score: float


class Classify(modelport.Model):
    """Labels a short text."""

    max_batch_size = 4

    def predict(self, text: str = Input(max_length=10), top: int = Input(default=1, ge=1)) -> Label:
        return {"label": text, "score": 1.0}


class ClassifyLonger(modelport.Model):
    """Labels a short text."""

    name = "classify"
    max_batch_size = 4

    def predict(self, text: str = Input(max_length=20), top: int = Input(default=1, ge=1)) -> Label:
        return {"label": text, "score": 1.0}


class ClassifyWithLang(modelport.Model):
    """Labels a short text."""

    name = "classify"
    max_batch_size = 4

    def predict(
        self, text: str = Input(max_length=10), top: int = Input(default=1, ge=1), lang: str = "en"
    ) -> Label:
        return {"label": text, "score": 1.0}


class Other(modelport.Model):
    """Another endpoint, served by another worker."""

    def predict(self, n: int) -> int:
        return n


class FakeClock:
    """The broker's wall clock, moved only by the test."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    app: InProcessApp
    clock: FakeClock

    @property
    def server(self) -> Server:
        return self.app.server

    @property
    def http(self) -> httpx.AsyncClient:
        return self.app.http

    def lenient(self) -> httpx.AsyncClient:
        """A client of the same server that sees a 500 as a status, not as the app's exception."""
        return self.app.client(raise_app_exceptions=False)

    async def register(
        self,
        *specs: type[modelport.Model] | EndpointSpec | dict[str, Any],
        name: str = "w1",
        **extra: Any,
    ) -> str:
        r = await self.http.post(
            "/workers",
            json={"name": name, "endpoints": _dicts(specs or (Classify,)), **extra},
            headers=AUTH,
        )
        assert r.status_code == 201, r.text
        worker_id: str = r.json()["worker_id"]
        return worker_id

    async def submit(self, endpoint: str = "classify", **inputs: Any) -> str:
        r = await self.http.post(
            f"/endpoints/{endpoint}/jobs",
            json={"input": inputs or {"text": "hello"}},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202, r.text
        job_id: str = r.json()["id"]
        return job_id

    async def submit_and_wait(self, endpoint: str = "classify", **inputs: Any) -> httpx.Response:
        """A client that waits for the result on its submit request."""
        return await self.http.post(
            f"/endpoints/{endpoint}/jobs", json={"input": inputs}, headers={"Prefer": "wait=30"}
        )

    async def lease(self, worker_id: str, max_jobs: int = 1, wait: float = 0) -> dict[str, Any]:
        r = await self.http.post(
            f"/workers/{worker_id}/lease", json={"max_jobs": max_jobs, "wait": wait}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def events(self, worker_id: str, *events: dict[str, Any]) -> dict[str, Any]:
        r = await self.http.post(
            f"/workers/{worker_id}/events", json={"events": list(events)}, headers=AUTH
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def results(self, worker_id: str, *results: dict[str, Any]) -> httpx.Response:
        return await self.http.post(
            f"/workers/{worker_id}/results", json={"results": list(results)}, headers=AUTH
        )

    async def finish(self, worker_id: str, *results: dict[str, Any]) -> dict[str, Any]:
        r = await self.results(worker_id, *results)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def job(self, job_id: str) -> dict[str, Any]:
        r = await self.http.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


def _dicts(specs: Any) -> list[dict[str, Any]]:
    out = []
    for s in specs:
        if isinstance(s, dict):
            out.append(s)
        elif isinstance(s, EndpointSpec):
            out.append(s.to_dict())
        else:
            out.append(s.spec().to_dict())
    return out


def result(job: dict[str, Any], output: Any = None, **extra: Any) -> dict[str, Any]:
    """A result for a job as a lease answered it."""
    body = {"job_id": job["id"], "endpoint": job["endpoint"], "attempt": job["attempt"]}
    if output is not None:
        body["output"] = output
    return {**body, **extra}


OK = {"label": "pos", "score": 0.9}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:modelport:problem:")
    return body


class Start(Protocol):
    async def __call__(
        self, specs: tuple[EndpointSpec, ...] = (), *, store: str = ..., token: str | None = ...
    ) -> Api: ...


@pytest.fixture
def start(app_factory: AppFactory) -> Start:
    """Start a server on a fake clock whose reaper never runs on its own."""

    async def start(
        specs: tuple[EndpointSpec, ...] = (), *, store: str = "memory://", token: str | None = TOKEN
    ) -> Api:
        clock = FakeClock()
        settings = Settings(worker_token=token, reap_interval=3600.0, offline_after=30.0)
        return Api(await app_factory((), specs, store=store, settings=settings, clock=clock), clock)

    return start


@pytest.fixture(params=["memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"


BOTH_STORES = pytest.mark.parametrize("store", ["memory", "sqlite"], indirect=True)


@pytest.fixture
async def api(start: Start, store: str) -> Api:
    return await start(store=store)


def worker_calls(worker_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("POST", "/workers", {"name": "w", "endpoints": _dicts([Classify])}),
        ("POST", f"/workers/{worker_id}/lease", {"max_jobs": 1, "wait": 0}),
        ("POST", f"/workers/{worker_id}/events", {"events": []}),
        ("POST", f"/workers/{worker_id}/results", {"results": []}),
        ("DELETE", f"/workers/{worker_id}", None),
    ]


async def test_every_worker_route_needs_the_token(api: Api) -> None:
    worker_id = await api.register()
    for headers in [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ]:
        for method, path, body in worker_calls(worker_id):
            r = await api.http.request(method, path, json=body, headers=headers)
            detail = problem(r, 401)["detail"]
            assert "worker token" in detail, (method, path, headers)
            assert r.headers["www-authenticate"] == "Bearer", (method, path, headers)
    # Nothing happened on the way: the worker is still there, with no one else.
    listing = (await api.http.get("/endpoints")).json()
    assert [(e["name"], e["workers_online"]) for e in listing] == [("classify", 1)]
    assert (await api.lease(worker_id))["jobs"] == []


async def test_a_server_without_a_worker_token_refuses_every_worker_route(start: Start) -> None:
    api = await start(token=None)
    for headers in [{}, AUTH]:
        for method, path, body in worker_calls("0123456789abcdef"):
            r = await api.http.request(method, path, json=body, headers=headers)
            assert "--worker-token" in problem(r, 401)["detail"], (method, path)
    assert (await api.http.get("/endpoints")).json() == []


async def test_client_routes_refuse_the_worker_token(api: Api) -> None:
    await api.register()
    job_id = await api.submit()
    for token in [f"Bearer {TOKEN}", f"bearer {TOKEN}"]:
        headers = {"Authorization": token}
        calls: list[tuple[str, str, Any]] = [
            ("GET", "/endpoints", None),
            ("GET", "/endpoints/classify", None),
            ("POST", "/endpoints/classify/jobs", {"input": {"text": "x"}}),
            ("POST", "/endpoints/x/jobs", {"input": {}}),
            ("GET", f"/jobs/{job_id}", None),
            ("POST", f"/jobs/{job_id}/cancel", None),
        ]
        for method, path, body in calls:
            r = await api.http.request(method, path, json=body, headers=headers)
            assert "worker token" in problem(r, 403)["detail"], (method, path)
    # The refused submit and cancel did nothing; other credentials are not refused.
    assert (await api.job(job_id))["status"] == "queued"
    depths = await api.server.broker.store.queue_depths()
    assert depths["classify"]["queued"] == 1
    r = await api.http.get("/endpoints", headers={"Authorization": "Bearer someone-else"})
    assert r.status_code == 200


async def test_a_worker_defines_an_endpoint_nobody_defined(api: Api) -> None:
    r = await api.http.post(
        "/workers",
        json={"name": "gpu-1", "endpoints": [Classify.spec().to_dict()], "max_batch_size": 4},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["worker_id"]) == 16 and int(body["worker_id"], 16) >= 0
    assert body["endpoints"] == {"classify": Classify.spec().to_dict()}
    listing = (await api.http.get("/endpoints")).json()
    assert [(e["name"], e["workers_online"]) for e in listing] == [("classify", 1)]
    detail = (await api.http.get("/endpoints/classify")).json()
    assert detail["input_schema"]["properties"]["text"]["maxLength"] == 10
    assert detail["description"] == "Labels a short text."
    # Clients are validated against the worker's spec.
    r = await api.http.post("/endpoints/classify/jobs", json={"input": {"text": "x" * 11}})
    assert [e["field"] for e in problem(r, 422)["errors"]] == ["text"]
    assert "/endpoints/classify/jobs" in (await api.http.get("/openapi.json")).json()["paths"]


async def test_a_second_worker_with_a_different_spec_is_refused(api: Api) -> None:
    await api.register(Classify)
    r = await api.http.post(
        "/workers", json={"name": "w2", "endpoints": _dicts([ClassifyLonger])}, headers=AUTH
    )
    detail = problem(r, 409)["detail"]
    assert "inputs.text.max_length: server has 10, worker has 20" in detail
    assert "'w2'" in detail and "'classify'" in detail
    r = await api.http.post(
        "/workers", json={"name": "w3", "endpoints": _dicts([ClassifyWithLang])}, headers=AUTH
    )
    assert "inputs.lang" in problem(r, 409)["detail"]
    # The refused workers changed nothing; a worker with the same spec joins.
    detail_body = (await api.http.get("/endpoints/classify")).json()
    assert detail_body["input_schema"]["properties"]["text"]["maxLength"] == 10
    assert "lang" not in detail_body["input_schema"]["properties"]
    assert [w["name"] for w in detail_body["workers"]] == ["w1"]
    await api.register(Classify, name="w4")
    listing = (await api.http.get("/endpoints")).json()
    assert [(e["name"], e["workers_online"]) for e in listing] == [("classify", 2)]


async def test_a_refused_registration_defines_none_of_its_endpoints(api: Api) -> None:
    await api.register(Classify)
    r = await api.http.post(
        "/workers", json={"name": "w2", "endpoints": _dicts([Other, ClassifyLonger])}, headers=AUTH
    )
    problem(r, 409)
    problem(await api.http.get("/endpoints/other"), 404)
    assert [e["name"] for e in (await api.http.get("/endpoints")).json()] == ["classify"]


async def test_worker_specs_must_match_the_servers_own_endpoints(start: Start) -> None:
    txt2img = spec_from_toml(ROOT / "examples/txt2img/txt2img.toml")
    api = await start((Classify.spec(), txt2img))
    listing = (await api.http.get("/endpoints")).json()
    assert {e["name"]: e["workers_online"] for e in listing} == {"classify": 0, "txt2img": 0}
    r = await api.http.post(
        "/workers", json={"name": "w", "endpoints": _dicts([ClassifyLonger])}, headers=AUTH
    )
    assert "inputs.text.max_length: server has 10, worker has 20" in problem(r, 409)["detail"]
    changed = txt2img.to_dict()
    changed["max_attempts"] = 5
    changed["inputs"]["size"]["choices"] = [8, 16]
    r = await api.http.post("/workers", json={"name": "w", "endpoints": [changed]}, headers=AUTH)
    detail = problem(r, 409)["detail"]
    assert "max_attempts: server has 3, worker has 5" in detail
    assert "inputs.size.choices" in detail
    listing = (await api.http.get("/endpoints")).json()
    assert {e["name"]: e["workers_online"] for e in listing} == {"classify": 0, "txt2img": 0}
    # The same specs are welcome.
    await api.register(Classify, txt2img)
    listing = (await api.http.get("/endpoints")).json()
    assert {e["name"]: e["workers_online"] for e in listing} == {"classify": 1, "txt2img": 1}


SPEC = Classify.spec().to_dict()


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        (b"{bad", 400, "JSON"),
        (b"[]", 422, "body"),
        (b"{}", 422, "name"),
        (b'{"name": "w"}', 422, "endpoints"),
        ({"name": "", "endpoints": [SPEC]}, 422, "name"),
        ({"name": "w", "endpoints": []}, 422, "endpoints"),
        ({"name": "w", "endpoints": "classify"}, 422, "endpoints"),
        ({"name": "w", "endpoints": ["classify"]}, 422, "endpoints.0"),
        ({"name": "w", "endpoints": [SPEC], "max_batch_size": 0}, 422, "max_batch_size"),
        ({"name": "w", "endpoints": [SPEC], "metadata": "gpu"}, 422, "metadata"),
        ({"name": "w", "endpoints": [SPEC], "worker_id": "not-hex"}, 422, "worker_id"),
        ({"name": "w", "endpoints": [SPEC], "secret": 1}, 422, "secret"),
        ({"name": "w", "endpoints": [{"inputs": {}}]}, 422, "endpoint.name"),
        ({"name": "w", "endpoints": [{"name": "Bad Name"}]}, 422, "endpoint.name"),
        ({"name": "w", "endpoints": [{"name": "x", "max_batch_size": 0}]}, 422, "max_batch_size"),
        ({"name": "w", "endpoints": [{"name": "x", "colour": "red"}]}, 422, "endpoint.colour"),
        (
            {"name": "w", "endpoints": [{"name": "x", "inputs": {"a": {"type": "complex"}}}]},
            422,
            "inputs.a",
        ),
        (
            {
                "name": "w",
                "endpoints": [{"name": "x", "inputs": {"a": {"type": "integer", "default": "1"}}}],
            },
            422,
            "inputs.a",
        ),
        (
            {
                "name": "w",
                "endpoints": [{"name": "x", "inputs": {"a": {"type": "string", "pattern": 5}}}],
            },
            422,
            "inputs.a",
        ),
    ],
)
async def test_malformed_registrations_name_the_problem(
    api: Api, body: Any, status: int, names: str
) -> None:
    if isinstance(body, bytes):
        r = await api.http.post("/workers", headers=AUTH, content=body)
    else:
        r = await api.http.post("/workers", headers=AUTH, json=body)
    problem_body = problem(r, status)
    fields = [e["field"] for e in problem_body.get("errors", [])]
    assert names in problem_body["detail"] or names in fields, problem_body
    assert (await api.http.get("/endpoints")).json() == []


@pytest.mark.parametrize(
    "field",
    [
        {"type": "selection", "choices": [{"a": 1}, {"b": 2}]},
        {"type": "selection", "choices": [[1], [2]]},
        {"type": "string", "pattern": "^(?=a)a$"},
        {"type": "list", "items": {"type": "selection", "choices": [{"a": 1}]}},
    ],
)
async def test_a_registered_spec_is_refused_or_works(api: Api, field: dict[str, Any]) -> None:
    """Whatever a worker may register must not break the server later (no 500 anywhere)."""
    spec = {"name": "odd", "inputs": {"a": field}}
    r = await api.http.post("/workers", json={"name": "w", "endpoints": [spec]}, headers=AUTH)
    if r.status_code != 201:
        assert "inputs.a" in problem(r, 422)["detail"]
        problem(await api.http.get("/endpoints/odd"), 404)
        return
    async with api.lenient() as http:
        answers = {
            "GET /endpoints/odd": (await http.get("/endpoints/odd")).status_code,
            "GET /openapi.json": (await http.get("/openapi.json")).status_code,
            "POST /endpoints/odd/jobs": (
                await http.post(
                    "/endpoints/odd/jobs",
                    json={"input": {"a": "zzz"}},
                    headers={"Prefer": "respond-async"},
                )
            ).status_code,
        }
    assert all(status < 500 for status in answers.values()), answers


async def test_registering_again_with_the_worker_id_resumes_it(api: Api) -> None:
    worker_id = await api.register(metadata={"gpu": "A100"})
    job_id = await api.submit()
    (job,) = (await api.lease(worker_id))["jobs"]
    again = await api.register(worker_id=worker_id, metadata={"gpu": "H100"})
    assert again == worker_id
    workers = (await api.http.get("/endpoints/classify")).json()["workers"]
    assert [(w["id"], w["metadata"]) for w in workers] == [(worker_id, {"gpu": "H100"})]
    # It still holds what it leased before, and finishes it.
    assert (await api.events(worker_id, {"job_id": job_id, "type": "heartbeat"}))["held"] == [
        job_id
    ]
    assert (await api.finish(worker_id, result(job, OK)))["accepted"] == [job_id]
    assert (await api.job(job_id))["status"] == "succeeded"
    # An id the server does not know (it restarted, say) is taken as given.
    fresh = "00112233aabbccdd"
    assert await api.register(name="w2", worker_id=fresh) == fresh
    assert (await api.lease(fresh))["jobs"] == []


@BOTH_STORES
async def test_lease_gives_validated_input_attempt_and_deadline(api: Api) -> None:
    worker_id = await api.register()
    job_id = await api.submit(text="hello")
    lease = await api.lease(worker_id, max_jobs=4, wait=0)
    assert lease == {
        "jobs": [
            {
                "id": job_id,
                "endpoint": "classify",
                "input": {"text": "hello", "top": 1},
                "attempt": 1,
                "lease_until": START + Classify.spec().lease_duration,
            }
        ],
        "cancelled": [],
        "accepted": [],
        "refused": [],
    }
    job = await api.job(job_id)
    assert job["status"] == "running"
    assert job["worker"] == worker_id
    assert job["started_at"] == START


async def test_a_long_poll_wakes_when_a_job_arrives(api: Api) -> None:
    worker_id = await api.register()
    poll = asyncio.create_task(api.lease(worker_id, wait=30))
    submit = asyncio.create_task(api.submit_and_wait(text="hi"))
    lease = await asyncio.wait_for(poll, BOUND)
    (job,) = lease["jobs"]
    assert job["input"] == {"text": "hi", "top": 1}
    assert (await api.finish(worker_id, result(job, OK)))["accepted"] == [job["id"]]
    answer = await asyncio.wait_for(submit, BOUND)
    assert answer.status_code == 200
    assert answer.json()["output"] == OK


async def test_max_jobs_bounds_the_batch(api: Api) -> None:
    worker_id = await api.register(max_batch_size=4)
    ids = [await api.submit(text=f"t{n}") for n in range(7)]
    first = await api.lease(worker_id, max_jobs=3, wait=0)
    assert [j["id"] for j in first["jobs"]] == ids[:3]
    # The endpoint's max_batch_size (4) bounds a greedier worker too.
    second = await api.lease(worker_id, max_jobs=100, wait=0)
    assert [j["id"] for j in second["jobs"]] == ids[3:7]
    assert (await api.lease(worker_id, max_jobs=100, wait=0))["jobs"] == []
    depths = await api.server.broker.store.queue_depths()
    assert depths["classify"] == {"queued": 0, "running": 7}


async def test_one_job_goes_to_one_of_two_waiting_workers(api: Api) -> None:
    w1, w2 = await api.register(name="w1"), await api.register(name="w2")
    polls = {w: asyncio.create_task(api.lease(w, wait=30)) for w in (w1, w2)}
    first = await api.submit(text="a")
    done, _ = await asyncio.wait(polls.values(), timeout=BOUND, return_when="FIRST_COMPLETED")
    assert len(done) == 1
    (winner,) = [w for w, task in polls.items() if task in done]
    assert [j["id"] for j in polls[winner].result()["jobs"]] == [first]
    (loser,) = [w for w in polls if w != winner]
    second = await api.submit(text="b")
    lease = await asyncio.wait_for(polls[loser], BOUND)
    assert [j["id"] for j in lease["jobs"]] == [second]
    assert (await api.job(first))["worker"] == winner
    assert (await api.job(second))["worker"] == loser


async def test_a_batch_is_answered_when_full_or_when_its_window_ends(api: Api) -> None:
    spec = {"name": "batchy", "inputs": {"n": {"type": "integer"}}, "max_batch_size": 3}
    # A long window: a full batch must not wait for it.
    worker_id = await api.register({**spec, "max_batch_wait": 30.0})
    poll = asyncio.create_task(api.lease(worker_id, max_jobs=3, wait=30))
    ids = [await api.submit("batchy", n=n) for n in range(4)]
    lease = await asyncio.wait_for(poll, BOUND)
    assert [j["id"] for j in lease["jobs"]] == ids[:3]


async def test_a_batch_window_starts_at_the_first_job(api: Api) -> None:
    spec = {"name": "batchy", "inputs": {"n": {"type": "integer"}}, "max_batch_size": 3}
    worker_id = await api.register({**spec, "max_batch_wait": 0.05})
    poll = asyncio.create_task(api.lease(worker_id, max_jobs=3, wait=30))
    job_id = await api.submit("batchy", n=1)
    # One job and a short window: the answer comes long before the 30 s wait ends.
    lease = await asyncio.wait_for(poll, BOUND)
    assert [j["id"] for j in lease["jobs"]] == [job_id]


async def test_an_empty_lease_answers_quickly(api: Api) -> None:
    worker_id = await api.register()
    started = time.monotonic()
    for wait in (0, 0.01, 0.05):
        assert (await api.lease(worker_id, wait=wait))["jobs"] == []
    assert time.monotonic() - started < 2.0


async def test_unknown_worker_ids_are_told_to_register(api: Api) -> None:
    await api.register()
    unknown = "0123456789abcdef"
    for method, path, body in worker_calls(unknown)[1:]:
        r = await api.http.request(method, path, json=body, headers=AUTH)
        assert "register" in problem(r, 404)["detail"], (method, path)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_jobs": 0}, "max_jobs"),
        ({"max_jobs": -1}, "max_jobs"),
        ({"max_jobs": 100_000}, "max_jobs"),
        ({"max_jobs": "many"}, "max_jobs"),
        ({"wait": 1000}, "wait"),
        ({"wait": -1}, "wait"),
        ({"wait": 0, "hold": True}, "hold"),
        ([], "body"),
    ],
)
async def test_bad_lease_bodies_are_422(api: Api, body: Any, field: str) -> None:
    worker_id = await api.register()
    await api.submit()
    r = await api.http.post(f"/workers/{worker_id}/lease", json=body, headers=AUTH)
    assert field in [e["field"] for e in problem(r, 422)["errors"]]
    r = await api.http.post(f"/workers/{worker_id}/lease", content=b"{nope", headers=AUTH)
    problem(r, 400)
    assert (await api.server.broker.store.queue_depths())["classify"]["queued"] == 1


@BOTH_STORES
async def test_a_result_answers_the_waiting_client(api: Api) -> None:
    worker_id = await api.register()
    submit = asyncio.create_task(api.submit_and_wait(text="hi"))
    (job,) = (await asyncio.wait_for(api.lease(worker_id, wait=30), BOUND))["jobs"]
    api.clock.advance(1.5)
    assert await api.finish(worker_id, result(job, OK)) == {"accepted": [job["id"]], "refused": []}
    answer = await asyncio.wait_for(submit, BOUND)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == job["id"]
    assert body["status"] == "succeeded"
    assert body["output"] == OK
    assert body["error"] is None
    assert body["attempts"] == 1
    assert body["worker"] == worker_id
    assert body["compute_time"] == 1.5


@BOTH_STORES
async def test_results_for_jobs_not_held_are_refused(api: Api) -> None:
    w1 = await api.register(name="w1")
    w2 = await api.register(name="w2")
    first, second = await api.submit(text="a"), await api.submit(text="b")
    jobs = (await api.lease(w1, max_jobs=2))["jobs"]
    assert [j["id"] for j in jobs] == [first, second]
    a, b = jobs
    # Another worker, a wrong attempt, an unknown job: refused.
    assert await api.finish(w2, result(a, OK)) == {"accepted": [], "refused": [first]}
    assert await api.finish(w1, {**result(a, OK), "attempt": 2}) == {
        "accepted": [],
        "refused": [first],
    }
    assert await api.finish(w1, {**result(a, OK), "job_id": "nosuchjob"}) == {
        "accepted": [],
        "refused": ["nosuchjob"],
    }
    assert (await api.job(first))["status"] == "running"
    # The holder's result counts; a second word on the same job does not, but a repeat of the
    # recorded one (a worker resending results it could not confirm) is accepted, changing nothing.
    answer = await api.finish(w1, result(a, OK), result(b, error="boom"))
    assert answer == {"accepted": [first, second], "refused": []}
    again = await api.finish(
        w1, result(a, {"label": "neg", "score": 0.1}), result(b, OK), result(a, error="late")
    )
    assert again == {"accepted": [], "refused": [first, second, first]}
    repeat = await api.finish(w1, result(a, OK), result(b, error="boom"))
    assert repeat == {"accepted": [first, second], "refused": []}
    assert await api.finish(w2, result(a, OK)) == {"accepted": [], "refused": [first]}
    done_a, done_b = await api.job(first), await api.job(second)
    assert (done_a["status"], done_a["output"], done_a["error"]) == ("succeeded", OK, None)
    assert (done_b["status"], done_b["output"], done_b["error"]) == ("failed", None, "boom")


@BOTH_STORES
async def test_results_ride_on_the_next_lease(api: Api) -> None:
    """One request per batch: the previous batch's results, then the next batch."""
    worker_id = await api.register()
    first, second = await api.submit(text="a"), await api.submit(text="b")
    (job,) = (await api.lease(worker_id))["jobs"]
    r = await api.http.post(
        f"/workers/{worker_id}/lease",
        json={
            "max_jobs": 1,
            "wait": 0,
            "results": [result(job, OK), {**result(job, OK), "job_id": "nope"}],
        },
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["refused"]) == ([first], ["nope"])
    assert [j["id"] for j in body["jobs"]] == [second]
    assert (await api.job(first))["output"] == OK
    # Results are checked like on the results route, before anything is leased.
    bad = await api.http.post(
        f"/workers/{worker_id}/lease",
        json={"max_jobs": 1, "wait": 0, "results": [{"job_id": second}]},
        headers=AUTH,
    )
    assert bad.status_code == 422, bad.text
    assert (await api.job(second))["status"] == "running"


async def test_an_error_result_fails_the_job_with_its_message(api: Api) -> None:
    worker_id = await api.register()
    submit = asyncio.create_task(api.submit_and_wait(text="hi"))
    (job,) = (await asyncio.wait_for(api.lease(worker_id, wait=30), BOUND))["jobs"]
    message = "RuntimeError: CUDA out of memory"
    assert (await api.finish(worker_id, result(job, error=message)))["accepted"] == [job["id"]]
    answer = await asyncio.wait_for(submit, BOUND)
    assert answer.status_code == 200
    assert answer.json()["status"] == "failed"
    assert answer.json()["error"] == message
    assert answer.json()["output"] is None
    # A failed job is not handed out again.
    assert (await api.lease(worker_id))["jobs"] == []


@BOTH_STORES
async def test_retry_requeues_until_max_attempts_then_fails(api: Api) -> None:
    worker_id = await api.register()
    job_id = await api.submit()
    assert Classify.spec().max_attempts == 3
    for attempt in (1, 2):
        (job,) = (await api.lease(worker_id))["jobs"]
        assert (job["id"], job["attempt"]) == (job_id, attempt)
        answer = await api.finish(worker_id, result(job, error="flaky", retry=True))
        assert answer["accepted"] == [job_id]
        queued = await api.job(job_id)
        assert (queued["status"], queued["attempts"]) == ("queued", attempt)
        assert queued["queue_position"] == 0
    (job,) = (await api.lease(worker_id))["jobs"]
    assert job["attempt"] == 3
    await api.finish(worker_id, result(job, error="flaky", retry=True))
    failed = await api.job(job_id)
    assert (failed["status"], failed["attempts"], failed["error"]) == ("failed", 3, "flaky")
    assert (await api.lease(worker_id))["jobs"] == []


async def test_a_job_that_succeeds_after_a_retry_reports_no_error(api: Api) -> None:
    worker_id = await api.register()
    job_id = await api.submit()
    (job,) = (await api.lease(worker_id))["jobs"]
    await api.finish(worker_id, result(job, error="flaky", retry=True))
    (job,) = (await api.lease(worker_id))["jobs"]
    assert job["attempt"] == 2
    assert (await api.finish(worker_id, result(job, OK)))["accepted"] == [job_id]
    done = await api.job(job_id)
    assert (done["status"], done["output"], done["attempts"]) == ("succeeded", OK, 2)
    assert done["error"] is None  # "output or error", not both


async def test_results_for_an_endpoint_the_worker_does_not_serve_are_409(api: Api) -> None:
    w1 = await api.register(Classify, name="w1")
    w2 = await api.register(Other, name="w2")
    other_id = await api.submit("other", n=1)
    (other,) = (await api.lease(w2))["jobs"]
    job_id = await api.submit()
    (job,) = (await api.lease(w1))["jobs"]
    for endpoint in ("other", "nowhere"):
        r = await api.results(w1, result(job, OK), {**result(other, 1), "endpoint": endpoint})
        assert "other" in problem(r, 409)["detail"] or endpoint in problem(r, 409)["detail"]
    # Nothing in the refused request was applied.
    assert (await api.job(job_id))["status"] == "running"
    assert (await api.job(other_id))["status"] == "running"
    assert (await api.finish(w2, result(other, 1)))["accepted"] == [other_id]
    assert (await api.job(other_id))["output"] == 1


@pytest.mark.parametrize(
    ("output", "where"),
    [
        ({"label": 5, "score": 0.5}, "label"),
        ({"label": "x", "score": "high"}, "score"),
        ({"label": "x", "score": 0.5, "extra": 1}, "extra"),
        ("just text", "output"),
        ([1, 2], "output"),
    ],
)
async def test_an_output_that_breaks_the_declared_outputs_fails_the_job(
    api: Api, output: Any, where: str
) -> None:
    worker_id = await api.register()
    job_id = await api.submit()
    (job,) = (await api.lease(worker_id))["jobs"]
    assert (await api.finish(worker_id, result(job, output)))["accepted"] == [job_id]
    failed = await api.job(job_id)
    assert failed["status"] == "failed"
    assert failed["output"] is None
    assert "does not match the endpoint's outputs" in failed["error"]
    assert where in failed["error"]


async def test_a_missing_required_output_fails_the_job(api: Api) -> None:
    spec = {
        "name": "strict",
        "inputs": {"n": {"type": "integer"}},
        "outputs": {"label": {"type": "string", "required": True}},
    }
    worker_id = await api.register(spec)
    job_id = await api.submit("strict", n=1)
    (job,) = (await api.lease(worker_id))["jobs"]
    await api.finish(worker_id, result(job, {"other": "x"}))
    failed = await api.job(job_id)
    assert failed["status"] == "failed"
    assert "label" in failed["error"]


@BOTH_STORES
async def test_heartbeats_extend_the_lease(api: Api) -> None:
    lease = Classify.spec().lease_duration
    worker_id = await api.register()
    job_id = await api.submit()
    (job,) = (await api.lease(worker_id))["jobs"]
    store = api.server.broker.store
    before = await store.get(job_id)
    assert before is not None and before.lease_until == START + lease
    api.clock.advance(lease / 2)
    answer = await api.events(worker_id, {"job_id": job_id, "type": "heartbeat"})
    assert answer == {"held": [job_id], "cancelled": []}
    after = await store.get(job_id)
    assert after is not None and after.lease_until == START + lease * 1.5
    # Past the first deadline the job is still held; past the new one it is lost.
    api.clock.advance(lease * 0.9)
    assert await api.server.broker.reap() == 0
    assert (await api.job(job_id))["status"] == "running"
    api.clock.advance(lease * 0.2)
    assert await api.server.broker.reap() == 1
    requeued = await api.job(job_id)
    assert (requeued["status"], requeued["attempts"]) == ("queued", 1)
    # The worker that lost it hears so, and its late result is refused.
    answer = await api.events(worker_id, {"job_id": job_id, "type": "heartbeat"})
    assert answer["held"] == []
    assert (await api.finish(worker_id, result(job, OK)))["refused"] == [job_id]
    (again,) = (await api.lease(worker_id))["jobs"]
    assert (again["id"], again["attempt"]) == (job_id, 2)


async def test_heartbeats_for_jobs_not_held_are_not_held(api: Api) -> None:
    w1 = await api.register(name="w1")
    w2 = await api.register(name="w2")
    mine, theirs = await api.submit(), await api.submit()
    await api.lease(w1)
    await api.lease(w2)
    answer = await api.events(
        w1,
        {"job_id": mine, "type": "heartbeat"},
        {"job_id": theirs, "type": "heartbeat"},
        {"job_id": "nosuchjob", "type": "heartbeat"},
        {"job_id": theirs, "type": "progress", "data": {"fraction": 0.9}},
    )
    assert answer == {"held": [mine], "cancelled": []}
    assert (await api.job(theirs))["progress"] is None
    for event in [{"job_id": mine, "type": "shout"}, {"type": "heartbeat"}, {"job_id": mine}]:
        r = await api.http.post(f"/workers/{w1}/events", json={"events": [event]}, headers=AUTH)
        problem(r, 422)


async def test_progress_is_stored_and_shown_with_the_job(api: Api) -> None:
    worker_id = await api.register()
    job_id = await api.submit()
    await api.lease(worker_id)
    assert (await api.job(job_id))["progress"] is None
    progress = {"fraction": 0.5, "message": "halfway", "data": {"step": 5}}
    api.clock.advance(10)
    answer = await api.events(worker_id, {"job_id": job_id, "type": "progress", "data": progress})
    assert answer == {"held": [job_id], "cancelled": []}
    job = await api.job(job_id)
    assert job["status"] == "running"
    assert job["progress"] == progress
    stored = await api.server.broker.store.get(job_id)
    assert stored is not None
    assert stored.lease_until == START + 10 + Classify.spec().lease_duration
    later: dict[str, Any] = {"fraction": 0.75, "message": None, "data": {}}
    await api.events(worker_id, {"job_id": job_id, "type": "progress", "data": later})
    assert (await api.job(job_id))["progress"] == later


@BOTH_STORES
async def test_a_cancelled_job_is_dropped_from_held_and_announced_once(api: Api) -> None:
    worker_id = await api.register()
    first, second = await api.submit(), await api.submit()
    await api.lease(worker_id, max_jobs=2)
    cancelled = await api.http.post(f"/jobs/{first}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    beats = [{"job_id": j, "type": "heartbeat"} for j in (first, second)]
    assert await api.events(worker_id, *beats) == {"held": [second], "cancelled": [first]}
    assert await api.events(worker_id, *beats) == {"held": [second], "cancelled": []}
    # A lease answer announces cancellations too, once.
    await api.http.post(f"/jobs/{second}/cancel")
    nothing: dict[str, list[str]] = {"jobs": [], "accepted": [], "refused": []}
    assert await api.lease(worker_id) == {**nothing, "cancelled": [second]}
    assert await api.lease(worker_id) == {**nothing, "cancelled": []}
    assert await api.events(worker_id, *beats) == {"held": [], "cancelled": []}
    # A result for a cancelled job is refused; the job stays cancelled.
    refused = await api.finish(
        worker_id,
        {"job_id": first, "endpoint": "classify", "attempt": 1, "output": OK},
    )
    assert refused == {"accepted": [], "refused": [first]}
    job = await api.job(first)
    assert (job["status"], job["output"]) == ("cancelled", None)


@BOTH_STORES
async def test_leaving_requeues_running_jobs_at_once(api: Api) -> None:
    w1 = await api.register(name="w1")
    w2 = await api.register(name="w2")
    ids = [await api.submit(text=f"t{n}") for n in range(2)]
    await api.lease(w1, max_jobs=2)
    # w2 is long-polling when w1 leaves: it gets the jobs back right away.
    poll = asyncio.create_task(api.lease(w2, max_jobs=2, wait=30))
    r = await api.http.delete(f"/workers/{w1}", headers=AUTH)
    assert r.status_code == 204
    assert r.content == b""
    lease = await asyncio.wait_for(poll, BOUND)
    assert sorted(j["id"] for j in lease["jobs"]) == sorted(ids)
    assert {j["attempt"] for j in lease["jobs"]} == {2}
    # w1 is gone.
    for method, path, body in worker_calls(w1)[1:]:
        r = await api.http.request(method, path, json=body, headers=AUTH)
        problem(r, 404)
    workers = (await api.http.get("/endpoints/classify")).json()["workers"]
    assert [w["name"] for w in workers] == ["w2"]


async def test_leaving_puts_jobs_back_in_the_queue(api: Api) -> None:
    worker_id = await api.register()
    job_id = await api.submit()
    await api.lease(worker_id)
    assert (await api.http.delete(f"/workers/{worker_id}", headers=AUTH)).status_code == 204
    job = await api.job(job_id)
    assert (job["status"], job["worker"], job["queue_position"]) == ("queued", None, 0)
    listing = (await api.http.get("/endpoints")).json()
    assert [(e["workers_online"], e["queue_depth"], e["running"]) for e in listing] == [(0, 1, 0)]


async def test_an_expired_last_attempt_fails_the_job_with_a_clear_error(api: Api) -> None:
    spec = {"name": "once", "inputs": {"n": {"type": "integer"}}, "max_attempts": 1}
    spec["lease_duration"] = 10.0
    worker_id = await api.register(spec)
    submit = asyncio.create_task(api.submit_and_wait("once", n=1))
    (job,) = (await asyncio.wait_for(api.lease(worker_id, wait=30), BOUND))["jobs"]
    api.clock.advance(11)
    assert await api.server.broker.reap() == 1
    answer = await asyncio.wait_for(submit, BOUND)
    assert answer.json()["status"] == "failed"
    assert "lease" in answer.json()["error"] and "1 attempt" in answer.json()["error"]
    assert (await api.finish(worker_id, result(job, 1)))["refused"] == [job["id"]]
    assert (await api.job(job["id"]))["status"] == "failed"


async def test_eta_and_the_worker_listing(api: Api) -> None:
    worker_id = await api.register(name="gpu-1", max_batch_size=4, metadata={"gpu": "A100"})
    done = [await api.submit(text=f"d{n}") for n in range(2)]
    unknown = await api.job(await api.submit(text="q"))
    assert unknown["queue_position"] == 2 and unknown["eta"] is None  # nothing measured yet
    jobs = (await api.lease(worker_id, max_jobs=2))["jobs"]
    api.clock.advance(2.0)
    answer = await api.finish(worker_id, *(result(j, OK) for j in jobs))
    assert answer["accepted"] == done
    queued = [await api.submit(text=f"q{n}") for n in range(2)]
    job = await api.job(queued[1])
    assert job["status"] == "queued"
    assert job["queue_position"] == 2
    assert isinstance(job["eta"], int | float) and job["eta"] > 0
    first = await api.job(unknown["id"])
    assert first["queue_position"] == 0
    assert 0 < first["eta"] < job["eta"]
    body = (await api.http.get("/endpoints/classify")).json()
    (worker,) = body["workers"]
    assert worker["id"] == worker_id
    assert worker["name"] == "gpu-1"
    assert worker["state"] == "online"
    assert worker["max_batch_size"] == 4
    assert worker["metadata"] == {"gpu": "A100"}
    assert worker["jobs_done"] == 2
    assert isinstance(worker["mean_compute_time"], int | float)
    assert worker["mean_compute_time"] > 0
    assert body["workers_online"] == 1
    # A worker that says nothing for long enough is offline, and gives no ETA.
    api.clock.advance(api.server.settings.offline_after + 1)
    body = (await api.http.get("/endpoints/classify")).json()
    assert [w["state"] for w in body["workers"]] == ["offline"]
    assert body["workers_online"] == 0
    assert (await api.job(queued[1]))["eta"] is None
    # Any word from it brings it back.
    await api.lease(worker_id, wait=0, max_jobs=1)
    body = (await api.http.get("/endpoints/classify")).json()
    assert [w["state"] for w in body["workers"]] == ["online"]


@BOTH_STORES
async def test_a_worker_serves_a_whole_queue(api: Api) -> None:
    """Many jobs through the worker API, in batches, each answered exactly once."""
    worker_id = await api.register(max_batch_size=4)
    ids = [await api.submit(text=f"t{n}") for n in range(10)]
    seen: list[str] = []
    while True:
        jobs = (await api.lease(worker_id, max_jobs=4))["jobs"]
        if not jobs:
            break
        assert len(jobs) <= 4
        answer = await api.finish(
            worker_id, *(result(j, {"label": j["input"]["text"], "score": 1.0}) for j in jobs)
        )
        assert answer["refused"] == []
        seen += answer["accepted"]
    assert seen == ids
    for n, job_id in enumerate(ids):
        job = await api.job(job_id)
        assert (job["status"], job["output"]["label"]) == ("succeeded", f"t{n}")
    worker = (await api.http.get("/endpoints/classify")).json()["workers"][0]
    assert worker["jobs_done"] == 10


# What a worker sends is checked like what a client sends: no 500 from any of it.

BIG = 2**70
"""Valid JSON, but not a 64-bit integer: the stores and the JSON encoder cannot keep it."""


async def test_a_spec_with_a_bound_beyond_64_bits_is_refused_or_works(api: Api) -> None:
    spec = {"name": "big", "inputs": {"n": {"type": "integer", "le": BIG}}}
    async with api.lenient() as http:
        r = await http.post("/workers", json={"name": "w", "endpoints": [spec]}, headers=AUTH)
        answers = {
            "POST /workers": r.status_code,
            "GET /endpoints/big": (await http.get("/endpoints/big")).status_code,
            "GET /openapi.json": (await http.get("/openapi.json")).status_code,
        }
    assert all(status < 500 for status in answers.values()), answers
    if r.status_code != 201:
        assert "inputs.n" in problem(r, 422)["detail"]
        assert answers["GET /endpoints/big"] == 404


async def test_worker_metadata_beyond_64_bits_is_refused_or_shown(api: Api) -> None:
    async with api.lenient() as http:
        r = await http.post(
            "/workers",
            json={"name": "w", "endpoints": _dicts([Classify]), "metadata": {"vram": BIG}},
            headers=AUTH,
        )
        answers = {
            "POST /workers": r.status_code,
            "GET /endpoints/classify": (await http.get("/endpoints/classify")).status_code,
        }
    assert all(status < 500 for status in answers.values()), answers
    if r.status_code != 201:
        assert "metadata" in problem(r, 422)["detail"]


@BOTH_STORES
async def test_progress_beyond_64_bits_is_refused_and_the_job_stays_readable(api: Api) -> None:
    worker_id = await api.register()
    job_id = await api.submit()
    await api.lease(worker_id)
    event = {"job_id": job_id, "type": "progress", "data": {"step": BIG}}
    async with api.lenient() as http:
        r = await http.post(f"/workers/{worker_id}/events", json={"events": [event]}, headers=AUTH)
        answers = {
            "POST events": r.status_code,
            "GET /jobs/{id}": (await http.get(f"/jobs/{job_id}")).status_code,
        }
    assert answers["POST events"] in (200, 422) and answers["GET /jobs/{id}"] == 200, answers


@BOTH_STORES
async def test_an_output_beyond_64_bits_fails_the_job_cleanly(api: Api) -> None:
    worker_id = await api.register(Other)
    job_id = await api.submit("other", n=1)
    (job,) = (await api.lease(worker_id))["jobs"]
    async with api.lenient() as http:
        r = await http.post(
            f"/workers/{worker_id}/results", json={"results": [result(job, BIG)]}, headers=AUTH
        )
        read = await http.get(f"/jobs/{job_id}")
    assert (r.status_code, read.status_code) == (200, 200), (r.text, read.text)
    # Refused as a request or recorded as a failure; either way the job is not stuck running.
    assert read.json()["status"] == "failed", read.text


@BOTH_STORES
async def test_an_attempt_beyond_64_bits_is_refused(api: Api) -> None:
    worker_id = await api.register()
    job_id = await api.submit()
    (job,) = (await api.lease(worker_id))["jobs"]
    async with api.lenient() as http:
        r = await http.post(
            f"/workers/{worker_id}/results",
            json={"results": [{**result(job, OK), "attempt": BIG}]},
            headers=AUTH,
        )
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json() == {"accepted": [], "refused": [job_id]}
    assert (await api.job(job_id))["status"] == "running"
