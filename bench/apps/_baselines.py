"""What the baseline apps share: the functions modelport serves too, loaded from the repo,
and how a baseline ASGI app (FastAPI or bare) is served (one process on loopback, uvloop
and httptools as modelport uses)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
Echo = Callable[[str], dict[str, str]]
Generate = Callable[[int, float], Iterator[str]]
Scope = dict[str, Any]
JSON = [(b"content-type", b"application/json")]


def _load(module: str, name: str) -> Any:
    sys.path.insert(0, str(ROOT))
    return getattr(importlib.import_module(module), name)


def load_echo() -> Echo:
    """``echo`` from ``examples/echo/model.py``."""
    echo: Echo = _load("examples.echo.model", "echo")
    return echo


def load_generate() -> Generate:
    """``generate`` from ``bench/models/streamer.py``."""
    generate: Generate = _load("bench.models.streamer", "generate")
    return generate


def serve_from_argv(description: str | None, make_app: Callable[[], Any]) -> None:
    """``python APP.py --port N``: serve the app ``make_app`` builds on that port."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    serve_asgi(make_app(), parser.parse_args().port)


def serve_asgi(app: Any, port: int) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` under uvicorn, quietly."""
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


async def lifespan(
    receive: Any, send: Any, startup: Callable[[], Awaitable[None]] | None = None
) -> None:
    """A bare ASGI app's lifespan: ``startup`` (if any) runs before startup is complete."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                if startup is not None:
                    await startup()
            except Exception as e:  # uvicorn then exits, saying why
                await send({"type": "lifespan.startup.failed", "message": repr(e)})
                raise
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> bytes:
    """A bare ASGI app's request body, whole."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def request_body(
    scope: Scope,
    receive: Any,
    send: Any,
    startup: Callable[[], Awaitable[None]] | None = None,
) -> bytes | None:
    """What a bare ASGI app does first: the lifespan (with ``startup``) and ``GET /health``
    are handled here (None); another request's body is read whole and returned."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send, startup)
        return None
    body = await read_body(receive)
    if scope["path"] == "/health":
        await answer(send, 200, b'{"status":"ok"}')
        return None
    return body


async def answer(send: Any, status: int, body: bytes) -> None:
    """A bare ASGI app's JSON response."""
    await send({"type": "http.response.start", "status": status, "headers": JSON})
    await send({"type": "http.response.body", "body": body})
