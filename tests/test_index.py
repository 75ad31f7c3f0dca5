"""GET /: HTML for a browser, JSON for API clients, by Accept; and the docs pages' links
behind a proxy's root path. (The page itself is also checked in a browser, in
test_docs_browser.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

import modelport
from modelport.server.app import Server
from modelport.server.index import preferred
from tests.models.basic import Add

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"


class Tricky(modelport.Model):
    """Says <script>alert(1)</script> & more."""

    name = "tricky"

    def predict(self, x: int) -> int:
        return x


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server([Add, Tricky])
    async with s.lifespan(None):  # type: ignore[arg-type]
        for runner in s.runners:
            await asyncio.wait_for(runner.ready.wait(), 10)
        yield s


def client(server: Server, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=server.app(), root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        (BROWSER, True),
        ("text/html", True),
        ("text/*", True),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.1, text/html", True),
        ("text/html;q=0, */*", False),
        ("application/problem+json", False),
    ],
)
async def test_accept_chooses_html_or_json(server: Server, accept: str | None, html: bool) -> None:
    async with client(server) as http:
        r = await http.get("/", headers={} if accept is None else {"Accept": accept})
    assert r.status_code == 200
    assert r.headers["vary"] == "Accept"
    if html:
        assert r.headers["content-type"].startswith("text/html")
        assert "<h1>modelport" in r.text
    else:
        assert r.headers["content-type"] == "application/json"
        assert r.json()["name"] == "modelport"


def test_preferred_reads_quality_values() -> None:
    offers = ("application/json", "text/html")
    assert preferred("", offers) == "application/json"
    assert preferred("text/html;q=abc, application/json;q=0.2", offers) == "application/json"
    assert preferred("text/html;q=7, application/json;q=0.9", offers) == "text/html"
    assert preferred("TEXT/HTML", offers) == "text/html"
    assert preferred("text/plain", offers) == "application/json"  # neither: the first


async def test_json_index_lists_endpoints_and_links(server: Server) -> None:
    async with client(server) as http:
        body = (await http.get("/")).json()
        assert body["ready"] is True and body["status"] == "ready"
        assert [e["name"] for e in body["endpoints"]] == ["add", "tricky"]
        add = body["endpoints"][0]
        assert add["description"] == "Adds two numbers."
        assert add["workers_online"] == 1
        assert add["example"] == {"input": {"a": 1.0, "b": 1.0}}
        r = await http.post(add["submit"], json=add["example"])
        assert r.json()["output"] == {"sum": 2.0}
        assert body["links"] == {
            "docs": "/docs",
            "redoc": "/redoc",
            "openapi": "/openapi.json",
            "health_live": "/health/live",
            "health_ready": "/health/ready",
            "metrics": "/metrics",
        }
        for link in body["links"].values():
            assert (await http.get(link)).status_code == 200, link


async def test_html_index_escapes_what_models_say(server: Server) -> None:
    async with client(server) as http:
        page = (await http.get("/", headers={"Accept": "text/html"})).text
    assert "<script>" not in page
    assert "Says &lt;script&gt;alert(1)&lt;/script&gt; &amp; more." in page


async def test_pages_and_links_follow_the_root_path(server: Server) -> None:
    async with client(server, root_path="/api") as http:
        body = (await http.get("/")).json()
        assert body["links"]["docs"] == "/api/docs"
        assert body["endpoints"][0]["submit"] == "/api/endpoints/add/jobs"
        docs = (await http.get("/docs")).text
        assert 'src="/api/docs/static/swagger-ui-bundle.js"' in docs
        assert 'url: "/api/openapi.json"' in docs
        assert 'spec-url="/api/openapi.json"' in (await http.get("/redoc")).text
        assert (await http.get("/openapi.json")).json()["servers"] == [{"url": "/api"}]
