"""Closed-loop HTTP load: keep-alive connections, each sending its next request as soon as
the previous response is in. Driven by ``wrk`` when available, else by a lean asyncio client."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Protocol, cast


@dataclass(frozen=True)
class Target:
    """One endpoint to load: ``POST path`` with ``body``; a response is OK when its status is
    200 and, when ``expect`` is set, its body contains those bytes."""

    host: str
    port: int
    path: str
    body: bytes
    expect: bytes | None = None
    authorization: str | None = None
    """Sent as the ``Authorization`` header when given (e.g. ``Bearer <key>``)."""


@dataclass(frozen=True)
class Plan:
    """How hard and how long: ``connections`` in flight, ``warmup`` then ``duration`` seconds,
    at most ``max_requests`` measured responses, ``timeout`` seconds before a request fails."""

    connections: int = 64
    warmup: float = 2.0
    duration: float = 10.0
    max_requests: int = 5_000_000
    timeout: float = 5.0


@dataclass(frozen=True)
class LoadResult:
    """What one measured run saw: ``rps`` counts OK responses only; latencies cover every
    response completed in the window."""

    ok: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_s: float | None = None
    """CPU seconds the API server's processes used in the window (see :class:`CpuWindow`)."""
    worker_cpu_s: float | None = None
    """CPU seconds the remote worker's processes used in the window, when there is one."""

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_job(self) -> float | None:
        """API server CPU microseconds per OK response of the window."""
        return per_job_us(self.cpu_s, self.ok)

    @property
    def worker_cpu_us_per_job(self) -> float | None:
        """Worker CPU microseconds per OK response of the window."""
        return per_job_us(self.worker_cpu_s, self.ok)


def per_job_us(seconds: float | None, jobs: int) -> float | None:
    return None if seconds is None or jobs <= 0 else seconds * 1e6 / jobs


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 when there are none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


