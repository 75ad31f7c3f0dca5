"""The echo model as a new user first writes it: no batching attribute, the defaults.

Served as ``echo`` by bench/overhead.py (``modelport-default``) and bench/remote.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import modelport

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for examples/
from examples.echo.model import echo


class Echo(modelport.Model):
    """Returns the text it is given, one job at a time (``max_batch_size`` 1, the default)."""

    name = "echo"

    def predict(self, text: str) -> dict[str, str]:
        return echo(text)
