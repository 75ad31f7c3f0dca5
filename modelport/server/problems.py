"""Errors to HTTP, in one place: every :class:`ModelportError` (and Starlette's own 404/405,
and anything unexpected) becomes an RFC 9457 ``application/problem+json`` answer, or under
``/v1`` an error in OpenAI's shape, which is what the clients of those routes read."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelport.errors import PROBLEM_PREFIX, ModelportError, NotFound
from modelport.server.openai import error_response as openai_error
from modelport.server.openai import is_openai_path

log = logging.getLogger("modelport.server")

PROBLEM_JSON = "application/problem+json"


def problem_response(err: ModelportError) -> Response:
    return Response(orjson.dumps(err.to_problem()), err.status, err.headers or None, PROBLEM_JSON)


def error_response(path: str, err: ModelportError) -> Response:
    """The error in the shape its route speaks: OpenAI's under /v1, else a problem document."""
    if is_openai_path(path):
        return openai_error(err.status, err.message, err.headers)
    return problem_response(err)


def unexpected(request: Request, exc: Exception) -> Response:
    """The answer to a bug: logged with its traceback, never shown to the caller."""
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    err = ModelportError("an unexpected error happened; see the server log")
    return error_response(request.url.path, err)


async def _on_modelport_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelportError)
    return error_response(request.url.path, exc)


_HTTP_PROBLEMS = {404: (NotFound.kind, NotFound.title), 405: ("method-not-allowed", None)}


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = f"{request.method} {request.url.path}: {exc.detail}"
    if is_openai_path(request.url.path):
        return openai_error(exc.status_code, detail, exc.headers)
    kind, title = _HTTP_PROBLEMS.get(exc.status_code, ("http", None))
    body = {  # Starlette's 404 reads as modelport's own: one title for one type
        "type": PROBLEM_PREFIX + kind,
        "title": title or str(exc.detail).capitalize(),
        "status": exc.status_code,
        "detail": detail,
    }
    return Response(orjson.dumps(body), exc.status_code, exc.headers, PROBLEM_JSON)


async def _on_unexpected_error(request: Request, exc: Exception) -> Response:
    return unexpected(request, exc)


Handler = Callable[[Request, Exception], Awaitable[Response]]
EXCEPTION_HANDLERS: Mapping[Any, Handler] = {
    ModelportError: _on_modelport_error,
    HTTPException: _on_http_error,
    Exception: _on_unexpected_error,
}
"""Starlette's ``exception_handlers`` for an app that answers problem documents."""
