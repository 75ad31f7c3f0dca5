"""Painter: a procedural image generator (no weights, no download). It grows a picture from
a prompt's hash in ``steps`` passes, sending a small preview with each progress report.

    curl -H 'Accept: image/png' localhost:8000/endpoints/painter/jobs \
        -d '{"input": {"prompt": "a red sunset"}}' > out.png
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

import modelport
from modelport import Input


class Painter(modelport.Model):
    """Paint an abstract picture from a prompt; the same prompt and seed paint the same one."""

    def predict(
        self,
        prompt: str = Input(description="What to paint", min_length=1, max_length=500),
        width: int = Input(256, ge=16, le=1024),
        height: int = Input(256, ge=16, le=1024),
        steps: int = Input(12, ge=1, le=100, description="Passes; one preview each"),
        seed: int = Input(0, ge=0),
    ) -> modelport.Image:
        digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        xs, ys = xs / width, ys / height
        canvas = np.zeros((height, width, 3), np.float32)
        palette = rng.random((steps, 3), dtype=np.float32)
        for i in range(steps):
            cx, cy, radius = rng.random(3, dtype=np.float32)
            blob = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (0.02 + 0.1 * radius))
            canvas += blob[:, :, None] * palette[i]
            picture = _to_image(canvas / max(1.0, float(canvas.max())))
            self.progress((i + 1) / steps, f"pass {i + 1} of {steps}", preview=picture)
        picture.info.update(prompt=prompt, seed=str(seed))  # written as PNG text
        return picture


def _to_image(canvas: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8), "RGB")
