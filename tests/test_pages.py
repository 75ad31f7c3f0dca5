"""The admin dashboard's data (/admin/overview, /admin/events), admin sessions, the
last-hour series (and its sharing across servers on one Redis), and the pages' headers,
in-process, and the playground's form from a spec. (The pages themselves run in a browser in
test_pages_browser.py.)"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import httpx
import orjson
import pytest

import modelport
from modelport import Input
from modelport.core.stats import POINTS, STEP, merge
from modelport.keys import new_key
from modelport.server.app import Server
from modelport.server.pages.forms import form_html
from modelport.settings import Settings
from tests.conftest import AppFactory, InProcessApp
from tests.models.basic import Add, Fails


async def _key(app: InProcessApp, scope: str) -> dict[str, str]:
    key, secret = new_key(scope)
    await app.server.broker.store.put_key(key.to_dict())
    return {"Authorization": f"Bearer {secret}"}


async def test_admin_data_needs_an_admin_key_or_an_admin_session(
    app_factory: AppFactory,
) -> None:
    app = await app_factory([Add], settings=Settings(auth="keys"))
    http = app.http
    admin, client = await _key(app, "admin"), await _key(app, "client")
    page = await http.get("/admin")  # the page is open: it asks for the key itself
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert (await http.get("/admin/overview")).status_code == 401
    assert (await http.get("/admin/overview", headers=client)).status_code == 403
    assert (await http.get("/admin/overview", headers=admin)).status_code == 200

    refused = await http.post("/sessions", json={"scope": "admin"}, headers=client)
    assert refused.status_code == 403
    assert "admin key" in refused.json()["detail"]
    narrow = await http.post(
        "/sessions", json={"scope": "admin", "endpoints": ["add"]}, headers=admin
    )
    assert narrow.status_code == 422
    made = await http.post("/sessions", json={"scope": "admin"}, headers=admin)
    assert made.status_code == 201 and made.json()["scope"] == "admin"
    session = {"Authorization": f"Bearer {made.json()['token']}"}
    assert (await http.get("/admin/overview", headers=session)).status_code == 200
    assert (await http.get("/keys", headers=session)).status_code == 200

    plain = await http.post("/sessions", json={}, headers=admin)  # a client session
    assert plain.json()["scope"] == "client"
    plain_session = {"Authorization": f"Bearer {plain.json()['token']}"}
    assert (await http.get("/admin/overview", headers=plain_session)).status_code == 403

    # an admin session signed with a client key (as a leaked client key could sign one)
    token, _ = app.server.auth.session_token(
        await app.server.auth.resolve(client["Authorization"]), None, 60, admin=True
    )
    stolen = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/admin/overview", headers=stolen)).status_code == 401


async def test_overview_counts_jobs_and_lists_failures(app_factory: AppFactory) -> None:
    app = await app_factory([Add, Fails])
    admin = await _key(app, "admin")
    for a in range(3):
        r = await app.http.post("/endpoints/add/jobs", json={"input": {"a": a}})
        assert r.json()["status"] == "succeeded"
    failed = (await app.http.post("/endpoints/fails/jobs", json={"input": {"x": -1}})).json()
    assert failed["status"] == "failed"
    view = (await app.http.get("/admin/overview", headers=admin)).json()
    assert [e["name"] for e in view["endpoints"]] == ["add", "fails"]
    (add,) = view["series"]["add"]
    assert add["succeeded"] == 3 and add["failed"] == 0
    assert add["throughput"] == pytest.approx(3 / STEP)
    assert 0 < add["latency"] < 5
    (fails,) = view["series"]["fails"]
    assert fails["failed"] == 1 and fails["latency"] is None
    recent = {j["id"]: j for j in view["recent"]}
    assert "must not be negative" in recent[failed["id"]]["error"]
    assert recent[failed["id"]]["status"] == "failed"
    for job_id, job in recent.items():  # what made each answer
        record = (await app.http.get(f"/jobs/{job_id}")).json()
        assert job["revision"] == record["revision"] == 1
        assert job["model_version"] == record["model_version"] is not None
    workers = {w["name"] for w in view["workers"]}
    assert len(workers) == 2 and all(w["state"] == "online" for w in view["workers"])
    assert {tuple(w["endpoints"]) for w in view["workers"]} == {("add",), ("fails",)}


async def test_events_stream_overviews_until_the_server_goes_down(
    app_factory: AppFactory,
) -> None:
    # httpx's ASGI transport reads a whole body, so the endless stream is read here as
    # uvicorn would: from the response's body iterator.
    app = await app_factory([Add])
    response = await app.server.dashboard.events(None)  # type: ignore[arg-type]
    assert response.media_type == "text/event-stream"
    lines = response.body_iterator.__aiter__()
    first = await asyncio.wait_for(anext(lines), 10)
    assert isinstance(first, bytes)
    kind, data = first.decode().strip().split("\n")
    assert kind == "event: overview"
    assert orjson.loads(data.removeprefix("data: "))["endpoints"][0]["name"] == "add"
    app.server.broker.closing()
    with pytest.raises(StopAsyncIteration):  # it ends at once, not after the next tick
        await asyncio.wait_for(anext(lines), 1)


def test_merge_sums_servers_and_keeps_the_last_hour() -> None:
    now = 10_000 * STEP + 5
    minute = 10_000 * STEP
    old = minute - STEP * POINTS
    a = {"series": {"e": [[old, 9, 9, 9.0, 9, 9], [minute, 2, 1, 1.0, 4, 1]]}, "recent": []}
    b = {"series": {"e": [[minute, 3, 0, 2.0, 6, 0]]}, "recent": [{"id": "j", "completed_at": 1}]}
    merged = merge([a, b], now)
    assert merged["endpoints"]["e"] == [
        {
            "t": minute,
            "succeeded": 5,
            "failed": 1,
            "throughput": round(6 / STEP, 4),
            "latency": round(3.0 / 5, 4),
            "queued": 6,
            "running": 1,
        }
    ]
    assert merged["recent"] == [{"id": "j", "completed_at": 1}]


async def test_servers_on_one_redis_show_the_same_series(
    app_factory: AppFactory, redis_url: str
) -> None:
    one = await app_factory([Add], store=redis_url)
    two = await app_factory([Add], store=redis_url)
    admin = await _key(one, "admin")
    for app in (one, two):
        for a in range(2):
            r = await app.http.post("/endpoints/add/jobs", json={"input": {"a": a}})
            assert r.json()["status"] == "succeeded"
    for app in (one, two):  # what each does every few seconds on its own
        await app.server.broker.stats.flush(app.server.broker.store)
    views = [(await app.http.get("/admin/overview", headers=admin)).json() for app in (one, two)]
    for view in views:
        assert sum(p["succeeded"] for p in view["series"]["add"]) == 4
        assert len(view["recent"]) == 4
    assert views[0]["series"] == views[1]["series"]


async def test_playground_page_escapes_the_spec_and_sends_a_strict_policy() -> None:
    server = Server([Add])
    transport = httpx.ASGITransport(app=server.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.get("/ui/add")
        assert r.status_code == 200
        policy = r.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "<script>" not in r.text and 'type="module"' in r.text
        assert 'data-endpoint="add"' in r.text
        assert 'id="in-b"' in r.text and 'min="-100"' in r.text
        # filled to run as it is: the default of b, and for a the example the docs show
        assert re.search(r'id="in-a" [^>]*value="1.0"', r.text)
        missing = await http.get("/ui/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert 'href="/ui/add"' in missing.text
        css = await http.get("/ui/static/modelport.css")
        assert css.status_code == 200
        js = await http.get("/ui/static/playground.js")
        assert js.headers["content-type"].startswith("text/javascript")


class Markup(modelport.Model):
    """Says <b>bold</b> & <script>alert(1)</script>."""

    name = "markup"

    def predict(
        self,
        note: str = Input("<i>x</i>", description="<script>alert(2)</script>"),
        mode: Literal["a<b", "c"] = "c",
        maybe: int | None = None,
        flags: list[int] = Input([1, 2]),
        table: dict[str, int] = Input({"a": 1}),
        on: bool = True,
    ) -> str:
        return note


def test_the_form_shows_each_kind_of_input_and_escapes_the_spec() -> None:
    spec = Server([Markup]).broker.specs["markup"]
    html = form_html(spec.input_schema())
    kinds = dict(re.findall(r'data-field="(\w+)" data-kind="(\w+)"', html))
    assert kinds == {
        "note": "string",
        "mode": "enum",
        "maybe": "integer",
        "flags": "list",
        "table": "json",
        "on": "boolean",
    }
    assert "<script>" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;i&gt;x&lt;/i&gt;</textarea>" in html
    assert '<option value="&quot;a&lt;b&quot;">a&lt;b</option>' in html
    assert '<option value="&quot;c&quot;" selected>' in html
    assert 'data-field="maybe" data-kind="integer" data-nullable="true"' in html
    assert 'data-items="integer"' in html and ">1\n2</textarea>" in html
    assert "{\n  &quot;a&quot;: 1\n}</textarea>" in html
    assert 'type="checkbox" id="in-on"' in html and " checked>" in html
