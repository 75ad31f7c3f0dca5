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
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse
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


class EventStream(StreamingResponse):
    """A streaming response of event lines that notices at once when the client hangs up,
    even while the stream is quiet, and then runs ``on_hangup``."""

    def __init__(
        self,
        lines: AsyncIterable[bytes],
        media_type: str,
        *,
        headers: Mapping[str, str] | None = None,
        on_hangup: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            lines,
            headers={
                "content-type": media_type,  # as given (Starlette would append a charset)
                "cache-control": "no-cache",
                "x-accel-buffering": "no",
                **(headers or {}),
            },
            media_type=media_type,
        )
        self.on_hangup = on_hangup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette listens for the hang-up only below ASGI 2.4; from 2.4 on it waits for a
        # send to fail, which a quiet stream attempts only at its next keep-alive. So listen
        # always, and take a failed send (the 2.4 way of saying so) as a hang-up too.
        streaming = asyncio.ensure_future(self.stream_response(send))
        hangup = asyncio.ensure_future(self.listen_for_disconnect(receive))
        try:
            await asyncio.wait((streaming, hangup), return_when=asyncio.FIRST_COMPLETED)
        finally:
            streaming.cancel()
            hangup.cancel()
            await asyncio.gather(streaming, hangup, return_exceptions=True)
        finished = not streaming.cancelled() and streaming.exception() is None
        if not finished:
            error = None if streaming.cancelled() else streaming.exception()
            if error is not None and not isinstance(error, OSError):
                raise error
            if self.on_hangup is not None:
                await self.on_hangup()
        if self.background is not None:
            await self.background()


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
