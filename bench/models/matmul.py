"""A batch-friendly model for the batching benchmark: a call costs about ``a + b * n``.

Every call of :meth:`MatMul.predict_batch` does one fixed matrix product (``FIXED_DIM`` x
``FIXED_DIM``, float32) whatever the batch size -- the part a batch shares, like a weight
load or a kernel launch -- then one ``ITEM_DIM`` x ``ITEM_DIM`` product per item. An item's
output depends only on its own input, never on the batch it was computed in.

The batch size comes from ``$BENCH_MAX_BATCH_SIZE`` (default 1) and the batch window from
``$BENCH_MAX_BATCH_WAIT`` (seconds, default 0), read when this file is imported, so one
file serves every setting. ``$BENCH_FIXED_DIM`` and ``$BENCH_ITEM_DIM`` change the costs.
Run it with one BLAS thread (``OPENBLAS_NUM_THREADS=1``; the benchmark sets it) so the model
keeps to one core and the measurement does not depend on how BLAS shares the machine.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import modelport
from modelport import Input

FIXED_DIM = int(os.environ.get("BENCH_FIXED_DIM", "1024"))
ITEM_DIM = int(os.environ.get("BENCH_ITEM_DIM", "352"))
INPUT_DIM = 16
OUTPUT_DIM = 8


class MatMul(modelport.Model):
    """Fixed cost per call plus a small cost per item: batching pays."""

    name = "matmul"
    max_batch_size = int(os.environ.get("BENCH_MAX_BATCH_SIZE", "1"))
    max_batch_wait = float(os.environ.get("BENCH_MAX_BATCH_WAIT", "0"))

    def setup(self) -> None:
        rng = np.random.default_rng(1234)
        scale = np.float32(1 / np.sqrt(FIXED_DIM))
        self.a = rng.standard_normal((FIXED_DIM, FIXED_DIM), dtype=np.float32) * scale
        self.b = rng.standard_normal((FIXED_DIM, FIXED_DIM), dtype=np.float32) * scale
        self.w_in = rng.standard_normal((ITEM_DIM, INPUT_DIM), dtype=np.float32)
        self.c = rng.standard_normal((ITEM_DIM, ITEM_DIM), dtype=np.float32) / ITEM_DIM
        self.w_out = rng.standard_normal((OUTPUT_DIM, ITEM_DIM), dtype=np.float32) / ITEM_DIM
        self.predict_batch([{"x": [0.0]}] * 2)  # warm BLAS up

    def predict(
        self,
        x: list[float] = Input(
            description=f"Features; the first {INPUT_DIM} are used, missing ones are 0",
            min_length=1,
            max_length=1024,
        ),
    ) -> dict[str, list[float]]:
        output: dict[str, list[float]] = self.predict_batch([{"x": x}])[0]
        return output

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        shared = self.a @ self.b  # the fixed cost: the same work for 1 item or 32
        bias = shared[0, :OUTPUT_DIM]
        n = len(inputs)
        x = np.zeros((n, INPUT_DIM), dtype=np.float32)
        for i, item in enumerate(inputs):
            values = item["x"][:INPUT_DIM]
            x[i, : len(values)] = values
        v = np.tanh(x @ self.w_in.T)  # (n, ITEM_DIM)
        h = v[:, :, None] * v[:, None, :]  # one (ITEM_DIM, ITEM_DIM) matrix per item
        y = np.matmul(h, self.c)  # the per-item cost: one matrix product each
        out = np.tanh(y.mean(axis=1) @ self.w_out.T + bias)  # (n, OUTPUT_DIM)
        return [{"y": [round(float(f), 6) for f in row]} for row in out]
