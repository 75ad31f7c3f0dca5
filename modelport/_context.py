"""The job a model thread (or, for a model with ``predict_async``, a task on the runner's
loop) is working on, so ``Model.progress`` (and an adapter's log lines and chunks) can reach
its runner.

Context variables: a thread of the runner's pool keeps what was set on it until it is set
again, as a thread-local would; a task has its own.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

Reporter = Callable[[float | None, str | None, dict[str, Any]], None]

_reporter: ContextVar[Reporter | None] = ContextVar("modelport_job_reporter", default=None)


def set_reporter(reporter: Reporter | None) -> None:
    _reporter.set(reporter)


def report(fraction: float | None, message: str | None, data: dict[str, Any]) -> None:
    reporter = _reporter.get()
    if reporter is not None:
        reporter(fraction, message, data)


Logger = Callable[[str, str, dict[str, Any]], None]
"""Records a log line (level, message, fields such as ``stream``) of the current job."""


_logger: ContextVar[Logger | None] = ContextVar("modelport_job_logger", default=None)


def set_logger(logger: Logger | None) -> None:
    _logger.set(logger)


def log(level: str, message: str, **fields: Any) -> bool:
    """Record a log line as the current job's ``log`` event; False outside a job."""
    logger = _logger.get()
    if logger is None:
        return False
    logger(level, message, fields)
    return True


_checker: ContextVar[Callable[[], None] | None] = ContextVar("modelport_job_checker", default=None)


def set_checker(checker: Callable[[], None] | None) -> None:
    _checker.set(checker)


def check() -> None:
    """Raise if the current job was cancelled or its lease lost (``JobAbandoned``)."""
    checker = _checker.get()
    if checker is not None:
        checker()


_chunker: ContextVar[Callable[[Any], None] | None] = ContextVar(
    "modelport_job_chunker", default=None
)


def set_chunker(chunker: Callable[[Any], None] | None) -> None:
    _chunker.set(chunker)


def chunk(value: Any) -> None:
    """Stream ``value`` as an output chunk of the current job (for a ``predict_async`` whose
    output is not its chunks joined: a program's answer)."""
    chunker = _chunker.get()
    if chunker is not None:
        chunker(value)


def bound() -> tuple[Any, ...]:
    """What the job's reporter, logger, checker and chunker are now, for :func:`restore`:
    a model that calls another in its thread (``LocalModel``) gets its own back after."""
    return (_reporter.get(), _logger.get(), _checker.get(), _chunker.get())


def restore(values: tuple[Any, ...]) -> None:
    reporter, logger, checker, chunker = values
    _reporter.set(reporter)
    _logger.set(logger)
    _checker.set(checker)
    _chunker.set(chunker)
