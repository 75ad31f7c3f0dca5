"""The result cache: opt-in per endpoint, kept in the store, answered without queueing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from modelport.errors import SpecError
from modelport.keys import new_key
from modelport.settings import Settings
from modelport.spec import spec_from_dict
from tests.conftest import AppFactory, eventually
from tests.models import cached
from tests.models.basic import Add
from tests.models.cached import Counts, Gated, Square, Tiny


@pytest.fixture(autouse=True)
def calls() -> Iterator[list[int]]:
    cached.CALLS.clear()
    cached.GATE.set()
    yield cached.CALLS
    cached.GATE.set()


async def submit(http: httpx.AsyncClient, endpoint: str, **inputs: object) -> httpx.Response:
    return await http.post(f"/endpoints/{endpoint}/jobs", json={"input": inputs})


def lookups(metrics: str, endpoint: str, result: str) -> float:
    line = f'modelport_cache_lookups_total{{endpoint="{endpoint}",result="{result}"}} '
    found = [ln for ln in metrics.splitlines() if ln.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def test_identical_input_is_answered_from_the_cache(
    app_factory: AppFactory, calls: list[int]
) -> None:
    app = await app_factory([Square])
    first = await submit(app.http, "square", x=3)
    assert first.status_code == 200
    assert first.headers["x-cache"] == "miss"
    assert first.json()["output"] == {"label": "sq", "y": 9}
    # The same validated input (the default made explicit) is the same entry.
    again = await submit(app.http, "square", x=3, label="sq")
    assert again.status_code == 200
    assert again.headers["x-cache"] == "hit"
    assert again.headers["x-job-status"] == "succeeded"
    body = again.json()
    assert body["output"] == {"label": "sq", "y": 9}
    assert body["source"] == "cache"
    assert body["id"] == first.json()["id"]  # the job that computed it
    other = await submit(app.http, "square", x=4)
    assert other.headers["x-cache"] == "miss"
    assert calls == [3, 4]
    metrics = (await app.http.get("/metrics")).text
    assert lookups(metrics, "square", "hit") == 1
    assert lookups(metrics, "square", "miss") == 2


async def test_no_cache_unless_the_endpoint_asks(app_factory: AppFactory) -> None:
    app = await app_factory([Add])
    for _ in range(2):
        r = await submit(app.http, "add", a=1)
        assert r.status_code == 200
        assert "x-cache" not in r.headers
        assert "source" not in r.json()


async def test_failed_jobs_are_not_cached(app_factory: AppFactory, calls: list[int]) -> None:
    app = await app_factory([Square])
    for _ in range(2):
        r = await submit(app.http, "square", x=-1)
        assert r.json()["status"] == "failed"
        assert r.headers["x-cache"] == "miss"
    assert calls == [-1, -1]


async def test_streamed_jobs_are_not_cached(app_factory: AppFactory, calls: list[int]) -> None:
    app = await app_factory([Counts])
    for _ in range(2):
        r = await submit(app.http, "counts", n=3)
        assert r.json()["output"] == [0, 1, 2]
        assert r.headers["x-cache"] == "miss"
    async with app.http.stream(
        "POST",
        "/endpoints/counts/jobs",
        json={"input": {"n": 2}},
        headers={"accept": "text/event-stream"},
    ) as stream:
        assert "x-cache" not in stream.headers
        await stream.aread()
    assert calls == [3, 3, 2]


async def test_idempotency_key_gets_its_own_job(app_factory: AppFactory, calls: list[int]) -> None:
    app = await app_factory([Square])
    await submit(app.http, "square", x=5)
    r = await app.http.post(
        "/endpoints/square/jobs", json={"input": {"x": 5}}, headers={"idempotency-key": "k-1"}
    )
    assert r.json()["output"]["y"] == 25
    assert "x-cache" not in r.headers
    assert calls == [5, 5]


async def test_concurrent_identical_misses_compute_once(
    app_factory: AppFactory, calls: list[int]
) -> None:
    app = await app_factory([Gated])
    cached.GATE.clear()
    first = asyncio.create_task(submit(app.http, "gated", x=1))
    await eventually(lambda: _async(calls == [1]), 10, "the first job to start")
    followers = [asyncio.create_task(submit(app.http, "gated", x=1)) for _ in range(5)]

    async def all_waiting() -> bool:
        metrics = (await app.http.get("/metrics")).text
        return lookups(metrics, "gated", "coalesced") == 5

    await eventually(all_waiting, 10, "the followers to wait on the first job")
    cached.GATE.set()
    answers = [await first, *[await f for f in followers]]
    assert [r.json()["output"] for r in answers] == [2] * 6
    assert {r.json()["id"] for r in answers} == {answers[0].json()["id"]}
    assert [r.headers["x-cache"] for r in answers] == ["miss"] + ["hit"] * 5
    assert calls == [1]


async def _async(value: bool) -> bool:
    return value


async def test_max_entries_drops_the_oldest(app_factory: AppFactory, calls: list[int]) -> None:
    app = await app_factory([Tiny])
    for x in (1, 2, 3):
        await submit(app.http, "tiny", x=x)
    assert (await submit(app.http, "tiny", x=3)).headers["x-cache"] == "hit"
    assert (await submit(app.http, "tiny", x=1)).headers["x-cache"] == "miss"
    assert calls == [1, 2, 3, 1]


async def test_entries_expire_with_cache_ttl(app_factory: AppFactory, calls: list[int]) -> None:
    now = [1_000_000.0]
    app = await app_factory([Square], clock=lambda: now[0])
    await submit(app.http, "square", x=7)
    now[0] += 61  # past cache_ttl: the entry is not renewed with its answer
    assert (await submit(app.http, "square", x=7)).headers["x-cache"] == "miss"
    assert calls == [7, 7]


async def test_a_new_endpoint_version_does_not_see_old_entries(
    app_factory: AppFactory, calls: list[int], tmp_path: object
) -> None:
    class SquareV2(Square):
        name = "square"
        version = "2"

    store = f"sqlite:///{tmp_path}/jobs.db"
    first = await app_factory([Square], store=store)
    await submit(first.http, "square", x=2)
    second = await app_factory([SquareV2], store=store)
    assert (await submit(second.http, "square", x=2)).headers["x-cache"] == "miss"
    assert calls == [2, 2]


async def test_cache_hits_across_two_servers_on_redis(
    app_factory: AppFactory, redis_url: str, calls: list[int]
) -> None:
    a = await app_factory([Square], store=redis_url)
    b = await app_factory([Square], store=redis_url)
    miss = await submit(a.http, "square", x=9)
    assert miss.headers["x-cache"] == "miss"
    hit = await submit(b.http, "square", x=9)
    assert hit.headers["x-cache"] == "hit"
    assert hit.json()["output"]["y"] == 81
    assert calls == [9]


def test_cache_settings_are_checked() -> None:
    spec = spec_from_dict({"name": "e", "cache_ttl": 10, "cache_max_entries": 5})
    assert (spec.cache_ttl, spec.cache_max_entries) == (10.0, 5)
    with pytest.raises(SpecError, match="cache_ttl: must be a number of seconds above 0"):
        spec_from_dict({"name": "e", "cache_ttl": 0})
    with pytest.raises(SpecError, match="cache_max_entries: needs cache_ttl"):
        spec_from_dict({"name": "e", "cache_max_entries": 5})
    with pytest.raises(SpecError, match="cache_max_entries: expected int"):
        spec_from_dict({"name": "e", "cache_ttl": 1, "cache_max_entries": "many"})


async def test_the_cache_is_per_api_key_and_hits_count_against_its_rate(
    app_factory: AppFactory, calls: list[int]
) -> None:
    app = await app_factory([Square], settings=Settings(auth="keys"))
    store = app.server.broker.store
    secrets = {}
    for name in ("a", "b"):
        key, secret = new_key("client", name=name, rate="1/min", burst=2)
        await store.put_key(key.to_dict())
        secrets[name] = {"Authorization": f"Bearer {secret}"}
    body = {"input": {"x": 6}}
    first = await app.http.post("/endpoints/square/jobs", json=body, headers=secrets["a"])
    assert first.headers["x-cache"] == "miss"
    hit = await app.http.post("/endpoints/square/jobs", json=body, headers=secrets["a"])
    assert hit.headers["x-cache"] == "hit"
    other = await app.http.post("/endpoints/square/jobs", json=body, headers=secrets["b"])
    assert other.headers["x-cache"] == "miss"  # b is not answered with a's job
    assert other.json()["id"] != first.json()["id"]
    assert calls == [6, 6]
    refused = await app.http.post("/endpoints/square/jobs", json=body, headers=secrets["a"])
    assert refused.status_code == 429  # the hit spent a's second token
