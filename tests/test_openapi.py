"""The OpenAPI document: valid 3.1, every served route in it, its examples accepted by the
routes' own validators, and the server's real answers matching the documented schemas."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pydantic
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

import modelport
from modelport import Input, wire
from modelport.loader import load_models
from modelport.server.admin import NewKey, NewSession
from modelport.server.app import Server, Settings
from modelport.server.conversations import NewConversation, NewMessages
from modelport.server.examples import input_example
from modelport.server.openai import _ChatRequest, _EmbeddingRequest
from modelport.server.openapi import at_most, openapi
from modelport.server.streaming import MAX_EVENT_ID, parse_event_id
from modelport.spec import EndpointSpec, FieldSpec, spec_from_document, spec_from_toml
from tests.models.basic import Add, Shapes

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "docs-worker-token"
PAGES = {"/docs", "/redoc", "/admin", "/ui/{name}", "/ui/{name}/chat"}  # pages for people


class Chat(modelport.Model):
    """Answers with the last message's words reversed."""

    kind = "chat"

    def predict(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int = Input(default=16, ge=1, le=100),
    ) -> str:
        return " ".join(reversed(str(messages[-1].get("content", "")).split()))


class Vectors(modelport.Model):
    """A three-dimensional embedding of a text's length."""

    kind = "embedding"

    def predict(self, text: str = Input(max_length=1000)) -> list[float]:
        return [float(len(text)), 1.0, 0.0]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    txt2img = spec_from_toml(ROOT / "examples/txt2img/txt2img.toml")
    s = Server(
        [Add, Shapes, Chat, Vectors],
        [txt2img],
        settings=Settings(worker_token=TOKEN, default_wait=5.0),
    )
    async with s.lifespan(None):  # type: ignore[arg-type]
        for runner in s.runners:
            await asyncio.wait_for(runner.ready.wait(), 10)
        yield s


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=server.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def doc(http: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await http.get("/openapi.json")).json()
    return body


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method.upper(), path, op


async def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))


async def test_every_route_the_app_serves_is_documented(
    server: Server, doc: dict[str, Any]
) -> None:
    app = server.app().app  # type: ignore[attr-defined]  # the Starlette app in the FrontDoor
    routes = [r for r in app.routes if isinstance(r, Route) and r.path not in PAGES]
    documented = {(m, p) for m, p, _ in _operations(doc)}
    served: set[tuple[str, str]] = set()
    for route in routes:
        for method in sorted((route.methods or set()) - {"HEAD"}):
            matches = {
                (m, p)
                for m, p in documented
                if m == method and (p == route.path or route.path_regex.match(p))
            }
            assert matches, f"{method} {route.path} is served but not documented"
            served |= matches
    assert served == documented, f"documented but not served: {documented - served}"
    submits = {p for m, p in documented if p.startswith("/endpoints/") and p.endswith("/jobs")}
    assert submits == {f"/endpoints/{name}/jobs" for name in server.broker.specs}
    for path in ("/jobs/{id}/events", "/v1/chat/completions", "/metrics", "/health/ready"):
        assert path in doc["paths"]