WRK_SCRIPT = """\
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/json"
  expect = args[2] ~= "" and args[2] or nil
  limit = tonumber(args[3])
  if args[4] ~= nil and args[4] ~= "" then wrk.headers["Authorization"] = args[4] end
  ok, bad = 0, 0
end

function response(status, headers, body)
  if status == 200 and (expect == nil or string.find(body, expect, 1, true)) then
    ok = ok + 1
  else
    bad = bad + 1
  end
  if ok + bad >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local good, failed = 0, 0
  for _, thread in ipairs(threads) do
    good = good + thread:get("ok")
    failed = failed + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"ok": %d, "bad": %d, "socket_errors": %d, "duration_us": %.1f, '
      .. '"p50_us": %.1f, "p99_us": %.1f}\\n',
    good, failed, e.connect + e.read + e.write + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(
    wrk: str,
    target: Target,
    plan: Plan,
    settle: Callable[[], None] | None = None,
    started: Callable[[], None] | None = None,
) -> LoadResult:
    """A warm-up ``wrk`` run, discarded, then the measured one (one thread, so it leaves the
    most CPU to the server). wrk takes whole seconds, so the times are rounded.

    ``settle`` runs between the two: the warm-up's last requests are cut off, and a server
    that keeps working on them (a job queue does) should be let finish first. ``started``
    runs right before the measured run (after ``settle``), e.g. to read CPU counters."""
    url = f"http://{target.host}:{target.port}{target.path}"
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        extra = [
            target.body.decode(),
            (target.expect or b"").decode(),
            str(plan.max_requests),
            target.authorization or "",
        ]

        def wrk_run(seconds: float) -> dict[str, float]:
            argv = [
                wrk,
                "-t1",
                f"-c{plan.connections}",
                f"-d{max(1, round(seconds))}s",
                f"--timeout={max(1, round(plan.timeout))}s",
                "-s",
                str(script),
                url,
                "--",
                *extra,
            ]
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=seconds + plan.timeout + 30
            )
            for line in done.stdout.splitlines():
                if line.startswith("WRK_RESULT "):
                    parsed: dict[str, float] = json.loads(line.removeprefix("WRK_RESULT "))
                    return parsed
            raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr}")

        if plan.warmup > 0:
            wrk_run(plan.warmup)
            if settle is not None:
                settle()
        if started is not None:
            started()
        out = wrk_run(plan.duration)
    if out["ok"] + out["bad"] >= plan.max_requests:
        print("wrk: request cap reached; req/s is a lower bound", file=sys.stderr)
    return LoadResult(
        ok=int(out["ok"]),
        errors=int(out["bad"] + out["socket_errors"]),
        seconds=out["duration_us"] / 1e6,
        p50_ms=out["p50_us"] / 1000,
        p99_ms=out["p99_us"] / 1000,
    )


@dataclass(eq=False)
class _Run:
    """State shared by every connection of one asyncio run."""

    target: Target
    plan: Plan
    request: bytes
    measure_from: float = math.inf
    running: bool = True
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    connections: set[_Connection] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def failed(self) -> None:
        if perf_counter() >= self.measure_from:
            self.errors += 1

    def stop(self, timeout: float) -> None:
        """Close every connection; requests in flight for ``timeout`` seconds count as failed."""
        self.running = False
        now = perf_counter()
        for conn in list(self.connections):
            if conn.in_flight and now - conn.started >= timeout:
                self.errors += 1
            if conn.transport is not None:
                conn.transport.abort()
        for task in list(self.tasks):
            task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running:
            try:
                await loop.create_connection(
                    lambda: _Connection(self), self.target.host, self.target.port
                )
                return
            except OSError:
                self.failed()
                await asyncio.sleep(0.05)


class HttpLoop(asyncio.Protocol):
    """One keep-alive connection in a closed loop: write a request, read its answer by its
    Content-Length, repeat. Subclasses say what to send next (:meth:`request`) and what an
    answer (:meth:`answered`) or an unreadable one (:meth:`malformed`) means."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.need = -1
        self.body_at = 0
        self.status = 0
        self.started = 0.0
        self.in_flight = False

    def request(self) -> bytes | None:
        """The next request to send; None closes the connection."""
        raise NotImplementedError

    def answered(self, now: float) -> None:
        """An answer arrived at ``now``: ``status``, its body ``buffer[body_at:need]``."""
        raise NotImplementedError

    def malformed(self) -> None:
        """An answer that is not HTTP/1.1 with a Content-Length: abort the connection."""
        self.in_flight = False
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        request = self.request()
        if request is None:
            self.transport.close()
            return
        self.in_flight = True
        self.started = perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if at < 0 or not head.startswith(b"http/1.1 "):
                self.malformed()
                return
            stop = head.find(b"\r\n", at + 2)
            self.status = int(head[9:12])
            self.body_at = end + 4
            self.need = self.body_at + int(head[at + 17 : stop if stop > 0 else len(head)])
        if len(buf) < self.need:
            return
        now = perf_counter()
        self.in_flight = False
        self.answered(now)
        del buf[: self.need]
        self.need = -1
        self.send()


