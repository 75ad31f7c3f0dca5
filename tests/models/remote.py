"""Models for remote-worker tests; each notes what it did in $MODELPORT_TEST_TRACE."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import modelport
from modelport import Input


def _trace(line: str) -> None:
    path = os.environ.get("MODELPORT_TEST_TRACE")
    if path:
        with Path(path).open("a") as f:
            f.write(line + "\n")


class Sleepy(modelport.Model):
    """Sleeps, then answers; short leases so lost workers are noticed quickly."""

    lease_duration = 2.0
    max_attempts = 10

    def predict(self, n: int, seconds: float = Input(default=0.01, ge=0, le=30)) -> dict[str, Any]:
        _trace(f"start {n} {os.getpid()}")
        time.sleep(seconds)
        _trace(f"done {n} {os.getpid()}")
        return {"n": n, "pid": os.getpid()}


class Held(modelport.Model):
    """Answers at once, except a job with ``hold``: it runs until $MODELPORT_TEST_RELEASE
    exists, as long as the test needs it running and no longer."""

    def predict(self, n: int, hold: bool = False) -> dict[str, Any]:
        release = os.environ.get("MODELPORT_TEST_RELEASE", "")
        while hold and not os.path.exists(release):
            time.sleep(0.01)
        return {"n": n, "pid": os.getpid()}


class Batcher(modelport.Model):
    """Takes batches of up to 8 and notes each batch's size."""

    max_batch_size = 8
    max_batch_wait = 0.05

    def predict(self, n: int) -> int:
        return n * 10

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        _trace(f"batch {len(inputs)}")
        time.sleep(0.02)
        return [x["n"] * 10 for x in inputs]


class Pair(modelport.Model):
    """Runs two jobs at once on one instance: each waits at a barrier until the other
    arrives, then takes long enough (0.15 s) that no lane leases ahead of its sibling."""

    concurrency = 2

    def setup(self) -> None:
        _trace(f"setup {os.getpid()}")
        self.barrier = threading.Barrier(2, timeout=30)

    def predict(self, n: int) -> dict[str, Any]:
        self.barrier.wait()
        time.sleep(0.15)
        return {"n": n, "pid": os.getpid()}