async def test_every_operation_has_request_and_response_schemas(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        assert op["summary"] and op["tags"], (method, path)
        assert any(status.startswith("2") for status in op["responses"]), (method, path)
        for status, response in op["responses"].items():
            assert response["description"], (method, path, status)
            if status != "204":
                assert all("schema" in m for m in response["content"].values()), (path, status)
        if method == "POST" and op["operationId"] not in ("cancel_job", "enable_endpoint"):
            body = op["requestBody"]["content"]["application/json"]
            assert "schema" in body and "example" in body, f"{method} {path}: no example body"


def _validate(operation_id: str, server: Server, body: bytes) -> None:
    """Validate ``body`` as the route itself does."""
    models: dict[str, type[pydantic.BaseModel]] = {
        "openai_chat": _ChatRequest,
        "openai_embeddings": _EmbeddingRequest,
        "create_key": NewKey,
        "create_session": NewSession,
        "create_conversation": NewConversation,
        "add_conversation_messages": NewMessages,
    }
    messages: dict[str, type[Any]] = {
        "register_worker": wire.Registration,
        "lease_jobs": wire.LeaseRequest,
        "worker_events": wire.EventsRequest,
        "worker_results": wire.ResultsRequest,
    }
    if operation_id == "put_endpoint":
        spec_from_document(body.decode(), toml=False, name="example")
    elif operation_id == "disable_endpoint":
        assert isinstance(orjson.loads(body)["reason"], str)
    elif operation_id in models:
        models[operation_id].model_validate_json(body)
    elif operation_id in messages:
        wire.decode(messages[operation_id], body)
    else:
        name = next(n for n in server.broker.specs if f"submit_{n}" == operation_id)
        server.broker.specs[name].request_model.model_validate_json(body)


async def test_every_example_body_is_accepted_by_the_route_s_own_model(
    server: Server, doc: dict[str, Any]
) -> None:
    checked = 0
    for _, _, op in _operations(doc):
        body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "example" in body:
            _validate(op["operationId"], server, orjson.dumps(body["example"]))
            checked += 1
        toml = op.get("requestBody", {}).get("content", {}).get("application/toml", {})
        if "example" in toml:
            spec_from_document(toml["example"], toml=True, name="example")
            checked += 1
    # five submits, chat, embeddings, four worker routes, key, session, two conversation
    # routes, put (JSON and TOML), disable
    assert checked == 18


async def test_endpoint_examples_run(http: httpx.AsyncClient, doc: dict[str, Any]) -> None:
    """Sent as they are, the example bodies succeed (txt2img has no worker: it queues)."""
    for name in ("add", "shapes", "chat", "vectors", "txt2img"):
        path = f"/endpoints/{name}/jobs"
        example = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        wait = "wait=0.1" if name == "txt2img" else "wait=5"  # txt2img's wait can only expire
        r = await http.post(path, json=example["example"], headers={"Prefer": wait})
        assert r.status_code == (202 if name == "txt2img" else 200), r.text
        if name != "txt2img":
            assert r.json()["status"] == "succeeded", r.text
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    r = await http.post("/v1/chat/completions", json=chat["application/json"]["example"])
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "library. standard the about me Tell"


async def test_examples_come_from_the_spec(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    prompt = schemas["Txt2imgInput"]["properties"]["prompt"]
    assert prompt["examples"] == ["a lighthouse at dusk"]  # `example = ...` in the TOML
    txt2img = doc["paths"]["/endpoints/txt2img/jobs"]["post"]["requestBody"]["content"]
    assert txt2img["application/json"]["example"] == {
        "input": {"prompt": "a lighthouse at dusk", "num_samples": 1, "seed": -1, "size": 16}
    }
    chat = doc["paths"]["/endpoints/chat/jobs"]["post"]["requestBody"]["content"]
    messages = chat["application/json"]["example"]["input"]["messages"]
    assert messages and all(set(m) == {"role", "content"} for m in messages)
    assert all(m["role"] in ("system", "user", "assistant") and m["content"] for m in messages)


def _spec(**inputs: FieldSpec) -> EndpointSpec:
    return EndpointSpec(name="t", inputs=inputs)


def test_derived_examples_are_realistic_and_valid() -> None:
    bounded = _spec(
        length=FieldSpec("float", required=True, ge=0, le=10),
        steps=FieldSpec("integer", required=True, ge=1, le=100),
        count=FieldSpec("integer", required=True, ge=3),
        size=FieldSpec("selection", required=True, choices=[512, 768]),
        tags=FieldSpec("list", required=True, items=FieldSpec("string"), min_length=2),
        name=FieldSpec("string", required=True, max_length=10),
        seed=FieldSpec("integer", default=7),
        notes=FieldSpec("string"),  # optional, no default, no example: left out
    )
    example = input_example(bounded)
    assert example == {
        "length": 5.0,
        "steps": 50,
        "count": 3,
        "size": 512,
        "tags": ["The quick brown fox jumps over the lazy dog."] * 2,
        "name": "The quick",
        "seed": 7,
    }
    bounded.request_model.model_validate({"input": example})
    # A required input that no derived value fits: no example at all, never a wrong one.
    assert input_example(_spec(code=FieldSpec("string", required=True, pattern="^x$"))) is None
    # An optional one that no derived value fits is left out.
    optional = _spec(
        a=FieldSpec("float", required=True), code=FieldSpec("string", pattern="^x$", default="x")
    )
    assert input_example(optional) == {"a": 1.0, "code": "x"}
    lenient = _spec(a=FieldSpec("integer", required=True), b=FieldSpec("string", example="hi"))
    assert input_example(lenient) == {"a": 1, "b": "hi"}


def test_derived_examples_of_the_examples_are_not_placeholders() -> None:
    (iris_model,) = load_models(str(ROOT / "examples/iris/model.py"))
    (textgen,) = load_models(str(ROOT / "examples/textgen/model.py"))
    assert input_example(iris_model.spec()) == {
        "sepal_length": 5.1,
        "sepal_width": 3.5,
        "petal_length": 1.4,
        "petal_width": 0.2,
    }
    example = input_example(textgen.spec())
    assert example is not None
    assert example["messages"] == [
        {"role": "user", "content": "Tell me about the standard library."}
    ]
    assert "stop" not in example  # optional, no default


def _check(doc: dict[str, Any], op: dict[str, Any], response: httpx.Response) -> None:
    """``response`` has a documented status and content type, and its body fits the schema."""
    status = str(response.status_code)
    documented = op["responses"]
    assert status in documented, f"{op['operationId']}: {status} is not documented"
    if status == "204":
        return
    content = documented[status]["content"]
    media = response.headers["content-type"]
    if media not in content:  # documented without its parameters (charset)
        media = media.split(";")[0]
    assert media in content, f"{op['operationId']} {status}: {media} is not documented"
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        **content[media]["schema"],
    }
    bodies = [response.json()] if media.endswith("json") else []
    if media == "application/jsonl":
        bodies = [orjson.loads(line) for line in response.text.splitlines() if line.strip()]
    for body in bodies:
        jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


async def test_real_answers_match_the_documented_schemas(
    http: httpx.AsyncClient, doc: dict[str, Any]
) -> None:
    paths = doc["paths"]
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def call(method: str, path: str, template: str | None = None, **kw: Any) -> Any:
        response = await http.request(method, path, **kw)
        _check(doc, paths[template or path][method.lower()], response)
        return response

    await call("GET", "/", headers={"Accept": "application/json"})
    await call("GET", "/", headers={"Accept": "text/html"})
    await call("GET", "/endpoints")
    await call("GET", "/endpoints/add", "/endpoints/{name}")
    await call("GET", "/endpoints/nope", "/endpoints/{name}")
    await call("GET", "/health/live")
    await call("GET", "/health/ready")
    await call("GET", "/metrics")
    await call("GET", "/openapi.json")
    done = (await call("POST", "/endpoints/add/jobs", json={"input": {"a": 1}})).json()
    await call("POST", "/endpoints/add/jobs", json={"input": {"a": "x"}})
    await call("POST", "/endpoints/add/jobs", content=b"{")
    queued = await call(  # no worker: the wait expires and the answer is 202
        "POST",
        "/endpoints/txt2img/jobs",
        json={"input": {"prompt": "a cat"}},
        headers={"Prefer": "wait=0.1"},
    )
    assert queued.status_code == 202
    await call("GET", f"/jobs/{done['id']}", "/jobs/{id}")
    await call("GET", "/jobs/nope", "/jobs/{id}")
    await call(
        "GET",
        f"/jobs/{done['id']}/events",
        "/jobs/{id}/events",
        headers={"Accept": "application/jsonl"},
    )
    await call("POST", f"/jobs/{done['id']}/cancel", "/jobs/{id}/cancel")
    await call("POST", f"/jobs/{queued.json()['id']}/cancel", "/jobs/{id}/cancel")
    streamed = await call(
        "POST",
        "/endpoints/add/jobs",
        json={"input": {"a": 2}},
        headers={"Accept": "application/jsonl"},
    )
    assert [orjson.loads(x)["event"] for x in streamed.text.split()][-1] == "succeeded"
    await call("GET", "/v1/models")
    chat = {"model": "chat", "messages": [{"role": "user", "content": "a b"}]}
    await call("POST", "/v1/chat/completions", json=chat)
    await call("POST", "/v1/chat/completions", json={**chat, "model": "nope"})
    await call("POST", "/v1/embeddings", json={"model": "vectors", "input": ["a", "bc"]})
    await call(
        "POST",
        "/v1/embeddings",
        json={"model": "vectors", "input": "a", "encoding_format": "base64"},
    )
    spec = (await http.get("/endpoints/add")).json()["spec"]
    registration = {"name": "w", "endpoints": [spec], "max_batch_size": 2}
    await call("POST", "/workers", json=registration)
    worker = (await call("POST", "/workers", json=registration, headers=auth)).json()
    wid = worker["worker_id"]
    await call(
        "POST", "/endpoints/add/jobs", json={"input": {"a": 5}}, headers={"Prefer": "respond-async"}
    )
    leased = await call(
        "POST",
        f"/workers/{wid}/lease",
        "/workers/{id}/lease",
        json={"max_jobs": 2, "wait": 0},
        headers=auth,
    )
    jobs = leased.json()["jobs"]
    events = {"events": [{"job_id": j["id"], "type": "heartbeat"} for j in jobs]}
    await call("POST", f"/workers/{wid}/events", "/workers/{id}/events", json=events, headers=auth)
    results = {
        "results": [
            {
                "job_id": j["id"],
                "endpoint": j["endpoint"],
                "attempt": j["attempt"],
                "output": {"sum": 6},
            }
            for j in jobs
        ]
    }
    await call(
        "POST", f"/workers/{wid}/results", "/workers/{id}/results", json=results, headers=auth
    )
    await call("DELETE", f"/workers/{wid}", "/workers/{id}", headers=auth)
    await call("DELETE", "/workers/0123456789abcdef", "/workers/{id}", headers=auth)


def test_names_that_collide_still_give_one_valid_document() -> None:
    """Endpoints whose names make the same schema names, or match a fixed tag, or OpenAI's
    request schema, each keep their own schemas."""
    specs = {
        name: EndpointSpec(name=name, inputs={name.replace("-", "_").replace(".", "_"): field})
        for name, field in (
            ("a-b", FieldSpec("integer", required=True)),
            ("a_b", FieldSpec("string", required=True)),
            ("jobs", FieldSpec("boolean", required=True)),
            ("chat-completion", FieldSpec("float", required=True)),
        )
    }
    doc = openapi(specs)
    validate(doc)
    tags = [t["name"] for t in doc["tags"]]
    assert len(tags) == len(set(tags))
    schemas = doc["components"]["schemas"]
    seen = set()
    for name in specs:
        ref = doc["paths"][f"/endpoints/{name}/jobs"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]["$ref"]
        request = schemas[ref.rsplit("/", 1)[1]]
        inputs = schemas[request["properties"]["input"]["$ref"].rsplit("/", 1)[1]]
        assert set(inputs["properties"]) == set(specs[name].inputs)
        seen.add(ref)
    assert len(seen) == 4
    chat = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]
    chat_schema = schemas[chat["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert "messages" in chat_schema["properties"]


@pytest.mark.parametrize("limit", [0, 7, 9, 10, 99, 100, 305, 1000, MAX_EVENT_ID])
def test_the_event_id_pattern_takes_exactly_the_ids_the_server_takes(limit: int) -> None:
    pattern = re.compile(at_most(limit))
    edges = [0, 1, 9, 10, 99, 100, limit - 1, limit, limit + 1, limit * 10, limit + 10**5]
    for n in {*range(min(limit + 2, 1200)), *(e for e in edges if e >= 0)}:
        for text in (str(n), "00" + str(n)):
            assert bool(pattern.fullmatch(text)) is (n <= limit), text
    for text in ("", "-1", "1.5", "x", "1e3", "٣"):
        assert pattern.fullmatch(text) is None
    ids = re.compile(at_most(MAX_EVENT_ID))
    for text in (str(MAX_EVENT_ID), str(MAX_EVENT_ID + 1), "0" * 30 + "5"):
        accepted = True
        try:
            parse_event_id(text)
        except modelport.errors.BadRequest:
            accepted = False
        assert bool(ids.fullmatch(text)) is accepted, text
