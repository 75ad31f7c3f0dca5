"""Decoding, converting and encoding media with Pillow, soundfile and soxr.

Everything here is blocking CPU work: the server calls it off the event loop. A file that
cannot be used raises :class:`MediaError` with the reason as a user reads it
(``not a JPEG or PNG file``); the caller names the field.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelport.media.audio import Audio
from modelport.media.options import (
    AUDIO_FORMATS,
    FORMAT_OF_MIME,
    IMAGE_FORMATS,
    MIME_TYPES,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from modelport.spec import FieldSpec


class MediaError(ValueError):
    """A media value that cannot be used, and why."""


@dataclass
class MediaLimits:
    """Server-wide bounds every media input is held to, whatever its spec says."""

    max_pixels: int = 50_000_000
    max_duration: float = 3600.0
    max_bytes: int = 64 * 1024 * 1024
    max_frames: int = 3000
    fetch_allow: tuple[str, ...] = ()
    fetch_timeout: float = 10.0


@dataclass
class Encoded:
    """A file: its bytes and its content type."""

    data: bytes
    mime: str

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[^;,]*)*)(;base64)?,", re.I)


def parse_string(value: str) -> tuple[bytes, str | None]:
    """A data URL's (or bare base64's) bytes and the content type it declares."""
    match = _DATA_URL.match(value)
    if match is None:
        if value.startswith(("http://", "https://")):
            raise MediaError("URLs are not fetched by this server; send the file itself")
        mime, payload = None, value
    else:
        if match.group(3) is None:
            raise MediaError("a data URL of media must be base64 (data:...;base64,...)")
        mime, payload = match.group(1), value[match.end() :]
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MediaError("not a data URL or valid base64") from None
    return data, mime.lower() if mime else None


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _check_bytes(data: bytes, f: FieldSpec, limits: MediaLimits) -> None:
    if not data:
        raise MediaError("the file is empty")
    most = min(f.max_bytes or limits.max_bytes, limits.max_bytes)
    if len(data) > most:
        raise MediaError(f"the file is {len(data)} bytes; the limit is {most}")


def convert(data: bytes, f: FieldSpec, limits: MediaLimits) -> Encoded:
    """An uploaded file made what the field declares, ready to queue."""
    _check_bytes(data, f, limits)
    if f.type == "bytes":
        return Encoded(data, "application/octet-stream")
    if f.type == "image":
        return convert_image(data, f, limits)
    if f.type == "video":
        from modelport.media.video import encode_video, read_video

        return encode_video(read_video(data, f, limits), f, queued=True)
    return convert_audio(data, f, limits)


def convert_image(data: bytes, f: FieldSpec, limits: MediaLimits) -> Encoded:
    image, fmt = open_image(data, f, limits)
    converted = conform_image(image, f)
    untouched = converted is image and not image.info.get(_TRANSPOSED)
    if untouched and fmt in ("PNG", "JPEG", "WEBP"):
        return Encoded(data, IMAGE_FORMATS[fmt])  # already as declared: no re-encoding
    return encode_queued(converted)


RAW_PIXELS = 1 << 18
"""Up to this many pixels (512x512), a converted image waits in the queue uncompressed
(TIFF): encoding and decoding it cost next to nothing; a larger one is a fast PNG."""


def encode_queued(image: Image) -> Encoded:
    """A converted image as it waits in the queue for a worker: lossless, cheap to decode."""
    if image.width * image.height <= RAW_PIXELS:
        buffer = io.BytesIO()
        image.save(buffer, format="TIFF")
        return Encoded(buffer.getvalue(), IMAGE_FORMATS["TIFF"])
    return encode_image(image, None, lossless=True)


def open_image(data: bytes, f: FieldSpec | None, limits: MediaLimits) -> tuple[Image, str]:
    """Decode an image (the first frame of an animation), its EXIF orientation applied;
    dimensions are checked before any pixel is decoded, so a decompression bomb is
    refused for the price of its header."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    allowed = (f.format if f is not None else None) or list(IMAGE_FORMATS)
    try:
        image = PILImage.open(io.BytesIO(data), formats=allowed)
    except (
        UnidentifiedImageError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,  # when warnings are errors
    ) as e:
        if not isinstance(e, UnidentifiedImageError):
            raise MediaError(f"too many pixels: {e}") from None
        raise MediaError(f"not a {_names(allowed)} file") from None
    except Exception as e:  # a malformed header makes some decoders raise anything
        raise MediaError(f"not a readable {_names(allowed)} file ({e})") from None
    width, height = image.size
    most = min((f.max_pixels if f is not None else None) or limits.max_pixels, limits.max_pixels)
    if width * height > most:
        raise MediaError(f"{width}x{height} is {width * height} pixels; the limit is {most}")
    fmt = image.format or allowed[0]
    try:
        image.load()
        if image.getexif().get(_ORIENTATION, 1) in (0, 1):
            return image, fmt
        upright = ImageOps.exif_transpose(image)
    except Exception as e:
        raise MediaError(f"the {fmt} file is damaged or truncated ({e})") from None
    upright.info[_TRANSPOSED] = True
    return upright, fmt


