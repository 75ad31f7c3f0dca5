"""The ``/docs`` (Swagger UI) and ``/redoc`` pages, served with no CDN.

The JavaScript comes from the ``fastapi-offline`` package (Swagger UI 5 and Redoc 2,
which read OpenAPI 3.1); only its static files are used, so FastAPI is never imported.
"""

from __future__ import annotations

import html
import importlib.util
import secrets
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse

STATIC_PREFIX = "/docs/static"
_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def static_dir() -> Path:
    """Where the Swagger UI and Redoc files are installed."""
    found = importlib.util.find_spec("fastapi_offline")
    locations = found.submodule_search_locations if found is not None else None
    if not locations:
        raise RuntimeError("the docs need the fastapi-offline package: pip install fastapi-offline")
    path = Path(next(iter(locations))) / "static"
    missing = [name for name in _ASSETS if not (path / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline at {path} lacks {', '.join(missing)}; reinstall it")
    return path


def _page(body: str, nonce: str) -> HTMLResponse:
    """The page, allowed to load nothing but this server's own files: Redoc's bundle would
    fetch its logo from a CDN, and this keeps the docs offline by construction."""
    policy = (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{nonce}'; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "font-src 'self' data:; "
        "worker-src 'self' blob:; "
        "connect-src 'self'"
    )
    return HTMLResponse(body, headers={"Content-Security-Policy": policy})


def _script_value(value: str) -> str:
    """A JSON string that is safe inside an inline <script>."""
    return orjson.dumps(value).decode().replace("</", "<\\/")


def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over ``/openapi.json``, with "Try it out" against this server."""
    root = request.scope.get("root_path", "")
    static = html.escape(root + STATIC_PREFIX)
    spec = _script_value(root + "/openapi.json")
    nonce = secrets.token_urlsafe(16)
    return _page(
        f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelport API</title>
<link rel="icon" href="{static}/favicon.png">
<link rel="stylesheet" href="{static}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{static}/swagger-ui-bundle.js"></script>
<script nonce="{nonce}">
window.ui = SwaggerUIBundle({{
  url: {spec},
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  displayRequestDuration: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
}});
</script>
</body>
</html>
""",
        nonce,
    )


def redoc(request: Request) -> HTMLResponse:
    """Redoc over ``/openapi.json``: the whole API on one page."""
    root = request.scope.get("root_path", "")
    static = html.escape(root + STATIC_PREFIX)
    spec = html.escape(root + "/openapi.json")
    return _page(
        f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelport API</title>
<link rel="icon" href="{static}/favicon.png">
<style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
<redoc spec-url="{spec}"></redoc>
<script src="{static}/redoc.standalone.js"></script>
</body>
</html>
""",
        secrets.token_urlsafe(16),
    )
