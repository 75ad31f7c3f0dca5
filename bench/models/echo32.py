"""The echo model with batches of up to 32, the size the remote benchmark's target names.

Served as ``echo`` (embedded and by remote workers) by bench/remote.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for examples/
from examples.echo.model import Echo


class Echo32(Echo):
    """``examples/echo``'s model, leased in batches of up to 32."""

    name = "echo"
    max_batch_size = 32
