"""Upstream HTTP services for the adapter tests: a Starlette app served by uvicorn on a free
loopback port, on a thread of the test's process."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import free_port, wait_for


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Upstream:
    """A service with routes that answer, fail, stall, stream and report their health; it
    counts what it was asked."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.calls: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.healthy = True
        self.flaky_failures = 2
        routes = [
            Route("/predict", self.predict, methods=["POST", "PUT"]),
            Route("/wrong", self.wrong, methods=["POST"]),
            Route("/fail", self.fail, methods=["POST"]),
            Route("/flaky", self.flaky, methods=["POST"]),
            Route("/slow", self.slow, methods=["POST"]),
            Route("/sse", self.sse, methods=["POST"]),
            Route("/jsonl", self.jsonl, methods=["POST"]),
            Route("/text", self.text, methods=["POST"]),
            Route("/health", self.health),
        ]
        config = uvicorn.Config(
            Starlette(routes=routes),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            log_level="warning",
            lifespan="off",
        )
        self.server = _Uvicorn(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> Upstream:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "the upstream to listen")
        return self

    def stop(self) -> None:
        """Stop listening, as a service that died."""
        self.server.should_exit = True
        self.thread.join(10)

    def _count(self, route: str) -> int:
        self.calls[route] = self.calls.get(route, 0) + 1
        return self.calls[route]

    async def predict(self, request: Request) -> Response:
        self._count("predict")
        self.headers.append(dict(request.headers))
        body = await request.json()
        return JSONResponse({"label": body["text"].upper(), "length": len(body["text"])})

    async def wrong(self, request: Request) -> Response:
        return JSONResponse({"label": 5})

    async def fail(self, request: Request) -> Response:
        body = "model exploded: " + "CUDA out of memory " * 40
        return PlainTextResponse(body, status_code=500)

    async def flaky(self, request: Request) -> Response:
        if self._count("flaky") <= self.flaky_failures:
            return PlainTextResponse("warming up", status_code=503)
        return JSONResponse({"label": "ok", "length": 0})

    async def slow(self, request: Request) -> Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.json()
            await asyncio.sleep(float(body.get("seconds", 0.3)))
        finally:
            self.in_flight -= 1
        return JSONResponse({"label": "slow", "length": 0})

    async def sse(self, request: Request) -> Response:
        body = await request.json()

        async def events() -> AsyncIterator[bytes]:
            for word in body["text"].split():
                yield f"event: token\ndata: {word} \n\n".encode()
                await asyncio.sleep(0.01)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def jsonl(self, request: Request) -> Response:
        body = await request.json()

        async def lines() -> AsyncIterator[bytes]:
            for i, word in enumerate(body["text"].split()):
                yield orjson.dumps({"index": i, "word": word}) + b"\n"

        return StreamingResponse(lines(), media_type="application/jsonl")

    async def text(self, request: Request) -> Response:
        body = await request.json()
        return PlainTextResponse(body["text"][::-1])

    async def health(self, request: Request) -> Response:
        self._count("health")
        if self.healthy:
            return JSONResponse({"ok": True})
        return JSONResponse({"ok": False}, status_code=503)
