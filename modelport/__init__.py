"""modelport: turn a Python model into a typed, queued, scalable web API.

``import modelport`` loads the errors and the wire types; the rest (the client, the model
SDK, the server, the worker) loads on first use of one of its names, so a program that only
calls a server loads the client, the errors and the wire, and a command that runs a model
locally (``modelport run``, ``pipe``) does not load the HTTP client at all.
"""

import importlib as _importlib
import typing as _typing

from modelport._version import __version__
from modelport.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    InvalidRequest,
    JobFailed,
    ModelportError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    SpecError,
    TimedOut,
    Unauthorized,
    Unavailable,
    Unreachable,
)
from modelport.wire import Event, JobStatus

if _typing.TYPE_CHECKING:
    from modelport.client import AsyncClient, AsyncJob, Client, Job
    from modelport.function import endpoint
    from modelport.media import Audio, Image, Video
    from modelport.model import Model
    from modelport.server.app import create_app
    from modelport.settings import Limits, Settings
    from modelport.spec import EndpointSpec, FieldSpec, Input, InputInfo, Media, spec_from_toml
    from modelport.worker.supervisor import run_worker

_LAZY = {
    "AsyncClient": "modelport.client",
    "AsyncJob": "modelport.client",
    "Client": "modelport.client",
    "Job": "modelport.client",
    "Audio": "modelport.media",
    "Image": "modelport.media",
    "Media": "modelport.spec",
    "Video": "modelport.media",
    "EndpointSpec": "modelport.spec",
    "FieldSpec": "modelport.spec",
    "Input": "modelport.spec",
    "InputInfo": "modelport.spec",
    "Limits": "modelport.settings",
    "Model": "modelport.model",
    "Settings": "modelport.settings",
    "create_app": "modelport.server.app",
    "endpoint": "modelport.function",
    "run_worker": "modelport.worker.supervisor",
    "spec_from_toml": "modelport.spec",
}
_RENAMED = ("RequestError", "Timeout", "ValidationError")


def __getattr__(name: str) -> _typing.Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _RENAMED:
        return getattr(_importlib.import_module("modelport.errors"), name)
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AsyncClient",
    "AsyncJob",
    "Audio",
    "BadRequest",
    "Client",
    "Conflict",
    "EndpointSpec",
    "Event",
    "FieldSpec",
    "Forbidden",
    "Image",
    "Input",
    "InputInfo",
    "InvalidInput",
    "InvalidRequest",
    "Job",
    "JobFailed",
    "JobStatus",
    "Limits",
    "Media",
    "Model",
    "ModelportError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RateLimited",
    "Settings",
    "SpecError",
    "TimedOut",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "Video",
    "__version__",
    "create_app",
    "endpoint",
    "run_worker",
    "spec_from_toml",
]