_ORIENTATION = 0x0112
_TRANSPOSED = "modelport.transposed"


def conform_image(image: Image, f: FieldSpec) -> Image:
    """``image`` in the field's mode and size (the same object when it already is)."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    out = image
    if f.mode is not None and out.mode != f.mode:
        if out.mode in ("RGBA", "LA", "P") and f.mode in ("RGB", "L"):
            background = PILImage.new("RGBA", out.size, (255, 255, 255, 255))
            background.alpha_composite(out.convert("RGBA"))
            out = background.convert(f.mode)
        else:
            out = out.convert(f.mode)
    width, height = out.size
    target = _target_size(width, height, f)
    if target is not None and target != (width, height):
        if f.resize is None:
            raise MediaError(_size_problem(width, height, f))
        method = PILImage.Resampling.LANCZOS
        if f.resize == "crop":
            out = ImageOps.fit(out, target, method)
        elif f.resize == "pad":
            out = ImageOps.pad(out, target, method, color=_pad_colour(out.mode))
        elif f.resize == "fit":
            out = ImageOps.contain(out, target, method)
        else:
            out = out.resize(target, method)
    if f.align and (out.width % f.align or out.height % f.align):
        out = _align(out, f)
    return out


def _target_size(width: int, height: int, f: FieldSpec) -> tuple[int, int] | None:
    if f.size is not None:
        return (f.size[0], f.size[1])
    w, h = float(width), float(height)
    if f.max_size is not None and (w > f.max_size[0] or h > f.max_size[1]):
        scale = min(f.max_size[0] / w, f.max_size[1] / h)
        w, h = w * scale, h * scale
    if f.min_size is not None and (w < f.min_size[0] or h < f.min_size[1]):
        scale = max(f.min_size[0] / w, f.min_size[1] / h)
        w, h = w * scale, h * scale
    target = (max(1, round(w)), max(1, round(h)))
    if f.max_size is not None:  # both bounds cannot always hold at this aspect ratio
        target = (min(target[0], f.max_size[0]), min(target[1], f.max_size[1]))
    return target


def _size_problem(width: int, height: int, f: FieldSpec) -> str:
    if f.size is not None:
        return f"the image is {width}x{height}; the endpoint takes {f.size[0]}x{f.size[1]}"
    if f.min_size is not None and (width < f.min_size[0] or height < f.min_size[1]):
        return (
            f"the image is {width}x{height}, smaller than the minimum"
            f" {f.min_size[0]}x{f.min_size[1]}"
        )
    assert f.max_size is not None
    return f"the image is {width}x{height}, larger than the maximum {f.max_size[0]}x{f.max_size[1]}"


def _align(image: Image, f: FieldSpec) -> Image:
    from PIL import Image as PILImage
    from PIL import ImageOps

    a = f.align or 1
    width, height = image.size
    if f.resize is None:
        raise MediaError(f"the image is {width}x{height}; both sides must be multiples of {a}")
    down = (max(a, width // a * a), max(a, height // a * a))
    up = (-(-width // a) * a, -(-height // a) * a)
    if f.resize == "crop":
        return ImageOps.fit(image, down, PILImage.Resampling.LANCZOS)
    if f.resize == "pad":
        return ImageOps.pad(image, up, PILImage.Resampling.LANCZOS, color=_pad_colour(image.mode))
    nearest = (max(a, round(width / a) * a), max(a, round(height / a) * a))
    return image.resize(nearest, PILImage.Resampling.LANCZOS)


def _pad_colour(mode: str) -> Any:
    return {"RGBA": (0, 0, 0, 0), "LA": (0, 0), "RGB": (0, 0, 0)}.get(mode, 0)


def encode_image(
    image: Any, f: FieldSpec | None, *, lossless: bool = False, text: dict[str, str] | None = None
) -> Encoded:
    """A PIL image (or a numpy array of one) written as the field says (PNG unless told)."""
    from PIL import Image as PILImage
    from PIL import PngImagePlugin

    if not isinstance(image, PILImage.Image):
        image = _image_from_array(image)
    if f is not None:
        if f.mode is not None and image.mode != f.mode:
            image = image.convert(f.mode)
        if f.max_size is not None and (image.width > f.max_size[0] or image.height > f.max_size[1]):
            image = image.copy()
            image.thumbnail((f.max_size[0], f.max_size[1]), PILImage.Resampling.LANCZOS)
    fmt = f.format[0] if f is not None and f.format else "PNG"
    options: dict[str, Any] = {}
    if fmt == "PNG":
        options["compress_level"] = 1 if lossless else 6
        if text:
            info = PngImagePlugin.PngInfo()
            for key, value in text.items():
                info.add_text(key, value)
            options["pnginfo"] = info
    else:
        options["quality"] = f.quality if f is not None and f.quality else 90
        if fmt == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
            image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return Encoded(buffer.getvalue(), IMAGE_FORMATS[fmt])


def _image_from_array(value: Any) -> Image:
    import numpy as np
    from PIL import Image as PILImage

    if not isinstance(value, np.ndarray):
        raise MediaError(f"expected a PIL image or a numpy array, got {type(value).__name__}")
    array = value
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            array = (np.clip(array, 0.0, 1.0) * 255).round()
        array = array.astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise MediaError(f"an image array must be HxW, HxWx3 or HxWx4, not {array.shape}")
    return PILImage.fromarray(array)


def decode_image(data: bytes) -> Image:
    """An image the server already converted (or the model wrote), decoded."""
    image, _ = open_image(data, None, MediaLimits(max_pixels=1 << 40))
    return image


def convert_audio(data: bytes, f: FieldSpec, limits: MediaLimits) -> Encoded:
    audio = read_audio(data, f, limits)
    return encode_audio(conform_audio(audio, f), None)


def read_audio(data: bytes, f: FieldSpec | None, limits: MediaLimits) -> Audio:
    """Decode WAV, FLAC, OGG or MP3 to float32 samples; never more than the duration
    limit is decoded, whatever the header claims."""
    import soundfile

    allowed = (f.format if f is not None else None) or list(AUDIO_FORMATS)
    try:
        info = soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        raise MediaError(f"not a {_names(allowed)} file") from None
    fmt = {"WAVEX": "WAV", "RF64": "WAV"}.get(info.format, info.format)
    if fmt not in allowed:
        raise MediaError(f"not a {_names(allowed)} file (it is {fmt})")
    if info.samplerate <= 0 or info.channels <= 0:
        raise MediaError(f"the {fmt} file declares no audio")
    most = limits.max_duration
    if f is not None and f.max_duration is not None:
        most = min(most, f.max_duration)
    cap = int(most * info.samplerate) + 1 if most < float("inf") else -1
    try:
        samples, rate = soundfile.read(
            io.BytesIO(data), frames=cap, dtype="float32", always_2d=True
        )
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise MediaError(f"the {fmt} file is damaged or truncated ({e})") from None
    if len(samples) == 0:
        raise MediaError(f"the {fmt} file has no audio samples")
    duration = len(samples) / rate
    if 0 < cap <= len(samples):
        raise MediaError(f"the audio is longer than the limit of {most:g} seconds")
    if f is not None and f.min_duration is not None and duration < f.min_duration:
        raise MediaError(f"the audio is {duration:.3g} seconds; the minimum is {f.min_duration:g}")
    return Audio(samples[:, 0].copy() if samples.shape[1] == 1 else samples, int(rate))


def conform_audio(audio: Audio, f: FieldSpec) -> Audio:
    """``audio`` at the field's sample rate and channel count, as float32."""
    import numpy as np

    samples = np.asarray(audio.samples, dtype=np.float32)
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim not in (1, 2):
        raise MediaError(
            f"audio samples must be (frames,) or (frames, channels), not {samples.shape}"
        )
    rate = audio.sample_rate
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    if f.channels is not None and channels != f.channels:
        if f.channels == 1:
            samples = samples.mean(axis=1, dtype=np.float32)
        elif channels == 1:
            samples = np.repeat(samples[:, None], f.channels, axis=1)
        else:
            raise MediaError(f"the audio has {channels} channels; the endpoint takes {f.channels}")
    if f.sample_rate is not None and rate != f.sample_rate:
        import soxr

        samples = soxr.resample(samples, rate, f.sample_rate).astype(np.float32, copy=False)
        rate = f.sample_rate
    return Audio(np.ascontiguousarray(samples), rate)


def encode_audio(audio: Any, f: FieldSpec | None) -> Encoded:
    """Audio written as the field says: WAV (float32 samples) unless told FLAC or OGG."""
    import numpy as np
    import soundfile

    if not isinstance(audio, Audio):
        raise MediaError(f"expected a modelport.Audio, got {type(audio).__name__}")
    if f is not None and (f.sample_rate is not None or f.channels is not None):
        audio = conform_audio(audio, f)
    fmt = f.format[0] if f is not None and f.format else "WAV"
    samples = np.clip(np.asarray(audio.samples, dtype=np.float32), -1.0, 1.0)
    subtype = {"WAV": "FLOAT", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, audio.sample_rate, format=fmt, subtype=subtype)
    return Encoded(buffer.getvalue(), AUDIO_FORMATS[fmt])


def decode_audio(data: bytes) -> Audio:
    return read_audio(data, None, MediaLimits(max_duration=float("inf")))


def mime_of(fmt: str) -> str:
    return MIME_TYPES[fmt]


def format_of(mime: str | None) -> str | None:
    return None if mime is None else FORMAT_OF_MIME.get(mime.split(";")[0].strip().lower())
