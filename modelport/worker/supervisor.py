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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import httpx

from modelport.logs import configure as configure_logs
from modelport.model import Model
from modelport.worker.http import HttpTransport, tls_verify
from modelport.worker.runner import lanes, set_up

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
    asyncio.run(_child(refs, server, token, name, slot, conn, ca_file))


async def _child(
    refs: list[ModelRef],
    server: str,
    token: str,
    name: str,
    slot: int,
    conn: multiprocessing.connection.Connection,
    ca_file: str | None = None,
) -> None:
    transport = HttpTransport(server, token, ca_file=ca_file)
    metadata = {"host": socket.gethostname(), "pid": os.getpid(), "slot": slot}
    instances = [
        lanes(cls(), transport, name=f"{name}/{slot}", metadata=metadata)
        for ref in refs
        for cls in _models(ref)
    ]
    runners = [runner for group in instances for runner in group]

    def drain() -> None:
        for runner in runners:
            runner.drain()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, drain)
    for group in instances:  # one at a time: concurrent heavy imports can race
        await set_up(group)
    tasks = [asyncio.create_task(r.run()) for r in runners]
    waiting = {asyncio.create_task(r.registered.wait()) for r in runners}
    while waiting:
        done, _ = await asyncio.wait([*waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        waiting -= done
        if any(t in done for t in tasks):
            break
    conn.send([r.worker_id for r in runners if r.worker_id is not None])
    try:
        await asyncio.gather(*tasks)
    finally:
        await transport.aclose()


@dataclass
class _Slot:
    index: int
    process: BaseProcess
    conn: multiprocessing.connection.Connection
    started: float
    worker_ids: list[str] = field(default_factory=list)
    crashes: int = 0
    restart_at: float | None = None


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
        """Begin draining: children finish their batches and leave."""
        if self._stopping_since is None:
            self._stopping_since = time.monotonic()
            log.info("draining %d worker processes (grace %.0f s)", len(self._slots), self.grace)
            for slot in self._slots.values():
                if slot.process.is_alive() and slot.process.pid is not None:
                    os.kill(slot.process.pid, signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for index in range(self.processes):
            self._start(index)
        while self._slots:
            self._step()
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
                with contextlib.suppress(EOFError, OSError):
                    slot.worker_ids = slot.conn.recv()
            if slot.restart_at is not None:
                if self._stopping_since is not None:
                    del self._slots[slot.index]
                elif now >= slot.restart_at:
                    self._start(slot.index, slot.crashes)
                continue
            if slot.process.sentinel in ready or not slot.process.is_alive():
                self._exited(slot, now)
        if self._stopping_since is not None and now - self._stopping_since > self.grace:
            for slot in list(self._slots.values()):
                log.warning("worker %d did not drain in %.0f s; killing it", slot.index, self.grace)
                slot.process.kill()
                slot.process.join(5)
                self._requeue(slot)
                del self._slots[slot.index]

    def _exited(self, slot: _Slot, now: float) -> None:
        slot.process.join(1)
        code = slot.process.exitcode
        if self._stopping_since is not None:
            if code != 0:
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
    until SIGTERM or SIGINT, then drains. A model class defined in a script's ``__main__``
    works when the script calls this under ``if __name__ == "__main__":``.
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
