"""``modelport pipe`` throughput against what it wraps.

    python bench/pipe.py --lines 100000 --batched-lines 3000

1. Echo: ``modelport pipe examples/echo/model.py`` on N JSON lines, against a plain Python
   loop (in a process of its own, like the pipe) that reads the same lines, calls the
   ``echo`` function and writes JSON lines, orjson on both sides. Target: >= 0.5x.
2. Batched: ``modelport pipe bench/models/matmul.py --batch-size B`` against the model's own
   ``predict_batch`` throughput on batches of B in this process. Target: >= 0.9x.

Each side's time is its process's wall time from start to the last line written, on the
same input file, its output to a file; the best of ``--rounds`` is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
LOOP = """
import sys
import orjson
sys.path.insert(0, {root!r})
from examples.echo.model import echo
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    out.write(orjson.dumps(echo(**orjson.loads(line))) + b"\\n")
"""


def timed(command: list[str], stdin: Path, env: dict[str, str] | None = None) -> float:
    with stdin.open("rb") as src, tempfile.TemporaryFile() as dst:
        started = perf_counter()
        subprocess.run(command, stdin=src, stdout=dst, check=True, env=env, cwd=ROOT)
        elapsed = perf_counter() - started
        dst.seek(0)
        lines = sum(1 for _ in dst)
    expected = sum(1 for _ in stdin.open("rb"))
    if lines != expected:
        raise SystemExit(f"{command}: {lines} output lines for {expected} inputs")
    return elapsed


def echo_ratio(lines: int, rounds: int, work: Path) -> dict[str, Any]:
    path = work / "echo.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"text": f"line {i}"}) + b"\n" for i in range(lines)))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    loop = [sys.executable, "-c", LOOP.format(root=str(ROOT))]
    pipe = [
        sys.executable,
        "-m",
        "modelport",
        "pipe",
        "examples/echo/model.py",
        "--batch-size",
        "1",
    ]
    loop_s = min(timed(loop, path, env) for _ in range(rounds))
    pipe_s = min(timed(pipe, path, env) for _ in range(rounds))
    return {
        "lines": lines,
        "loop_lines_per_s": round(lines / loop_s),
        "pipe_lines_per_s": round(lines / pipe_s),
        "ratio": round(loop_s / pipe_s, 3),
        "target": 0.5,
    }


def batched_ratio(lines: int, batch: int, rounds: int, work: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "BENCH_MAX_BATCH_SIZE": str(batch),
    }
    os.environ.update({k: env[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")})
    os.environ["BENCH_MAX_BATCH_SIZE"] = str(batch)
    sys.path.insert(0, str(ROOT))
    from modelport.loader import load_models

    (cls,) = load_models(str(ROOT / "bench/models/matmul.py"))
    model: Any = cls()
    model.setup()
    items = [{"x": [float(i % 7)] * 16} for i in range(lines)]
    best = float("inf")
    for _ in range(rounds):
        started = perf_counter()
        for i in range(0, lines, batch):
            model.predict_batch(items[i : i + batch])
        best = min(best, perf_counter() - started)
    path = work / "matmul.jsonl"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in items))
    pipe = [
        sys.executable, "-m", "modelport", "pipe", "bench/models/matmul.py",
        "--batch-size", str(batch),
    ]  # fmt: skip
    # The pipe's time includes starting Python and the model's setup; measure those alone
    # (an empty input) and take them off, so both sides count the same work.
    empty = work / "empty.jsonl"
    empty.write_bytes(b"")
    start_s = min(timed(pipe, empty, env) for _ in range(rounds))
    pipe_s = min(timed(pipe, path, env) for _ in range(rounds)) - start_s
    return {
        "lines": lines,
        "batch_size": batch,
        "model_items_per_s": round(lines / best),
        "pipe_items_per_s": round(lines / pipe_s),
        "ratio": round(best / pipe_s, 3),
        "target": 0.9,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000, help="echo lines")
    parser.add_argument("--batched-lines", type=int, default=3_000, help="matmul lines")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {
            "echo": echo_ratio(args.lines, args.rounds, work),
            "batched": batched_ratio(args.batched_lines, args.batch_size, args.rounds, work),
        }
    print(json.dumps(result, indent=2))
    ok = result["echo"]["ratio"] >= 0.5 and result["batched"]["ratio"] >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
