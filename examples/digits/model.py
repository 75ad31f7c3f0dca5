"""Digits: a handwritten-digit classifier trained in setup() on scikit-learn's bundled 8x8
digits; it takes any image, which the server turns into 8x8 greyscale first.

    curl -F image=@seven.png -F top_k=3 localhost:8000/endpoints/digits/jobs
"""

from __future__ import annotations

from typing import Any

import numpy as np

import modelport
from modelport import Input


class Digits(modelport.Model):
    """Read a handwritten digit (dark ink on a light background, or the other way round)."""

    max_batch_size = 32

    def setup(self) -> None:
        from sklearn.datasets import load_digits
        from sklearn.neighbors import KNeighborsClassifier

        data = load_digits()  # nearest neighbours: no training time, ~98% right on digits
        self.clf = KNeighborsClassifier(n_neighbors=5, weights="distance").fit(
            data.data, data.target
        )

    def predict(
        self,
        image: modelport.Image = Input(
            description="A picture of one digit; any size, it is padded to a square and"
            " scaled to 8x8 greyscale",
            size=(8, 8),
            mode="L",
            resize="pad",
        ),
        top_k: int = Input(3, ge=1, le=10, description="How many guesses to return"),
    ) -> dict[str, Any]:
        pixels = np.asarray(image, dtype=np.float64)
        if pixels.mean() > 127:  # dark ink on paper: the training digits are light on dark
            pixels = 255 - pixels
        features = (pixels / 255.0 * 16.0).reshape(1, -1)
        probabilities = self.clf.predict_proba(features)[0]
        order = np.argsort(probabilities)[::-1][:top_k]
        return {
            "digit": int(order[0]),
            "guesses": [
                {"digit": int(d), "probability": round(float(probabilities[d]), 4)} for d in order
            ],
        }
