"""Small models for tests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import modelport
from modelport import Input


class Add(modelport.Model):
    """Adds two numbers."""

    def predict(self, a: float, b: float = Input(default=1.0, ge=-100, le=100)) -> dict[str, float]:
        return {"sum": a + b}


class Fails(modelport.Model):
    """Raises for negative inputs."""

    def predict(self, x: int) -> int:
        if x < 0:
            raise ValueError(f"x must not be negative, got {x}")
        return x * 2


class Slow(modelport.Model):
    """Sleeps, and notes each start in the file named by MODELPORT_TEST_TRACE."""

    def predict(self, n: int, seconds: float = Input(default=0.1, ge=0, le=30)) -> dict[str, int]:
        trace = os.environ.get("MODELPORT_TEST_TRACE")
        if trace:
            with Path(trace).open("a") as f:
                f.write(f"{n}\n")
        time.sleep(seconds)
        return {"n": n}


class Shapes(modelport.Model):
    """Every input type."""

    name = "shapes"

    def predict(
        self,
        text: str = Input(default="x", max_length=5, pattern=r"^[a-z]+$"),
        count: int = Input(default=1, ge=0, le=3),
        ratio: float = 0.5,
        flag: bool = False,
        mode: Literal["fast", "slow"] = "fast",
        tags: list[str] = Input(default=None, max_length=2),
        extra: dict[str, Any] = Input(default=None),
    ) -> dict[str, Any]:
        return {
            "text": text,
            "count": count,
            "ratio": ratio,
            "flag": flag,
            "mode": mode,
            "tags": tags,
            "extra": extra,
        }
