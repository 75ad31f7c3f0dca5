"""A chat model for the chat page's tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import modelport
from modelport import Input


class Parrot(modelport.Model):
    """Says the last user message back, one word every `delay` seconds, `max_tokens` words."""

    kind = "chat"
    concurrency = 4

    def predict(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int = Input(default=20, ge=1, le=100_000, description="Words to write"),
        delay: float = Input(default=0.02, ge=0, le=1, description="Seconds between words"),
    ) -> Iterator[str]:
        said = [m for m in messages if m.get("role") == "user"]
        words = str(said[-1].get("content", "")).split() if said else []
        words = words or ["…"]
        for i in range(max_tokens):
            if delay:
                time.sleep(delay)
            yield ("" if i == 0 else " ") + words[i % len(words)]


class Oneshot(modelport.Model):
    """Answers at once, its text whole (no stream): the last user message reversed."""

    kind = "chat"

    def predict(self, messages: list[dict[str, Any]]) -> str:
        said = [m for m in messages if m.get("role") == "user"]
        return str(said[-1].get("content", ""))[::-1] if said else ""
