"""Models with media inputs and outputs, served in-process and by remote workers."""

from __future__ import annotations

import typing
from typing import Annotated, Any

import numpy as np
from PIL import Image as PILImage

import modelport
from modelport import Input, Media


class Inspect(modelport.Model):
    """Reports what it was given, so tests see the conversion the server did."""

    name = "inspect"

    def predict(
        self,
        image: modelport.Image = Input(mode="RGB", size=(32, 16), resize="crop"),
        note: str = "",
        k: int = 1,
    ) -> dict[str, Any]:
        assert isinstance(image, PILImage.Image)
        return {
            "size": list(image.size),
            "mode": image.mode,
            "note": note,
            "k": k,
            "corner": list(typing.cast(tuple[int, ...], image.getpixel((0, 0)))),
        }


class Voice(modelport.Model):
    name = "voice"

    def predict(
        self, audio: modelport.Audio = Input(sample_rate=16000, channels=1, max_duration=5)
    ) -> dict[str, Any]:
        assert isinstance(audio, modelport.Audio)
        return {
            "sample_rate": audio.sample_rate,
            "frames": audio.frames,
            "channels": audio.channels,
            "dtype": str(audio.samples.dtype),
            "peak": float(np.abs(audio.samples).max()),
        }


class Album(modelport.Model):
    """A list of images in, a list of images out."""

    name = "album"

    def predict(
        self, images: list[modelport.Image] = Input(mode="L", max_length=4)
    ) -> Annotated[list[modelport.Image], Media(format="JPEG", quality=70)]:
        return [PILImage.eval(i, lambda v: 255 - v) for i in images]


class Paint(modelport.Model):
    """Paints a gradient; previews each step; the whole output is one PNG."""

    name = "paint"

    def predict(self, width: int = 64, height: int = 48, steps: int = 3) -> modelport.Image:
        ramp = np.linspace(0, 255, width, dtype=np.float32)
        final = np.broadcast_to(ramp, (height, width)).astype(np.uint8)
        for i in range(steps):
            frame = PILImage.fromarray((final * ((i + 1) / steps)).astype(np.uint8))
            self.progress((i + 1) / steps, f"step {i + 1}", preview=frame)
        image = PILImage.fromarray(final)
        image.info["prompt"] = f"gradient {width}x{height}"
        return image


class Tone(modelport.Model):
    """Synthesises a tone: audio out, as FLAC."""

    name = "tone"

    def predict(
        self, hz: float = 440.0, seconds: float = 0.5
    ) -> Annotated[modelport.Audio, Media(format="FLAC")]:
        t = np.arange(int(8000 * seconds), dtype=np.float32) / 8000
        return modelport.Audio((0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 8000)


class Thumbs(modelport.Model):
    """predict_batch with images: the batch gets PIL images too."""

    name = "thumbs"
    max_batch_size = 4
    max_batch_wait = 0.05

    def predict(self, image: modelport.Image = Input(max_size=(8, 8), resize="fit")) -> list[int]:
        return list(image.size)

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        return [list(item["image"].size) for item in inputs]


class Configured(modelport.Model):
    """Declared in TOML: predict(**inputs) gets the converted media too."""

    name = "configured"
    config = "media.toml"

    def predict(self, **inputs: Any) -> dict[str, Any]:
        image = inputs["image"]
        return {"size": list(image.size), "mode": image.mode, "voice": inputs["voice"].sample_rate}


class Mirror(modelport.Model):
    """Flips an image of any size: a big input and a big output through the worker path."""

    name = "mirror"

    def predict(self, image: modelport.Image) -> modelport.Image:
        return image.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT)


class Clip(modelport.Model):
    """A video in at 5 fps and 16x12; its frames reversed out, as WEBM."""

    name = "clip"

    def predict(
        self,
        video: modelport.Video = Input(
            size=(16, 12), resize="stretch", fps=5, max_duration=3, max_frames=20
        ),
    ) -> Annotated[modelport.Video, Media(format="WEBM")]:
        assert isinstance(video, modelport.Video)
        return modelport.Video(video.frames[::-1].copy(), video.fps)


class Checksum(modelport.Model):
    """bytes in and out: a model that reads the file itself."""

    name = "checksum"

    def predict(self, blob: bytes = Input(max_bytes=1000), reverse: bool = False) -> Digest:
        import hashlib

        assert isinstance(blob, bytes)
        return {"sha256": hashlib.sha256(blob).hexdigest(), "echo": blob[::-1] if reverse else blob}


class Digest(typing.TypedDict):
    sha256: str
    echo: bytes
