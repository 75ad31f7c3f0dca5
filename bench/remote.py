"""Remote-worker benchmark: what does moving the model out of the API server cost?

    python bench/remote.py --duration 10

The echo model with batches of up to 32 (``bench/models/echo32.py``: ``examples/echo``'s
model with ``max_batch_size = 32``) is served embedded (``modelport serve
bench/models/echo32.py``) and remote (an API server with no local model, ``--worker-token``,
and ``modelport worker bench/models/echo32.py --processes N`` for each N in
``--processes``), in the same run, under the same closed-loop
load (64 keep-alive connections). A remote measurement starts only once all N worker
processes are listed online. Reported: req/s, p50, p99 and the ratios remote / embedded.
Target: remote with one worker process >= 0.8 x embedded throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
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
    WORKER_TOKEN,
    BenchError,
    LoadError,
    Process,
    Server,
    StartError,
    check_call,
    exit_on_signals,
    fmt,
    free_port,
    get_json,
    log_tail,
    ratio,
    serve_command,
    worker_command,
)

MODEL = "bench/models/echo32.py"
ENDPOINT = "echo"
PATH = f"/endpoints/{ENDPOINT}/jobs"
BODY = b'{"input": {"text": "hello"}}'
EXPECT = b'"status":"succeeded"'
BASELINE = "embedded"
TARGET = 0.8


def system_name(processes: int) -> str:
    return BASELINE if processes == 0 else f"remote-{processes}p"


def measure(
    processes: int, scratch: Path, plan: Plan, args: argparse.Namespace
) -> tuple[LoadResult, dict[str, Any]]:
    """Embedded (``processes`` 0) or a server and a worker with ``processes`` processes;
    returns the load's result and the endpoint's limits as served."""
    port = free_port()
    db = Path(tempfile.mkdtemp(dir=scratch)) / f"{system_name(processes)}.db"
    store = f"sqlite:///{db}"
    timeout = args.startup_timeout
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile(dir=scratch))
        if processes == 0:
            command = serve_command(port, store, MODEL)
        else:
            command = serve_command(port, store, worker_token=WORKER_TOKEN)
        server = stack.enter_context(Server(system_name(processes), command, port, log))
        try:
            server.wait_ready("/health/ready", timeout)
            if processes > 0:
                worker = Process("worker", worker_command(port, MODEL, processes), log)
                stack.enter_context(worker)
                server.wait_workers(ENDPOINT, processes, timeout, worker)
            _, endpoint = get_json(port, f"/endpoints/{ENDPOINT}", 5.0)
            limits: dict[str, Any] = endpoint["limits"]
            check_call(port, PATH, BODY, EXPECT, timeout)
        except (StartError, OSError, HTTPException, ValueError, KeyError, TypeError) as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        try:
            target = Target(HOST, port, PATH, BODY, EXPECT)
            load: Load = args.load
            result = load(target, plan, settle=server.settler(ENDPOINT, timeout))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            raise LoadError(f"{e}\n{log_tail(log)}") from None
        return result, limits


def ratios(results: dict[str, LoadResult]) -> dict[str, dict[str, float | None]]:
    """Throughput and latency of each remote system relative to embedded."""
    base = results.get(BASELINE)
    if base is None:
        return {}
    return {
        f"{name} / {BASELINE}": {
            "throughput": ratio(r.rps, base.rps),
            "p50": ratio(r.p50_ms, base.p50_ms),
            "p99": ratio(r.p99_ms, base.p99_ms),
        }
        for name, r in results.items()
        if name != BASELINE
    }


def report(
    runs: dict[str, list[LoadResult]], failed: dict[str, BenchError], names: list[str]
) -> str:
    results = {name: median_run(r) for name, r in runs.items() if r}
    many = any(len(r) > 1 for r in runs.values())
    lines = [
        f"{'system':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>10}"
        + (f"{'req/s range':>16}" if many else "")
    ]
    for name in names:
        if name in results:
            r = results[name]
            lines.append(
                f"{name:<14}{r.rps:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>10}"
                + (f"{spread(runs[name]):>16}" if many else "")
            )
        if name in failed:
            lines.append(f"{name:<14}{failed[name].stage:>40}")
    rows = ratios(results)
    if rows:
        lines += ["", f"{'ratio':<26}{'throughput':>12}{'p50':>8}{'p99':>8}{'target':>8}"]
        for label, row in rows.items():
            verdict = ""
            if label.startswith(f"{system_name(1)} ") and row["throughput"] is not None:
                verdict = "met" if row["throughput"] >= TARGET else "missed"
            lines.append(
                f"{label:<26}{fmt(row['throughput']):>12}{fmt(row['p50']):>8}"
                f"{fmt(row['p99']):>8}{verdict:>8}"
            )
        lines.append(f"target: {system_name(1)} throughput >= {TARGET:g} x {BASELINE}")
    if many:
        lines.append("each row is the median run by req/s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the echo model served embedded against remote workers."
    )
    add_load_arguments(parser)
    parser.add_argument(
        "--processes",
        metavar="N[,N]",
        default="1,2",
        help="worker process counts for the remote runs (default: %(default)s)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 also when the target is missed"
    )
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    try:
        args.processes = sorted({int(n) for n in args.processes.split(",") if n.strip()})
    except ValueError:
        parser.error("--processes: give process counts, e.g. 1,2")
    if not all(1 <= n <= 64 for n in args.processes):
        parser.error("--processes: counts must be between 1 and 64")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    print(describe(args.generator_name, plan), file=sys.stderr)
    counts = [0, *args.processes]
    names = [system_name(n) for n in counts]
    runs: dict[str, list[LoadResult]] = {name: [] for name in names}
    failed: dict[str, BenchError] = {}
    limits: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for n, name in zip(counts, names, strict=True):
                label = f"round {round_}/{args.rounds}: {name}" if args.rounds > 1 else name
                print(f"{label}: running", file=sys.stderr, flush=True)
                try:
                    result, limits = measure(n, Path(tmp), plan, args)
                    runs[name].append(result)
                except BenchError as e:
                    failed[name] = e
                    print(f"{label}: {e.stage}: {e}", file=sys.stderr)
    if limits:
        print(
            f"echo served with max_batch_size {limits.get('max_batch_size')}, "
            f"max_batch_wait {limits.get('max_batch_wait')}"
        )
    print(report(runs, failed, names))
    results = {name: median_run(r) for name, r in runs.items() if r}
    if args.json:
        document: dict[str, Any] = {
            "generator": args.generator_name,
            "plan": asdict(plan),
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "limits": limits,
            "rounds": args.rounds,
            "results": {name: result_json(r) for name, r in results.items()},
            "runs": {name: [result_json(r) for r in rs] for name, rs in runs.items()},
            "failed": {name: f"{e.stage}: {e}" for name, e in failed.items()},
            "ratios": ratios(results),
            "target": TARGET,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    base, one = results.get(BASELINE), results.get(system_name(1))
    missed = one is not None and base is not None and one.rps < TARGET * base.rps
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
