"""Overhead benchmark: modelport against plain FastAPI and LitServe, all serving the echo model.

    python bench/overhead.py --duration 10

Each system runs in its own process group on a free loopback port and gets the same closed-loop
load (64 keep-alive connections, --warmup seconds discarded, then --duration seconds measured)
from ``wrk`` when it is on PATH, else from the asyncio generator in this process.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from _load import LoadResult, Plan, Target, run_asyncio, run_wrk
from _servers import (
    HOST,
    ROOT,
    BenchError,
    LoadError,
    Server,
    StartError,
    free_port,
    http_call,
    log_tail,
)

APPS = ROOT / "bench" / "apps"
BODY = b'{"input": {"text": "hello"}}'
BASELINE = "fastapi-def"


@dataclass(frozen=True)
class System:
    """A server to measure: its command line (given a port and a scratch directory), its
    readiness route and its echo route."""

    name: str
    command: Callable[[int, Path], list[str]]
    ready_path: str
    path: str
    expect: bytes | None = None
    keys: bool = False
    """Run with ``--auth keys``, every request carrying a client key."""


def _modelport(port: int, tmp: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "modelport",
        "serve",
        "examples/echo/model.py",
        "--port",
        str(port),
        "--store",
        f"sqlite:///{tmp}/{'keys' if extra else 'bench'}.db",
        "--log-level",
        "warning",
        *extra,
    ]


SYSTEMS = (
    System(
        "fastapi-def",
        lambda port, _: [sys.executable, str(APPS / "plain_fastapi.py"), f"--port={port}"],
        "/health",
        "/predict",
    ),
    System(
        "fastapi-async",
        lambda port, _: [
            sys.executable,
            str(APPS / "plain_fastapi.py"),
            f"--port={port}",
            "--handler=async",
        ],
        "/health",
        "/predict",
    ),
    System(
        "litserve",
        lambda port, _: [sys.executable, str(APPS / "litserve_echo.py"), f"--port={port}"],
        "/health",
        "/predict",
    ),
    System(
        "modelport",
        lambda port, tmp: _modelport(port, tmp),
        "/health/ready",
        "/endpoints/echo/jobs",
        b'"status":"succeeded"',
    ),
    System(
        "modelport-keys",
        lambda port, tmp: _modelport(port, tmp, "--auth", "keys"),
        "/health/ready",
        "/endpoints/echo/jobs",
        b'"status":"succeeded"',
        keys=True,
    ),
)
NAMES = [s.name for s in SYSTEMS]


def client_key(scratch: Path) -> str:
    """A new client key in the store of the ``--auth keys`` run (made by the CLI)."""
    made = subprocess.run(
        [
            *(sys.executable, "-m", "modelport", "keys", "create", "--scope", "client"),
            *("--name", "bench", "--store", f"sqlite:///{scratch}/keys.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if made.returncode != 0:
        raise StartError(f"modelport keys create failed: {made.stderr}")
    return made.stdout.strip()


def check_echo(system: System, port: int, timeout: float, key: str | None) -> None:
    """One echo request must answer before the load starts."""
    headers = {"authorization": f"Bearer {key}"} if key else None
    try:
        status, body = http_call(port, "POST", system.path, BODY, timeout, headers=headers)
    except (OSError, http.client.HTTPException) as e:
        raise StartError(f"echo request failed: {e}") from None
    if status != 200 or (system.expect is not None and system.expect not in body):
        raise StartError(f"echo request answered {status}: {body[:300]!r}")


def measure(
    system: System,
    scratch: Path,
    plan: Plan,
    load: Callable[[Target, Plan], LoadResult],
    startup_timeout: float,
) -> LoadResult:
    """Start the system, wait until it serves, load it, stop it."""
    port = free_port()
    key = client_key(scratch) if system.keys else None
    with (
        tempfile.TemporaryFile(dir=scratch) as log,
        Server(system.name, system.command(port, scratch), port, log) as server,
    ):
        try:
            server.wait_ready(system.ready_path, startup_timeout)
            check_echo(system, port, startup_timeout, key)
        except StartError as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        auth = f"Bearer {key}" if key else None
        target = Target(HOST, server.port, system.path, BODY, system.expect, auth)
        try:
            return load(target, plan)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            raise LoadError(f"{e}\n{log_tail(log)}") from None


def ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def ratios(results: dict[str, LoadResult]) -> dict[str, dict[str, float | None]]:
    """Throughput and p99 of each system relative to the plain FastAPI ``def`` baseline."""
    base = results.get(BASELINE)
    rows = {}
    if base is not None:
        rows = {
            f"{name} / {BASELINE}": {
                "throughput": ratio(results[name].rps, base.rps),
                "p99": ratio(results[name].p99_ms, base.p99_ms),
            }
            for name in ("modelport", "fastapi-async", "litserve")
            if name in results
        }
    keyed, plain = results.get("modelport-keys"), results.get("modelport")
    if keyed is not None and plain is not None:  # what --auth keys costs
        rows["modelport-keys / modelport"] = {
            "throughput": ratio(keyed.rps, plain.rps),
            "p99": ratio(keyed.p99_ms, plain.p99_ms),
        }
    return rows


def report(results: dict[str, LoadResult], failed: dict[str, BenchError]) -> str:
    lines = [f"{'system':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>10}"]
    for name in NAMES:
        if name in results:
            r = results[name]
            lines.append(
                f"{name:<16}{r.rps:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>10}"
            )
        elif name in failed:
            lines.append(f"{name:<16}{failed[name].stage:>40}")
    rows = ratios(results)
    if rows:
        lines += ["", f"{'ratio':<32}{'throughput':>12}{'p99':>10}"]
        for label, row in rows.items():
            cells = "".join(
                f"{'n/a' if v is None else f'{v:.2f}':>{w}}"
                for v, w in ((row["throughput"], 12), (row["p99"], 10))
            )
            lines.append(f"{label:<32}{cells}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure modelport's overhead against plain FastAPI and LitServe."
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"systems to run, from: {', '.join(NAMES)}"
    )
    parser.add_argument(
        "--generator",
        choices=["auto", "wrk", "asyncio"],
        default="auto",
        help="load generator; auto picks wrk when it is on PATH",
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument(
        "--auth",
        choices=["none", "keys"],
        default="none",
        help="keys: also run modelport with --auth keys (a client key on every request) and "
        "report its throughput against the run without",
    )
    args = parser.parse_args(argv)
    if args.only:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(args.only) - set(NAMES))
        if unknown:
            parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    else:
        args.only = [n for n in NAMES if n != "modelport-keys"]
    if args.auth == "keys":
        args.only += [n for n in ("modelport", "modelport-keys") if n not in args.only]
    if args.duration <= 0 or args.warmup < 0 or args.connections < 1:
        parser.error("--duration and --connections must be positive, --warmup not negative")
    wrk = shutil.which("wrk")
    if args.generator == "wrk" and wrk is None:
        parser.error("--generator wrk: wrk is not on PATH")
    args.wrk = wrk if args.generator != "asyncio" else None
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    wrk: str | None = args.wrk
    load: Callable[[Target, Plan], LoadResult]
    if wrk is None:
        generator, load = "asyncio", run_asyncio
    else:
        generator, load = f"wrk ({wrk})", lambda target, p: run_wrk(wrk, target, p)
    print(
        f"generator: {generator}; {plan.connections} connections, {plan.warmup:g}s warm-up, "
        f"{plan.duration:g}s measured; python {platform.python_version()}, "
        f"{os.cpu_count()} cores",
        file=sys.stderr,
    )
    results: dict[str, LoadResult] = {}
    failed: dict[str, BenchError] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for system in (s for s in SYSTEMS if s.name in args.only):
            print(f"{system.name}: running", file=sys.stderr, flush=True)
            try:
                results[system.name] = measure(system, Path(tmp), plan, load, args.startup_timeout)
            except BenchError as e:
                failed[system.name] = e
                print(f"{system.name}: {e.stage}: {e}", file=sys.stderr)
    print(report(results, failed))
    if args.json:
        document: dict[str, Any] = {
            "generator": generator,
            "plan": asdict(plan),
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "results": {name: {**asdict(r), "rps": r.rps} for name, r in results.items()},
            "failed": {name: f"{e.stage}: {e}" for name, e in failed.items()},
            "ratios": ratios(results),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
