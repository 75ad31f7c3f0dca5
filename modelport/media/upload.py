"""Files in client calls: uploads (a path, bytes, a PIL image, :class:`Audio`) as data URLs,
and media outputs back as bytes, PIL images or :class:`Audio`."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from modelport.media.audio import Audio

_EXTENSIONS = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
}


def is_upload(value: Any) -> bool:
    """Whether a client input is a file to send: bytes, a path (a :class:`~pathlib.Path`,
    or a string naming an existing image or audio file), a PIL image or :class:`Audio`."""
    if isinstance(value, bytes | bytearray | Path | Audio):
        return True
    if getattr(type(value), "__modelport_media__", None) == "video":
        return True
    if isinstance(value, str):
        return (
            len(value) < 4096
            and os.path.splitext(value)[1].lower() in _EXTENSIONS
            and os.path.isfile(value)
        )
    return type(value).__module__.startswith("PIL.")


def as_data_url(value: Any) -> str:
    """An upload as a data URL (the server reads the format from the file itself)."""
    mime = "application/octet-stream"
    if isinstance(value, str | Path):
        path = Path(value)
        data = path.read_bytes()
        mime = _EXTENSIONS.get(path.suffix.lower(), mime)
    elif isinstance(value, bytes | bytearray):
        data = bytes(value)
    else:
        from modelport.media.codec import encode_audio, encode_image
        from modelport.media.video import Video, encode_video

        if isinstance(value, Video):
            encoded = encode_video(value, None, queued=True)
        elif isinstance(value, Audio):
            encoded = encode_audio(value, None)
        else:
            encoded = encode_image(value, None)
        data, mime = encoded.data, encoded.mime
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def file_bytes(value: Any) -> bytes:
    """The bytes of a media output (a data URL)."""
    from modelport.media.codec import parse_string

    if not isinstance(value, str):
        raise TypeError(f"not a media output: {type(value).__name__}")
    return parse_string(value)[0]
