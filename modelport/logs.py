"""Logging set-up: plain text or one JSON object a line, each carrying the request or job id."""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

import orjson

request_id: ContextVar[str | None] = ContextVar("modelport_request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("modelport_job_id", default=None)


class _Context(logging.Filter):
    """Stamps each record with the request and job ids of the code that logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
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


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every logger (uvicorn's too) to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler()
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
