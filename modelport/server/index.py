"""``GET /``: what this server serves, as a small HTML page for a browser and JSON for
everything else, chosen by the ``Accept`` header."""

from __future__ import annotations

import html
import shlex
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from modelport._version import __version__
from modelport.errors import ModelportError
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


class IndexPage:
    """The handler of ``GET /``."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def get(self, request: Request) -> Response:
        body = await self.describe(request)
        vary = {"Vary": "Accept"}
        if preferred(request.headers.get("accept", ""), (JSON, HTML)) == HTML:
            return HTMLResponse(_page(body, str(request.base_url).rstrip("/")), headers=vary)
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
        endpoints = [
            {
                "name": spec.name,
                "title": spec.title,
                "description": spec.description,
                "kind": spec.kind,
                "workers_online": len(await broker.workers_online(spec.name)),
                "url": f"{root}/endpoints/{spec.name}",
                "submit": f"{root}/endpoints/{spec.name}/jobs",
                "example": None if (example := input_example(spec)) is None else {"input": example},
            }
            for spec in sorted(broker.specs.values(), key=lambda s: s.name)
        ]
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


_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
main { max-width: 52rem; margin: 0 auto; padding: 1.5rem; }
h1 { margin: 0 0 .25rem; font-size: 1.75rem; } h1 small { color: #656d76; font-weight: 400; }
nav a { margin-right: 1rem; }
a { color: #0969da; }
.status { display: inline-block; padding: 0 .5rem; border-radius: 1rem; font-size: .875rem; }
.ready { background: #dafbe1; color: #1a7f37; } .waiting { background: #fff8c5; color: #9a6700; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: .5rem; padding: 1rem;
  margin: 1rem 0; }
h2 { margin: 0; font-size: 1.25rem; } .kind { color: #656d76; font-size: .875rem; }
.meta { color: #656d76; font-size: .875rem; margin: .25rem 0; }
pre { background: #f6f8fa; padding: .75rem; overflow-x: auto; border-radius: .375rem;
  font-size: .8125rem; }
"""


def _page(body: dict[str, Any], origin: str) -> str:
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
        sections.append(f"""<section id="endpoint-{e(name)}">
<h2><a href="{e(docs)}">{e(name)}</a> <span class="kind">{e(endpoint["kind"])}</span></h2>
<p>{e(endpoint["description"] or endpoint["title"] or "No description.")}</p>
<p class="meta">{workers} worker{"" if workers == 1 else "s"} online ·
<a href="{e(endpoint["url"])}">schemas and limits</a></p>
{example}
</section>""")
    count = len(body["endpoints"])
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelport</title>
<style>{_STYLE}</style>
</head>
<body>
<main>
<h1>modelport <small>{e(body["version"])}</small></h1>
<p>{count} endpoint{"" if count == 1 else "s"} served here ·
<span class="status {status}">{e(body["status"])}</span></p>
<nav>{nav}</nav>
{"".join(sections) or "<p>No endpoints yet.</p>"}
</main>
</body>
</html>
"""


def _curl(url: str, body: dict[str, Any]) -> str:
    data = shlex.quote(orjson.dumps(body).decode())
    return f"curl {shlex.quote(url)} -H 'content-type: application/json' \\\n     -d {data}"
