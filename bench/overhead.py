"""Overhead benchmark: modelport against plain FastAPI and LitServe, all serving the echo model.

    python bench/overhead.py --duration 10 --rounds 3
    python bench/overhead.py --connections 1 --rounds 3

Each system runs in its own process group on a free loopback port and gets the same closed-loop
load (``--connections`` keep-alive connections, --warmup seconds discarded, then --duration
seconds measured) from ``wrk`` when it is on PATH, else from the asyncio generator in this
process. modelport is measured twice, each with its default sqlite store: ``modelport``
serves ``examples/echo`` (``max_batch_size = 64``) and ``modelport-default``
``bench/models/echo_default.py``, the same model as a new user writes it (no batching
attribute: one input per call, one call at a time).

Reported per system: req/s, p50, p99, errors, and ``cpu us/job``: the CPU time the server's
processes used in the measured window (their own counters in /proc), per OK response. Then
the ratios to ``fastapi-def`` and ``fastapi-async``, and at one connection the p50 each system
adds over ``fastapi-async``. Targets (issue 11): ``modelport-default`` >= 2.0 x
``fastapi-def`` throughput with p99 no worse; ``modelport`` >= 1.0 x ``fastapi-async``; at
one connection modelport adds <= 0.3 ms p50 over ``fastapi-async``.

``--auth keys`` also runs ``modelport-keys``: ``modelport`` with ``--auth keys`` and a client
key on every request, and reports its throughput against ``modelport`` (issue 13's target:
at least 0.9 x).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

from _load import (
    Load,
    LoadResult,
    Plan,
    Target,
    add_load_arguments,
    check_load_arguments,
    describe,
    median_run,
    result_json,
    spread,
)
from _servers import (
    HOST,
    ROOT,
    BenchError,
    CpuWindow,
    LoadError,
    Server,
    StartError,
    check_call,
    exit_on_signals,
    fmt,
    free_port,
    log_tail,
    ratio,
    serve_command,
)

APPS = ROOT / "bench" / "apps"


BODY = b'{"input": {"text": "hello"}}'
EXPECT = b'"status":"succeeded"'
BASELINE = "fastapi-def"
ASYNC = "fastapi-async"
ENDPOINT = "echo"


@dataclass(frozen=True)
class System:
    """A server to measure: its command line (given a port and a scratch directory), its
    readiness route and its echo route; ``endpoint`` for a modelport job queue."""

    name: str
    command: Callable[[int, Path], list[str]]
    ready_path: str
    path: str
    expect: bytes | None = None
    endpoint: str | None = None
    keys: bool = False
    """Served with ``--auth keys``; every request carries a client key."""


def _fastapi(handler: str) -> Callable[[int, Path], list[str]]:
    return lambda port, _: [
        sys.executable,
        str(APPS / "plain_fastapi.py"),
        f"--port={port}",
        f"--handler={handler}",
    ]


def _modelport(model: str, *options: str) -> Callable[[int, Path], list[str]]:
    """``modelport serve model`` on its own sqlite file; ``options`` come last (a later
    ``--log-level`` wins over the warnings-only default). With ``--auth keys`` the file is
    the one :func:`client_key` put the key in."""

    def command(port: int, scratch: Path) -> list[str]:
        keyed = "keys" in options
        db = keys_db(scratch) if keyed else Path(tempfile.mkdtemp(dir=scratch)) / "bench.db"
        return [*serve_command(port, f"sqlite:///{db}", model), *options]

    return command


def keys_db(scratch: Path) -> Path:
    return scratch / "keys.db"


def client_key(scratch: Path) -> str:
    """A new client key in the store of the ``--auth keys`` run, made by the CLI."""
    made = subprocess.run(
        [
            *(sys.executable, "-m", "modelport", "keys", "create", "--scope", "client"),
            *("--name", "bench", "--store", f"sqlite:///{keys_db(scratch)}"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if made.returncode != 0:
        raise StartError(f"modelport keys create failed: {made.stderr}")
    return made.stdout.strip()


SYSTEMS = (
    System(BASELINE, _fastapi("def"), "/health", "/predict"),
    System(ASYNC, _fastapi("async"), "/health", "/predict"),
    System(
        "litserve",
        lambda port, _: [sys.executable, str(APPS / "litserve_echo.py"), f"--port={port}"],
        "/health",
        "/predict",
    ),
    System(
        "modelport",
        _modelport("examples/echo/model.py"),
        "/health/ready",
        f"/endpoints/{ENDPOINT}/jobs",
        EXPECT,
        ENDPOINT,
    ),
    System(
        "modelport-logged",
        _modelport("examples/echo/model.py", "--log-level", "info"),
        "/health/ready",
        f"/endpoints/{ENDPOINT}/jobs",
        EXPECT,
        ENDPOINT,
    ),
    System(
        "modelport-default",
        _modelport("bench/models/echo_default.py"),
        "/health/ready",
        f"/endpoints/{ENDPOINT}/jobs",
        EXPECT,
        ENDPOINT,
    ),
    System(
        "modelport-keys",
        _modelport("examples/echo/model.py", "--auth", "keys"),
        "/health/ready",
        f"/endpoints/{ENDPOINT}/jobs",
        EXPECT,
        ENDPOINT,
        keys=True,
    ),
)
"""``modelport-logged`` runs with the default log (the access log on, one line per request,
written to a file); ``modelport`` logs only warnings, as the baselines do."""
NAMES = [s.name for s in SYSTEMS]
MODELPORT = ("modelport", "modelport-default")

# (system, relative to, throughput target, whether its p99 must be no worse)
RATIOS: tuple[tuple[str, str, float | None, bool], ...] = (
    ("modelport-default", BASELINE, 2.0, True),
    ("modelport", BASELINE, None, False),
    (ASYNC, BASELINE, None, False),
    ("litserve", BASELINE, None, False),
    ("modelport", ASYNC, 1.0, False),
    ("modelport-logged", "modelport", None, False),
    ("modelport-keys", "modelport", 0.9, False),
)
ADDED_P50_TARGET_MS = 0.3


def measure(system: System, scratch: Path, plan: Plan, args: argparse.Namespace) -> LoadResult:
    """Start the system, wait until it serves, load it, stop it."""
    port = free_port()
    timeout = args.startup_timeout
    key = client_key(scratch) if system.keys else None
    headers = {"Authorization": f"Bearer {key}"} if key else None
    with (
        tempfile.TemporaryFile(dir=scratch) as log,
        Server(system.name, system.command(port, scratch), port, log, headers=headers) as server,
    ):
        try:
            server.wait_ready(system.ready_path, timeout)
            check_call(port, system.path, BODY, system.expect, timeout, headers)
        except StartError as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        authorization = f"Bearer {key}" if key else None
        target = Target(HOST, server.port, system.path, BODY, system.expect, authorization)
        window = CpuWindow(server)
        settle = None if system.endpoint is None else server.settler(system.endpoint, timeout)
        load: Load = args.load
        try:
            result = load(target, plan, settle=settle, started=window.start)
        except (RuntimeError, OSError, subprocess.SubprocessError, HTTPException) as e:
            raise LoadError(f"{e}\n{log_tail(log)}") from None
        window.stop()
        return dataclasses.replace(result, cpu_s=window.used[0])


def ratios(results: dict[str, LoadResult]) -> dict[str, dict[str, Any]]:
    """Throughput and p99 of the systems relative to ``fastapi-def`` and ``fastapi-async``,
    with the target where the issue sets one (``met`` None without a target)."""
    rows: dict[str, dict[str, Any]] = {}
    for name, base_name, target, p99_no_worse in RATIOS:
        r, base = results.get(name), results.get(base_name)
        if r is None or base is None:
            continue
        throughput, p99 = ratio(r.rps, base.rps), ratio(r.p99_ms, base.p99_ms)
        met = None
        if target is not None and throughput is not None:
            met = throughput >= target and (not p99_no_worse or (p99 is not None and p99 <= 1.0))
        rows[f"{name} / {base_name}"] = {
            "throughput": throughput,
            "p99": p99,
            "target": target,
            "p99_no_worse": p99_no_worse,
            "met": met,
        }
    return rows


def added_p50(results: dict[str, LoadResult]) -> dict[str, float]:
    """Milliseconds of p50 each system adds over ``fastapi-async``."""
    base = results.get(ASYNC)
    if base is None:
        return {}
    return {name: r.p50_ms - base.p50_ms for name, r in results.items() if name != ASYNC}


def report(
    runs: dict[str, list[LoadResult]],
    failed: dict[str, BenchError],
    names: list[str],
    connections: int,
) -> str:
    results = {name: median_run(r) for name, r in runs.items() if r}
    many = any(len(r) > 1 for r in runs.values())
    lines = [
        f"{'system':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'cpu us/job':>12}"
        + (f"{'req/s range':>14}" if many else "")
    ]
    for name in names:
        if name in results:
            r = results[name]
            lines.append(
                f"{name:<20}{r.rps:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>8}"
                f"{fmt(r.cpu_us_per_job, '.0f'):>12}"
                + (f"{spread(runs[name]):>14}" if many else "")
            )
        if name in failed:
            lines.append(f"{name:<20}{failed[name].stage:>40}")
    rows = ratios(results)
    if rows:
        lines += ["", f"{'ratio':<36}{'throughput':>12}{'p99':>8}{'target':>14}"]
        for label, row in rows.items():
            target = ""
            if row["target"] is not None:
                want = f">={row['target']:g}x" + (", p99<=1" if row["p99_no_worse"] else "")
                target = f"{want} {'met' if row['met'] else 'missed'}"
            lines.append(
                f"{label:<36}{fmt(row['throughput']):>12}{fmt(row['p99']):>8}  {target}".rstrip()
            )
    added = added_p50(results)
    if connections == 1 and added:
        lines += ["", f"{'p50 added over ' + ASYNC:<36}{'ms':>12}{'target':>14}"]
        for name in names:
            if name not in added:
                continue
            target = ""
            if name in MODELPORT:
                verdict = "met" if added[name] <= ADDED_P50_TARGET_MS else "missed"
                target = f"<={ADDED_P50_TARGET_MS:g} ms {verdict}"
            lines.append(f"{name:<36}{added[name]:>+12.3f}  {target}".rstrip())
    lines.append(
        "cpu us/job: CPU time of the server's processes in the measured window / OK responses"
    )
    if many:
        lines.append("each row is the median run by req/s")
    return "\n".join(lines)


def missed(results: dict[str, LoadResult], connections: int) -> list[str]:
    """The targets this run missed (the added-p50 one only at one connection)."""
    out = [label for label, row in ratios(results).items() if row["met"] is False]
    if connections == 1:
        out += [
            f"{name} adds {ms:.3f} ms p50"
            for name, ms in added_p50(results).items()
            if name in MODELPORT and ms > ADDED_P50_TARGET_MS
        ]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure modelport's overhead (batched and default echo) against plain "
        "FastAPI and LitServe: req/s, p50, p99 and server CPU per job.",
    )
    add_load_arguments(parser)
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"systems to run, from: {', '.join(NAMES)}"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 also when a target is missed")
    parser.add_argument(
        "--auth",
        choices=["none", "keys"],
        default="none",
        help="keys: also run modelport-keys (--auth keys, a client key on every request) "
        "and report its throughput against modelport",
    )
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    if args.only:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(args.only) - set(NAMES))
        if unknown:
            parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    else:
        args.only = [n for n in NAMES if n != "modelport-keys"]
    if args.auth == "keys":
        args.only += [n for n in ("modelport", "modelport-keys") if n not in args.only]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    print(describe(args.generator_name, plan), file=sys.stderr)
    names = [n for n in NAMES if n in args.only]
    runs: dict[str, list[LoadResult]] = {name: [] for name in names}
    failed: dict[str, BenchError] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for system in (s for s in SYSTEMS if s.name in names):
                label = f"round {round_}/{args.rounds}: {system.name}"
                print(f"{label}: running", file=sys.stderr, flush=True)
                try:
                    runs[system.name].append(measure(system, Path(tmp), plan, args))
                except BenchError as e:
                    failed[system.name] = e
                    print(f"{label}: {e.stage}: {e}", file=sys.stderr)
    print(report(runs, failed, names, args.connections))
    results = {name: median_run(r) for name, r in runs.items() if r}
    if args.json:
        document: dict[str, Any] = {
            "generator": args.generator_name,
            "plan": asdict(plan),
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "rounds": args.rounds,
            "results": {name: result_json(r) for name, r in results.items()},
            "runs": {name: [result_json(r) for r in rs] for name, rs in runs.items()},
            "failed": {name: f"{e.stage}: {e}" for name, e in failed.items()},
            "ratios": ratios(results),
            "p50_added_over_fastapi_async_ms": added_p50(results),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    for miss in missed(results, args.connections):
        print(f"target missed: {miss}", file=sys.stderr)
    return 1 if failed or (args.check and missed(results, args.connections)) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
