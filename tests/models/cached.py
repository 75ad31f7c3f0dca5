"""Models with a result cache, counting their calls (in this process, or in a trace file)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import modelport

CALLS: list[int] = []
GATE = threading.Event()
"""Set it to let :class:`Gated` finish (tests clear it first)."""
GATE.set()


def _note(x: int) -> None:
    CALLS.append(x)
    trace = os.environ.get("MODELPORT_TEST_TRACE")
    if trace:
        with Path(trace).open("a") as f:
            f.write(f"{x}\n")


class Square(modelport.Model):
    """Squares x; identical inputs within a minute come from the cache."""

    cache_ttl = 60
    cache_max_entries = 100

    def predict(self, x: int, label: str = "sq") -> dict[str, int | str]:
        _note(x)
        if x < 0:
            raise ValueError("x must not be negative")
        return {"label": label, "y": x * x}


class Gated(modelport.Model):
    """Waits for :data:`GATE` before answering, so several submits overlap."""

    cache_ttl = 60

    def predict(self, x: int) -> int:
        _note(x)
        if not GATE.wait(30):
            raise TimeoutError("the test never opened the gate")
        return x + 1


class Counts(modelport.Model):
    """Streams 0..n-1 (a generator: never cached)."""

    cache_ttl = 60

    def predict(self, n: int) -> Iterator[int]:
        _note(n)
        yield from range(n)


class Tiny(modelport.Model):
    """Keeps at most two results."""

    cache_ttl = 60
    cache_max_entries = 2

    def predict(self, x: int) -> int:
        _note(x)
        return -x
