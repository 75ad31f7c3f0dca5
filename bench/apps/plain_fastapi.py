"""Plain FastAPI baseline: the echo model called inline from one route, under uvicorn.

Started by bench/overhead.py as ``python bench/apps/plain_fastapi.py --port 8001 --handler def``.
"""

from __future__ import annotations

import argparse

from _baselines import Echo, load_echo, serve_asgi
from fastapi import FastAPI
from pydantic import BaseModel


class EchoInput(BaseModel):
    text: str


class EchoRequest(BaseModel):
    input: EchoInput


def build(echo: Echo, handler: str) -> FastAPI:
    """``POST /predict`` with a ``def`` handler (run in the threadpool), an ``async def`` one
    (run on the event loop) or an ``async def`` one answering from a dict of precomputed
    answers (``dict``); ``GET /health`` for readiness."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    if handler == "def":

        @app.post("/predict")
        def predict(request: EchoRequest) -> dict[str, str]:
            return echo(request.input.text)

    elif handler == "async":

        @app.post("/predict")
        async def predict_async(request: EchoRequest) -> dict[str, str]:
            return echo(request.input.text)

    else:
        answers = {"hello": echo("hello")}  # the answers, computed ahead

        @app.post("/predict")
        async def predict_dict(request: EchoRequest) -> dict[str, str]:
            text = request.input.text
            return answers[text] if text in answers else echo(text)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--handler", choices=["def", "async", "dict"], default="def")
    args = parser.parse_args()
    serve_asgi(build(load_echo(), args.handler), args.port)


if __name__ == "__main__":
    main()
