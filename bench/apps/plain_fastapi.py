"""Plain FastAPI baseline: the echo model called inline from one route, under uvicorn.

Started by bench/overhead.py as ``python bench/apps/plain_fastapi.py --port 8001 --handler def``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
Echo = Callable[[str], dict[str, str]]


def load_echo() -> Echo:
    """``echo`` from ``examples/echo/model.py``, the function modelport serves too."""
    sys.path.insert(0, str(ROOT))
    echo: Echo = importlib.import_module("examples.echo.model").echo
    return echo


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
    echo = load_echo()
    uvicorn.run(
        build(echo, args.handler),
        host="127.0.0.1",
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
