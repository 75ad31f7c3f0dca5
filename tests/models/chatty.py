"""A model that prints, writes to stderr and logs while it works (for the log tests)."""

from __future__ import annotations

import logging
import sys

import modelport
from modelport import Input

log = logging.getLogger("chatty")


class Chatty(modelport.Model):
    """Talks about its work on every channel, then answers."""

    def predict(self, word: str, lines: int = Input(default=0, ge=0, le=1_000_000)) -> str:
        print(f"starting {word}")
        print(f"on stderr {word}", file=sys.stderr)
        log.warning("careful with %s", word)
        log.error("bad %s", word)
        for i in range(lines):
            print(f"line {i} of {word}")
        print("no newline at the end", end="")
        return word.upper()
