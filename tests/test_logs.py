"""The log's pieces in process: the access log's fast path writes what the logging path
would, and printed text comes out in whole lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading

import pytest
from starlette.types import Message, Receive, Scope, Send

from modelport import logs

SCOPE: Scope = {
    "type": "http",
    "http_version": "1.1",
    "method": "GET",
    "path": "/jobs/abc",
    "raw_path": b"/jobs/abc",
    "query_string": b"wait=1",
    "client": ("127.0.0.1", 50312),
}
ENTRY = (1_790_000_000.25, SCOPE, 404, 0.0123, "r-1")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_fast_access_line_is_the_logged_record(fmt: str) -> None:
    formatter: logs.JsonFormatter | logs._TextFormatter = (
        logs.JsonFormatter() if fmt == "json" else logs._TextFormatter(logs.TEXT_FORMAT)
    )
    record = logs._record(ENTRY)
    fast = formatter.access(ENTRY[0], *logs._message(ENTRY), ENTRY[4])
    assert fast == formatter.format(record)
    message = '127.0.0.1:50312 - "GET /jobs/abc?wait=1 HTTP/1.1" 404 Not Found 12.3 ms'
    if fmt == "json":
        assert json.loads(fast) == {
            "time": "2026-09-21T14:13:20.250Z",
            "level": "info",
            "logger": "modelport.access",
            "message": message,
            "request_id": "r-1",
            "method": "GET",
            "path": "/jobs/abc?wait=1",
            "status": 404,
            "duration_ms": 12.3,
            "client": "127.0.0.1:50312",
        }
    else:
        assert fast.endswith(f" INFO modelport.access: {message} [request_id=r-1]")


async def test_the_access_log_writes_every_request_once_through_logging() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        pass

    records: list[logging.LogRecord] = []
    all_three = asyncio.Event()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
            if len(records) == 3:
                all_three.set()

    handler = Collect()
    logs.access_log.addHandler(handler)
    logs.access_log.setLevel(logging.INFO)
    try:
        access = logs.AccessLog(app, flush_every=0.01)
        for _ in range(3):
            await access(SCOPE, receive, send)
        assert records == []  # written together, off the request's path
        await asyncio.wait_for(all_three.wait(), 10)
    finally:
        logs.access_log.removeHandler(handler)
        logs.access_log.setLevel(logging.NOTSET)
    assert len(records) == 3
    assert all('"GET /jobs/abc?wait=1 HTTP/1.1" 201 Created ' in r.getMessage() for r in records)
    assert all(getattr(r, "fields", {}).get("status") == 201 for r in records)


def test_printed_text_comes_out_in_whole_lines_per_thread() -> None:
    out = io.StringIO()
    writer = logs.LineWriter(out)
    writer.write("loading")
    other = threading.Thread(target=lambda: writer.write("from another thread\n"))
    other.start()
    other.join()
    writer.write(" weights\nhalf")
    assert out.getvalue() == "from another thread\nloading weights\n"
    writer.close()
    assert out.getvalue() == "from another thread\nloading weights\nhalf\n"
