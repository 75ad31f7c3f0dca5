"""Request bodies in, JSON out: the two things every route group does the same way."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import BadRequest, PayloadTooLarge


class JSONResponse(Response):
    """JSON bytes as they are, the headers made in one pass: Starlette's ``init_headers``
    costs a submit about as much as encoding its answer."""

    media_type = "application/json"

    def __init__(
        self, body: bytes, status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        given = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        if status < 200 or status in (204, 304) or any(k in _SET_HERE for k, _ in given):
            super().__init__(body, status, headers)  # Starlette's rules for these
            return
        self.status_code = status
        self.background = None
        self.body = body
        self.raw_headers = [
            *given,
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
        ]


_SET_HERE = (b"content-length", b"content-type")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(orjson.dumps(body), status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it is over ``limit`` bytes."""
    declared = next((v for k, v in request.scope["headers"] if k == b"content-length"), b"")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared.decode()} bytes; the limit is {limit}")
    parts: list[bytes] = []  # joined at the end: a body in one message, as usual, is not copied
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("the client went away before sending the whole body")
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
        parts.append(part)
        if not message.get("more_body", False):
            break
    if not size:
        raise BadRequest("the body is empty; send a JSON object")
    return b"".join(parts)
