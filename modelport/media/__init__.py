"""Media types: images (``modelport.Image``, a ``PIL.Image.Image``), audio
(:class:`modelport.Audio`) and video (:class:`modelport.Video`), their conversion on the
way in and encoding on the way out.

Pillow, soundfile and soxr come with the ``media`` extra, PyAV with ``video``; they are
imported on first use, so a server whose endpoints take no media never loads them.
"""

from __future__ import annotations

import typing

from modelport.media.audio import Audio
from modelport.media.video import Video

if typing.TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["Audio", "Image", "Video"]


def __getattr__(name: str) -> typing.Any:
    if name == "Image":
        from PIL.Image import Image

        return Image
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
