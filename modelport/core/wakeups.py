"""Waiters and announcements: who in this process waits for what (a request for its job's
result, a stream for its job's next change, a long poll for new work), woken by futures,
never by polling; and the topics told to the other servers sharing the store.

Topics: ``q:ENDPOINT`` (new work), ``j:JOB_ID`` (the job changed), ``e:ENDPOINT`` (the
endpoint was added, replaced, disabled, enabled or deleted), ``all`` (the store lost
announcements: everyone looks again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from modelport.stores.base import JobStore
from modelport.wire import Event, JobRecord

log = logging.getLogger("modelport.core")
_W = TypeVar("_W")


class Taker:
    """A long poll waiting for work with room for a job, that a submit may hand its job to:
    the job is stored already running for the poll's worker, one store write instead of a
    queued insert and a lease.

    The poll awaits :attr:`handed` alone, so a handed job wakes it in one event-loop step
    (ahead of whatever else the submitting request goes on to do); its other signals set it
    to None (look again) unless a submit claimed it first.
    """

    __slots__ = ("claimed", "handed", "revisions", "worker_id")

    def __init__(self, worker_id: str, revisions: dict[str, int | None]) -> None:
        self.worker_id = worker_id
        self.revisions = revisions
        """The endpoints it takes, each with the revision it serves (None: any)."""
        self.handed: asyncio.Future[JobRecord | None] = asyncio.get_running_loop().create_future()
        self.claimed = False

    def wake(self, _: object = None) -> None:
        """Another signal came: the poll looks again (unless a job is on its way to it)."""
        if not self.claimed and not self.handed.done():
            self.handed.set_result(None)

    def job(self) -> JobRecord | None:
        """The job handed to the poll, if one was."""
        handed = self.handed
        return handed.result() if handed.done() and not handed.cancelled() else None

    def hand(self, job: JobRecord | None) -> bool:
        """Give the claimed poll its job (None: the submit failed); False if the poll is no
        longer there to take it (abandoned or timed out while the job was stored)."""
        if self.handed.done():
            return False
        self.handed.set_result(job)
        return True


class Wakeups:
    """The futures waiters park on, and the outbox of topics for the other servers."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.instance = secrets.token_hex(4)
        self._done: dict[str, list[asyncio.Future[JobRecord | None]]] = {}
        self._signals: dict[str, asyncio.Future[None]] = {}
        self._watchers: dict[str, list[asyncio.Future[list[Event] | None]]] = {}
        self._takers: dict[str, list[Taker]] = {}
        self._closing_future: asyncio.Future[None] | None = None
        self._outbox: list[str] = []
        self._tasks: set[asyncio.Future[None]] = set()
        self.observers: list[Callable[[str], None]] = []
        """Told the id of each job that changed here (its webhooks look at it)."""
        self.on_endpoints: Callable[[], Coroutine[Any, Any, None]] | None = None
        """Reads the endpoints again when another server changed one."""

    @property
    def closing(self) -> asyncio.Future[None]:
        """Resolved when the server is going down."""
        if self._closing_future is None:
            self._closing_future = asyncio.get_running_loop().create_future()
        return self._closing_future

    def close(self) -> None:
        """End every wait now, with what it has."""
        if not self.closing.done():
            self.closing.set_result(None)
        futures: list[asyncio.Future[Any]] = []
        for done in self._done.values():
            futures += done
        for watchers in self._watchers.values():
            futures += watchers
        for fut in futures:
            if not fut.done():
                fut.set_result(None)

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a store write nobody waits for; a failure is logged."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not tell the other servers: %s", task.exception())

    def done_future(self, job_id: str) -> asyncio.Future[JobRecord | None]:
        """A future resolved with the job when it is final here (None: look again)."""
        fut: asyncio.Future[JobRecord | None] = asyncio.get_running_loop().create_future()
        self._done.setdefault(job_id, []).append(fut)
        return fut

    def forget_done(self, job_id: str, fut: asyncio.Future[JobRecord | None]) -> None:
        _discard(self._done, job_id, fut)

    def work_future(self, endpoint: str) -> asyncio.Future[None]:
        """A future resolved at the next new work for ``endpoint``."""
        fut = self._signals.get(endpoint)
        if fut is None or fut.done():
            fut = self._signals[endpoint] = asyncio.get_running_loop().create_future()
        return fut

    def new_work(self, endpoint: str) -> None:
        """New work for ``endpoint``: wake its long polls here and on the other servers."""
        self._wake_queue(endpoint)
        self._announce("q:" + endpoint)

    def offer(self, taker: Taker) -> None:
        """A long poll is waiting for work with room: submits may hand it their job."""
        for endpoint in taker.revisions:
            self._takers.setdefault(endpoint, []).append(taker)

    def withdraw(self, taker: Taker) -> None:
        """The long poll stops waiting."""
        if not taker.claimed:
            for endpoint in taker.revisions:
                _discard(self._takers, endpoint, taker)

    def claim(self, endpoint: str, revision: int) -> Taker | None:
        """The long poll waiting longest for ``endpoint``'s work of ``revision``, taken off
        every list; the caller must then :meth:`Taker.hand` it the job."""
        for taker in self._takers.get(endpoint, ()):
            if taker.revisions[endpoint] in (None, revision) and not taker.handed.done():
                for name in taker.revisions:
                    _discard(self._takers, name, taker)
                taker.claimed = True
                return taker
        return None

    def endpoints_changed(self, endpoint: str) -> None:
        """An endpoint was added, replaced, disabled, enabled or deleted: its long polls
        look again here, and the other servers read the endpoints again."""
        self._wake_queue(endpoint)
        self._announce("e:" + endpoint)

    def finished(self, job: JobRecord) -> None:
        """The job is final: answer whoever waits for it."""
        for fut in self._done.pop(job.id, ()):
            if not fut.done():
                fut.set_result(job)
        self.changed(job.id)

    def changed(self, job_id: str, events: list[Event] | None = None) -> None:
        """The job changed (started, an event, final): wake its watchers here and elsewhere.
        ``events``: the change is these events, just stored here, handed to the watchers."""
        for fut in self._watchers.pop(job_id, ()):
            if not fut.done():
                fut.set_result(events)
        for observer in self.observers:
            observer(job_id)
        self._announce("j:" + job_id)

    def watch(self, job_id: str) -> asyncio.Future[list[Event] | None]:
        """A future that resolves at the job's next change: started, an event, or final; to
        the new events when the change was only those, stored by this server (else None)."""
        fut: asyncio.Future[list[Event] | None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(job_id, []).append(fut)
        return fut

    def unwatch(self, job_id: str, fut: asyncio.Future[list[Event] | None]) -> None:
        _discard(self._watchers, job_id, fut)

    def _wake_queue(self, endpoint: str) -> None:
        fut = self._signals.pop(endpoint, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_job(self, job_id: str) -> None:
        for fut in self._done.pop(job_id, ()):
            if not fut.done():
                fut.set_result(None)
        for watcher in self._watchers.pop(job_id, ()):
            if not watcher.done():
                watcher.set_result(None)

    def _announce(self, topic: str) -> None:
        """Queue a topic for the other servers; one publish per event-loop turn carries all."""
        if not self.store.shared:
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush_outbox)
        self._outbox.append(topic)

    def _flush_outbox(self) -> None:
        topics, self._outbox = self._outbox, []
        message = "\n".join([f"from:{self.instance}", *dict.fromkeys(topics)])
        self.background(self.store.publish(message))

    def on_message(self, message: str) -> None:
        """Topics another server published: wake whoever waits here."""
        lines = message.split("\n")
        if lines and lines[0] == f"from:{self.instance}":
            return
        for line in lines:
            kind, _, key = line.partition(":")
            if kind == "all":
                if self.on_endpoints is not None:
                    self.background(self.on_endpoints())
                for name in list(self._signals):
                    self._wake_queue(name)
                for job_id in list(self._done) + list(self._watchers):
                    self._wake_job(job_id)
            elif kind == "q":
                self._wake_queue(key)
            elif kind == "e":
                if self.on_endpoints is not None:
                    self.background(self._endpoints_then_wake(self.on_endpoints, key))
            elif kind == "j":
                self._wake_job(key)

    async def _endpoints_then_wake(
        self, reload: Callable[[], Coroutine[Any, Any, None]], endpoint: str
    ) -> None:
        await reload()
        self._wake_queue(endpoint)


def _discard(table: dict[str, list[_W]], key: str, waiter: _W) -> None:
    """Take a waiter off its list, and the list off the table once empty."""
    waiters = table.get(key)
    if waiters is not None:
        with contextlib.suppress(ValueError):
            waiters.remove(waiter)
        if not waiters:
            del table[key]
