"""The exception tree, shared by server, worker and client.

    ModelportError                the root; an unexpected server error       500
    ├── SpecError                 an endpoint spec or TOML file is wrong      422
    ├── InvalidRequest            a request is wrong (4xx)                    400
    │   ├── BadRequest            malformed JSON, bad header                  400
    │   ├── InvalidInput          inputs break the spec                       422
    │   ├── NotFound              unknown endpoint, job or worker             404
    │   ├── Conflict              job already final, lease lost, spec differs 409
    │   └── PayloadTooLarge       body over the limit                         413
    ├── Unauthorized              missing or wrong credential                 401
    ├── Forbidden                 a credential used where it is not valid     403
    ├── Overloaded                queue full (``retry_after``)                429
    │   └── RateLimited           an API key over its rate, quota or cap      429
    ├── Unavailable               store down, not ready (``retry_after``)     503
    ├── JobFailed                 the job ended failed/cancelled/expired (client side)
    ├── TimedOut                  a wait ran out (client side)
    └── Unreachable               the server cannot be reached (client side)

Every class carries its HTTP ``status`` and problem ``kind``. The server turns an error into
``application/problem+json`` in one place (:mod:`modelport.server.problems`); the client and
the HTTP worker turn the document back into the same class with :func:`from_problem`.

``ValidationError``, ``Timeout`` and ``RequestError`` are the old names of ``InvalidInput``,
``TimedOut`` and ``InvalidRequest`` (they collided with pydantic's, the builtin and httpx's);
they still work, with a :class:`DeprecationWarning`, for one release.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

PROBLEM_PREFIX = "urn:modelport:problem:"


class ModelportError(Exception):
    """Root of every error modelport raises."""

    status: int = 500
    kind: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str = "", *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message or self.title)
        self.message = message or self.title
        self.errors = errors or []
        self.headers: dict[str, str] = {}

    @property
    def type_uri(self) -> str:
        return PROBLEM_PREFIX + self.kind

    def to_problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.message,
        }
        if self.errors:
            body["errors"] = self.errors
        return body


class SpecError(ModelportError):
    """An endpoint spec is invalid; raised at start, naming the file, key and reason."""

    status = 422
    kind = "spec"
    title = "Invalid endpoint spec"


class InvalidRequest(ModelportError):
    """The request is wrong; the parent of every 4xx that the caller can fix."""

    status = 400
    kind = "invalid-request"
    title = "Invalid request"


class BadRequest(InvalidRequest):
    kind = "bad-request"
    title = "Bad request"


class InvalidInput(InvalidRequest):
    """The inputs break the endpoint's spec; ``errors`` lists ``{field, message}``."""

    status = 422
    kind = "validation"
    title = "Invalid input"


class NotFound(InvalidRequest):
    status = 404
    kind = "not-found"
    title = "Not found"


class Conflict(InvalidRequest):
    status = 409
    kind = "conflict"
    title = "Conflict"


class PayloadTooLarge(InvalidRequest):
    status = 413
    kind = "payload-too-large"
    title = "Payload too large"


class Unauthorized(ModelportError):
    status = 401
    kind = "unauthorized"
    title = "Unauthorized"


class Forbidden(ModelportError):
    status = 403
    kind = "forbidden"
    title = "Forbidden"


class _RetryLater(ModelportError):
    """An error that says when to try again (``Retry-After``, in seconds)."""

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: int = 1,
        errors: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message, errors=errors)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)

    def to_problem(self) -> dict[str, Any]:
        return {**super().to_problem(), "retry_after": self.retry_after}


class Overloaded(_RetryLater):
    status = 429
    kind = "overloaded"
    title = "Too many queued jobs"


class RateLimited(Overloaded):
    """An API key is over its rate, its daily quota or its cap of queued jobs."""

    kind = "rate-limited"
    title = "Rate limit exceeded"


class Unavailable(_RetryLater):
    status = 503
    kind = "unavailable"
    title = "Service unavailable"


class JobFailed(ModelportError):
    """A job ended without succeeding; ``job`` holds its final record."""

    kind = "job-failed"
    title = "Job failed"

    def __init__(
        self, message: str = "", *, job: Any = None, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message, errors=errors)
        self.job = job


class TimedOut(ModelportError):
    """A wait ran out: the server's answer or a job's end did not come in time."""

    status = 504
    kind = "timeout"
    title = "Timed out"


class Unreachable(ModelportError):
    """The server could not be reached (connection refused, DNS, TLS, cut off)."""

    status = 502
    kind = "unreachable"
    title = "Server unreachable"


_BY_KIND: dict[str, type[ModelportError]] = {
    cls.kind: cls
    for cls in (
        ModelportError,
        SpecError,
        InvalidRequest,
        BadRequest,
        InvalidInput,
        NotFound,
        Conflict,
        PayloadTooLarge,
        Unauthorized,
        Forbidden,
        Overloaded,
        RateLimited,
        Unavailable,
        JobFailed,
        TimedOut,
        Unreachable,
    )
}


def from_problem(
    status: int, problem: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> ModelportError:
    """Rebuild the error a server described in a problem document (and its headers)."""
    uri = str(problem.get("type", ""))
    kind = uri.removeprefix(PROBLEM_PREFIX) if uri.startswith(PROBLEM_PREFIX) else ""
    cls = _BY_KIND.get(kind)
    if cls is None:
        cls = InvalidRequest if 400 <= status < 500 else ModelportError
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    errors = [e for e in problem.get("errors") or () if isinstance(e, dict)]
    err: ModelportError
    if issubclass(cls, _RetryLater):
        err = cls(detail, retry_after=_retry_after(problem, headers), errors=errors)
    else:
        err = cls(detail, errors=errors)
    err.status = status
    return err


def _retry_after(problem: Mapping[str, Any], headers: Mapping[str, str] | None) -> int:
    for raw in (problem.get("retry_after"), (headers or {}).get("retry-after")):
        try:
            return max(0, int(raw))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    return 1


def field_errors(
    errors: Iterable[Mapping[str, Any]], *, strip: str | None = None
) -> list[dict[str, str]]:
    """pydantic's error list as ``{field, message}`` items, the one form every route answers.

    ``strip`` drops a leading location (``input`` for a submit body's envelope).
    """
    fields = []
    for err in errors:
        loc = [str(p) for p in err["loc"]]
        if strip is not None and len(loc) > 1 and loc[0] == strip:
            loc = loc[1:]
        name = ".".join(loc) or "body"
        message = str(err["msg"])
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = f"unknown field {name!r}"
        fields.append({"field": name, "message": message})
    return fields


def first_error(errors: Iterable[Mapping[str, Any]]) -> str:
    """pydantic's first error in one line, ``where: why`` (only ``why`` at the top level)."""
    first = next(iter(errors))
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


def invalid(errors: Iterable[Mapping[str, Any]], *, strip: str | None = None) -> InvalidRequest:
    """The error for a body pydantic refused: :class:`BadRequest` when it is not JSON at all,
    else :class:`InvalidInput` listing every field."""
    errors = list(errors)
    for err in errors:
        if err["type"] == "json_invalid":
            return BadRequest(f"the body is not valid JSON: {err['msg']}")
    fields = field_errors(errors, strip=strip)
    return InvalidInput("; ".join(f"{f['field']}: {f['message']}" for f in fields), errors=fields)


_RENAMED = {
    "ValidationError": "InvalidInput",
    "Timeout": "TimedOut",
    "RequestError": "InvalidRequest",
}


def __getattr__(name: str) -> Any:
    new = _RENAMED.get(name)
    if new is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"modelport.{name} is now modelport.{new}; the old name goes in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return globals()[new]
