"""FastAPI baseline for bench/media.py: the same Pillow calls modelport makes, inline in
the route (in the threadpool): open, EXIF orientation, RGB, crop to 224x224, the model.

    python bench/apps/fastapi_media.py --port 8001
"""

from __future__ import annotations

import argparse
import base64
import io
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image, ImageOps
from pydantic import BaseModel


def prepare(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:
        raise HTTPException(422, f"image: {e}") from None
    upright = ImageOps.exif_transpose(image) or image
    return ImageOps.fit(upright.convert("RGB"), (224, 224), Image.Resampling.LANCZOS)


def predict(image: Image.Image) -> dict[str, Any]:
    return {"size": list(image.size), "mean": np.asarray(image).mean(axis=(0, 1)).tolist()}


class Inputs(BaseModel):
    image: str


class Request(BaseModel):
    input: Inputs


def build() -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    def upload(image: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        return {"output": predict(prepare(image.file.read()))}

    @app.post("/predict_json")
    def json_body(body: Request) -> dict[str, Any]:
        payload = body.input.image.split(",", 1)[-1]
        return {"output": predict(prepare(base64.b64decode(payload)))}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
