"""Adapter benchmark: an HTTP model and a subprocess model, against calling each directly.

    python bench/adapters.py --duration 10 --rounds 3
    python bench/adapters.py --only http-direct,modelport-http --duration 5

``http-direct`` loads a plain uvicorn echo service (``bench/apps/echo_service.py``);
``modelport-http`` loads ``modelport serve --config`` with a ``kind = "http"`` endpoint in
front of that same service (``concurrency`` = the connections). ``program-direct`` loads a
plain uvicorn app handing each request to a free copy of a JSON-lines echo program
(``bench/apps/program_direct.py`` over ``bench/models/echo_lines.py``); ``modelport-subprocess``
loads ``modelport serve --config`` with a ``kind = "subprocess"`` endpoint running the same
program (``--processes`` copies each). modelport runs with its default sqlite store.

Each runs in its own process groups on free loopback ports and gets the same closed-loop load
(``--connections`` keep-alive connections, --warmup seconds discarded, then --duration seconds
measured) from ``wrk`` when it is on PATH, else from the asyncio generator in this process.
Reported: req/s, p50, p99, errors, CPU per job of the loaded server's processes; then each
modelport system's throughput relative to its direct call and the p50 it adds. Targets
(issue 16): modelport adds <= 1 ms p50 and keeps >= 0.8 x the direct throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any

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
PROGRAM = ROOT / "bench" / "models" / "echo_lines.py"
ENDPOINT = "echo"
DIRECT_BODY = b'{"text": "hello"}'
JOB_BODY = b'{"input": {"text": "hello"}}'
SUCCEEDED = b'"status":"succeeded"'
THROUGHPUT_TARGET = 0.8
ADDED_P50_TARGET_MS = 1.0


@dataclass(frozen=True)
class System:
    """A server to load, and the direct call it is compared with (for modelport's)."""

    name: str
    path: str
    body: bytes
    expect: bytes
    baseline: str | None = None


SYSTEMS = (
    System("http-direct", "/predict", DIRECT_BODY, b'"hello"'),
    System("modelport-http", f"/endpoints/{ENDPOINT}/jobs", JOB_BODY, SUCCEEDED, "http-direct"),
    System("program-direct", "/predict", JOB_BODY, b'"hello"'),
    System(
        "modelport-subprocess",
        f"/endpoints/{ENDPOINT}/jobs",
        JOB_BODY,
        SUCCEEDED,
        "program-direct",
    ),
)
NAMES = [s.name for s in SYSTEMS]


def _echo_service(port: int) -> list[str]:
    return [sys.executable, str(APPS / "echo_service.py"), f"--port={port}"]


def _spec(scratch: Path, system: str, upstream_port: int, args: argparse.Namespace) -> Path:
    """The TOML of modelport's endpoint: an HTTP model or a subprocess model."""
    if system == "modelport-http":
        how = (
            'kind = "http"\n'
            f'url = "http://{HOST}:{upstream_port}/predict"\n'
            f"concurrency = {args.concurrency}\n"
        )
    else:
        how = (
            'kind = "subprocess"\n'
            f"command = {json.dumps([sys.executable, str(PROGRAM)])}\n"
            f"processes = {args.processes}\n"
        )
    path = scratch / f"{system}.toml"
    path.write_text(
        f'[endpoint]\nname = "{ENDPOINT}"\n{how}'
        '[inputs]\ntext = { type = "string", required = true }\n'
        '[outputs]\ntext = { type = "string" }\n'
    )
    return path


@contextlib.contextmanager
def started(
    system: System, scratch: Path, log: IO[bytes], args: argparse.Namespace
) -> Iterator[Server]:
    """The system's servers, ready; yields the one to load."""
    timeout = args.startup_timeout
    with contextlib.ExitStack() as stack:
        upstream_port = 0
        if system.name in ("http-direct", "modelport-http"):
            upstream_port = free_port()
            upstream = Server("echo-service", _echo_service(upstream_port), upstream_port, log)
            stack.enter_context(upstream)
            upstream.wait_ready("/health", timeout)
            if system.name == "http-direct":
                yield upstream
                return
        port = free_port()
        if system.name == "program-direct":
            command = [
                sys.executable,
                str(APPS / "program_direct.py"),
                f"--port={port}",
                f"--processes={args.processes}",
            ]
            server = stack.enter_context(Server(system.name, command, port, log))
            server.wait_ready("/health", timeout)
            yield server
            return
        db = Path(tempfile.mkdtemp(dir=scratch)) / "bench.db"
        spec = _spec(scratch, system.name, upstream_port, args)
        command = [*serve_command(port, f"sqlite:///{db}"), "--config", str(spec)]
        server = stack.enter_context(Server(system.name, command, port, log))
        server.wait_ready("/health/ready", timeout)
        server.wait_workers(ENDPOINT, 1, timeout)
        yield server


def measure(system: System, scratch: Path, plan: Plan, args: argparse.Namespace) -> LoadResult:
    """Start the system, wait until it serves, load it, stop it."""
    with (
        tempfile.TemporaryFile(dir=scratch) as log,
        started(system, scratch, log, args) as server,
    ):
        try:
            check_call(server.port, system.path, system.body, system.expect, args.startup_timeout)
        except StartError as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        target = Target(HOST, server.port, system.path, system.body, system.expect)
        window = CpuWindow(server)
        settle = server.settler(ENDPOINT, args.startup_timeout) if system.baseline else None
        load: Load = args.load
        try:
            result = load(target, plan, settle=settle, started=window.start)
        except (RuntimeError, OSError, subprocess.SubprocessError, HTTPException) as e:
            raise LoadError(f"{e}\n{log_tail(log)}") from None
        window.stop()
        return dataclasses.replace(result, cpu_s=window.used[0])


def comparisons(results: dict[str, LoadResult]) -> dict[str, dict[str, Any]]:
    """Each modelport system against its direct call: throughput ratio and p50 added."""
    rows: dict[str, dict[str, Any]] = {}
    for system in SYSTEMS:
        if system.baseline is None:
            continue
        r, base = results.get(system.name), results.get(system.baseline)
        if r is None or base is None:
            continue
        throughput = ratio(r.rps, base.rps)
        added = r.p50_ms - base.p50_ms
        rows[f"{system.name} / {system.baseline}"] = {
            "throughput": throughput,
            "p50_added_ms": added,
            "throughput_met": throughput is not None and throughput >= THROUGHPUT_TARGET,
            "p50_met": added <= ADDED_P50_TARGET_MS,
        }
    return rows


def report(runs: dict[str, list[LoadResult]], failed: dict[str, BenchError]) -> str:
    results = {name: median_run(r) for name, r in runs.items() if r}
    many = any(len(r) > 1 for r in runs.values())
    lines = [
        f"{'system':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'cpu us/job':>12}"
        + (f"{'req/s range':>14}" if many else "")
    ]
    for name in runs:
        if name in results:
            r = results[name]
            lines.append(
                f"{name:<22}{r.rps:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>8}"
                f"{fmt(r.cpu_us_per_job, '.0f'):>12}"
                + (f"{spread(runs[name]):>14}" if many else "")
            )
        if name in failed:
            lines.append(f"{name:<22}{failed[name].stage:>40}")
    rows = comparisons(results)
    if rows:
        lines += ["", f"{'modelport / direct':<40}{'throughput':>12}{'p50 added ms':>14}"]
        for label, row in rows.items():
            verdict = (
                f"  >={THROUGHPUT_TARGET:g}x {'met' if row['throughput_met'] else 'missed'},"
                f" <={ADDED_P50_TARGET_MS:g} ms {'met' if row['p50_met'] else 'missed'}"
            )
            lines.append(
                f"{label:<40}{fmt(row['throughput']):>12}{row['p50_added_ms']:>+14.3f}{verdict}"
            )
    lines.append("cpu us/job: CPU time of the loaded server's processes / OK responses")
    if many:
        lines.append("each row is the median run by req/s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure modelport's HTTP and subprocess models against calling the "
        "service and the program directly: req/s, p50, p99."
    )
    add_load_arguments(parser)
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        metavar="N",
        help="copies of the echo program, direct and in modelport (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="the HTTP model's concurrency (default: --connections)",
    )
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help=f"systems to run, from: {', '.join(NAMES)}"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 also when a target is missed")
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.concurrency is None:
        args.concurrency = args.connections
    elif not 1 <= args.concurrency <= 1024:
        parser.error("--concurrency must be from 1 to 1024")
    if args.only:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(args.only) - set(NAMES))
        if unknown:
            parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    else:
        args.only = NAMES
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    print(describe(args.generator_name, plan), file=sys.stderr)
    systems = [s for s in SYSTEMS if s.name in args.only]
    runs: dict[str, list[LoadResult]] = {s.name: [] for s in systems}
    failed: dict[str, BenchError] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for system in systems:
                label = f"round {round_}/{args.rounds}: {system.name}"
                print(f"{label}: running", file=sys.stderr, flush=True)
                try:
                    runs[system.name].append(measure(system, Path(tmp), plan, args))
                except BenchError as e:
                    failed[system.name] = e
                    print(f"{label}: {e.stage}: {e}", file=sys.stderr)
    print(report(runs, failed))
    results = {name: median_run(r) for name, r in runs.items() if r}
    rows = comparisons(results)
    if args.json:
        document: dict[str, Any] = {
            "generator": args.generator_name,
            "plan": asdict(plan),
            "processes": args.processes,
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "rounds": args.rounds,
            "results": {name: result_json(r) for name, r in results.items()},
            "failed": {name: f"{e.stage}: {e}" for name, e in failed.items()},
            "comparisons": rows,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    missed = [
        label for label, row in rows.items() if not (row["throughput_met"] and row["p50_met"])
    ]
    for label in missed:
        print(f"target missed: {label}", file=sys.stderr)
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
