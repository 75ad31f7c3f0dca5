"""Media models for the local modes: inputs with narrow bounds (what ``modelport test``
synthesizes must fit them as it is: none of these resizes), several files at once, and a
broken one."""

from __future__ import annotations

from typing import Any

import numpy as np

import modelport
from modelport import Input


class Narrow(modelport.Model):
    """An image, a recording and a file, each held to bounds the server does not bend."""

    def predict(
        self,
        image: modelport.Image = Input(
            min_size=(100, 40), max_size=(300, 60), mode="LA", format=["WEBP"]
        ),
        audio: modelport.Audio = Input(
            sample_rate=8000, channels=2, min_duration=1.0, max_duration=1.5, format=["FLAC"]
        ),
        blob: bytes = Input(max_bytes=8),
        thumb: modelport.Image = Input(default=None, size=(4, 4), format=["JPEG"]),
    ) -> dict[str, Any]:
        grey = np.asarray(image.getchannel(0))
        if grey.min() != grey.max():
            raise ValueError("not a solid image")
        return {
            "image": [image.width, image.height, image.mode],
            "audio": [round(audio.duration, 3), audio.sample_rate, audio.channels],
            "blob": len(blob),
            "thumb": None if thumb is None else [thumb.width, thumb.height],
        }


class Sizes(modelport.Model):
    """The size of each image given."""

    def predict(self, images: list[modelport.Image] = Input(min_length=1)) -> list[list[int]]:
        return [[image.width, image.height] for image in images]


class Film(modelport.Model):
    """A clip's frame count and size."""

    def predict(
        self, video: modelport.Video = Input(size=(32, 24), fps=5, max_duration=1)
    ) -> dict[str, int]:
        return {"frames": len(video.frames), "width": video.width, "height": video.height}


class Misread(modelport.Model):
    """Broken: treats a greyscale pixel as an RGB triple."""

    def predict(self, image: modelport.Image = Input(mode="L")) -> int:
        red, *_ = image.getpixel((0, 0))  # type: ignore[misc]
        return int(red)


class Podcast(modelport.Model):
    """Takes MP3 only, a format modelport reads but does not write."""

    def predict(self, episode: modelport.Audio = Input(format=["MP3"])) -> float:
        return episode.duration
