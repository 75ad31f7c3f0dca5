"""Models for `modelport batch` tests: they note every input they compute in a trace file."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import modelport


def _trace(lines: list[str]) -> None:
    trace = os.environ.get("MODELPORT_TEST_TRACE")
    if trace:
        with Path(trace).open("a") as f:
            f.write("".join(f"{line}\n" for line in lines))


class Double(modelport.Model):
    """Doubles n in batches, slowly if $MODELPORT_TEST_BATCH_DELAY says so; fails n % 7 == 3
    (alone: the rest of its batch succeeds)."""

    max_batch_size = 10

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        _trace([str(item["n"]) for item in inputs])
        time.sleep(float(os.environ.get("MODELPORT_TEST_BATCH_DELAY", "0")))
        return [
            ValueError(f"unlucky {item['n']}") if item["n"] % 7 == 3 else {"y": item["n"] * 2}
            for item in inputs
        ]

    def predict(self, n: int) -> dict[str, int]:
        return self.predict_batch([{"n": n}])[0]  # type: ignore[no-any-return]


class Crashes(modelport.Model):
    """Its predict_batch raises for a batch holding n == 13: only that row fails."""

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        if any(item["n"] == 13 for item in inputs):
            raise RuntimeError("thirteen")
        return [item["n"] for item in inputs]

    def predict(self, n: int) -> int:
        return n
