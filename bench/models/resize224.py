"""The media benchmark's model: an image resized to 224x224 RGB by the server, then a
constant-time stand-in for a classifier (the image's mean colour)."""

from __future__ import annotations

from typing import Any

import numpy as np

import modelport
from modelport import Input


class Resize224(modelport.Model):
    name = "resize224"

    def predict(
        self, image: modelport.Image = Input(size=(224, 224), mode="RGB", resize="crop")
    ) -> dict[str, Any]:
        return {"size": list(image.size), "mean": np.asarray(image).mean(axis=(0, 1)).tolist()}
