"""Media outputs as files: ``GET /jobs/{id}/files/{name}`` and ``Accept: image/png`` on
an endpoint with one media output, both answering the file itself."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import NotFound
from modelport.media.codec import MediaError, parse_string
from modelport.spec import EndpointSpec, media_field
from modelport.wire import JobRecord, JobStatus

_MEDIA = ("image/", "audio/")


def single_output(spec: EndpointSpec) -> str | None:
    """The name of an endpoint's only media output (``output`` for a bare one), if it has
    exactly one and it is not a list."""
    if spec.output is not None:
        return "output" if spec.output.type in ("image", "audio") else None
    named = [k for k, f in (spec.outputs or {}).items() if media_field(f) is not None]
    if len(named) == 1 and (spec.outputs or {})[named[0]].type in ("image", "audio"):
        return named[0]
    return None


def _wanted(request: Request) -> list[str]:
    accept = request.headers.get("accept", "")
    return [
        part.split(";")[0].strip().lower()
        for part in accept.split(",")
        if part.strip().lower().startswith(_MEDIA)
    ]


def binary_answer(request: Request, spec: EndpointSpec, job: JobRecord) -> Response | None:
    """The output file itself, when the client asks for a media type the endpoint's single
    media output is (``image/*`` matches any image); None means answer with JSON, as for
    an unfinished or failed job."""
    wanted = _wanted(request)
    name = single_output(spec) if wanted else None
    if name is None or job.status is not JobStatus.SUCCEEDED:
        return None
    value = job.output if name == "output" else (job.output or {}).get(name)
    if not isinstance(value, str):
        return None
    data, mime = parse_string(value)
    kind = (mime or "").split("/")[0]
    if not any(w == mime or w == f"{kind}/*" for w in wanted):
        return None
    return _file(data, mime, job, name)


def file_response(spec: EndpointSpec, job: JobRecord, name: str) -> Response:
    """One media value of a job's output (``image``, ``images.0``, ``output``) or of its
    progress (``preview``), as a file."""
    value = _find(job, name)
    if not isinstance(value, str) or not value.startswith("data:"):
        raise NotFound(f"job {job.id} has no file named {name!r}")
    try:
        data, mime = parse_string(value)
    except MediaError:
        raise NotFound(f"job {job.id} has no file named {name!r}") from None
    return _file(data, mime, job, name)


def _find(job: JobRecord, name: str) -> Any:
    key, _, index = name.partition(".")
    if key == "preview" and not index and job.progress is not None:
        data = job.progress.get("data") or {}
        if "preview" in data:
            return data["preview"]
    if key == "output":
        value = job.output
    elif isinstance(job.output, dict):
        value = job.output.get(key)
    else:
        return None
    if index:
        if not index.isdigit() or not isinstance(value, list) or int(index) >= len(value):
            return None
        value = value[int(index)]
    return value


def _file(data: bytes, mime: str | None, job: JobRecord, name: str) -> Response:
    extension = (mime or "application/octet-stream").split("/")[-1].replace("jpeg", "jpg")
    return Response(
        data,
        media_type=mime or "application/octet-stream",
        headers={
            "X-Job-Status": job.status.value,
            "X-Job-Id": job.id,
            "Content-Disposition": f'inline; filename="{job.id}-{name}.{extension}"',
        },
    )
