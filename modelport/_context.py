"""The job a model thread is working on, so ``Model.progress`` can reach its runner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Reporter = Callable[[float | None, str | None, dict[str, Any]], None]

_local = threading.local()


def set_reporter(reporter: Reporter | None) -> None:
    _local.reporter = reporter


def report(fraction: float | None, message: str | None, data: dict[str, Any]) -> None:
    reporter: Reporter | None = getattr(_local, "reporter", None)
    if reporter is not None:
        reporter(fraction, message, data)
