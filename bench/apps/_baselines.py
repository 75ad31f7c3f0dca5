"""What the baseline apps share: the functions modelport serves too, loaded from the repo,
and how a baseline ASGI app (FastAPI or bare) is served (one process on loopback, uvloop
and httptools as modelport uses)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
Echo = Callable[[str], dict[str, str]]
Generate = Callable[[int, float], Iterator[str]]


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
