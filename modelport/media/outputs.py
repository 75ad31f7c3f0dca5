"""Media between the job record and the model: decoding converted inputs into the objects
the model declares, and encoding what it returns (or previews) as data URLs per the spec.

These run wherever the model runs: in the server process for embedded models, in the
worker process for remote ones.
"""

from __future__ import annotations

import math
import time
from typing import Any

from modelport.media.audio import Audio
from modelport.media.codec import (
    Encoded,
    MediaError,
    MediaLimits,
    conform_audio,
    conform_image,
    convert,
    decode_audio,
    decode_image,
    encode_audio,
    encode_image,
    open_image,
    parse_string,
)
from modelport.spec import EndpointSpec, FieldSpec, media_field

PREVIEW = FieldSpec(type="image", format=["JPEG"], quality=80, max_size=[256, 256])
"""How a progress preview is written when the endpoint's spec does not declare one."""


def to_model(f: FieldSpec, value: Any) -> Any:
    """An input as the model gets it: a PIL image or an :class:`Audio` (a list of them for
    a list field). A string (a data URL the server converted) is decoded; a PIL image,
    ``Audio``, bytes or a file path (a direct call) is converted per the spec first."""
    media = media_field(f)
    if media is None or value is None:
        return value
    if f.type == "list":
        return [_one(media, v) for v in value]
    return _one(media, value)


def _one(f: FieldSpec, value: Any) -> Any:
    if f.type == "bytes":  # a file the model decodes itself
        if isinstance(value, str) and value.startswith("data:"):
            return parse_string(value)[0]
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        if isinstance(value, str) or hasattr(value, "__fspath__"):
            return _read(value)
        raise MediaError(f"expected bytes, got {type(value).__name__}")
    from PIL import Image as PILImage

    if isinstance(value, str) and value.startswith("data:"):
        data, _ = parse_string(value)
        return _decoded(f, data)
    if f.type == "image" and isinstance(value, PILImage.Image):
        return conform_image(value, f)
    if f.type == "audio" and isinstance(value, Audio):
        return conform_audio(value, f)
    if isinstance(value, str | bytes) or hasattr(value, "__fspath__"):
        data = value if isinstance(value, bytes) else _read(value)
        return _decoded(f, convert(data, f, MediaLimits()).data)
    raise MediaError(f"expected {f.type}, got {type(value).__name__}")


def _decoded(f: FieldSpec, data: bytes) -> Any:
    if f.type == "bytes":
        return data
    if f.type == "image":
        return decode_image(data)
    if f.type == "video":
        from modelport.media.video import decode_video

        return decode_video(data)
    return decode_audio(data)


def _read(path: Any) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def encode_output(spec: EndpointSpec, output: Any) -> Any:
    """The model's output with its media values written as data URLs, per the spec."""
    if spec.output is not None:
        return encode_value(spec.output, output)
    if spec.outputs is not None and isinstance(output, dict):
        return {
            k: encode_value(spec.outputs[k], v) if k in spec.outputs else v
            for k, v in output.items()
        }
    return output


def encode_progress(spec: EndpointSpec, data: dict[str, Any]) -> dict[str, Any]:
    """Progress fields with media written small; an undeclared ``preview`` as a JPEG."""
    out = dict(data)
    for key, value in data.items():
        f = spec.progress.get(key)
        if f is None and key == "preview":
            f = PREVIEW
        if f is not None and value is not None:
            out[key] = encode_value(f, value)
    return out


class Previews:
    """Encodes progress media at most once per ``interval`` (progress is sent no more
    often): in between, a report carries the latest encoded value again."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._at = -math.inf
        self._latest: dict[str, Any] = {}

    def encode(self, spec: EndpointSpec, data: dict[str, Any], *, final: bool) -> dict[str, Any]:
        media = {k for k in data if k == "preview" or _has_media_field(spec.progress.get(k))}
        now = time.monotonic()
        if final or now - self._at >= self.interval or not media <= set(self._latest):
            self._at = now
            out = encode_progress(spec, data)
            self._latest = {k: out[k] for k in media}
            return out
        return {**data, **{k: self._latest[k] for k in media}}


def _has_media_field(f: FieldSpec | None) -> bool:
    return f is not None and media_field(f) is not None


def encode_value(f: FieldSpec, value: Any) -> Any:
    """``value`` with the media in it written per ``f`` (in lists and objects too)."""
    if value is None:
        return value
    if f.type in ("image", "audio", "video", "bytes"):
        return _encode_one(f, value)
    if f.type == "list" and f.items is not None and isinstance(value, list | tuple):
        return [encode_value(f.items, v) for v in value]
    if f.type == "object" and isinstance(value, dict):
        if f.properties is not None:
            props = f.properties
            return {k: encode_value(props[k], v) if k in props else v for k, v in value.items()}
        if f.values is not None:
            values = f.values
            return {k: encode_value(values, v) for k, v in value.items()}
    return value


def _encode_one(f: FieldSpec, value: Any) -> Any:
    if isinstance(value, str):
        return value  # already a data URL (or the model wrote one itself)
    if isinstance(value, bytes | bytearray):
        if f.type == "bytes":
            return Encoded(bytes(value), "application/octet-stream").data_url()
        return _sniffed(f, bytes(value)).data_url()
    if f.type == "bytes":
        raise MediaError(f"expected bytes, got {type(value).__name__}")
    if f.type == "audio":
        return encode_audio(value, f).data_url()
    if f.type == "video":
        from modelport.media.video import encode_video

        return encode_video(value, f).data_url()
    text = _text_of(value)
    return encode_image(value, f, text=text).data_url()


def _text_of(value: Any) -> dict[str, str] | None:
    """A PIL image's string ``info`` entries (``image.info["prompt"] = ...``), written as
    PNG text chunks."""
    info = getattr(value, "info", None)
    if not isinstance(info, dict):
        return None
    text = {k: v for k, v in info.items() if isinstance(k, str) and isinstance(v, str)}
    return text or None


def _sniffed(f: FieldSpec, data: bytes) -> Encoded:
    """Bytes the model encoded itself: their type read from the file."""
    import soundfile

    if f.type == "image":
        _, fmt = open_image(data, None, MediaLimits(max_pixels=1 << 40))
        from modelport.media.options import IMAGE_FORMATS

        return Encoded(data, IMAGE_FORMATS[fmt])
    import io

    from modelport.media.options import AUDIO_FORMATS

    try:
        fmt = soundfile.info(io.BytesIO(data)).format
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise MediaError(f"the model returned bytes that are not audio: {e}") from None
    return Encoded(data, AUDIO_FORMATS.get(fmt, "application/octet-stream"))
