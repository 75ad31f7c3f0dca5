"""Models for the local modes (``run``, ``pipe``, ``test``): every input type, progress,
streaming, failures, a batched model that counts its setups."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, Literal

import modelport
from modelport import Input


class Kinds(modelport.Model):
    """Every kind of input, returned as given."""

    def predict(
        self,
        name: str = Input(
            description="A short name", min_length=2, max_length=8, pattern="^[a-z]+$"
        ),
        count: int = Input(default=3, ge=1, le=10, description="How many (at 100%)"),
        scale: float = Input(default=0.5, ge=0, le=1),
        loud: bool = False,
        color: Literal["red", "green"] = "red",
        tags: list[str] = Input(default=None, max_length=3),
        extra: dict[str, int] = Input(default=None),
        note: str | None = None,
    ) -> dict[str, Any]:
        return {
            "name": name,
            "count": count,
            "scale": scale,
            "loud": loud,
            "color": color,
            "tags": tags,
            "extra": extra,
            "note": note,
        }


class Flaky(modelport.Model):
    """Fails on "boom", reports progress, prints the number of setups to stderr."""

    max_batch_size = 4

    def setup(self) -> None:
        print("setup", file=sys.stderr, flush=True)

    def predict(self, text: str) -> dict[str, str]:
        if text == "boom":
            raise ValueError("it went boom")
        self.progress(0.5, "halfway")
        return {"text": text.upper()}

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        print(f"batch {len(inputs)}", file=sys.stderr, flush=True)
        self.progress(0.5, "halfway")
        return [
            ValueError("it went boom") if x["text"] == "boom" else {"text": x["text"].upper()}
            for x in inputs
        ]


class Words(modelport.Model):
    """Streams words; with a ``gate`` (a FIFO), waits for a writer before the last one, so a
    test can see the first words arrive before the model is done."""

    def predict(self, n: int = Input(default=3, ge=1), gate: str = "") -> Iterator[str]:
        for i in range(n):
            if i == n - 1 and gate:
                with open(gate) as fifo:  # blocks until the test opens it for writing
                    fifo.read()
            yield f"w{i} "


class Liar(modelport.Model):
    """Declares an integer output and returns text."""

    def predict(self, x: int = 1) -> int:
        return "not a number"  # type: ignore[return-value]


class Broken(modelport.Model):
    def setup(self) -> None:
        raise RuntimeError("no weights")

    def predict(self, x: int = 1) -> int:
        return x


class Fails(modelport.Model):
    def predict(self, text: str = "") -> str:
        raise ValueError(f"cannot read {text!r}")


class Exits(modelport.Model):
    """Ends its process on "crash", as a segfault in native code would."""

    def predict(self, text: str) -> str:
        if text == "crash":
            os._exit(3)
        return text


class Picky(modelport.Model):
    """Fails at its upper bound only."""

    def predict(self, steps: int = Input(default=5, ge=1, le=50)) -> dict[str, int]:
        if steps == 50:
            raise OverflowError("too many steps")
        return {"steps": steps}


class Chatty(modelport.Model):
    """Prints and logs as it works (no ``predict_batch``); fails on "boom" and reports a
    progress fraction out of bounds on "over"."""

    def predict(self, text: str) -> dict[str, str]:
        print(f"working on {text}")
        logging.getLogger("chatty").warning("logged %s", text)
        if text == "boom":
            raise ValueError("it went boom")
        self.progress(2.0 if text == "over" else 0.5, "halfway")
        return {"text": text.upper()}
