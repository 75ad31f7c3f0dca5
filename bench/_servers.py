"""Server processes for benchmarks: each in its own process group on a free loopback port,
stopped (every process in the group) on exit, interrupts held off while stopping."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
INTERRUPTS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
WORKER_TOKEN = "bench-worker-token"
"""The worker token of the API servers the benchmarks start (loopback only)."""


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


@dataclass(frozen=True)
class Usage:
    """Of a process group: resident memory (bytes) and CPU time used so far (seconds)."""

    rss: int
    cpu: float


def group_usage(pgid: int) -> Usage | None:
    """Summed over every process in group ``pgid``, from each one's own counters (None without
    /proc). CPU is utime + stime, with cutime + cstime so a child reaped meanwhile still counts."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    rss, ticks = 0, 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) != pgid:
                continue
            ticks += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return Usage(rss, ticks / os.sysconf("SC_CLK_TCK"))


class CpuWindow:
    """CPU seconds each process group used between :meth:`start` and :meth:`stop` (a load's
    ``started`` hook and its return), and its resident memory at the stop; None without /proc.

    Read from the processes' own counters, so it shows the cost per job apart from whatever
    else the machine is running."""

    def __init__(self, *groups: Process) -> None:
        self.groups = groups
        self._start: list[Usage | None] = [None] * len(groups)
        self.used: list[float | None] = [None] * len(groups)
        self.rss: list[int | None] = [None] * len(groups)

    def start(self) -> None:
        self._start = [group_usage(g.proc.pid) for g in self.groups]

    def stop(self) -> None:
        ends = [group_usage(g.proc.pid) for g in self.groups]
        self.used = [
            None if a is None or b is None else b.cpu - a.cpu
            for a, b in zip(self._start, ends, strict=True)
        ]
        self.rss = [None if b is None else b.rss for b in ends]


def sqlite_bytes(db: Path) -> int:
    """The database file with its -wal and -shm files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += Path(f"{db}{suffix}").stat().st_size
    return total


def redis_client(port: int) -> Any:
    import redis

    return redis.Redis(host=HOST, port=port, socket_timeout=30.0, socket_connect_timeout=5.0)


def redis_command(port: int) -> list[str]:
    """A private ``redis-server`` on loopback ``port`` that keeps nothing on disk."""
    return ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]


def wait_redis(port: int, proc: Process, timeout: float) -> None:
    """Poll PING until Redis answers (bounded by ``timeout``)."""
    import redis

    client = redis_client(port)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.proc.poll() is not None:
                raise StartError(f"redis-server exited with status {proc.proc.returncode}")
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            if time.monotonic() > deadline:
                raise StartError(f"redis-server not answering after {timeout:.0f}s")
            time.sleep(0.05)
    finally:
        client.close()


def redis_used_memory(port: int) -> int:
    client = redis_client(port)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


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
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, command, log, env)
        self.port = port
        self.headers = headers
        """Sent with the requests this harness makes itself (e.g. an API key)."""

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

    def wait_workers(
        self, endpoint: str, count: int, timeout: float, workers: Process | None = None
    ) -> None:
        """Poll ``GET /endpoints/{endpoint}`` until at least ``count`` workers are listed
        online (bounded by ``timeout``); fail at once if this server or ``workers`` exits."""
        deadline = time.monotonic() + timeout
        online = 0
        while True:
            for proc in (self, workers):
                if proc is not None and proc.proc.poll() is not None:
                    raise StartError(f"{proc.name} exited with status {proc.proc.returncode}")
            try:
                status, body = get_json(self.port, f"/endpoints/{endpoint}", 2.0, self.headers)
                if status == 200:
                    online = sum(1 for w in body["workers"] if w.get("state") == "online")
                    if online >= count:
                        return
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise StartError(
                    f"{online} of {count} workers online for {endpoint!r} after {timeout:.0f}s"
                )
            time.sleep(0.1)

    def wait_idle(self, endpoint: str, timeout: float) -> None:
        """Poll ``GET /endpoints/{endpoint}`` until no job is queued or running (bounded by
        ``timeout``): jobs of requests a load generator cut off still run to their end."""
        deadline = time.monotonic() + timeout
        left = "?"
        while True:
            if self.proc.poll() is not None:
                raise LoadError(f"{self.name} exited with status {self.proc.returncode}")
            try:
                status, body = get_json(self.port, f"/endpoints/{endpoint}", 2.0, self.headers)
                if status == 200:
                    queued, running = int(body["queue_depth"]), int(body["running"])
                    if queued == 0 and running == 0:
                        return
                    left = f"{queued} queued, {running} running"
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise LoadError(f"{endpoint!r} not idle after {timeout:.0f}s: {left}")
            time.sleep(0.05)

    def settler(self, endpoint: str, timeout: float) -> Callable[[], None]:
        """:meth:`wait_idle` as a ``settle`` callback for a load generator."""
        return functools.partial(self.wait_idle, endpoint, timeout)


def get_json(
    port: int, path: str, timeout: float, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """``GET path``: the status and the parsed JSON body (None when it is not JSON)."""
    status, body = http_call(port, "GET", path, None, timeout, headers)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


def check_call(
    port: int,
    path: str,
    body: bytes,
    expect: bytes | None,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> bytes:
    """One ``POST`` that must answer 200 (with ``expect`` in its body) before a load starts."""
    try:
        status, answer = http_call(port, "POST", path, body, timeout, headers)
    except (OSError, http.client.HTTPException) as e:
        raise StartError(f"request to {path} failed: {e}") from None
    if status != 200 or (expect is not None and expect not in answer):
        raise StartError(f"{path} answered {status}: {answer[:300]!r}")
    return answer


def serve_command(
    port: int, store: str, *targets: str, worker_token: str | None = None
) -> list[str]:
    """``modelport serve`` on loopback ``port``: embedded models ``targets``, and remote workers
    when ``worker_token`` is given."""
    command = [sys.executable, "-m", "modelport", "serve", *targets]
    command += ["--host", HOST, "--port", str(port), "--store", store, "--log-level", "warning"]
    if worker_token is not None:
        command += ["--worker-token", worker_token]
    return command


def worker_command(port: int, target: str, processes: int, token: str = WORKER_TOKEN) -> list[str]:
    """``modelport worker`` with ``processes`` model processes, serving the server on ``port``."""
    return [
        sys.executable,
        "-m",
        "modelport",
        "worker",
        target,
        "--server",
        f"http://{HOST}:{port}",
        "--token",
        token,
        "--processes",
        str(processes),
        "--grace",
        "5",
        "--log-level",
        "warning",
    ]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit, so every ``with Process`` stops its group."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    """A number for a table cell; ``n/a`` for None."""
    return "n/a" if value is None else f"{value:{spec}}{suffix}"
