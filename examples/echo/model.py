"""Echo: returns its input. The smallest model, used by the overhead benchmark."""

from __future__ import annotations

import modelport
from modelport import Input


def echo(text: str) -> dict[str, str]:
    """The model itself: a plain function, also called inline by the benchmark's baselines."""
    return {"text": text}


class Echo(modelport.Model):
    """Returns the text it is given."""

    max_batch_size = 64

    def predict(
        self, text: str = Input(description="Text to echo back", max_length=100_000)
    ) -> dict[str, str]:
        return echo(text)
