"""Media on the way in, on the API server: the ways a file arrives (a data URL or base64 in
JSON, a ``multipart/form-data`` upload, a raw body with a media content type) and its
conversion to what the endpoint declares, before the job is queued.

Conversion runs in a worker thread, so a large upload never stalls the event loop; a file
that cannot be used is refused with 422 naming the field and the reason.
"""

from __future__ import annotations

import os
from typing import Any

import anyio.to_thread
import orjson
import pydantic
from starlette.datastructures import UploadFile
from starlette.requests import Request

from modelport.errors import BadRequest, InvalidInput, PayloadTooLarge, invalid
from modelport.media.codec import MediaLimits, format_of
from modelport.media.prepare import has_media, prepare, refused, single_media_input
from modelport.server.messages import read_body
from modelport.settings import Limits
from modelport.spec import EndpointSpec, FieldSpec, media_field

MEDIA_PREFIXES = ("image/", "audio/", "video/")


def is_form(content_type: str) -> bool:
    # Not application/x-www-form-urlencoded: that is what `curl -d '{"input": ...}'` sends
    # with a JSON body, which has always been read as JSON.
    return content_type.startswith("multipart/form-data")


def is_media(content_type: str) -> bool:
    return content_type.startswith(MEDIA_PREFIXES) or content_type == "application/octet-stream"


async def parse_upload(
    request: Request, spec: EndpointSpec, settings: Limits
) -> pydantic.BaseModel:
    """A form or raw media submit, validated as a JSON one is: the request model."""
    content_type = request.headers.get("content-type", "")
    if is_form(content_type):
        inputs = await form_inputs(request, spec, settings.max_body_size)
    else:
        body = await read_body(request, settings.max_body_size)
        inputs = await raw_inputs(request, spec, body)
    try:
        return spec.request_model.model_validate({"input": inputs})
    except pydantic.ValidationError as e:
        raise invalid(e.errors(include_url=False, include_input=False), strip="input") from None


async def normalise(
    spec: EndpointSpec, inputs: dict[str, Any], limits: MediaLimits
) -> dict[str, Any]:
    """``inputs`` with every media value converted per the spec, as a data URL."""
    if not has_media(spec, inputs):
        return inputs
    return await anyio.to_thread.run_sync(prepare, spec, inputs, limits, limiter=_limiter())


_LIMITERS: dict[int, anyio.CapacityLimiter] = {}


def _limiter() -> anyio.CapacityLimiter:
    """Conversions at once, per event loop: about one per core, so decoded pixels (a
    decoded image is many times its file) stay bounded however many uploads arrive."""
    import asyncio

    key = id(asyncio.get_running_loop())
    if key not in _LIMITERS:
        _LIMITERS.clear()  # a new loop (tests start many): the old ones are gone
        _LIMITERS[key] = anyio.CapacityLimiter(max(2, os.cpu_count() or 1))
    return _LIMITERS[key]


async def form_inputs(request: Request, spec: EndpointSpec, limit: int) -> dict[str, Any]:
    """The inputs of a form upload: files for media fields, text for the rest (as JSON
    types per the spec: ``top_k=3`` is the integer 3)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    request = Request(request.scope, _counted(request, limit))
    try:
        form = await request.form(max_files=64, max_fields=1000, max_part_size=limit)
    except PayloadTooLarge:
        raise
    except Exception as e:  # python-multipart's and Starlette's parse errors
        raise BadRequest(f"the form upload cannot be read: {e}") from None
    inputs: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    try:
        for key in dict.fromkeys(form.keys()):
            values = form.getlist(key)
            f = spec.inputs.get(key)
            if f is None:
                inputs[key] = await _file_or_text(values[0])
                continue  # validation names it as an unknown input
            try:
                inputs[key] = await _form_value(f, values)
            except ValueError as e:
                problems.append({"field": key, "message": str(e)})
    finally:
        await form.close()
    if problems:
        raise refused(problems)
    return inputs


async def _file_or_text(value: UploadFile | str) -> Any:
    return await value.read() if isinstance(value, UploadFile) else value


async def _form_value(f: FieldSpec, values: list[UploadFile | str]) -> Any:
    media = media_field(f)
    if media is not None:
        items = [await _file_or_text(v) for v in values]
        items = [i for i in items if not (isinstance(i, bytes) and not i)]  # an empty file field
        if f.type == "list":
            return items
        if len(items) != 1:
            raise ValueError(f"send one file, not {len(items)}")
        return items[0]
    texts = [v for v in values if isinstance(v, str)]
    if len(texts) != len(values):
        raise ValueError("a file was sent for a field that is not media")
    if f.type == "list" and f.items is not None and len(texts) > 1:
        return [_typed(f.items, t) for t in texts]
    if len(texts) != 1:
        raise ValueError(f"give one value, not {len(texts)}")
    return _typed(f, texts[0])


def _typed(f: FieldSpec, text: str) -> Any:
    """A form field's text as the JSON value the field takes."""
    kind = f.type
    if kind == "selection":
        for choice in f.choices or ():
            if str(choice) == text:
                return choice
        return text
    if kind == "string":
        return text
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind == "float":
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if kind == "union" or kind == "json":
            return text
        raise ValueError(f"expected JSON for this field, got {text[:50]!r}") from None


async def raw_inputs(request: Request, spec: EndpointSpec, body: bytes) -> dict[str, Any]:
    """A raw media body for an endpoint with one media input; the other inputs come from
    the query string."""
    key = single_media_input(spec)
    if key is None:
        raise BadRequest(
            "a raw media body needs an endpoint with exactly one file input (image, audio,"
            " video or bytes);"
            f" {spec.name!r} has {len(spec.media_inputs)}: send JSON or a multipart form"
        )
    f = spec.media_inputs[key]
    content_type = request.headers.get("content-type", "")
    fmt = format_of(content_type)
    wrong = not content_type.startswith(f.type + "/") and f.type != "bytes"
    if content_type.startswith(MEDIA_PREFIXES) and wrong:
        raise InvalidInput(
            f"{key}: the body is {content_type.split(';')[0]}; this input takes {f.type}",
            errors=[{"field": key, "message": f"expected {f.type}"}],
        )
    if fmt is not None and f.format is not None and fmt not in f.format:
        message = f"the body is {fmt}; this input takes {', '.join(f.format)}"
        raise InvalidInput(f"{key}: {message}", errors=[{"field": key, "message": message}])
    inputs: dict[str, Any] = {key: body}
    problems: list[dict[str, str]] = []
    for name, text in request.query_params.multi_items():
        field = spec.inputs.get(name)
        if field is None or name == key:
            inputs[name] = text
            continue
        try:
            inputs[name] = _typed(field, text)
        except ValueError as e:
            problems.append({"field": name, "message": str(e)})
    if problems:
        raise refused(problems)
    return inputs


def _counted(request: Request, limit: int) -> Any:
    """The request's receive, refusing with 413 once more than ``limit`` bytes came."""
    seen = 0
    receive = request.receive

    async def counted() -> Any:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        return message

    return counted
