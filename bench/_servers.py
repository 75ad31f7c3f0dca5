"""Server processes for benchmarks: each in its own process group on a free loopback port,
stopped (every process in the group) on exit, interrupts held off while stopping."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
INTERRUPTS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class BenchError(Exception):
    """A system that could not be measured."""

    stage = "failed"


class StartError(BenchError):
    """A server exited, never became ready, or could not answer one request."""

    stage = "failed to start"


class LoadError(BenchError):
    """The load generator could not complete its run."""

    stage = "load failed"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_call(
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on a fresh connection (no proxies, unlike urllib)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        sent = {"Content-Type": "application/json"} if body is not None else {}
        sent.update(headers or {})
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def log_tail(log: IO[bytes], lines: int = 20) -> str:
    log.flush()
    log.seek(0)
    return b"".join(log.readlines()[-lines:]).decode(errors="replace")


class Process:
    """One command's process group, its output to ``log``; stopped on exit."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: IO[bytes],
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            list(command),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=None if env is None else {**os.environ, **env},
        )

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after ``grace`` seconds;
        interrupts wait until it is done."""
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    return
                if self._gone(grace):
                    return
            print(f"{self.name}: processes left in group {self.proc.pid}", file=sys.stderr)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.poll()
            if not group_alive(self.proc.pid):
                return True
            time.sleep(0.05)
        return False


class Server(Process):
    """A process serving HTTP on ``port``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log: IO[bytes],
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, command, log, env)
        self.port = port

    def __enter__(self) -> Server:
        return self

    def wait_ready(self, path: str, timeout: float) -> None:
        """Poll ``path`` until it answers 200 (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise StartError(f"exited with status {self.proc.returncode}")
            try:
                status, _ = http_call(self.port, "GET", path, None, 1.0)
                if status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                raise StartError(f"not ready after {timeout:.0f}s")
            time.sleep(0.1)
