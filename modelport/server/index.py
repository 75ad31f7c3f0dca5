"""``GET /``: what this server serves, as a small HTML page for a browser and JSON for
everything else, chosen by the ``Accept`` header."""

from __future__ import annotations

import html
import shlex
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelport._version import __version__
from modelport.errors import ModelportError
from modelport.server import pages
from modelport.server.examples import input_example

if TYPE_CHECKING:
    from modelport.server.app import Server

HTML = "text/html"
JSON = "application/json"


def preferred(accept: str, offers: tuple[str, ...]) -> str:
    """The offer the ``Accept`` header ranks highest (RFC 9110 quality values; the most
    specific matching range counts). A tie goes to the first offer."""
    ranges: list[tuple[str, str, float]] = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if "/" not in media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        kind, _, sub = media.lower().partition("/")
        ranges.append((kind, sub, q))
    best, best_q = offers[0], -1.0
    for offer in offers:
        kind, _, sub = offer.partition("/")
        matches = [
            (2 if (k, s) == (kind, sub) else 1 if k == kind and s == "*" else 0, q)
            for k, s, q in ranges
            if (k, s) in ((kind, sub), (kind, "*"), ("*", "*"))
        ]
        q = max(matches)[1] if matches else (1.0 if not ranges else 0.0)
        if q > best_q:
            best, best_q = offer, q
    return best


_SUMMARY = (
    "name",
    "title",
    "description",
    "kind",
    "state",
    "reason",
    "workers_online",
    "queue_depth",
    "running",
)


class IndexPage:
    """The handler of ``GET /``."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def get(self, request: Request) -> Response:
        body = await self.describe(request)
        vary = {"Vary": "Accept"}
        if preferred(request.headers.get("accept", ""), (JSON, HTML)) == HTML:
            return _page(request, body, str(request.base_url).rstrip("/"))
        return Response(orjson.dumps(body), headers=vary, media_type=JSON)

    async def describe(self, request: Request) -> dict[str, Any]:
        broker = self.server.broker
        await broker.sync_specs()
        root = request.scope.get("root_path", "")
        try:
            await self.server.ready(request)
            ready, detail = True, "ready"
        except ModelportError as e:
            ready, detail = False, e.message
        depths = await broker.store.queue_depths()
        endpoints = []
        for spec in sorted(broker.specs.values(), key=lambda s: s.name):
            summary = await self.server.summary(spec, depths)
            example = input_example(spec)
            endpoint = {
                **{k: summary[k] for k in _SUMMARY},
                "url": f"{root}/endpoints/{spec.name}",
                "submit": f"{root}/endpoints/{spec.name}/jobs",
                "example": None if example is None else {"input": example},
                "playground": f"{root}/ui/{spec.name}",
            }
            if spec.kind == "chat":
                endpoint["chat"] = f"{root}/ui/{spec.name}/chat"
            endpoints.append(endpoint)
        links = {
            "docs": f"{root}/docs",
            "redoc": f"{root}/redoc",
            "openapi": f"{root}/openapi.json",
            "health_live": f"{root}/health/live",
            "health_ready": f"{root}/health/ready",
            "metrics": f"{root}/metrics",
        }
        if any(e["kind"] != "predict" for e in endpoints):
            links["openai"] = f"{root}/v1"
        return {
            "name": "modelport",
            "version": __version__,
            "ready": ready,
            "status": detail,
            "endpoints": endpoints,
            "links": links,
        }


def _page(request: Request, body: dict[str, Any], origin: str) -> Response:
    e = html.escape
    links = body["links"]
    names = {
        "docs": "API docs",
        "redoc": "ReDoc",
        "openapi": "OpenAPI JSON",
        "health_ready": "Health",
        "metrics": "Metrics",
        "openai": "OpenAI-compatible: /v1",
    }
    nav = " ".join(
        f'<a href="{e(links[key])}">{e(label)}</a>' for key, label in names.items() if key in links
    )
    status = "ready" if body["ready"] else "waiting"
    sections = []
    for endpoint in body["endpoints"]:
        name = endpoint["name"]
        docs = f"{links['docs']}#/{quote(name)}/{quote('submit_' + name)}"
        workers = endpoint["workers_online"]
        example = ""
        if endpoint["example"] is not None:
            command = _curl(origin + endpoint["submit"], endpoint["example"])
            example = f"<pre><code>{e(command)}</code></pre>"
        faces = f'<a href="{e(endpoint["playground"])}">Playground</a>'
        if "chat" in endpoint:
            faces += f' · <a href="{e(endpoint["chat"])}">Chat</a>'
        state = endpoint["state"]
        sections.append(f"""<section id="endpoint-{e(name)}">
<h2><a href="{e(docs)}">{e(name)}</a> <span class="kind">{e(endpoint["kind"])}</span>
<span class="state state-{e(state)}" title="{e(endpoint["reason"] or "")}">{e(state)}</span></h2>
<p>{e(endpoint["description"] or endpoint["title"] or "No description.")}</p>
<p class="meta">{workers} worker{"" if workers == 1 else "s"} online ·
{endpoint["queue_depth"]} queued · {endpoint["running"]} running ·
<a href="{e(endpoint["url"])}">schemas and limits</a></p>
<p class="pages">{faces}</p>
{example}
</section>""")
    count = len(body["endpoints"])
    main = f"""<h1>modelport <small>{e(body["version"])}</small></h1>
<p>{count} endpoint{"" if count == 1 else "s"} served here ·
<span class="status {status}">{e(body["status"])}</span></p>
<nav aria-label="API">{nav}</nav>
{"".join(sections) or "<p>No endpoints yet.</p>"}"""
    return pages.render(request, "Endpoints", main, headers={"Vary": "Accept"})


def _curl(url: str, body: dict[str, Any]) -> str:
    data = shlex.quote(orjson.dumps(body).decode())
    return f"curl {shlex.quote(url)} -H 'content-type: application/json' \\\n     -d {data}"
