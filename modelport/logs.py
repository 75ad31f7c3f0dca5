"""Logging set-up: plain text or one JSON object a line, each carrying the request or job id.

Also the access log (one line per HTTP request, with its status and duration) and a
``sys.stdout`` that writes whole lines only, so what a model prints never shares a line
with a log record.
"""

from __future__ import annotations

import atexit
import http
import io
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any, TextIO

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: ContextVar[str | None] = ContextVar("modelport_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("modelport_job_id", default=None)


class _Context(logging.Filter):
    """Stamps each record with the request and job ids of the code that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error":  # uvicorn's name for its main logger, errors or not
            record.name = "uvicorn"
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, job_id, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "job_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "job_id")
            if getattr(record, key, None) is not None
        ]
        return f"{line} [{' '.join(ids)}]" if ids else line


def took(seconds: float) -> str:
    """A duration for a log line: ``12 ms``, ``2.3 s``."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


_OUTPUT = threading.RLock()
"""Held while a log record or a printed line is written: neither cuts into the other."""


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every logger (uvicorn's too) to stderr in ``fmt`` (``text`` or ``json``), and make
    ``print()`` write whole lines (see :class:`LineWriter`)."""
    handler = logging.StreamHandler()
    handler.lock = _OUTPUT
    handler.addFilter(_Context())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One line per request is the access log's; httpx's own would add one per worker call.
    logging.getLogger("httpx").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    if not isinstance(sys.stdout, LineWriter):
        sys.stdout = LineWriter(sys.stdout)
        atexit.register(sys.stdout.close)


class LineWriter(io.TextIOBase):
    """A text stream that passes on whole lines only, each in one write, under the lock the
    log handler holds. A thread's unfinished line waits for its end (or for :meth:`close`),
    so a ``print(..., end="")`` from a model's thread and a log record from another thread
    come out on lines of their own, however the streams are buffered."""

    def __init__(self, stream: TextIO, limit: int = 64 * 1024) -> None:
        self.stream = stream
        self.limit = limit
        self._partial: dict[int, str] = {}

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with _OUTPUT:
            pending = self._partial.pop(thread, "") + text
            end = pending.rfind("\n") + 1
            if end == 0 and len(pending) >= self.limit:
                end = len(pending)
            if end:
                self.stream.write(pending[:end])
                self.stream.flush()
            if end < len(pending):
                self._partial[thread] = pending[end:]
        return len(text)

    def flush(self) -> None:
        with _OUTPUT:
            self.stream.flush()

    def close(self) -> None:
        """Write out every unfinished line (at exit); the stream beneath stays open."""
        with _OUTPUT:
            for rest in self._partial.values():
                self.stream.write(rest + "\n")
            self._partial.clear()
            self.stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.stream.errors

    @property
    def buffer(self) -> Any:
        return getattr(self.stream, "buffer", None)


access_log = logging.getLogger("modelport.access")
_PHRASES = {s.value: f"{s.value} {s.phrase}" for s in http.HTTPStatus}


class AccessLog:
    """ASGI middleware: one ``modelport.access`` line per HTTP request once its response
    has ended, as uvicorn writes them plus the duration:
    ``127.0.0.1:50312 - "POST /endpoints/iris/jobs HTTP/1.1" 200 OK 2.1 ms``.
    JSON lines carry ``method``, ``path``, ``status``, ``duration_ms`` and ``client``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = status or 500
            raise
        finally:
            _access(scope, status, time.perf_counter() - started)


def _access(scope: Scope, status: int, seconds: float) -> None:
    client = scope.get("client")
    where = f"{client[0]}:{client[1]}" if client else "-"
    path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    query = scope.get("query_string", b"")
    if query and "?" not in path:
        path += "?" + query.decode("latin-1")
    method = scope["method"]
    ms = seconds * 1000
    # Built directly: Logger.info() would walk the stack to find its caller on every request.
    record = logging.LogRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        '%s - "%s %s HTTP/%s" %s %.1f ms',
        (where, method, path, scope.get("http_version", "1.1"), _PHRASES.get(status, status), ms),
        None,
    )
    record.fields = {
        "method": method,
        "path": path,
        "status": status,
        "duration_ms": round(ms, 3),
        "client": where,
    }
    access_log.handle(record)
