"""Remote-worker benchmark: what does moving the model out of the API server cost?

    python bench/remote.py --duration 10
    python bench/remote.py --models default --processes 1

Two echo models: ``batched``, batches of up to 32 (``bench/models/echo32.py``:
``examples/echo``'s model with ``max_batch_size = 32``), and ``default``, the model as a new
user writes it with no batching attribute (``bench/models/echo_default.py``: one input per
call, one call at a time). Each is served embedded (``modelport serve MODEL``) and remote (an
API server with no local model, ``--worker-token``, and ``modelport worker MODEL --processes
N`` for each N in ``--processes``), in the same run, under the same closed-loop load (64
keep-alive connections). A remote measurement starts only once all N worker processes are
listed online. Reported: req/s, p50, p99, the CPU time per OK response of the API server's
processes (``cpu us/job``) and of the worker's (``worker us/job``) in the measured window,
from their own counters in /proc, and the ratios remote / embedded of the same model.
Target: remote with one worker process >= 0.8 x embedded throughput, for each model.
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
    CpuWindow,
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

MODELS = {"batched": "bench/models/echo32.py", "default": "bench/models/echo_default.py"}
ENDPOINT = "echo"
PATH = f"/endpoints/{ENDPOINT}/jobs"
BODY = b'{"input": {"text": "hello"}}'
EXPECT = b'"status":"succeeded"'
BASELINE = "embedded"
TARGET = 0.8
MAX_PROCESSES = 64


def system_name(processes: int, model: str = "batched") -> str:
    """``embedded``, ``remote-2p``; ``embedded-default``, ``remote-default-2p``."""
    suffix = "" if model == "batched" else f"-{model}"
    return f"{BASELINE}{suffix}" if processes == 0 else f"remote{suffix}-{processes}p"


def measure(
    processes: int, model: str, scratch: Path, plan: Plan, args: argparse.Namespace
) -> tuple[LoadResult, dict[str, Any]]:
    """Embedded (``processes`` 0) or a server and a worker with ``processes`` processes, serving
    ``MODELS[model]``; returns the load's result and the endpoint's limits as served."""
    port = free_port()
    target_file = MODELS[model]
    db = Path(tempfile.mkdtemp(dir=scratch)) / f"{system_name(processes, model)}.db"
    store = f"sqlite:///{db}"
    timeout = args.startup_timeout
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile(dir=scratch))
        if processes == 0:
            command = serve_command(port, store, target_file)
        else:
            command = serve_command(port, store, worker_token=WORKER_TOKEN)
        name = system_name(processes, model)
        server = stack.enter_context(Server(name, command, port, log))
        worker: Process | None = None
        try:
            server.wait_ready("/health/ready", timeout)
            if processes > 0:
                worker = Process("worker", worker_command(port, target_file, processes), log)
                stack.enter_context(worker)
                server.wait_workers(ENDPOINT, processes, timeout, worker)
            _, endpoint = get_json(port, f"/endpoints/{ENDPOINT}", 5.0)
            limits: dict[str, Any] = endpoint["limits"]
            check_call(port, PATH, BODY, EXPECT, timeout)
        except (StartError, OSError, HTTPException, ValueError, KeyError, TypeError) as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        window = CpuWindow(server) if worker is None else CpuWindow(server, worker)
        try:
            target = Target(HOST, port, PATH, BODY, EXPECT)
            load: Load = args.load
            settle = server.settler(ENDPOINT, timeout)
            result = load(target, plan, settle=settle, started=window.start)
        except (RuntimeError, OSError, subprocess.SubprocessError, HTTPException) as e:
            raise LoadError(f"{e}\n{log_tail(log)}") from None
        window.stop()
        used = window.used
        result = dataclasses.replace(
            result, cpu_s=used[0], worker_cpu_s=used[1] if len(used) > 1 else None
        )
        return result, limits


def ratios(results: dict[str, LoadResult]) -> dict[str, dict[str, float | None]]:
    """Throughput and latency of each remote system relative to embedded, same model."""
    out: dict[str, dict[str, float | None]] = {}
    for model in MODELS:
        base_name = system_name(0, model)
        base = results.get(base_name)
        if base is None:
            continue
        remote = {system_name(n, model) for n in range(1, MAX_PROCESSES + 1)}
        for name, r in results.items():
            if name in remote:
                out[f"{name} / {base_name}"] = {
                    "throughput": ratio(r.rps, base.rps),
                    "p50": ratio(r.p50_ms, base.p50_ms),
                    "p99": ratio(r.p99_ms, base.p99_ms),
                }
    return out


def target_rows(results: dict[str, LoadResult]) -> dict[str, bool]:
    """For each model measured both ways: whether remote with one process met the target."""
    out = {}
    for label, row in ratios(results).items():
        one = label.split(" / ")[0]
        if one.endswith("-1p") and row["throughput"] is not None:
            out[label] = row["throughput"] >= TARGET
    return out


def report(
    runs: dict[str, list[LoadResult]], failed: dict[str, BenchError], names: list[str]
) -> str:
    results = {name: median_run(r) for name, r in runs.items() if r}
    many = any(len(r) > 1 for r in runs.values())
    lines = [
        f"{'system':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
        f"{'cpu us/job':>12}{'worker us/job':>15}" + (f"{'req/s range':>14}" if many else "")
    ]
    for name in names:
        if name in results:
            r = results[name]
            lines.append(
                f"{name:<20}{r.rps:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.errors:>8}"
                f"{fmt(r.cpu_us_per_job, '.0f'):>12}{fmt(r.worker_cpu_us_per_job, '.0f'):>15}"
                + (f"{spread(runs[name]):>14}" if many else "")
            )
        if name in failed:
            lines.append(f"{name:<20}{failed[name].stage:>40}")
    rows = ratios(results)
    verdicts = target_rows(results)
    if rows:
        lines += ["", f"{'ratio':<40}{'throughput':>12}{'p50':>8}{'p99':>8}{'target':>8}"]
        for label, row in rows.items():
            verdict = "" if label not in verdicts else "met" if verdicts[label] else "missed"
            lines.append(
                f"{label:<40}{fmt(row['throughput']):>12}{fmt(row['p50']):>8}"
                f"{fmt(row['p99']):>8}{verdict:>8}".rstrip()
            )
        lines.append(f"target: remote with 1 worker process throughput >= {TARGET:g} x embedded")
    lines.append(
        "cpu us/job, worker us/job: CPU time of the API server's / the worker's processes in "
        "the measured window / OK responses"
    )
    if many:
        lines.append("each row is the median run by req/s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the echo model served embedded against remote workers."
    )
    add_load_arguments(parser)
    parser.add_argument(
        "--models",
        metavar="NAME[,NAME]",
        default=",".join(MODELS),
        help=f"echo models to measure, from: {', '.join(MODELS)} (default: %(default)s)",
    )
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
    if not all(1 <= n <= MAX_PROCESSES for n in args.processes):
        parser.error(f"--processes: counts must be between 1 and {MAX_PROCESSES}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown or not args.models:
        parser.error(f"--models: choose from {', '.join(MODELS)}")
    args.models = [m for m in MODELS if m in args.models]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    print(describe(args.generator_name, plan), file=sys.stderr)
    cases = [(n, model) for model in args.models for n in [0, *args.processes]]
    names = [system_name(n, model) for n, model in cases]
    runs: dict[str, list[LoadResult]] = {name: [] for name in names}
    failed: dict[str, BenchError] = {}
    limits: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for (n, model), name in zip(cases, names, strict=True):
                label = f"round {round_}/{args.rounds}: {name}" if args.rounds > 1 else name
                print(f"{label}: running", file=sys.stderr, flush=True)
                try:
                    result, served = measure(n, model, Path(tmp), plan, args)
                    runs[name].append(result)
                    limits[model] = served
                except BenchError as e:
                    failed[name] = e
                    print(f"{label}: {e.stage}: {e}", file=sys.stderr)
    for model, served in limits.items():
        print(
            f"{model} echo served with max_batch_size {served.get('max_batch_size')}, "
            f"max_batch_wait {served.get('max_batch_wait')}"
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
    missed = [label for label, met in target_rows(results).items() if not met]
    for label in missed:
        print(f"target missed: {label}", file=sys.stderr)
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
