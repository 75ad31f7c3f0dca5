"""A job's events as Server-Sent Events or JSON lines, live and resumable.

Stored events (``progress``, ``output`` chunks, ``log``) carry ids 1, 2, ... per job, so
``Last-Event-ID`` resumes exactly. The state events around them (``queued``, ``started``
and the final one) are read from the job record: they need no storage on the hot path,
and they carry no id (no ``id:`` line in SSE, ``"id": null`` in JSON lines), so an id
always names one stored event and a browser's ``EventSource`` reconnects with the id of
the last stored event it got.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from modelport.core import Broker
from modelport.errors import BadRequest
from modelport.wire import JobStatus

SSE = "text/event-stream"
JSONL = "application/jsonl"
_JSONL_ALIASES = ("application/jsonl", "application/x-ndjson", "application/json-lines")

KEEPALIVE = 15.0
"""Seconds between keep-alive lines, so proxies do not close a quiet stream."""

Item = tuple[int | None, str, Any]
"""(stored event id or None for a state event, event name, data)"""


def stream_format(request: Request) -> str | None:
    """``sse``, ``jsonl``, or None when the client asked for plain JSON."""
    accept = request.headers.get("accept", "").lower()
    if SSE in accept:
        return "sse"
    if any(alias in accept for alias in _JSONL_ALIASES):
        return "jsonl"
    return None


def resume_point(request: Request) -> int | None:
    """The last event id the client already has (``Last-Event-ID`` or ``?after=``)."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest(f"Last-Event-ID must be a non-negative integer, got {raw!r}")
    return int(raw)


async def job_events(
    broker: Broker, job_id: str, after: int | None, keepalive: float = KEEPALIVE
) -> AsyncIterator[Item | None]:
    """The job's events from ``after`` on, until its final event; None is a keep-alive tick."""
    job = await broker.get(job_id)
    last = after or 0
    started = job.attempts if after is not None and job.status is not JobStatus.QUEUED else 0
    if after is None:
        position = await broker.position(job)
        yield None, "queued", {"id": job.id, "endpoint": job.endpoint, "queue_position": position}
    while True:
        change = broker.watch(job_id)
        try:
            job = await broker.get(job_id)
            events = await broker.store.events(job_id, last)
            if job.attempts > started and job.status is not JobStatus.QUEUED:
                started = job.attempts
                yield None, "started", {"attempt": job.attempts, "worker": job.worker_id}
            for event in events:
                last = event.id
                yield event.id, event.type, event.data
            if job.status.final:
                yield None, job.status.value, job.public()
                return
            done, _ = await asyncio.wait((change,), timeout=keepalive)
            if not done:
                yield None
        finally:
            broker.unwatch(job_id, change)


def sse_line(item: Item | None) -> bytes:
    if item is None:
        return b": keep-alive\n\n"
    event_id, kind, data = item
    if event_id is None:
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(data))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, kind.encode(), orjson.dumps(data))


def jsonl_line(item: Item | None) -> bytes:
    if item is None:
        return b"\n"
    event_id, kind, data = item
    return orjson.dumps({"id": event_id, "event": kind, "data": data}) + b"\n"


class EventStream:
    """An ASGI response that streams lines and notices at once when the client hangs up."""

    def __init__(
        self,
        lines: AsyncIterator[bytes],
        media_type: str,
        *,
        headers: dict[str, str] | None = None,
        on_hangup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.lines = lines
        self.media_type = media_type
        self.headers = headers or {}
        self.on_hangup = on_hangup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {
            "content-type": self.media_type,
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            **self.headers,
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        pump = asyncio.ensure_future(self._pump(send))
        hangup = asyncio.ensure_future(_hangup(receive))
        await asyncio.wait((pump, hangup), return_when=asyncio.FIRST_COMPLETED)
        if pump.done():
            hangup.cancel()
            pump.result()
            return
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await pump
        if self.on_hangup is not None:
            await self.on_hangup()

    async def _pump(self, send: Send) -> None:
        async for line in self.lines:
            await send({"type": "http.response.body", "body": line, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _hangup(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def event_stream(
    broker: Broker,
    job_id: str,
    fmt: str,
    *,
    after: int | None = None,
    headers: dict[str, str] | None = None,
    cancel_on_hangup: bool = False,
) -> EventStream:
    """The response streaming one job's events in ``fmt`` (``sse`` or ``jsonl``)."""
    encode = sse_line if fmt == "sse" else jsonl_line

    async def lines() -> AsyncIterator[bytes]:
        async for item in job_events(broker, job_id, after):
            yield encode(item)

    async def cancel() -> None:
        with contextlib.suppress(Exception):
            await broker.cancel(job_id)

    return EventStream(
        lines(),
        SSE if fmt == "sse" else JSONL,
        headers=headers,
        on_hangup=cancel if cancel_on_hangup else None,
    )
