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
import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import mimeparse
import orjson
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from modelport.core import Broker
from modelport.errors import BadRequest
from modelport.wire import Event, JobStatus

SSE = "text/event-stream"
JSONL = "application/jsonl"
_JSONL_ALIASES = ("application/jsonl", "application/x-ndjson", "application/json-lines")

KEEPALIVE = 15.0
"""Seconds between keep-alive lines, so proxies do not close a quiet stream."""

Item = tuple[int | None, str, Any]
"""(stored event id or None for a state event, event name, data)"""


def stream_format(request: Request) -> str | None:
    """``sse``, ``jsonl``, or None when the client prefers plain JSON.

    A stream is chosen only when the ``Accept`` header names its media type (a wildcard
    does not) with a quality above zero and at least that of ``application/json``.
    """
    return negotiate(request.headers.get("accept", ""))


def negotiate(accept: str) -> str | None:
    """The stream format an ``Accept`` header asks for (see :func:`stream_format`)."""
    if "/" not in accept:
        return None
    ranges = []
    for item in accept.split(","):
        with contextlib.suppress(ValueError):  # one malformed range must not spoil the rest
            ranges.append(mimeparse.parse_media_range(item))
    named = {"sse": 0.0, "jsonl": 0.0}
    for kind, subtype, params in ranges:
        media = f"{kind}/{subtype}".lower()
        fmt = "sse" if media == SSE else "jsonl" if media in _JSONL_ALIASES else None
        if fmt is not None:
            named[fmt] = max(named[fmt], float(params["q"]))
    best = max(named, key=lambda fmt: named[fmt])  # sse first on a tie
    json_q = mimeparse.quality_parsed("application/json", ranges) if ranges else 0.0
    if named[best] > 0 and named[best] >= json_q:
        return best
    return None


MAX_EVENT_ID = 2**63 - 1
_EVENT_ID = re.compile(r"0*([0-9]{1,19})")
"""ASCII digits only: ``str.isdigit`` also takes digits like '²' that ``int`` refuses."""


def resume_point(request: Request) -> int | None:
    """The last event id the client already has (``Last-Event-ID`` or ``?after=``)."""
    header = request.headers.get("last-event-id")
    if header:
        return parse_event_id(header, "Last-Event-ID")
    after = request.query_params.get("after")
    return None if after is None else parse_event_id(after, "?after=")


def parse_event_id(raw: str, source: str = "Last-Event-ID") -> int:
    """An event id from 0 to 2**63 - 1, or :class:`BadRequest` naming ``source``."""
    match = _EVENT_ID.fullmatch(raw)
    if match is None or int(match.group(1)) > MAX_EVENT_ID:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise BadRequest(
            f"{source} must be an event id: a whole number from 0 to {MAX_EVENT_ID}, got {shown!r}"
        )
    return int(match.group(1))


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
    # Events this server just stored come with the change: they go out before the reads
    # below, which look for anything else (the job's end, say). Not on a shared store: there
    # another server may have started a new attempt that this one has not heard of yet.
    handed: list[Event] | None = None
    local = not broker.store.shared
    while True:
        change = broker.watch(job_id)
        try:
            if handed and started and local:
                for event in handed:
                    if event.id != last + 1:
                        break  # a gap: the reads below send the rest, in order
                    last = event.id
                    yield event.id, event.type, event.data
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
            handed = None
            try:
                async with asyncio.timeout(keepalive):
                    handed = await change  # awaited alone: a change wakes it in one loop step
            except TimeoutError:
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
