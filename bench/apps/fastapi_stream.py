"""Plain FastAPI baseline for streaming: the streamer's generator behind one route, as a user
writes it without a serving system.

Started by bench/streaming.py as ``python bench/apps/fastapi_stream.py --port 8005``. ``POST
/predict`` takes the body modelport takes (``{"input": {"chunks": 100, "interval_ms": 10}}``)
and answers Server-Sent Events as modelport does: an ``output`` event per chunk (its data the
chunk as a JSON string), then ``succeeded``. The generator is handed to ``StreamingResponse``
as it is: Starlette takes each chunk from it on a worker thread, so the model never holds up
the event loop. Readiness is ``GET /health``. No queue, no store: what a framework adds to
the model's own first chunk, over the bare ASGI app of ``asgi_stream.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from _baselines import Generate, load_generate, serve_from_argv
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field


class StreamInput(BaseModel):
    chunks: int = Field(100, ge=1, le=100_000)
    interval_ms: float = Field(10.0, ge=0, le=10_000)


class StreamRequest(BaseModel):
    input: StreamInput


def build(generate: Generate) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: StreamRequest) -> StreamingResponse:
        def events() -> Iterator[str]:
            for chunk in generate(request.input.chunks, request.input.interval_ms):
                yield f"event: output\ndata: {json.dumps(chunk)}\n\n"
            yield "event: succeeded\ndata: {}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


if __name__ == "__main__":
    serve_from_argv(__doc__, lambda: build(load_generate()))
