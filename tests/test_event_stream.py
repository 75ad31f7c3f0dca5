"""The streaming response on its own, spoken to in raw ASGI as servers of each spec version do:
a client hanging up is noticed while the stream is quiet, and ``on_hangup`` runs once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import Message

from modelport.server.streaming import JSONL, SSE, EventStream

BOUND = 5.0
"""A safety net for awaits that should finish at once; never what a test waits for."""


class Peer:
    """The server and client side of one request: what was sent, and a client that can leave."""

    def __init__(self, spec_version: str, *, send_fails_after_leaving: bool = False) -> None:
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "method": "GET",
            "path": "/jobs/j/events",
            "headers": [],
        }
        self.sent: list[Message] = []
        self.first_line = asyncio.Event()
        self.left = asyncio.Event()
        self.send_fails_after_leaving = send_fails_after_leaving

    async def receive(self) -> Message:
        await self.left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.left.is_set() and self.send_fails_after_leaving:
            raise OSError("the client closed the connection")  # as ASGI 2.4 servers do
        self.sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            self.first_line.set()

    def headers(self) -> dict[str, str]:
        start = self.sent[0]
        assert start["type"] == "http.response.start"
        return {k.decode(): v.decode() for k, v in start["headers"]}


class Quiet:
    """Lines: one at once, then nothing until the test lets the next ones out."""

    def __init__(self) -> None:
        self.more = asyncio.Event()
        self.closed = asyncio.Event()

    async def lines(self, count: int = 1) -> AsyncIterator[bytes]:
        try:
            yield b"data: first\n\n"
            await self.more.wait()
            for i in range(count):
                yield b"data: %d\n\n" % i
        finally:
            self.closed.set()


class Hangups:
    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.called.set()


@pytest.mark.parametrize("spec_version", ["2.0", "2.3", "2.4", "2.5"])
async def test_a_hangup_on_a_quiet_stream_is_noticed_at_once(spec_version: str) -> None:
    peer, quiet, hangups = Peer(spec_version), Quiet(), Hangups()
    stream = EventStream(quiet.lines(), SSE, on_hangup=hangups)
    task = asyncio.create_task(stream(peer.scope, peer.receive, peer.send))
    await asyncio.wait_for(peer.first_line.wait(), BOUND)
    peer.left.set()  # the stream has nothing to send: only listening can tell
    await asyncio.wait_for(task, BOUND)
    assert hangups.calls == 1
    assert quiet.closed.is_set()  # the lines are no longer produced
    assert [m.get("body") for m in peer.sent[1:]] == [b"data: first\n\n"]


async def test_a_failed_send_after_the_client_left_counts_as_a_hangup() -> None:
    peer, quiet, hangups = Peer("2.4", send_fails_after_leaving=True), Quiet(), Hangups()

    async def deaf() -> Message:  # a server that says nothing until the send fails
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    stream = EventStream(quiet.lines(count=3), JSONL, on_hangup=hangups)
    task = asyncio.create_task(stream(peer.scope, deaf, peer.send))
    await asyncio.wait_for(peer.first_line.wait(), BOUND)
    peer.left.set()
    quiet.more.set()
    await asyncio.wait_for(task, BOUND)  # no OSError out of the app
    assert hangups.calls == 1


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_a_stream_that_ends_is_no_hangup(spec_version: str) -> None:
    peer, quiet, hangups = Peer(spec_version), Quiet(), Hangups()
    quiet.more.set()
    stream = EventStream(quiet.lines(count=2), SSE, headers={"x-job-id": "j"}, on_hangup=hangups)
    await asyncio.wait_for(stream(peer.scope, peer.receive, peer.send), BOUND)
    assert hangups.calls == 0
    assert peer.headers() == {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
        "x-job-id": "j",
    }
    bodies = [(m.get("body"), m.get("more_body")) for m in peer.sent[1:]]
    assert bodies == [
        (b"data: first\n\n", True),
        (b"data: 0\n\n", True),
        (b"data: 1\n\n", True),
        (b"", False),
    ]


async def test_an_error_in_the_lines_is_raised_not_taken_for_a_hangup() -> None:
    peer, hangups = Peer("2.4"), Hangups()

    async def broken() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError, match="the store went away"):
        await asyncio.wait_for(
            EventStream(broken(), SSE, on_hangup=hangups)(peer.scope, peer.receive, peer.send),
            BOUND,
        )
    assert hangups.calls == 0
