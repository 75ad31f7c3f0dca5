"""A model that costs nothing per job, for the queue benchmark (``bench/queue.py``).

Its spec comes from ``queue_noop.toml``, which the API server is also given with
``--config``: the endpoint takes jobs before this worker connects, and the worker's spec
matches it. A whole leased batch (up to the TOML's ``max_batch_size``) is returned in one
call, so what is measured is the queue, not the model.
"""

from __future__ import annotations

from typing import Any

import modelport


class QueueNoop(modelport.Model):
    """Returns its input."""

    name = "queue_noop"
    config = "queue_noop.toml"

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        return [{"n": item["n"], "text": item["text"]} for item in inputs]
