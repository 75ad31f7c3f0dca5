"""What a media field may declare, and the checks on it: plain data, no codec imported.

The spec module uses these to check ``image`` and ``audio`` fields the same way whether they
come from ``Input(...)`` / :func:`Media` or from TOML.
"""

from __future__ import annotations

from typing import Any

MEDIA_TYPES = ("image", "audio", "video", "bytes")
"""Types that travel as files; ``bytes`` is any file, passed on undecoded."""

MEDIA_KEYS: dict[str, tuple[str, ...]] = {
    "image": (
        "format",
        "mode",
        "size",
        "min_size",
        "max_size",
        "align",
        "resize",
        "quality",
        "max_pixels",
        "max_bytes",
    ),
    "audio": ("format", "sample_rate", "channels", "min_duration", "max_duration", "max_bytes"),
    "bytes": ("max_bytes",),
    "video": (
        "format",
        "size",
        "max_size",
        "resize",
        "fps",
        "min_duration",
        "max_duration",
        "max_frames",
        "max_bytes",
    ),
}
ALL_MEDIA_KEYS = tuple(dict.fromkeys(k for keys in MEDIA_KEYS.values() for k in keys))

IMAGE_FORMATS = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
IMAGE_WRITE_FORMATS = ("PNG", "JPEG", "WEBP")
AUDIO_FORMATS = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg"}
AUDIO_WRITE_FORMATS = ("WAV", "FLAC", "OGG")
VIDEO_FORMATS = {
    "MP4": "video/mp4",
    "WEBM": "video/webm",
    "MKV": "video/x-matroska",
    "MOV": "video/quicktime",
    "AVI": "video/x-msvideo",
}
VIDEO_WRITE_FORMATS = ("MP4", "WEBM")
FORMATS: dict[str, dict[str, str]] = {
    "image": IMAGE_FORMATS,
    "audio": AUDIO_FORMATS,
    "video": VIDEO_FORMATS,
    "bytes": {},
}
WRITE_FORMATS = {
    "image": IMAGE_WRITE_FORMATS,
    "audio": AUDIO_WRITE_FORMATS,
    "video": VIDEO_WRITE_FORMATS,
    "bytes": (),
}
MIME_TYPES = {**IMAGE_FORMATS, **AUDIO_FORMATS, **VIDEO_FORMATS}
FORMAT_OF_MIME = {
    **{v: k for k, v in MIME_TYPES.items()},
    "image/jpg": "JPEG",
    "audio/x-wav": "WAV",
    "audio/wave": "WAV",
    "audio/vnd.wave": "WAV",
    "audio/mp3": "MP3",
    "audio/x-flac": "FLAC",
    "audio/vorbis": "OGG",
    "video/x-mkv": "MKV",
}
MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "F")
RESIZES = ("crop", "pad", "fit", "stretch")

_FORMAT_ALIASES = {"JPG": "JPEG", "TIF": "TIFF", "WAVE": "WAV", "VORBIS": "OGG"}


def canonical_format(name: str) -> str:
    """``jpg`` -> ``JPEG``: format names as Pillow and soundfile spell them."""
    upper = name.upper()
    return _FORMAT_ALIASES.get(upper, upper)


def media_problems(where: str, f: Any, *, output: bool) -> list[tuple[str, str]]:
    """Every reason this media field's options cannot work (``f`` is a FieldSpec)."""
    out: list[tuple[str, str]] = []
    kind = f.type
    allowed = MEDIA_KEYS.get(kind, ())
    for key in ALL_MEDIA_KEYS:
        value = getattr(f, key)
        if value is None:
            continue
        if key not in allowed:
            applies = [t for t, keys in MEDIA_KEYS.items() if key in keys]
            out.append((where, f"{key!r} only applies to type {' or '.join(map(repr, applies))}"))
    if kind not in MEDIA_TYPES:
        return out
    formats = FORMATS[kind]
    for name in f.format or ():
        if not isinstance(name, str) or name not in formats:
            out.append(
                (f"{where}.format", f"unknown {kind} format {name!r} (use {', '.join(formats)})")
            )
    if f.format is not None and not f.format:
        out.append((f"{where}.format", "give at least one format"))
    if output and f.format:
        writable = WRITE_FORMATS[kind]
        if len(f.format) != 1 or f.format[0] not in writable:
            out.append((f"{where}.format", f"an output is written as one of {', '.join(writable)}"))
    if f.mode is not None and f.mode not in MODES:
        out.append((f"{where}.mode", f"unknown mode {f.mode!r} (use {', '.join(MODES)})"))
    for key in ("size", "min_size", "max_size"):
        value = getattr(f, key)
        if value is not None and not _pair(value):
            out.append((f"{where}.{key}", "expected [width, height], two positive integers"))
    if (
        f.min_size is not None
        and f.max_size is not None
        and _pair(f.min_size)
        and _pair(f.max_size)
        and (f.min_size[0] > f.max_size[0] or f.min_size[1] > f.max_size[1])
    ):
        out.append((where, f"min_size {f.min_size} is larger than max_size {f.max_size}"))
    if f.size is not None and (f.min_size is not None or f.max_size is not None):
        out.append((where, "give size (exact) or min_size/max_size (bounds), not both"))
    if f.resize is not None and f.resize not in RESIZES:
        out.append((f"{where}.resize", f"unknown resize {f.resize!r} (use {', '.join(RESIZES)})"))
    for key, low, high in (
        ("align", 1, 4096),
        ("quality", 1, 100),
        ("max_pixels", 1, 1 << 40),
        ("max_bytes", 1, 1 << 40),
        ("sample_rate", 1, 768_000),
        ("channels", 1, 64),
        ("max_frames", 1, 1 << 24),
    ):
        value = getattr(f, key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high
        ):
            out.append((f"{where}.{key}", f"expected an integer from {low} to {high}"))
    for key in ("min_duration", "max_duration", "fps"):
        value = getattr(f, key)
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or not value > 0
        ):
            out.append((f"{where}.{key}", "expected a positive number of seconds"))
    if (
        isinstance(f.min_duration, int | float)
        and isinstance(f.max_duration, int | float)
        and f.min_duration > f.max_duration
    ):
        out.append((where, f"min_duration ({f.min_duration}) is over max_duration"))
    if output:
        written = ("format", "quality", "max_size", "mode", "sample_rate", "channels")
        for key in allowed:
            if key not in written and getattr(f, key) is not None:
                out.append((f"{where}.{key}", "applies to inputs only"))
    elif f.quality is not None:
        out.append((f"{where}.quality", "applies to outputs and previews only"))
    if f.default is not None:
        out.append((where, "a media field has no default (leave it out or make it nullable)"))
    return out


def _pair(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )
