"""Plain functions served as models."""

from __future__ import annotations

from collections.abc import Iterator

import modelport
from modelport import Input

LOADED: list[str] = []


def load() -> None:
    LOADED.append("weights")


@modelport.endpoint(name="shout", max_batch_size=4, setup=load)
def shout(text: str = Input(description="Words to shout", max_length=20)) -> dict[str, str]:
    """Shouts its text, once set up."""
    if not LOADED:
        raise RuntimeError("setup did not run")
    return {"text": text.upper()}


def add(a: int, b: int = Input(default=1, ge=0, le=5)) -> int:
    """Adds two numbers."""
    return a + b


def count(n: int = 3) -> Iterator[str]:
    for i in range(n):
        yield f"{i} "
