"""A model with a fixed cost per job and no CPU use, for the scaling benchmark.

Each job sleeps ``$BENCH_SLEEP`` seconds (default 0.05, read when this file is imported),
one job per batch, so one worker process finishes at most ``1 / BENCH_SLEEP`` jobs a second
and N processes at most N times that: what is measured is how close modelport gets.
"""

from __future__ import annotations

import os
import time

import modelport
from modelport import Input

SLEEP = float(os.environ.get("BENCH_SLEEP", "0.05"))


class Sleepy(modelport.Model):
    """Sleeps a fixed time, then returns its input."""

    name = "sleepy"
    max_batch_size = 1

    def predict(self, n: int = Input(default=0, description="Returned as is")) -> dict[str, int]:
        time.sleep(SLEEP)
        return {"n": n}
