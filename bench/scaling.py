"""Scaling benchmark: does throughput grow with the number of remote worker processes?

    python bench/scaling.py --duration 10

The model (``bench/models/sleepy.py``) takes a fixed 50 ms per job and no CPU, one job per
batch, so N worker processes can finish at most N x 20 jobs a second. For each N in
``--workers`` (default 1, 2, 4, 8, 16) a fresh API server with no local model is started
(``modelport serve --worker-token``), then ``modelport worker --processes N``; the load starts
only once all N processes are listed online by ``GET /endpoints/sleepy``. The closed-loop
load (64 keep-alive connections) keeps every worker busy. Reported: req/s per N and its
fraction of N x the one-worker req/s. Target: 16 workers >= 0.9 x 16 x one worker.
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
    log_tail,
    ratio,
    serve_command,
    worker_command,
)

MODEL = "bench/models/sleepy.py:Sleepy"
ENDPOINT = "sleepy"
PATH = f"/endpoints/{ENDPOINT}/jobs"
BODY = b'{"input": {"n": 7}}'
EXPECT = b'"status":"succeeded"'
TARGET = 0.9
STORES = ("sqlite", "memory")


def measure(workers: int, scratch: Path, plan: Plan, args: argparse.Namespace) -> LoadResult:
    """A fresh server and ``workers`` worker processes; load them once all are online."""
    port = free_port()
    db = Path(tempfile.mkdtemp(dir=scratch)) / f"workers-{workers}.db"
    store = f"sqlite:///{db}" if args.store == "sqlite" else "memory://"
    timeout = args.startup_timeout
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile(dir=scratch))
        command = serve_command(port, store, worker_token=WORKER_TOKEN)
        server = stack.enter_context(Server("server", command, port, log))
        try:
            server.wait_ready("/health/ready", timeout)
            pool = Process(
                f"{workers} workers",
                worker_command(port, MODEL, workers),
                log,
                {"BENCH_SLEEP": str(args.sleep)},
            )
            stack.enter_context(pool)
            server.wait_workers(ENDPOINT, workers, timeout, pool)
            check_call(port, PATH, BODY, EXPECT, timeout)
        except StartError as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        try:
            target = Target(HOST, port, PATH, BODY, EXPECT)
            load: Load = args.load
            return load(target, plan, settle=server.settler(ENDPOINT, timeout))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            raise LoadError(f"{e}\n{log_tail(log)}") from None


def scaling(results: dict[int, LoadResult], sleep: float) -> dict[int, dict[str, float | None]]:
    """Per worker count: req/s per worker, fraction of N x one worker, fraction of ideal."""
    one = results[1].rps if 1 in results else None
    return {
        n: {
            "per_worker": r.rps / n,
            "of_n_x_one": None if one is None else ratio(r.rps, n * one),
            "of_ideal": r.rps / (n / sleep),
        }
        for n, r in sorted(results.items())
    }


def verdict(results: dict[int, LoadResult], sleep: float) -> tuple[int, float | None]:
    """The biggest worker count measured and its fraction of N x one worker."""
    rows = scaling(results, sleep)
    if not rows:
        return 0, None
    biggest = max(rows)
    return biggest, rows[biggest]["of_n_x_one"]


def report(
    runs: dict[int, list[LoadResult]],
    failed: dict[int, BenchError],
    counts: list[int],
    sleep: float,
) -> str:
    results = {n: median_run(r) for n, r in runs.items() if r}
    many = any(len(r) > 1 for r in runs.values())
    lines = [
        f"{'workers':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'per worker':>12}{'of N x 1':>10}{'of ideal':>10}" + (f"{'range':>12}" if many else "")
    ]
    rows = scaling(results, sleep)
    for n in counts:
        if n in results:
            r, row = results[n], rows[n]
            lines.append(
                f"{n:<9}{r.rps:>9.1f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}{r.errors:>8}"
                f"{fmt(row['per_worker'], '.1f'):>12}{fmt(row['of_n_x_one']):>10}"
                f"{fmt(row['of_ideal']):>10}" + (f"{spread(runs[n]):>12}" if many else "")
            )
        if n in failed:
            lines.append(f"{n:<9}{failed[n].stage:>30}")
    biggest, of_n = verdict(results, sleep)
    lines.append("")
    lines.append(f"ideal: {1 / sleep:g} req/s per worker ({sleep * 1000:g} ms a job)")
    if of_n is not None and biggest > 1:
        status = "met" if of_n >= TARGET else "missed"
        lines.append(
            f"target: {biggest} workers >= {TARGET:g} x {biggest} x one worker: "
            f"{of_n:.3f}, {status}"
        )
    if many:
        lines.append("each row is the median run by req/s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure throughput against the number of remote worker processes."
    )
    add_load_arguments(parser)
    parser.add_argument(
        "--workers",
        metavar="N[,N]",
        default="1,2,4,8,16",
        help="worker process counts to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--sleep",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="the model's time per job (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="the API server's job store (default: %(default)s)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 also when the target is missed"
    )
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    try:
        args.workers = sorted({int(n) for n in args.workers.split(",") if n.strip()})
    except ValueError:
        parser.error("--workers: give worker counts, e.g. 1,2,4")
    if not args.workers or not all(1 <= n <= 64 for n in args.workers):
        parser.error("--workers: counts must be between 1 and 64")
    if not 0 < args.sleep <= 10:
        parser.error("--sleep must be positive (and at most 10 s)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    print(f"{describe(args.generator_name, plan)}; store {args.store}", file=sys.stderr)
    runs: dict[int, list[LoadResult]] = {n: [] for n in args.workers}
    failed: dict[int, BenchError] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            prefix = f"round {round_}/{args.rounds}: " if args.rounds > 1 else ""
            for n in args.workers:
                print(f"{prefix}{n} workers: running", file=sys.stderr, flush=True)
                try:
                    runs[n].append(measure(n, Path(tmp), plan, args))
                except BenchError as e:
                    failed[n] = e
                    print(f"{prefix}{n} workers: {e.stage}: {e}", file=sys.stderr)
    print(report(runs, failed, args.workers, args.sleep))
    results = {n: median_run(r) for n, r in runs.items() if r}
    biggest, of_n = verdict(results, args.sleep)
    if args.json:
        document: dict[str, Any] = {
            "generator": args.generator_name,
            "plan": asdict(plan),
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "sleep": args.sleep,
            "store": args.store,
            "rounds": args.rounds,
            "results": {str(n): result_json(r) for n, r in results.items()},
            "runs": {str(n): [result_json(r) for r in rs] for n, rs in runs.items()},
            "failed": {str(n): f"{e.stage}: {e}" for n, e in failed.items()},
            "scaling": {str(n): row for n, row in scaling(results, args.sleep).items()},
            "target": TARGET,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    missed = biggest > 1 and (of_n is None or of_n < TARGET)
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