class _Connection(HttpLoop):
    """A connection of a timed run: the same request until the run stops."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.run.connections.add(self)
        super().connection_made(transport)

    def request(self) -> bytes | None:
        return self.run.request if self.run.running else None

    def answered(self, now: float) -> None:
        run = self.run
        if now < run.measure_from:
            return
        expect = run.target.expect
        if self.status == 200 and (
            expect is None or self.buffer.find(expect, self.body_at, self.need) >= 0
        ):
            run.ok += 1
        else:
            run.errors += 1
        run.latencies.append(now - self.started)
        if run.ok + run.errors >= run.plan.max_requests:
            run.finished.set()

    def malformed(self) -> None:
        self.run.failed()
        super().malformed()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        run.connections.discard(self)
        if run.running:
            if self.in_flight:
                run.failed()
            run.spawn(run.connect())


async def _drive(
    target: Target, plan: Plan, started: Callable[[], None] | None = None
) -> LoadResult:
    request = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(target.body)}\r\n"
        + (f"Authorization: {target.authorization}\r\n" if target.authorization else "")
        + "\r\n"
    ).encode() + target.body
    run = _Run(target, plan, request)
    try:
        for _ in range(plan.connections):
            run.spawn(run.connect())
        await asyncio.sleep(plan.warmup)
        if started is not None:
            started()
        run.measure_from = start = perf_counter()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.finished.wait(), plan.duration)
        end = perf_counter()
    finally:
        run.stop(plan.timeout)
    await asyncio.sleep(0)
    ordered = sorted(run.latencies)
    return LoadResult(
        ok=run.ok,
        errors=run.errors,
        seconds=end - start,
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
    )


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_asyncio(
    target: Target,
    plan: Plan,
    settle: Callable[[], None] | None = None,
    started: Callable[[], None] | None = None,
) -> LoadResult:
    """The built-in generator, on uvloop when it is installed. ``settle`` is not called:
    warm-up and measurement are one unbroken run, so nothing is cut off in between.
    ``started`` runs on the load's event loop as the measured window opens: keep it short."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_drive(target, plan, started))


class Load(Protocol):
    """:func:`run_wrk` (its path bound) or :func:`run_asyncio`."""

    def __call__(
        self,
        target: Target,
        plan: Plan,
        settle: Callable[[], None] | None = None,
        started: Callable[[], None] | None = None,
    ) -> LoadResult: ...


def add_load_arguments(parser: argparse.ArgumentParser, duration: float = 10.0) -> None:
    """The options every benchmark shares: how long, how hard, which generator, where to."""
    parser.add_argument("--duration", type=float, default=duration, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "asyncio"],
        default="auto",
        help="load generator; auto picks wrk when it is on PATH",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure everything this many times, interleaved, and report the median run "
        "(default: %(default)s; use 3 or more on a busy machine)",
    )
    parser.add_argument("--startup-timeout", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")


def check_load_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse impossible values of :func:`add_load_arguments`' options; pick the generator
    (``args.load``, described by ``args.generator_name``)."""
    if args.duration <= 0 or args.warmup < 0 or args.connections < 1:
        parser.error("--duration and --connections must be positive, --warmup not negative")
    if args.startup_timeout <= 0:
        parser.error("--startup-timeout must be positive")
    if not 1 <= args.rounds <= 100:
        parser.error("--rounds must be between 1 and 100")
    wrk = shutil.which("wrk") if args.generator != "asyncio" else None
    if args.generator == "wrk" and wrk is None:
        parser.error("--generator wrk: wrk is not on PATH")
    if wrk is None:
        args.generator_name, args.load = "asyncio", run_asyncio
    else:
        args.generator_name, args.load = f"wrk ({wrk})", functools.partial(run_wrk, wrk)


def describe(generator: str, plan: Plan) -> str:
    """One line on how the load is made and on what machine."""
    return (
        f"generator: {generator}; {plan.connections} connections, {plan.warmup:g}s warm-up, "
        f"{plan.duration:g}s measured; python {platform.python_version()}, "
        f"{os.cpu_count()} cores"
    )


def median_run(runs: list[LoadResult]) -> LoadResult:
    """Of repeated runs, the one with the median req/s (the lower middle one for an even
    count), so the latencies reported go with the throughput reported."""
    ordered = sorted(runs, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def spread(runs: list[LoadResult]) -> str:
    """The range of req/s over repeated runs, for a table cell ("" for one run)."""
    if len(runs) < 2:
        return ""
    rates = [r.rps for r in runs]
    return f"{min(rates):.0f}-{max(rates):.0f}"


def result_json(result: LoadResult) -> dict[str, Any]:
    """A result for a JSON report, with its requests per second."""
    return {
        "ok": result.ok,
        "errors": result.errors,
        "seconds": result.seconds,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "rps": result.rps,
        "cpu_us_per_job": result.cpu_us_per_job,
        "worker_cpu_us_per_job": result.worker_cpu_us_per_job,
    }
