"""A plain echo service under uvicorn: ``POST /predict`` answers the JSON body it got,
``GET /health`` answers 200. The upstream of ``bench/adapters.py``'s HTTP model, and the
baseline it is measured against.

    python bench/apps/echo_service.py --port 8001
"""

from __future__ import annotations

from typing import Any

from _baselines import Scope, answer, request_body, serve_from_argv


async def app(scope: Scope, receive: Any, send: Any) -> None:
    body = await request_body(scope, receive, send)
    if body is None:
        return
    if scope["path"] == "/predict" and scope["method"] == "POST":
        await answer(send, 200, body)
    else:
        await answer(send, 404, b'{"detail":"not found"}')


if __name__ == "__main__":
    serve_from_argv(__doc__, lambda: app)
