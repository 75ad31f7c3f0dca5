"""The job a model thread is working on, so ``Model.progress`` (and an adapter's log lines)
can reach its runner."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

Reporter = Callable[[float | None, str | None, dict[str, Any]], None]

_local = threading.local()


def set_reporter(reporter: Reporter | None) -> None:
    _local.reporter = reporter


def report(fraction: float | None, message: str | None, data: dict[str, Any]) -> None:
    reporter: Reporter | None = getattr(_local, "reporter", None)
    if reporter is not None:
        reporter(fraction, message, data)


Logger = Callable[[str, str, dict[str, Any]], None]
"""Records a log line (level, message, fields such as ``stream``) of the current job."""


_logger: ContextVar[Logger | None] = ContextVar("modelport_job_logger", default=None)
"""A context variable, not a thread's: a job run as a task on the event loop has one too."""


def set_logger(logger: Logger | None) -> None:
    _logger.set(logger)


def log(level: str, message: str, **fields: Any) -> bool:
    """Record a log line as the current job's ``log`` event; False outside a job."""
    logger = _logger.get()
    if logger is None:
        return False
    logger(level, message, fields)
    return True


def set_checker(checker: Callable[[], None] | None) -> None:
    _local.checker = checker


def check() -> None:
    """Raise if the current job was cancelled or its lease lost (``JobAbandoned``)."""
    checker: Callable[[], None] | None = getattr(_local, "checker", None)
    if checker is not None:
        checker()
