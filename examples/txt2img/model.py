"""Txt2img: a model whose inputs and outputs are declared in txt2img.toml."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import modelport

_SHADES = " .:-=+*#%@"


class Txt2Img(modelport.Model):
    config = "txt2img.toml"

    def predict(self, **inputs: Any) -> dict[str, Any]:
        seed = inputs["seed"] if inputs["seed"] >= 0 else random.randrange(2**31)
        size = inputs["size"]
        images = []
        for sample in range(inputs["num_samples"]):
            digest = hashlib.sha256(f"{inputs['prompt']}|{seed}|{sample}".encode()).digest()
            rng = random.Random(digest)
            rows = ["".join(rng.choice(_SHADES) for _ in range(size)) for _ in range(size // 2)]
            images.append("\n".join(rows))
        return {"images": images, "seed": seed}
