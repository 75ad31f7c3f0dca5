"""The echo model with a result cache: served as ``echo`` by bench/overhead.py
(``modelport-cache``), where every request after the first is a cache hit."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for examples/
from examples.echo.model import Echo as _Echo


class Echo(_Echo):
    """Returns the text it is given; identical texts within an hour come from the cache."""

    name = "echo"
    cache_ttl = 3600
