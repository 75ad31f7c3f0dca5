"""Media inputs made what the endpoint declares, before the model sees them: each value (a
data URL, bare base64, a file's bytes, or an http(s) URL the settings allow) is converted
per its field and kept as a data URL.

The API server runs this before a job is queued (off its event loop); ``modelport run``,
``pipe`` and ``test`` run it in their own process, so a file given on the command line is
converted exactly as an upload would be.
"""

from __future__ import annotations

from typing import Any

from modelport.errors import InvalidInput
from modelport.media.codec import MediaError, MediaLimits, convert, parse_string
from modelport.media.fetch import FetchPolicy, fetch
from modelport.settings import Limits
from modelport.spec import EndpointSpec, FieldSpec, media_field


def limits_of(settings: Limits) -> MediaLimits:
    return MediaLimits(
        max_pixels=settings.max_image_pixels,
        max_duration=settings.max_audio_duration,
        max_bytes=settings.max_body_size,
        fetch_allow=tuple(settings.fetch_allow),
        fetch_timeout=settings.fetch_timeout,
    )


def has_media(spec: EndpointSpec, inputs: dict[str, Any]) -> bool:
    """Whether any media input is given (not left out or null)."""
    return any(inputs.get(k) is not None for k in spec.media_inputs)


def refused(problems: list[dict[str, str]]) -> InvalidInput:
    """The 422 for inputs that cannot be used: each field named with its reason."""
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return InvalidInput(message, errors=problems)


def single_media_input(spec: EndpointSpec) -> str | None:
    """The endpoint's one media input (not a list), which a raw file body (or stdin) is;
    None unless it has exactly one."""
    singles = [k for k, f in spec.media_inputs.items() if f.type != "list"]
    return singles[0] if len(spec.media_inputs) == 1 and singles else None


def prepare(spec: EndpointSpec, inputs: dict[str, Any], limits: MediaLimits) -> dict[str, Any]:
    """``inputs`` with every media value converted per the spec, as a data URL; a value
    that cannot be used is refused (:class:`InvalidInput`) naming its field."""
    jobs: list[tuple[str, FieldSpec, Any, int | None]] = []
    for key, f in spec.media_inputs.items():
        value = inputs.get(key)
        if value is None:
            continue
        media = media_field(f)
        assert media is not None
        if isinstance(value, list):
            jobs += [(key, media, item, i) for i, item in enumerate(value)]
        else:
            jobs.append((key, media, value, None))
    if not jobs:
        return inputs
    converted = _convert_all(jobs, limits)
    out = dict(inputs)
    for (key, _, _, index), url in zip(jobs, converted, strict=True):
        if index is None:
            out[key] = url
        else:
            out[key] = [*out[key]] if out[key] is inputs.get(key) else out[key]
            out[key][index] = url
    return out


def _convert_all(
    jobs: list[tuple[str, FieldSpec, Any, int | None]], limits: MediaLimits
) -> list[str]:
    problems: list[dict[str, str]] = []
    urls: list[str] = []
    for key, f, value, index in jobs:
        where = key if index is None else f"{key}.{index}"
        try:
            if isinstance(value, bytes):
                data = value
            elif value.startswith(("http://", "https://")):
                data = fetch(value, _policy(f, limits))
            else:
                data = parse_string(value)[0]
            urls.append(convert(data, f, limits).data_url())
        except MediaError as e:
            problems.append({"field": where, "message": str(e)})
    if problems:
        raise refused(problems)
    return urls


def _policy(f: FieldSpec, limits: MediaLimits) -> FetchPolicy:
    most = min(f.max_bytes or limits.max_bytes, limits.max_bytes)
    return FetchPolicy(limits.fetch_allow, max_bytes=most, timeout=limits.fetch_timeout)
