"""``modelport worker``: model processes supervised by a parent that restarts them.

The parent never loads the model. Each child registers its runners with the server and
reports their worker ids; when a child dies, the parent tells the server at once (so its
jobs are requeued without waiting for lease expiry) and starts a new child, which runs
``setup()`` again. SIGTERM drains: children stop leasing, finish their batch, report and
leave, within a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import httpx

from modelport.errors import (
    PROBLEM_PREFIX,
    Conflict,
    Forbidden,
    InvalidRequest,
    ModelportError,
    NotFound,
    Unauthorized,
    from_problem,
)
from modelport.logs import configure as configure_logs
from modelport.logs import took
from modelport.model import Model
from modelport.worker.http import HttpTransport, tls_verify
from modelport.worker.runner import Runner, lanes, set_up, tear_down

log = logging.getLogger("modelport.worker")

ModelRef = str | type[Model]
"""A model class, or a target string (``file.py[:Class]``) the child imports itself."""


def _models(ref: ModelRef) -> list[type[Model]]:
    if isinstance(ref, str):
        from modelport.loader import load_models

        return load_models(ref)
    return [ref]


def _child_main(
    refs: list[ModelRef],
    server: str,
    token: str,
    name: str,
    slot: int,
    conn: multiprocessing.connection.Connection,
    log_level: str,
    log_format: str,
    device: str | None = None,
    ca_file: str | None = None,
) -> None:
    if device is not None:  # before the model initializes CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    configure_logs(log_level, log_format)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    code = asyncio.run(_child(refs, server, token, name, slot, conn, ca_file))
    if code == _STOPPED_IN_SETUP:
        # setup() goes on in its thread, which nothing can interrupt; it holds no job.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    sys.exit(code)


_STOPPED_IN_SETUP = -1
REFUSED = 2
"""The exit code of a worker the server refused (wrong token, a different spec)."""


def _refusal(e: BaseException, runner: Runner) -> ModelportError | None:
    """The error if it is the server refusing this worker for good: a wrong credential
    anywhere, or a registration it rejects (a spec that differs, one it cannot read)."""
    if isinstance(e, Unauthorized | Forbidden | Conflict):
        return e
    if isinstance(e, InvalidRequest) and not isinstance(e, NotFound) and runner.worker_id is None:
        return e
    return None


async def _child(
    refs: list[ModelRef],
    server: str,
    token: str,
    name: str,
    slot: int,
    conn: multiprocessing.connection.Connection,
    ca_file: str | None = None,
) -> int:
    transport = HttpTransport(server, token, ca_file=ca_file)
    try:
        return await _serve(transport, refs, name, slot, conn)
    finally:
        await transport.aclose()


async def _serve(
    transport: HttpTransport,
    refs: list[ModelRef],
    name: str,
    slot: int,
    conn: multiprocessing.connection.Connection,
) -> int:
    metadata = {"host": socket.gethostname(), "pid": os.getpid(), "slot": slot}
    instances = [
        lanes(cls(), transport, name=f"{name}/{slot}", metadata=metadata)
        for ref in refs
        for cls in _models(ref)
    ]
    runners = [runner for group in instances for runner in group]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    stop = asyncio.ensure_future(stopping.wait())
    setup = asyncio.ensure_future(_set_up(instances))
    await asyncio.wait({setup, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not setup.done():
        log.info("stopped while setup() ran")
        loop.remove_signal_handler(signal.SIGTERM)
        return _STOPPED_IN_SETUP
    setup.result()
    tasks: dict[asyncio.Future[Any], Runner] = {asyncio.ensure_future(r.run()): r for r in runners}
    joining = {asyncio.ensure_future(r.registered.wait()) for r in runners}
    announced = False
    try:
        while tasks:
            waiting: set[asyncio.Future[Any]] = {*tasks, *joining}
            if not stop.done():
                waiting.add(stop)
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            joining -= done
            if not announced and (not joining or done & tasks.keys()):
                announced = True
                ids = [r.worker_id for r in runners if r.worker_id is not None]
                conn.send(("registered", ids))
                if not joining:
                    endpoints = ", ".join(dict.fromkeys(r.spec.name for r in runners))
                    log.info(
                        "connected to %s as %s, serving %s",
                        transport.server,
                        ", ".join(ids),
                        endpoints,
                    )
            if stop in done:
                for task, runner in tasks.items():
                    runner.drain()
                    if runner.worker_id is None:  # still connecting: it holds nothing
                        task.cancel()
            for ended in done & tasks.keys():
                runner = tasks.pop(ended)
                if ended.cancelled() or ended.exception() is None:
                    continue
                error = ended.exception()
                assert error is not None
                refused = _refusal(error, runner)
                if refused is None:
                    raise error
                conn.send(("refused", refused.status, refused.kind, refused.message))
                return REFUSED
    finally:
        for future in (*tasks, *joining, stop):
            future.cancel()
        for group in instances:
            await tear_down(group)
        # From here a SIGTERM ends the process as by default: the loop that would take it
        # is closing, and its wake-up pipe with it.
        loop.remove_signal_handler(signal.SIGTERM)
    return 0


async def _set_up(instances: list[list[Runner]]) -> None:
    for group in instances:  # one at a time: concurrent heavy imports can race
        name = group[0].spec.name
        log.info("setting up %s…", name)
        started = time.monotonic()
        await set_up(group)
        log.info("%s ready in %s", name, took(time.monotonic() - started))


@dataclass
class _Slot:
    index: int
    process: BaseProcess
    conn: multiprocessing.connection.Connection
    started: float
    worker_ids: list[str] = field(default_factory=list)
    crashes: int = 0
    restart_at: float | None = None
    refused: bool = False
    """The server refused it: it is ending on its own, and is not signalled."""


class Supervisor:
    """Runs ``processes`` children and keeps them running."""

    def __init__(
        self,
        refs: list[ModelRef],
        *,
        server: str,
        token: str,
        processes: int = 1,
        name: str | None = None,
        grace: float = 30.0,
        log_level: str = "info",
        log_format: str = "text",
        devices: Sequence[str] = (),
        ca_file: str | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        if any(not d.strip() for d in devices):
            raise ValueError("devices must not be empty")
        self.devices = [d.strip() for d in devices]
        self.refs = refs
        self.server = server.rstrip("/")
        self.token = token
        self.ca_file = ca_file
        self.processes = processes
        self.name = name or socket.gethostname()
        self.grace = grace
        self.log_level = log_level
        self.log_format = log_format
        self._ctx = multiprocessing.get_context("spawn")
        self._slots: dict[int, _Slot] = {}
        self._stopping_since: float | None = None
        self._force = False
        self._refused: ModelportError | None = None

    def _start(self, index: int, crashes: int = 0) -> None:
        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=_child_main,
            args=(
                self.refs,
                self.server,
                self.token,
                self.name,
                index,
                sender,
                self.log_level,
                self.log_format,
                self.devices[index % len(self.devices)] if self.devices else None,
                self.ca_file,
            ),
            name=f"modelport-worker-{index}",
        )
        process.start()
        sender.close()
        self._slots[index] = _Slot(index, process, receiver, time.monotonic(), crashes=crashes)

    def _requeue(self, slot: _Slot) -> None:
        """Tell the server the child's jobs are orphaned, so they are requeued at once."""
        for worker_id in slot.worker_ids:
            try:
                httpx.delete(
                    f"{self.server}/workers/{worker_id}",
                    headers={"authorization": f"Bearer {self.token}"},
                    timeout=5.0,
                    verify=tls_verify(self.ca_file),
                )
            except httpx.HTTPError as e:
                log.warning(
                    "could not release worker %s (%s); its leases will expire", worker_id, e
                )

    def stop(self, *_: Any) -> None:
        """Begin draining: children finish their batches and leave. A second call (a second
        Ctrl+C) stops them at once; their jobs go back to the queue."""
        if self._stopping_since is not None:
            self._force = True
            return
        self._stopping_since = time.monotonic()
        if self._refused is None:
            count = len(self._slots)
            log.info(
                "draining %d worker process%s (grace %.0f s)",
                count,
                "es" if count > 1 else "",
                self.grace,
            )
        for slot in self._slots.values():
            if slot.process.is_alive() and slot.process.pid is not None and not slot.refused:
                os.kill(slot.process.pid, signal.SIGTERM)

    def run(self) -> int:
        """Run until SIGTERM or SIGINT, then drain; raise the server's error (``Unauthorized``,
        ``Forbidden``, ``Conflict``...) if it refused this worker for good."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for index in range(self.processes):
            self._start(index)
        while self._slots:
            self._step()
        if self._refused is not None:
            raise self._refused
        return 0

    def _step(self) -> None:
        now = time.monotonic()
        waitables: list[Any] = []
        for slot in self._slots.values():
            if slot.restart_at is None:
                waitables += [slot.process.sentinel, slot.conn]
        ready = multiprocessing.connection.wait(waitables, timeout=0.2)
        for slot in list(self._slots.values()):
            if slot.conn in ready:
                self._receive(slot)
            if slot.restart_at is not None:
                if self._stopping_since is not None:
                    del self._slots[slot.index]
                elif now >= slot.restart_at:
                    self._start(slot.index, slot.crashes)
                continue
            if slot.process.sentinel in ready or not slot.process.is_alive():
                self._exited(slot, now)
        late = self._stopping_since is not None and now - self._stopping_since > self.grace
        if self._force or late:
            for slot in list(self._slots.values()):
                if late:
                    log.warning(
                        "worker %d did not drain in %.0f s; killing it", slot.index, self.grace
                    )
                else:
                    log.warning("stopping worker %d now; its jobs go back to the queue", slot.index)
                slot.process.kill()
                slot.process.join(5)
                self._requeue(slot)
                del self._slots[slot.index]

    def _receive(self, slot: _Slot) -> None:
        """Read what the child said: its worker ids, or that the server refused it."""
        with contextlib.suppress(EOFError, OSError):
            while slot.conn.poll():
                message = slot.conn.recv()
                if message[0] == "registered":
                    slot.worker_ids = message[1]
                elif message[0] == "refused":
                    slot.refused = True
                    if self._refused is None:
                        self._refused = self._refusal(*message[1:])
                        self.stop()

    def _refusal(self, status: int, kind: str, detail: str) -> ModelportError:
        error = from_problem(status, {"type": PROBLEM_PREFIX + kind, "detail": detail})
        hint = ""
        if status == 401 and "--worker-token" not in detail:
            hint = "; check --token (or $MODELPORT_WORKER_TOKEN)"
        error.message = (
            f"the server at {self.server} refused this worker ({status}): {detail}{hint}"
        )
        error.args = (error.message,)
        return error

    def _exited(self, slot: _Slot, now: float) -> None:
        slot.process.join(1)
        self._receive(slot)
        code = slot.process.exitcode
        if self._stopping_since is not None:
            if code not in (0, REFUSED):
                self._requeue(slot)
            del self._slots[slot.index]
            return
        log.error(
            "worker process %d exited with %s; its jobs go back to the queue", slot.index, code
        )
        self._requeue(slot)
        crashes = 0 if now - slot.started > 60 else slot.crashes + 1
        delay = min(0.5 * 2 ** max(crashes - 1, 0), 30.0) if crashes else 0.0
        slot.crashes = crashes
        slot.restart_at = now + delay
        slot.conn.close()


def run_worker(
    model: ModelRef | list[ModelRef],
    *,
    server: str,
    token: str,
    processes: int = 1,
    name: str | None = None,
    grace: float = 30.0,
    log_level: str = "info",
    log_format: str = "text",
    devices: Sequence[str] = (),
    ca_file: str | None = None,
) -> int:
    """Serve ``model`` for a remote API server from ``processes`` supervised processes.

    ``devices`` (GPU ids) are dealt out to the processes in turn, each process seeing only its
    own (``CUDA_VISIBLE_DEVICES``). ``token`` is the server's worker token or a worker key;
    ``ca_file`` a PEM bundle to trust for an ``https://`` server (a private CA's). Blocks
    until SIGTERM or SIGINT, then drains (a second signal stops at once). If the server
    refuses the worker for good (a wrong token, a spec that differs from the endpoint's),
    raises its error (``Unauthorized``, ``Forbidden``, ``Conflict``...) with the reason. A
    model class defined in a script's ``__main__`` works when the script calls this under
    ``if __name__ == "__main__":``.
    """
    refs = model if isinstance(model, list) else [model]
    supervisor = Supervisor(
        refs,
        server=server,
        token=token,
        processes=processes,
        name=name,
        grace=grace,
        log_level=log_level,
        log_format=log_format,
        devices=devices,
        ca_file=ca_file,
    )
    return supervisor.run()
