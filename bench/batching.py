"""Batching benchmark: does modelport pass a model's batching gain on to its clients?

    python bench/batching.py --duration 10

The model (``bench/models/matmul.py``) costs about ``a + b * n`` for a batch of n: a fixed
matrix product per call plus a small one per item. First its own gain is measured in this
process, calling ``predict_batch`` directly with batches of 1 and of ``--batch-size``
(items/s). Then it is served with ``max_batch_size`` 1 and ``--batch-size``, embedded
(``modelport serve``) and remote (an API server with no local model and one ``modelport
worker`` process), each under the same closed-loop load (64 keep-alive connections), and
the gain through modelport (req/s at the big batch size over req/s at 1) is compared with
the model's own gain. Target: modelport's gain >= 0.9 x the model's.

The model gets one BLAS thread everywhere, so it keeps to one core wherever it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from http.client import HTTPException
from pathlib import Path
from time import perf_counter
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

MODEL = "bench/models/matmul.py:MatMul"
ENDPOINT = "matmul"
PATH = f"/endpoints/{ENDPOINT}/jobs"
INPUT = {"x": [round(0.1 * i - 0.8, 1) for i in range(16)]}
BODY = json.dumps({"input": INPUT}).encode()
EXPECT = b'"status":"succeeded"'
MODES = ("embedded", "remote")
TARGET = 0.9
BLAS_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MAX_DIRECT_CALLS = 100_000


def model_env(args: argparse.Namespace, batch_size: int) -> dict[str, str]:
    """What the model file reads when it is imported (see bench/models/matmul.py)."""
    return {
        **BLAS_ENV,
        "BENCH_MAX_BATCH_SIZE": str(batch_size),
        "BENCH_MAX_BATCH_WAIT": str(args.max_batch_wait),
        "BENCH_FIXED_DIM": str(args.fixed_dim),
        "BENCH_ITEM_DIM": str(args.item_dim),
    }


def direct_model(args: argparse.Namespace) -> Any:
    """The model, loaded and set up in this process."""
    os.environ.update(model_env(args, 1))  # before numpy is first imported, by the model
    from modelport.loader import load_models

    [cls] = load_models(MODEL)
    model = cls()
    model.setup()
    return model


def measure_direct(model: Any, batch_sizes: list[int], seconds: float) -> dict[int, float]:
    """Items per second of ``predict_batch`` called in this process, per batch size."""
    rates: dict[int, float] = {}
    for n in batch_sizes:
        batch = [dict(INPUT) for _ in range(n)]
        model.predict_batch(batch)
        calls, start, elapsed = 0, perf_counter(), 0.0
        while calls < MAX_DIRECT_CALLS and elapsed < seconds:
            model.predict_batch(batch)
            calls += 1
            elapsed = perf_counter() - start
        rates[n] = n * calls / elapsed
    return rates


def measure(
    mode: str, batch_size: int, scratch: Path, plan: Plan, args: argparse.Namespace
) -> LoadResult:
    """Serve the model (embedded or remote) with this batch size, load it, stop it all."""
    port = free_port()
    env = model_env(args, batch_size)
    db = Path(tempfile.mkdtemp(dir=scratch)) / f"{mode}-{batch_size}.db"
    store = f"sqlite:///{db}"
    timeout = args.startup_timeout
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile(dir=scratch))
        if mode == "embedded":
            command = serve_command(port, store, MODEL)
        else:
            command = serve_command(port, store, worker_token=WORKER_TOKEN)
        server = stack.enter_context(Server(f"{mode} server", command, port, log, env))
        try:
            server.wait_ready("/health/ready", timeout)
            if mode == "remote":
                worker = Process("worker", worker_command(port, MODEL, 1), log, env)
                stack.enter_context(worker)
                server.wait_workers(ENDPOINT, 1, timeout, worker)
            _, endpoint = get_json(port, f"/endpoints/{ENDPOINT}", 5.0)
            served = endpoint["limits"]["max_batch_size"]
            if served != batch_size:
                raise StartError(f"served with max_batch_size {served}, not {batch_size}")
            check_call(port, PATH, BODY, EXPECT, timeout)
        except (StartError, OSError, HTTPException, ValueError, KeyError, TypeError) as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        try:
            target = Target(HOST, port, PATH, BODY, EXPECT)
            load: Load = args.load
            return load(target, plan, settle=server.settler(ENDPOINT, timeout))
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            raise LoadError(f"{e}\n{log_tail(log)}") from None


def gains(
    direct: dict[int, float], results: dict[tuple[str, int], LoadResult], big: int
) -> dict[str, dict[str, float | None]]:
    """The gain of the big batch over batches of 1: the model's own, and through each mode
    (with its fraction of the model's)."""
    own = ratio(direct[big], direct[1]) if 1 in direct and big in direct else None
    out: dict[str, dict[str, float | None]] = {"model": {"gain": own, "of_model": 1.0}}
    for mode in MODES:
        if (mode, 1) in results and (mode, big) in results:
            gain = ratio(results[mode, big].rps, results[mode, 1].rps)
            of_model = None if gain is None or own is None else ratio(gain, own)
            out[mode] = {"gain": gain, "of_model": of_model}
    return out


def report(
    direct_runs: dict[int, list[float]],
    runs: dict[tuple[str, int], list[LoadResult]],
    failed: dict[tuple[str, int], BenchError],
    modes: list[str],
    big: int,
) -> str:
    direct = {n: statistics.median(rates) for n, rates in direct_runs.items()}
    results = {key: median_run(r) for key, r in runs.items() if r}
    many = any(len(r) > 1 for r in direct_runs.values())
    lines = [
        f"{'system':<12}{'batch':>6}{'items/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'errors':>8}{'of direct':>11}" + (f"{'range':>14}" if many else "")
    ]
    for n, rate in direct.items():
        rates = direct_runs[n]
        cells = f"{min(rates):.0f}-{max(rates):.0f}" if many else ""
        lines.append(f"{'direct':<12}{n:>6}{rate:>10.1f}{'':>39}{cells:>14}".rstrip())
    for mode in modes:
        for n in (1, big):
            if (mode, n) in results:
                r = results[mode, n]
                of_direct = ratio(r.rps, direct[n]) if n in direct else None
                lines.append(
                    f"{mode:<12}{n:>6}{r.rps:>10.1f}{r.p50_ms:>10.1f}{r.p99_ms:>10.1f}"
                    f"{r.errors:>8}{fmt(of_direct):>11}"
                    + (f"{spread(runs[mode, n]):>14}" if many else "")
                )
            if (mode, n) in failed:
                lines.append(f"{mode:<12}{n:>6}{failed[mode, n].stage:>30}")
    lines += ["", f"{f'gain {big} / 1':<12}{'gain':>10}{'of model':>10}{'target':>10}"]
    for name, row in gains(direct, results, big).items():
        verdict = ""
        if name != "model" and row["of_model"] is not None:
            verdict = "met" if row["of_model"] >= TARGET else "missed"
        lines.append(
            f"{name:<12}{fmt(row['gain'], '.2f', 'x'):>10}{fmt(row['of_model']):>10}{verdict:>10}"
        )
    lines.append(f"target: modelport's gain >= {TARGET:g} x the model's own gain")
    if many:
        lines.append("each row is the median run by items/s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure how much of a model's batching gain modelport passes on."
    )
    add_load_arguments(parser)
    parser.add_argument(
        "--modes",
        metavar="MODE[,MODE]",
        default=",".join(MODES),
        help=f"how to serve the model, from: {', '.join(MODES)} (default: all)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="the big max_batch_size (default: 32)"
    )
    parser.add_argument(
        "--max-batch-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="the model's max_batch_wait (default: 0)",
    )
    parser.add_argument(
        "--direct-seconds",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="time spent calling predict_batch directly, per batch size (default: 3)",
    )
    parser.add_argument(
        "--fixed-dim", type=int, default=1024, help="side of the fixed product (cost a)"
    )
    parser.add_argument(
        "--item-dim", type=int, default=352, help="side of each item's product (cost b)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 also when the target is missed"
    )
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    if not 2 <= args.batch_size <= 1024:
        parser.error("--batch-size must be between 2 and 1024")
    if args.max_batch_wait < 0 or args.direct_seconds <= 0:
        parser.error("--max-batch-wait must not be negative, --direct-seconds must be positive")
    if args.fixed_dim < 8 or args.item_dim < 8:
        parser.error("--fixed-dim and --item-dim must be at least 8")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    big = args.batch_size
    print(describe(args.generator_name, plan), file=sys.stderr)
    model = direct_model(args)
    keys = [(mode, n) for mode in args.modes for n in (1, big)]
    direct_runs: dict[int, list[float]] = {1: [], big: []}
    runs: dict[tuple[str, int], list[LoadResult]] = {key: [] for key in keys}
    failed: dict[tuple[str, int], BenchError] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for round_ in range(1, args.rounds + 1):
            prefix = f"round {round_}/{args.rounds}: " if args.rounds > 1 else ""
            print(f"{prefix}direct: calling predict_batch here", file=sys.stderr, flush=True)
            for n, rate in measure_direct(model, [1, big], args.direct_seconds).items():
                direct_runs[n].append(rate)
            for mode, n in keys:
                label = f"{prefix}{mode}, max_batch_size {n}"
                print(f"{label}: running", file=sys.stderr, flush=True)
                try:
                    runs[mode, n].append(measure(mode, n, Path(tmp), plan, args))
                except BenchError as e:
                    failed[mode, n] = e
                    print(f"{label}: {e.stage}: {e}", file=sys.stderr)
    print(report(direct_runs, runs, failed, args.modes, big))
    direct = {n: statistics.median(rates) for n, rates in direct_runs.items()}
    results = {key: median_run(r) for key, r in runs.items() if r}
    rows = gains(direct, results, big)
    missed = [
        name
        for name, row in rows.items()
        if name != "model" and (row["of_model"] is None or row["of_model"] < TARGET)
    ]
    if args.json:
        document: dict[str, Any] = {
            "generator": args.generator_name,
            "plan": asdict(plan),
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "model": {
                "fixed_dim": args.fixed_dim,
                "item_dim": args.item_dim,
                "max_batch_wait": args.max_batch_wait,
            },
            "rounds": args.rounds,
            "direct_items_per_s": {str(n): rate for n, rate in direct.items()},
            "direct_runs": {str(n): rates for n, rates in direct_runs.items()},
            "results": {f"{m}/{n}": result_json(r) for (m, n), r in results.items()},
            "runs": {f"{m}/{n}": [result_json(r) for r in rs] for (m, n), rs in runs.items()},
            "failed": {f"{m}/{n}": f"{e.stage}: {e}" for (m, n), e in failed.items()},
            "gains": rows,
            "target": TARGET,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
