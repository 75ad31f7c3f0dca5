"""``Idempotency-Key`` over HTTP on every store: a retry gets its job; another input is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.server.app import Server
from modelport.spec import spec_from_toml
from tests.models.basic import Add

ROOT = Path(__file__).resolve().parent.parent
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
async def http(store_url: str) -> AsyncIterator[httpx.AsyncClient]:
    # txt2img has no worker here, so its jobs stay queued while the test looks at them.
    txt2img = spec_from_toml(ROOT / "examples/txt2img/txt2img.toml")
    server = Server([Add], [txt2img], store=store_url)
    async with server.lifespan(None):  # type: ignore[arg-type]
        await asyncio.wait_for(server.runners[0].ready.wait(), 10)
        transport = httpx.ASGITransport(app=server.app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def submit(
    http: httpx.AsyncClient, endpoint: str, inputs: dict[str, Any], key: str, **headers: str
) -> httpx.Response:
    return await http.post(
        f"/endpoints/{endpoint}/jobs",
        json={"input": inputs},
        headers={"Idempotency-Key": key, **headers},
    )


async def test_a_retry_with_the_same_input_gets_the_original_job(http: httpx.AsyncClient) -> None:
    first = await submit(http, "txt2img", {"prompt": "a cat"}, "order-1", **ASYNC)
    assert first.status_code == 202, first.text
    # The same input, spelled with its defaults, is the same request.
    for inputs in ({"prompt": "a cat"}, {"prompt": "a cat", "num_samples": 1}):
        again = await submit(http, "txt2img", inputs, "order-1", **ASYNC)
        assert again.status_code == 202, again.text
        assert again.json()["id"] == first.json()["id"]
    depth = (await http.get("/endpoints/txt2img")).json()["queue_depth"]
    assert depth == 1


async def test_a_reused_key_with_another_input_is_422_naming_the_key(
    http: httpx.AsyncClient,
) -> None:
    first = await submit(http, "txt2img", {"prompt": "a cat"}, "order-2", **ASYNC)
    other = await submit(http, "txt2img", {"prompt": "a dog"}, "order-2", **ASYNC)
    assert other.status_code == 422, other.text
    assert other.headers["content-type"] == "application/problem+json"
    problem = other.json()
    assert "Idempotency-Key 'order-2'" in problem["detail"]
    assert first.json()["id"] in problem["detail"]
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    # Nothing was stored for the refused request, and the first job is untouched.
    assert (await http.get("/endpoints/txt2img")).json()["queue_depth"] == 1
    job = (await http.get(f"/jobs/{first.json()['id']}")).json()
    assert job["input"]["prompt"] == "a cat"


async def test_a_finished_job_is_returned_again_and_still_guards_its_key(
    http: httpx.AsyncClient,
) -> None:
    done = await submit(http, "add", {"a": 2, "b": 3}, "sum-1")
    assert done.status_code == 200 and done.json()["output"] == {"sum": 5.0}, done.text
    again = await submit(http, "add", {"a": 2, "b": 3}, "sum-1")
    assert (again.status_code, again.json()["id"]) == (200, done.json()["id"])
    refused = await submit(http, "add", {"a": 2, "b": 4}, "sum-1")
    assert refused.status_code == 422, refused.text
    # Keys are per endpoint: the same key on another endpoint is another request.
    elsewhere = await submit(http, "txt2img", {"prompt": "x"}, "sum-1", **ASYNC)
    assert elsewhere.status_code == 202, elsewhere.text


async def test_concurrent_requests_with_one_key_and_two_inputs_make_one_job(
    http: httpx.AsyncClient,
) -> None:
    answers = await asyncio.gather(
        *(
            submit(http, "txt2img", {"prompt": p}, "race", **ASYNC)
            for p in ["a", "b", "a", "b", "a", "b"]
        )
    )
    accepted = [r for r in answers if r.status_code == 202]
    assert {r.json()["id"] for r in accepted} == {accepted[0].json()["id"]}
    winner = accepted[0].json()["input"]["prompt"]
    assert len(accepted) == 3
    assert all(r.status_code == 422 for r in answers if r not in accepted)
    assert all(r.json()["input"]["prompt"] == winner for r in accepted)
    assert (await http.get("/endpoints/txt2img")).json()["queue_depth"] == 1
