"""What capturing a model's printed lines costs a chatty job.

    python bench/capture.py --rounds 9

The job computes while it prints about 100 bytes a line, 2,000 lines (megabytes a second).
It runs on this thread with its lines captured (``modelport.worker.capture.capturing``, as
a model's job runs in a worker) and without, taken in turns. Captured, each line is counted
and kept as a job's log keeps it: the first ``capture.HEAD`` handed to a sink as they come,
the last ``capture.TAIL`` at the end. Without, the capture's stream wrapper is installed
(the warm-up installs it, as a worker does once) but the thread is not capturing. Each
side's time is the thread's CPU time, the best of ``--rounds`` runs, so the load of the
machine weighs on both alike. Target: captured <= 1.10 x plain.

The printed text goes to a ``StringIO`` standing in for the terminal on both sides. Exits 1
on a missed target only with ``--check``, as the other benchmarks do.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from typing import Any

from modelport.worker import capture

LINES = 2_000
TARGET = 1.10


def job() -> None:
    total = 0
    for i in range(LINES):
        total += sum(range(2000))  # some work for each 100-byte line
        print(f"step {i:6d} total {total:20d} " + "x" * 60)


def measure(rounds: int) -> dict[str, Any]:
    sink = io.StringIO()

    def keep(job_id: str, data: dict[str, Any]) -> None:
        sink.write(data["message"])

    def timed(captured: bool) -> float:
        sink.seek(0)
        sink.truncate()
        started = time.thread_time()
        if captured:
            with capture.capturing(["job"], keep):
                job()
        else:
            job()
        return time.thread_time() - started

    real = sys.stdout
    sys.stdout = io.StringIO()
    try:
        timed(captured=True)  # warm up (and install the capture)
        runs = [(timed(captured=False), timed(captured=True)) for _ in range(rounds)]
    finally:
        sys.stdout = real
    if not sink.getvalue().startswith("step      0"):
        raise SystemExit("the job's lines were not captured")
    plain, captured = min(p for p, _ in runs), min(c for _, c in runs)
    return {
        "lines_per_run": LINES,
        "printed_mb_per_s": LINES * 100 / plain / 1e6,
        "plain_ms": plain * 1000,
        "captured_ms": captured * 1000,
        "ratio": captured / plain,
        "target": TARGET,
        "met": captured <= plain * TARGET,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9, help="runs each way (default: 9)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 1000:
        parser.error("--rounds must be between 1 and 1000")
    result = measure(args.rounds)
    print(json.dumps(result, indent=2))
    print(
        f"target: captured <= {TARGET:g} x plain: {result['ratio']:.3f}, "
        f"{'met' if result['met'] else 'missed'}"
    )
    return 1 if args.check and not result["met"] else 0


if __name__ == "__main__":
    sys.exit(main())
