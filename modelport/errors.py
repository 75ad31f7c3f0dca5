"""The exception tree, shared by server, worker and client.

    ModelportError
    ├── SpecError                 an endpoint spec or TOML file is wrong (at start)
    ├── RequestError              a request is wrong (4xx)
    │   ├── BadRequest            malformed JSON, bad header           400
    │   ├── ValidationError       inputs break the spec                422
    │   ├── NotFound              unknown endpoint, job or worker      404
    │   ├── Conflict              job already final, lease lost        409
    │   └── PayloadTooLarge       body over the limit                  413
    ├── Overloaded                queue full                           429
    ├── Unavailable               store down, not ready                503
    ├── Unauthorized              missing or wrong credential          401
    ├── Forbidden                 a credential used where it is not valid 403
    ├── JobFailed                 the job finished failed/cancelled/expired (client side)
    └── Timeout                   a wait ran out (client side)

Every server-side error class carries its HTTP ``status`` and problem ``kind``;
the server maps them to ``application/problem+json`` in one place and the
client maps the ``type`` back to the same class.
"""

from __future__ import annotations

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

    kind = "spec"
    title = "Invalid endpoint spec"


class RequestError(ModelportError):
    status = 400
    kind = "bad-request"
    title = "Bad request"


class BadRequest(RequestError):
    pass


class ValidationError(RequestError):
    status = 422
    kind = "validation"
    title = "Invalid input"


class NotFound(RequestError):
    status = 404
    kind = "not-found"
    title = "Not found"


class Conflict(RequestError):
    status = 409
    kind = "conflict"
    title = "Conflict"


class PayloadTooLarge(RequestError):
    status = 413
    kind = "payload-too-large"
    title = "Payload too large"


class Overloaded(ModelportError):
    status = 429
    kind = "overloaded"
    title = "Too many queued jobs"

    def __init__(self, message: str = "", *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)


class Unavailable(ModelportError):
    status = 503
    kind = "unavailable"
    title = "Service unavailable"

    def __init__(self, message: str = "", *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)


class Unauthorized(ModelportError):
    status = 401
    kind = "unauthorized"
    title = "Unauthorized"


class Forbidden(ModelportError):
    status = 403
    kind = "forbidden"
    title = "Forbidden"


class JobFailed(ModelportError):
    """A job ended without succeeding; ``job`` holds its final record."""

    kind = "job-failed"
    title = "Job failed"

    def __init__(self, message: str = "", *, job: Any = None) -> None:
        super().__init__(message)
        self.job = job


class Timeout(ModelportError):
    kind = "timeout"
    title = "Timed out"


_BY_KIND: dict[str, type[ModelportError]] = {
    cls.kind: cls
    for cls in (
        ModelportError,
        RequestError,
        ValidationError,
        NotFound,
        Conflict,
        PayloadTooLarge,
        Overloaded,
        Unavailable,
        Unauthorized,
        Forbidden,
    )
}


def from_problem(status: int, problem: dict[str, Any]) -> ModelportError:
    """Rebuild the error a server described in a problem document."""
    uri = str(problem.get("type", ""))
    kind = uri.removeprefix(PROBLEM_PREFIX) if uri.startswith(PROBLEM_PREFIX) else ""
    cls = _BY_KIND.get(kind)
    if cls is None:
        cls = RequestError if 400 <= status < 500 else ModelportError
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    err: ModelportError
    if cls in (Overloaded, Unavailable):
        err = cls(detail)
    else:
        err = cls(detail, errors=list(problem.get("errors") or []))
    err.status = status
    return err
