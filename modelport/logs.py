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
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO

import orjson

if TYPE_CHECKING:  # the server is an extra; the worker logs without it
    import asyncio

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    _Entry = tuple[float, Scope, int, float, str | None]
    """One request for the access log: when it ended, its scope, status, seconds, its id."""

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
            "time": iso_time(record.created),
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

    def access(self, created: float, message: str, fields: Any, rid: str | None) -> str:
        """An access log line, as :meth:`format` writes its record."""
        entry = {"time": iso_time(created), "level": "info", "logger": access_log.name}
        entry["message"] = message
        if rid is not None:
            entry["request_id"] = rid
        return orjson.dumps({**entry, **fields}).decode()


def iso_time(created: float) -> str:
    """Unix seconds as an ISO 8601 UTC time with milliseconds: ``2026-01-02T03:04:05.678Z``."""
    millis = int((created - int(created)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


class _TextFormatter(logging.Formatter):
    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return self._time(record.created)

    def _time(self, created: float) -> str:
        # The date and time formatted once a second, not once a line (the access log's cost).
        second = int(created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(created))
            self._second = second
        return f"{self._stamp},{int((created - second) * 1000):03d}"

    def access(self, created: float, message: str, fields: Any, rid: str | None) -> str:
        """An access log line, as :meth:`format` writes its record."""
        line = f"{self._time(created)} INFO {access_log.name}: {message}"
        return f"{line} [request_id={rid}]" if rid is not None else line

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [
            f"{key}={getattr(record, key)}"
            for key in ("request_id", "job_id")
            if getattr(record, key, None) is not None
        ]
        return f"{line} [{' '.join(ids)}]" if ids else line


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def took(seconds: float) -> str:
    """A duration for a log line: ``12 ms``, ``2.3 s``."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


_OUTPUT = threading.RLock()
"""Held while a log record or a printed line is written: neither cuts into the other."""
_HANDLER: logging.StreamHandler[TextIO] | None = None
"""The handler :func:`configure` installed."""


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every logger (uvicorn's too) to stderr in ``fmt`` (``text`` or ``json``), and make
    ``print()`` write whole lines (see :class:`LineWriter`)."""
    global _HANDLER
    handler = _HANDLER = logging.StreamHandler()
    handler.lock = _OUTPUT
    handler.addFilter(_Context())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter(TEXT_FORMAT))
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


class StreamWrapper(io.TextIOBase):
    """A text stream in front of another (``sys.stdout``, ``sys.stderr``): it says what the
    stream beneath says of itself (a terminal? its file descriptor, encoding, buffer)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

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


class LineWriter(StreamWrapper):
    """A text stream that passes on whole lines only, each in one write, under the lock the
    log handler holds. A thread's unfinished line waits for its end (or for :meth:`close`),
    so a ``print(..., end="")`` from a model's thread and a log record from another thread
    come out on lines of their own, however the streams are buffered."""

    def __init__(self, stream: TextIO, limit: int = 64 * 1024) -> None:
        super().__init__(stream)
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


access_log = logging.getLogger("modelport.access")
_PHRASES = {s.value: f"{s.value} {s.phrase}" for s in http.HTTPStatus}


class AccessLog:
    """ASGI middleware: one ``modelport.access`` line per HTTP request once its response
    has ended, as uvicorn writes them plus the duration:
    ``127.0.0.1:50312 - "POST /endpoints/iris/jobs HTTP/1.1" 200 OK 2.1 ms``.
    JSON lines carry ``method``, ``path``, ``status``, ``duration_ms`` and ``client``.

    Lines are written together every ``flush_every`` seconds (and at exit), so the log costs
    the hot path an append rather than a formatted record and a write per request."""

    def __init__(self, app: ASGIApp, flush_every: float = 0.05) -> None:
        self.app = app
        self.state = getattr(app, "state", None)
        self.flush_every = flush_every
        self._pending: list[_Entry] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        _ACCESS_LOGS.add(self)

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
            entry = (time.time(), scope, status, time.perf_counter() - started, request_id.get())
            self._pending.append(entry)
            if self._timer is None or self._loop is None or self._loop.is_closed():
                import asyncio  # here: a model run in this process loads the module, not asyncio

                self._loop = asyncio.get_running_loop()
                self._timer = self._loop.call_later(self.flush_every, self.flush)

    def flush(self) -> None:
        """Write the lines of the requests that ended since the last flush."""
        self._timer = None
        entries, self._pending = self._pending, []
        if entries:
            write_access(entries)


_ACCESS_LOGS: weakref.WeakSet[AccessLog] = weakref.WeakSet()


@atexit.register
def _flush_access_logs() -> None:
    for log in list(_ACCESS_LOGS):
        log.flush()


def write_access(entries: list[_Entry]) -> None:
    """Log these requests: straight to the stream when the log is as :func:`configure` made
    it, else as records through the ``logging`` machinery (its handlers, filters, formats)."""
    handler = _HANDLER
    fast = (
        handler is not None
        and not access_log.handlers
        and not access_log.filters
        and logging.getLogger().handlers == [handler]
        and handler.level <= logging.INFO
    )
    if not fast or handler is None:
        for entry in entries:
            access_log.handle(_record(entry))
        return
    formatter = handler.formatter
    assert isinstance(formatter, _TextFormatter | JsonFormatter)
    text = "".join(
        [formatter.access(entry[0], *_message(entry), entry[4]) + "\n" for entry in entries]
    )
    with _OUTPUT:
        handler.stream.write(text)
        handler.flush()


def _message(entry: _Entry) -> tuple[str, dict[str, Any]]:
    _, scope, status, seconds, _ = entry
    client = scope.get("client")
    where = f"{client[0]}:{client[1]}" if client else "-"
    path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    query = scope.get("query_string", b"")
    if query and "?" not in path:
        path += "?" + query.decode("latin-1")
    method = scope["method"]
    ms = seconds * 1000
    version = scope.get("http_version", "1.1")
    message = (
        f'{where} - "{method} {path} HTTP/{version}" {_PHRASES.get(status, status)} {ms:.1f} ms'
    )
    fields = {"method": method, "path": path, "status": status, "duration_ms": round(ms, 3)}
    fields["client"] = where
    return message, fields


def _record(entry: _Entry) -> logging.LogRecord:
    message, fields = _message(entry)
    record = logging.LogRecord(access_log.name, logging.INFO, __file__, 0, message, None, None)
    record.created = entry[0]
    record.msecs = (entry[0] - int(entry[0])) * 1000
    record.fields = fields
    record.request_id = entry[4]
    return record
