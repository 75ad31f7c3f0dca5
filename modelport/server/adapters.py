"""HTTP and subprocess endpoints put at run time (``PUT /endpoints/{name}`` with
``kind = "http"`` or ``"subprocess"``): the server runs their adapter as an embedded worker,
replaces it when the endpoint is put again differently, and stops it once the endpoint is
deleted (after its queue drained). Only with ``--allow-runtime-adapters``: such a spec names
a program to start or a URL to call from the server's host."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from modelport import adapters
from modelport.core import Broker
from modelport.errors import Forbidden
from modelport.model import Model
from modelport.server.local import LocalTransport
from modelport.spec import EndpointSpec, spec_differences
from modelport.worker.runner import Runner, lanes

log = logging.getLogger("modelport.server")

STOP_GRACE = 30.0
"""Seconds a replaced or deleted adapter may take to finish the jobs in hand."""
LOOK_AGAIN = 1.0
"""Seconds between looks at a deleting endpoint when no change wakes the watcher sooner
(another server may finish the deletion)."""


@dataclass(eq=False)
class _Serving:
    spec: EndpointSpec
    group: list[Runner]
    task: asyncio.Task[None]


class RuntimeAdapters:
    """The adapters started by ``PUT /endpoints/{name}``, one instance per endpoint."""

    def __init__(
        self,
        broker: Broker,
        runners: list[Runner],
        run: Callable[[list[Runner]], Coroutine[Any, Any, None]],
        *,
        allowed: bool,
    ) -> None:
        self.broker = broker
        self.runners = runners
        """The server's runners: these adapters' are added while they serve."""
        self._run = run
        self.allowed = allowed
        self._serving: dict[str, _Serving] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def check(self, spec: EndpointSpec) -> None:
        """Refuse an adapter spec unless the server was started to run them."""
        if spec.kind in adapters.KINDS and not self.allowed:
            raise Forbidden(
                f'a kind = "{spec.kind}" endpoint makes this server '
                + ("start a program" if spec.kind == "subprocess" else "call a URL")
                + ": it takes them at run time only when started with"
                " `modelport serve --allow-runtime-adapters`; or serve the spec with"
                " `modelport worker --config FILE`"
            )

    @staticmethod
    def model(spec: EndpointSpec) -> type[Model]:
        """The adapter class of a runnable spec (raises ``SpecError`` for what cannot run)."""
        return adapters.model_class(spec)

    def put(self, spec: EndpointSpec, model: type[Model] | None) -> None:
        """Serve ``spec`` with ``model`` (replacing the adapter serving an earlier form of
        it), or, with None, with no adapter of this server's any more."""
        current = self._serving.get(spec.name)
        if model is None:
            if current is not None:
                self._retire(self._serving.pop(spec.name))
            return
        if (
            current is not None
            and not current.task.done()
            and not spec_differences(current.spec, spec)
            and current.spec.adapter == spec.adapter
        ):
            return  # the same again
        group = lanes(model(), LocalTransport(self.broker))
        self.runners += group
        task = asyncio.create_task(self._run(group), name=f"adapter-{spec.name}")
        self._serving[spec.name] = _Serving(spec, group, task)
        log.info("serving %s: a %s adapter put at run time", spec.name, spec.kind)
        if current is not None:
            self._retire(current)  # it finishes its jobs; queued ones of its revision wait

    def deleted(self, name: str, removed: bool) -> None:
        """The endpoint is being deleted: stop its adapter once it is gone (its queue may
        still be draining through it)."""
        serving = self._serving.get(name)
        if serving is None:
            return
        if removed:
            self._retire(self._serving.pop(name))
        else:
            self._spawn(self._retire_when_gone(name, serving))

    async def _retire_when_gone(self, name: str, serving: _Serving) -> None:
        registry = self.broker.registry
        while self._serving.get(name) is serving:
            state = registry.endpoints.get(name)
            if state is None:
                self._retire(self._serving.pop(name))
                return
            if state.state != "deleting":
                return  # put again meanwhile: it serves on
            change = self.broker.wakeups.work_future(name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(change), LOOK_AGAIN)

    def _retire(self, serving: _Serving) -> None:
        for runner in serving.group:
            runner.drain()
        self._spawn(self._stopped(serving))

    async def _stopped(self, serving: _Serving) -> None:
        try:
            await asyncio.wait({serving.task}, timeout=STOP_GRACE)
            if not serving.task.done():
                log.warning(
                    "%s: its adapter did not stop in %g s; stopping it",
                    serving.spec.name,
                    STOP_GRACE,
                )
                serving.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving.task
        finally:
            for runner in serving.group:
                with contextlib.suppress(ValueError):
                    self.runners.remove(runner)
        log.info("%s: its run-time adapter stopped", serving.spec.name)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """At shutdown: stop every adapter now (their programs and connections closed)."""
        tasks = [s.task for s in self._serving.values()] + list(self._tasks)
        self._serving.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
