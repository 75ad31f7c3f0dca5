"""The web pages (``/``, ``/ui/{endpoint}``, ``/admin``): HTML rendered here, behaviour in
the small ES modules of ``modelport/server/static/`` (built on the JavaScript client,
``static/modelport.js``, a copy of ``clients/js/src/index.js``), served from ``/ui/static``
with no CDN.

Every page is sent with a strict Content-Security-Policy: scripts and styles only from this
server's files, no inline script, no ``eval``, requests only to this origin. A page never
holds an API key: it trades one for a session token (``POST /sessions``), kept in the
tab's ``sessionStorage`` and sent as ``Authorization: Bearer``, so no cookie is involved
and a cross-site form cannot act for the user.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC_PREFIX = "/ui/static"
STATIC_DIR = Path(__file__).parent.parent / "static"

POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
"""The Content-Security-Policy of every page: nothing inline, nothing from elsewhere."""

HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

e = html.escape


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC_DIR)


def root_of(request: Request) -> str:
    """The path prefix the server is mounted under (a proxy's root path), or ``""``."""
    root: str = request.scope.get("root_path", "")
    return root


def render(
    request: Request,
    title: str,
    main: str,
    *,
    script: str | None = None,
    data: dict[str, str] | None = None,
    auth: str = "none",
    status: int = 200,
    headers: dict[str, str] | None = None,
    wide: bool = False,
) -> HTMLResponse:
    """A whole page: the shared header, ``main`` (already escaped HTML), the page's module
    and its settings as ``data-`` attributes of ``<body>`` (a module reads them; nothing
    is inlined)."""
    root = root_of(request)
    static = e(root + STATIC_PREFIX)
    attrs = {"root": root, "auth": auth, **(data or {})}
    body_attrs = " ".join(f'data-{e(k)}="{e(v)}"' for k, v in attrs.items())
    module = f'<script type="module" src="{static}/{e(script)}"></script>' if script else ""
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · modelport</title>
<link rel="stylesheet" href="{static}/modelport.css">
{module}
</head>
<body {body_attrs}>
<header class="top"><a class="brand" href="{e(root or "/")}">modelport</a>
<nav aria-label="Site"><a href="{e(root)}/docs">API docs</a>
<a href="{e(root)}/admin">Admin</a></nav>
</header>
<main id="main"{' class="wide"' if wide else ""}>
{main}
</main>
</body>
</html>
"""
    return HTMLResponse(page, status_code=status, headers={**HEADERS, **(headers or {})})
