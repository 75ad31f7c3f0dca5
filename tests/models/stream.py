"""Streaming models for tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import modelport
from modelport import Input


class Ticker(modelport.Model):
    """Yields n words, one every `every` seconds."""

    def predict(
        self,
        n: int = Input(default=5, ge=0, le=100_000),
        every: float = Input(default=0.05, ge=0, le=5),
    ) -> Iterator[str]:
        for i in range(n):
            if every:
                time.sleep(every)
            yield f"w{i} "


class Chatter(modelport.Model):
    """A chat model writing one word every 10 ms, one chat at a time."""

    kind = "chat"

    def predict(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int = Input(default=5, ge=1, le=100_000),
    ) -> Iterator[str]:
        for i in range(max_tokens):
            time.sleep(0.01)
            yield f"w{i} "
