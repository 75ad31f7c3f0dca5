"""Batch benchmark: ``modelport batch`` on iris rows against a plain loop over ``predict_batch``.

    python bench/batch.py --rows 100000

Both read the same JSON-lines file and write one JSON line per row, each in a process of
its own (so both pay for starting Python, importing scikit-learn and ``setup()``); the
plain loop does nothing else: no validation, no keys, no resumability. Rows/s are over the
whole run, setup included, and over the predicting alone (the time each reports after
``setup()``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")

PLAIN = """
import sys, time, orjson
sys.path.insert(0, {root!r})
from examples.iris.model import Iris
model = Iris()
model.setup()
started = time.perf_counter()
size = {size}
with open({source!r}, "rb") as f, open({out!r}, "wb") as out:
    batch = []
    for line in f:
        batch.append(orjson.loads(line))
        if len(batch) == size:
            out.write(b"".join(orjson.dumps(o) + b"\\n" for o in model.predict_batch(batch)))
            batch = []
    if batch:
        out.write(b"".join(orjson.dumps(o) + b"\\n" for o in model.predict_batch(batch)))
print(time.perf_counter() - started)
"""


def rows(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            f.write(json.dumps({k: round(rng.uniform(0.1, 7.9), 2) for k in FIELDS}) + "\n")


def run(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return took, done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--processes", type=int, default=1, help="modelport batch --processes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        source = Path(tmp) / "iris.jsonl"
        rows(source, args.rows)
        script = PLAIN.format(
            root=str(ROOT), size=args.batch_size, source=str(source), out=f"{tmp}/plain.jsonl"
        )
        plain_total, plain_out = run([sys.executable, "-c", script])
        plain_compute = float(plain_out.strip())
        mp_total, mp_out = run(
            [
                sys.executable,
                "-m",
                "modelport",
                "batch",
                "examples/iris/model.py",
                str(source),
                "--out",
                f"{tmp}/modelport.jsonl",
                "--batch-size",
                str(args.batch_size),
                "--processes",
                str(args.processes),
                "--no-progress",
            ]
        )
    match = re.search(r"in ([\d.]+) s", mp_out)
    mp_compute = float(match.group(1)) if match else mp_total
    n = args.rows
    print(f"{n} iris rows, batches of {args.batch_size}")
    print(f"{'':<24}{'rows/s total':>14}{'rows/s predicting':>20}")
    print(f"{'plain predict_batch':<24}{n / plain_total:>14,.0f}{n / plain_compute:>20,.0f}")
    print(f"{'modelport batch':<24}{n / mp_total:>14,.0f}{n / mp_compute:>20,.0f}")
    print(
        f"{'ratio':<24}{plain_total / mp_total:>14.2f}{plain_compute / mp_compute:>20.2f}"
        "   (goal: >= 0.9)"
    )
    print(mp_out.strip().splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
