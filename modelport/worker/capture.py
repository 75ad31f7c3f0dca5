"""What a model prints and logs while it works on a job, sent as the job's ``log`` events.

:func:`install` (once per process; again if someone replaced the streams) makes
``sys.stdout`` and ``sys.stderr`` streams that pass every write on as before and, on a
thread working on jobs (:func:`capturing`), also turn each whole line into a log line of
those jobs; a handler on the root logger does the same for ``logging`` records (modelport's
own records aside). A log line is ``{"level", "message", "time", "stream"}``: ``stdout``
lines are ``info``, ``stderr`` lines ``warning``, records keep their level.

Bounded per job, so a model printing megabytes a second costs a counter and a deque append
per line rather than a request: the first :data:`HEAD` lines go out as they come, after that
only the last :data:`TAIL` are kept, and they go out when the job ends, after a line saying
how many were left out. Writes to the file descriptors themselves (C extensions,
subprocesses) are not seen.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from modelport.logs import StreamWrapper

HEAD = 500
"""Lines of one job sent as they come."""
TAIL = 200
"""Lines of one job kept after the first :data:`HEAD` (the newest), sent when it ends."""
MAX_LINE = 8192
"""Characters of one line sent (the rest is cut, saying so)."""

Emit = Callable[[str, dict[str, Any]], None]
"""Sends one log line (its data) of one job: ``emit(job_id, data)``."""

_local = threading.local()
_LEVELS = {"stdout": "info", "stderr": "warning"}


class _Job:
    """The log lines of the jobs one thread works on now."""

    def __init__(self, job_ids: Sequence[str], emit: Emit) -> None:
        self.job_ids = list(job_ids)
        self.emit = emit
        self.lines = 0
        self.tail: deque[tuple[str, str, float, str]] = deque(maxlen=TAIL)
        self.partial: dict[str, str] = {}

    def write(self, stream: str, text: str) -> None:
        # print() writes its text, then "\n": the common cases need no split.
        if text == "\n":
            self.line(_LEVELS[stream], self.partial.pop(stream, ""), stream)
            return
        if "\n" not in text:
            rest = self.partial.get(stream, "") + text
            if len(rest) > MAX_LINE:
                del self.partial[stream]
                self.line(_LEVELS[stream], rest, stream)
            else:
                self.partial[stream] = rest
            return
        *lines, rest = (self.partial.pop(stream, "") + text).split("\n")
        for line in lines:
            self.line(_LEVELS[stream], line, stream)
        if rest:
            self.partial[stream] = rest

    def line(self, level: str, message: str, stream: str) -> None:
        self.lines += 1
        if self.lines > HEAD:
            self.tail.append((level, message, time.time(), stream))
        else:
            self._send(level, message, time.time(), stream)

    def _send(self, level: str, message: str, at: float, stream: str) -> None:
        if len(message) > MAX_LINE:
            message = message[:MAX_LINE] + f"... [{len(message) - MAX_LINE} characters cut]"
        data = {"level": level, "message": message, "time": at, "stream": stream}
        for job_id in self.job_ids:
            self.emit(job_id, data)

    def close(self) -> None:
        if not self.partial and self.lines <= HEAD:
            return  # every line went out as it came (most jobs print nothing)
        for stream, rest in list(self.partial.items()):
            self.line(_LEVELS[stream], rest, stream)
        self.partial.clear()
        left_out = self.lines - HEAD - len(self.tail)
        if left_out > 0:
            note = (
                f"{left_out} lines left out: a job's log keeps its first {HEAD} lines"
                f" and its last {TAIL}"
            )
            self._send("warning", note, time.time(), "logging")
        for level, message, at, stream in self.tail:
            self._send(level, message, at, stream)
        self.tail.clear()


class _Stream(StreamWrapper):
    """``sys.stdout`` or ``sys.stderr``: writes go on to the stream beneath, and become log
    lines of the jobs the writing thread works on."""

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self.name = name

    def write(self, text: str) -> int:
        job: _Job | None = getattr(_local, "job", None)
        if job is not None:
            job.write(self.name, text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


class _Handler(logging.Handler):
    """Records logged on a thread working on jobs become their log lines."""

    def emit(self, record: logging.LogRecord) -> None:
        job: _Job | None = getattr(_local, "job", None)
        if job is None or record.name.startswith("modelport"):
            return
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:
            self.handleError(record)
            return
        level = logging.getLevelName(record.levelno).lower()
        if level not in ("debug", "info", "warning", "error", "critical"):
            level = "error" if record.levelno >= logging.ERROR else "info"
        job.line(level, message, "logging")


_HANDLER = _Handler()
_LOCK = threading.Lock()


def install() -> None:
    """Capture ``print``, ``sys.stderr`` and ``logging`` in this process (idempotent)."""
    if (
        isinstance(sys.stdout, _Stream)
        and isinstance(sys.stderr, _Stream)
        and _HANDLER in logging.root.handlers
    ):
        return  # as it is at almost every call: no lock
    with _LOCK:
        if not isinstance(sys.stdout, _Stream):
            sys.stdout = _Stream(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _Stream):
            sys.stderr = _Stream(sys.stderr, "stderr")
        root = logging.getLogger()
        if _HANDLER not in root.handlers:
            root.addHandler(_HANDLER)


class capturing:  # lower case: used as the function it was, ``with capturing(...):``
    """While the block runs on this thread, what it prints and logs is these jobs' log.

    A class rather than a generator: entered for every job, it costs a fifth as much."""

    __slots__ = ("_job",)

    def __init__(self, job_ids: Sequence[str], emit: Emit) -> None:
        self._job = _Job(job_ids, emit)

    def __enter__(self) -> None:
        install()
        _local.job = self._job

    def __exit__(self, *exc: object) -> None:
        _local.job = None
        self._job.close()
