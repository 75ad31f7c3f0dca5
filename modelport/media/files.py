"""Media outputs as files: ``GET /jobs/{id}/files/{name}`` and ``Accept: image/png`` on
an endpoint with one media output, both answering the file itself.

A file is a data URL kept in the job's output, or (past the inline limit) a file of the
job in the store that the output names by URL (:mod:`modelport.media.blobs`).
"""

from __future__ import annotations

from typing import Any

import mimeparse
from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import NotFound
from modelport.media.blobs import FILES
from modelport.media.codec import MediaError, parse_string
from modelport.spec import EndpointSpec, media_field
from modelport.stores.base import JobStore
from modelport.wire import JobRecord, JobStatus

_MEDIA = ("image/", "audio/", "video/", "application/octet-stream")


_KINDS = ("image", "audio", "video", "bytes")


def single_output(spec: EndpointSpec) -> str | None:
    """The name of an endpoint's only media output (``output`` for a bare one), if it has
    exactly one and it is not a list."""
    if spec.output is not None:
        return "output" if spec.output.type in _KINDS else None
    named = [k for k, f in (spec.outputs or {}).items() if media_field(f) is not None]
    if len(named) == 1 and (spec.outputs or {})[named[0]].type in _KINDS:
        return named[0]
    return None


def _wanted(request: Request) -> list[str]:
    """The media types the ``Accept`` header names with a quality above zero."""
    wanted = []
    for part in request.headers.get("accept", "").split(","):
        try:
            kind, subtype, params = mimeparse.parse_media_range(part)
        except ValueError:
            continue
        media = f"{kind}/{subtype}".lower()
        if media.startswith(_MEDIA) and float(params.get("q", 1)) > 0:
            wanted.append(media)
    return wanted


async def binary_answer(
    request: Request, store: JobStore, spec: EndpointSpec, job: JobRecord
) -> Response | None:
    """The output file itself, when the client asks for a media type the endpoint's single
    media output is (``image/*`` matches any image); None means answer with JSON, as for
    an unfinished or failed job."""
    if job.status is not JobStatus.SUCCEEDED or "accept" not in request.headers:
        return None
    name = single_output(spec)
    if name is None:
        return None
    wanted = _wanted(request)
    if not wanted:
        return None
    found = await _load(store, job, name)
    if found is None:
        return None
    mime, data = found
    kind = mime.split("/")[0]
    if not any(w == mime or w == f"{kind}/*" for w in wanted):
        return None
    return _file(data, mime, job, name)


async def file_response(store: JobStore, job: JobRecord, name: str) -> Response:
    """One media value of a job's output (``image``, ``images.0``, ``output``) or of its
    progress (``preview``), as a file."""
    found = await _load(store, job, name)
    if found is None:
        raise NotFound(f"job {job.id} has no file named {name!r}")
    return _file(found[1], found[0], job, name)


async def _load(store: JobStore, job: JobRecord, name: str) -> tuple[str, bytes] | None:
    value = _find(job, name)
    if not isinstance(value, str):
        return None
    if value == FILES.format(id=job.id, name=name) and not name.startswith("input."):
        return await store.get_blob(job.id, name)
    if not value.startswith("data:"):
        return None
    try:
        data, mime = parse_string(value)
    except MediaError:
        return None
    return mime or "application/octet-stream", data


def linked_inputs(spec: EndpointSpec, job: JobRecord) -> dict[str, Any]:
    """A job's input as clients see it: each converted media value as the URL of its file,
    not its bytes again."""
    out = dict(job.input)
    for key in spec.media_inputs:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = FILES.format(id=job.id, name=f"input.{key}")
        elif isinstance(value, list):
            out[key] = [FILES.format(id=job.id, name=f"input.{key}.{i}") for i in range(len(value))]
    return out


def _find(job: JobRecord, name: str) -> Any:
    first, *rest = name.split(".")
    if first == "input" and rest:
        value: Any = job.input
        for part in rest:
            if isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            elif isinstance(value, dict) and part in value:
                value = value[part]
            else:
                return None
        return value
    if first == "preview" and not rest and job.progress is not None:
        data = job.progress.get("data") or {}
        if "preview" in data:
            return data["preview"]
    if first == "output":
        value = job.output
    elif isinstance(job.output, dict):
        value = job.output.get(first)
    else:
        return None
    for part in rest:
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def _file(data: bytes, mime: str, job: JobRecord, name: str) -> Response:
    extension = mime.split("/")[-1].replace("jpeg", "jpg")
    return Response(
        data,
        media_type=mime,
        headers={
            "X-Job-Status": job.status.value,
            "X-Job-Id": job.id,
            "Content-Disposition": f'inline; filename="{job.id}-{name}.{extension}"',
        },
    )
