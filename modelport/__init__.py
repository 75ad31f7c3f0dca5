"""modelport: turn a Python model into a typed, queued, scalable web API."""

from modelport._version import __version__
from modelport.client import AsyncClient, AsyncJob, Client, Job
from modelport.errors import (
    BadRequest,
    Conflict,
    JobFailed,
    ModelportError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RequestError,
    SpecError,
    Timeout,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from modelport.model import Model
from modelport.server.app import Settings, create_app
from modelport.spec import EndpointSpec, FieldSpec, Input, InputInfo, spec_from_toml
from modelport.wire import Event, JobStatus
from modelport.worker.supervisor import run_worker

__all__ = [
    "AsyncClient",
    "AsyncJob",
    "BadRequest",
    "Client",
    "Conflict",
    "EndpointSpec",
    "Event",
    "FieldSpec",
    "Input",
    "InputInfo",
    "Job",
    "JobFailed",
    "JobStatus",
    "Model",
    "ModelportError",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RequestError",
    "Settings",
    "SpecError",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "__version__",
    "create_app",
    "run_worker",
    "spec_from_toml",
]
