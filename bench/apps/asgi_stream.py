"""Bare ASGI baseline for streaming: the streamer's generator behind one route of a raw ASGI
app on uvicorn, with no framework at all: the floor of the HTTP server stack on this machine.

Started by bench/streaming.py as ``python bench/apps/asgi_stream.py --port 8006``. ``POST
/predict`` takes the body modelport takes (``{"input": {"chunks": 100, "interval_ms": 10}}``)
and answers Server-Sent Events as modelport and ``fastapi_stream.py`` do: an ``output`` event
per chunk (its data the chunk as a JSON string), then ``succeeded``. Each chunk is taken from
the generator on a worker thread (``run_in_executor``), as Starlette's ``StreamingResponse``
and modelport do, so the model never holds up the event loop. Readiness is ``GET /health``.
No validation beyond the JSON, no queue, no store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from _baselines import Generate, load_generate, serve_asgi

SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
Scope = dict[str, Any]


def build(generate: Generate) -> Any:
    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["path"] == "/health":
            await _answer(send, 200, b'{"status": "ok"}')
            return
        if scope["path"] != "/predict" or scope["method"] != "POST":
            await _answer(send, 404, b'{"detail": "not found"}')
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            given = json.loads(body)["input"]
            chunks, interval_ms = int(given.get("chunks", 100)), float(given.get("interval_ms", 10))
        except (ValueError, KeyError, TypeError, AttributeError):
            await _answer(send, 422, b'{"detail": "expected {\\"input\\": {...}}"}')
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        loop = asyncio.get_running_loop()
        chunk_of = generate(chunks, interval_ms)
        while (chunk := await loop.run_in_executor(None, next, chunk_of, None)) is not None:
            frame = f"event: output\ndata: {json.dumps(chunk)}\n\n".encode()
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"event: succeeded\ndata: {}\n\n"})

    return app


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_asgi(build(load_generate()), args.port)


if __name__ == "__main__":
    main()
