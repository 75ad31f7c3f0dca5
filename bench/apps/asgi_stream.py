"""Bare ASGI baseline for streaming: the streamer's generator behind one route of a raw ASGI
app on uvicorn, with no framework at all: the floor of the HTTP server stack on this machine.

Started by bench/streaming.py as ``python bench/apps/asgi_stream.py --port 8006``. ``POST
/predict`` takes the body modelport takes (``{"input": {"chunks": 100, "interval_ms": 10}}``)
and answers Server-Sent Events as modelport and ``fastapi_stream.py`` do: an ``output`` event
per chunk (its data the chunk as a JSON string), then ``succeeded``. Each chunk is taken from
the generator on a worker thread (``run_in_executor``, on a pool of :data:`THREADS`, enough for
``--concurrency`` streams at a time), as Starlette's ``StreamingResponse`` does, so the model
never holds up the event loop. Readiness is ``GET /health``. No validation beyond the JSON,
no queue, no store.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _baselines import Generate, Scope, answer, load_generate, request_body, serve_from_argv

SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
THREADS = 64
"""Threads taking chunks, one per stream at a time (``bench/streaming.py --concurrency`` goes
up to 64): asyncio's default pool has ``cpu + 4`` (6 here), and a 7th stream's chunks would
wait for a thread."""


def build(generate: Generate) -> Any:
    pool = ThreadPoolExecutor(THREADS, thread_name_prefix="chunks")

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        if scope["path"] != "/predict" or scope["method"] != "POST":
            await answer(send, 404, b'{"detail":"not found"}')
            return
        try:
            given = json.loads(body)["input"]
            chunks, interval_ms = int(given.get("chunks", 100)), float(given.get("interval_ms", 10))
        except (ValueError, KeyError, TypeError, AttributeError):
            await answer(send, 422, b'{"detail":"expected {\\"input\\": {...}}"}')
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        loop = asyncio.get_running_loop()
        chunk_of = generate(chunks, interval_ms)
        while (chunk := await loop.run_in_executor(pool, next, chunk_of, None)) is not None:
            frame = f"event: output\ndata: {json.dumps(chunk)}\n\n".encode()
            await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"event: succeeded\ndata: {}\n\n"})

    return app


if __name__ == "__main__":
    serve_from_argv(__doc__, lambda: build(load_generate()))
