"""A streaming model with a fixed compute time per chunk, for the streaming benchmark.

:func:`generate` is a plain generator: chunk k (1-based) is yielded ``k * interval_ms`` after
the call, paced against deadlines rather than by sleeping a fixed time per chunk, so its
rate is exact (``1000 / interval_ms`` chunks a second) whatever its consumer does between
chunks, as long as that takes less than ``interval_ms``. The defaults, 100 chunks 10 ms
apart, are a small LLM streaming 100 tokens a second. ``bench/streaming.py`` calls
:func:`generate` directly, ``Streamer`` serves it through modelport and
``bench/apps/litserve_stream.py`` through LitServe.

Each chunk is a short token that carries the ``time.monotonic()`` at which it was made
(``" t17@12345.678901"``): the clock is system-wide on Linux, so a client on the same host
can tell how long each chunk took to reach it (:func:`made_at`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import modelport
from modelport import Input

CHUNKS = 100
INTERVAL_MS = 10.0


def generate(chunks: int = CHUNKS, interval_ms: float = INTERVAL_MS) -> Iterator[str]:
    """``chunks`` tokens, chunk k at ``k * interval_ms`` from the call."""
    start = time.monotonic()
    interval = interval_ms / 1000
    for k in range(1, chunks + 1):
        delay = start + k * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield f" t{k}@{time.monotonic():.6f}"


def made_at(chunk: str) -> float:
    """The ``time.monotonic()`` at which :func:`generate` made ``chunk``."""
    return float(chunk.rpartition("@")[2])


class Streamer(modelport.Model):
    """Streams ``chunks`` short tokens, one every ``interval_ms`` milliseconds.

    A batch's jobs would stream one after another, so the batch size stays 1; streams run side
    by side through ``concurrency`` (``$BENCH_STREAMS``, default 1, read at import)."""

    name = "streamer"
    max_batch_size = 1
    concurrency = int(os.environ.get("BENCH_STREAMS", "1"))

    def predict(
        self,
        chunks: int = Input(default=CHUNKS, ge=1, le=100_000, description="Chunks to stream"),
        interval_ms: float = Input(
            default=INTERVAL_MS, ge=0, le=10_000, description="Compute time per chunk (ms)"
        ),
    ) -> Iterator[str]:
        yield from generate(chunks, interval_ms)
