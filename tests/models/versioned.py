"""Two revisions of one endpoint, each answering with its own version (for replacement tests)."""

from __future__ import annotations

import time

import modelport
from modelport import Input


class ReverseV1(modelport.Model):
    """Reverses a text."""

    name = "reverse"
    version = "1"

    def predict(self, text: str, pause: float = Input(default=0.0, ge=0, le=1)) -> dict[str, str]:
        time.sleep(pause)
        return {"text": text[::-1], "version": "1"}


class ReverseV2(modelport.Model):
    """Reverses a text, in upper case if asked."""

    name = "reverse"
    version = "2"

    def predict(
        self, text: str, pause: float = Input(default=0.0, ge=0, le=1), upper: bool = False
    ) -> dict[str, str]:
        time.sleep(pause)
        out = text[::-1]
        return {"text": out.upper() if upper else out, "version": "2"}
