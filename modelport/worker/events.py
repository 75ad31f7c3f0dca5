"""The events a model makes while it runs, on its own thread, and how they reach the server:
output chunks and log lines at once and in order, progress coalesced to the latest per job
at most every ``progress_interval``."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from modelport.wire import Event

if TYPE_CHECKING:  # imported where it is used: running a model in this process needs none
    import asyncio

Send = Callable[[list[Event]], Awaitable[list[str]]]
"""Sends events; returns the ids of the jobs the worker still holds."""


class Events:
    """Where the invoker puts the events of the model it runs: :class:`EventBuffer` queues
    them for the server; a model run in this process (``modelport run``) shows them."""

    def __init__(self, progress_interval: float) -> None:
        self.progress_interval = progress_interval
        self.abandoned: set[str] = set()
        """Jobs the server says this worker no longer holds (cancelled, lease lost)."""

    def emit(self, event: Event, loop: asyncio.AbstractEventLoop) -> None:
        """Take an event from the model thread (``loop`` runs the worker's sending)."""
        raise NotImplementedError


class EventBuffer(Events):
    def __init__(self, progress_interval: float) -> None:
        import asyncio

        super().__init__(progress_interval)
        self.ready = asyncio.Event()
        """Set when events wait to be sent."""
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._progress: dict[str, Event] = {}
        self._progress_sent = -1e9
        self._sending = asyncio.Lock()
        """Held while events are sent: they go out in order, and all before a result."""
        self.woken: Callable[[], None] | None = None
        """Called on the event loop when events come to wait (a runner starts its pump)."""

    def emit(self, event: Event, loop: asyncio.AbstractEventLoop) -> None:
        """Queue an event from the model thread; the event loop sends it."""
        with self._lock:
            wake = not self._events and not self._progress
            if event.type == "progress":
                self._progress[event.job_id] = event
            else:
                self._events.append(event)
        if wake:
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self.ready.set()
        if self.woken is not None:
            self.woken()

    async def flush(self, send: Send) -> None:
        """Send what is due: every chunk and log line, and progress if the interval passed
        (else wake again when it will have)."""
        import asyncio

        if not self._events and not self._progress and not self._sending.locked():
            return  # nothing waits, and no send is under way that this one must follow
        async with self._sending:
            loop = asyncio.get_running_loop()
            now = loop.time()
            with self._lock:
                events, self._events = self._events, []
                due = now - self._progress_sent >= self.progress_interval
                if self._progress and due:
                    events += self._progress.values()
                    self._progress = {}
                    self._progress_sent = now
                elif self._progress:
                    wait = self.progress_interval - (now - self._progress_sent)
                    loop.call_later(wait, self._wake)
            if events:
                held = set(await send(events))
                self.abandoned.update(e.job_id for e in events if e.job_id not in held)
