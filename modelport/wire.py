"""The wire contract: job states, the job record, and every message workers exchange with
the server, each shape beside its codec (:func:`encode`, :func:`decode`).

Defined once and shared by the server, the stores, the worker runner (remote and
in-process) and the client. Importing it loads neither pydantic nor the server: the shapes
are dataclasses whose constraints pydantic reads only when a message is decoded.
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import string
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import orjson
from annotated_types import Ge, Le, MaxLen, MinLen


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    final: bool
    """Whether a job in this status is done (set below: a plain attribute, which the job path
    reads several times per request, costs a third of a property)."""


FINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED})
for _status in JobStatus:
    _status.final = _status in FINAL


SHARDS = 4096
"""How many shards endpoints are spread over (a Redis Cluster store keeps each shard's
queues and jobs in a hash slot of its own; see :func:`endpoint_shard`)."""


@functools.lru_cache(maxsize=4096)
def endpoint_shard(endpoint: str) -> str:
    """The shard of an endpoint's queue and jobs: 3 hex digits, the same in every process."""
    return f"{zlib.crc32(endpoint.encode()) % SHARDS:03x}"


_RANDOM: Iterator[str] = iter(())
"""Random hex digits from the OS, drawn 4 KiB at a time: a job id costs no system call.
Emptied in a forked child, which must not repeat its parent's digits."""


def _random_digits() -> str:
    global _RANDOM
    try:
        return next(_RANDOM)
    except StopIteration:
        pool = secrets.token_hex(4096)
        _RANDOM = iter([pool[i : i + 13] for i in range(0, len(pool) - 12, 13)])
        return next(_RANDOM)


def _forget_random() -> None:
    global _RANDOM
    _RANDOM = iter(())


os.register_at_fork(after_in_child=_forget_random)


def new_job_id(endpoint: str) -> str:
    """A job id that sorts by creation time and names its endpoint's shard: 12 hex digits
    of milliseconds, 52 random bits, then :func:`endpoint_shard` (3 hex digits), so a store
    finds a job's keys from its id alone."""
    return f"{int(time.time() * 1000):012x}{_random_digits()}{endpoint_shard(endpoint)}"


def job_shard(job_id: str) -> str | None:
    """The endpoint shard a job id names, or ``None`` for an id :func:`new_job_id` did not
    make (such a job is found nowhere but in the deployment's own keys)."""
    if len(job_id) != 28 or not set(job_id) <= _HEX:
        return None
    return job_id[-3:]


_HEX = frozenset(string.hexdigits.lower())


@dataclass(slots=True)
class JobRecord:
    """One request to one endpoint, as the store keeps it."""

    id: str
    endpoint: str
    input: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    seq: int = 0
    output: Any = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    attempts: int = 0
    max_attempts: int = 3
    worker_id: str | None = None
    lease_until: float | None = None
    idempotency_key: str | None = None
    owner: str | None = None
    """The id of the API key that submitted the job (None without keys)."""
    revision: int = 1
    """The revision of the endpoint's spec the input was validated against; only a worker
    serving that revision runs the job (see ``PUT /endpoints/{name}``)."""
    model_version: str | None = None
    """The version of the model of that revision: the one that runs the job."""

    def public(self, *, queue_position: int | None = None) -> dict[str, Any]:
        """The job as clients see it: no lease bookkeeping."""
        body: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint,
            "status": str(self.status),  # its value (a StrEnum): .value is a property call
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "progress": self.progress,
            "attempts": self.attempts,
            "worker": self.worker_id,
            "revision": self.revision,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "queue_time": _span(self.created_at, self.started_at),
            "compute_time": _span(self.started_at, self.completed_at),
        }
        if queue_position is not None:
            body["queue_position"] = queue_position
        return body


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round(end - start, 6)


@dataclass(slots=True)
class Event:
    """One entry in a job's event log: ``queued``, ``started``, ``progress``, ``output``
    (a streamed chunk), ``log``, or the final ``succeeded``/``failed``/``cancelled``/``expired``.

    ``type`` is the event's name (the wire's ``event`` key; :attr:`event` says the same).
    ``id`` counts 1, 2, 3, ... over a job's stored events (``progress``, ``output``,
    ``log``), so a client resumes after one with ``Last-Event-ID``; it is 0 for the state
    events (``queued``, ``started``, the final one), which are not stored and have no id.
    """

    job_id: str
    type: str
    data: Any = None
    id: int = 0
    time: float = field(default_factory=time.time)

    @property
    def event(self) -> str:
        """The event's name, as the wire calls it: the same as :attr:`type`."""
        return self.type


INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def storable(value: Any) -> Any:
    """Refuse JSON the stores cannot keep: NaN, Infinity, integers beyond 64 bits."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        raise ValueError("integers must fit in 64 bits")
    if isinstance(value, dict):
        for item in value.values():
            storable(item)
    elif isinstance(value, list):
        for item in value:
            storable(item)
    return value


class _Storable:
    """``Annotated`` metadata: the value must be JSON the stores can keep (checked by
    pydantic when a message is decoded; nothing is imported until then)."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(storable, handler(source))


class _Pattern:
    """``Annotated`` metadata: a string matching a regular expression."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.str_schema(pattern=self.pattern)


Json = Annotated[Any, _Storable]
MAX_JOBS = 1024
"""The most jobs one lease may ask for."""
MAX_ITEMS = 10_000
"""The most events or results one message may carry."""
MAX_LEASE_WAIT = 60.0
"""The longest long poll a worker may ask for, in seconds."""
_FORBID = {"extra": "forbid"}


@dataclass(slots=True)
class LeasedJob:
    """A job a worker holds: what the runner needs to compute and report it."""

    __pydantic_config__ = _FORBID

    id: str
    endpoint: str
    input: dict[str, Any]
    attempt: int
    lease_until: float


@dataclass(slots=True)
class Result:
    """A worker's final word on one leased job: an output, or an error message.

    The output is checked by the core, which fails the job if it cannot be stored.
    """

    __pydantic_config__ = _FORBID

    job_id: str
    endpoint: str
    attempt: Annotated[int, Ge(0), Le(2**31)]
    output: Any = None
    error: str | None = None
    retry: bool = False


@dataclass(slots=True)
class WorkerEvent:
    """A progress update, output chunk, log line or heartbeat a worker sends for a held job,
    or ``release``: the worker hands back a held job it never started."""

    __pydantic_config__ = _FORBID

    job_id: str
    type: Annotated[str, _Pattern(r"^(heartbeat|progress|output|log|release)$")]
    data: Json = None


@dataclass(slots=True)
class WorkerInfo:
    """What a worker says about itself when it registers."""

    name: str
    endpoints: list[str]
    max_batch_size: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Registration:
    """``POST /workers``: who the worker is and the endpoints (specs as dicts) it serves."""

    __pydantic_config__ = _FORBID

    name: Annotated[str, MinLen(1), MaxLen(200)]
    endpoints: Annotated[list[dict[str, Any]], MinLen(1), MaxLen(100)]
    max_batch_size: Annotated[int, Ge(1), Le(MAX_JOBS)] = 1
    metadata: dict[str, Json] = field(default_factory=dict)
    worker_id: Annotated[str, _Pattern(r"^[0-9a-f]{16}$")] | None = None


@dataclass(slots=True)
class Registered:
    """The answer to a registration: the worker's id and the specs the server holds."""

    worker_id: str
    endpoints: dict[str, dict[str, Any]]


@dataclass(slots=True)
class LeaseRequest:
    """``POST /workers/{id}/lease``: the previous batch's results, then a long poll."""

    __pydantic_config__ = _FORBID

    max_jobs: Annotated[int, Ge(1), Le(MAX_JOBS)] = 1
    wait: Annotated[float, Ge(0), Le(MAX_LEASE_WAIT)] = 20.0
    results: Annotated[list[Result], MaxLen(MAX_ITEMS)] = field(default_factory=list)
    batches: Annotated[int, Ge(1), Le(MAX_JOBS)] = 1
    """How many of the endpoint's batches to take at once (up to ``max_jobs`` jobs)."""


@dataclass(slots=True)
class Verdicts:
    """Which delivered results the server recorded and which it refused (lease lost)."""

    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, results: Sequence[Result], accepted: Sequence[bool]) -> Verdicts:
        verdicts = cls()
        for r, ok in zip(results, accepted, strict=True):
            (verdicts.accepted if ok else verdicts.refused).append(r.job_id)
        return verdicts


@dataclass(slots=True)
class LeaseAnswer:
    """A batch (maybe empty), the worker's jobs cancelled meanwhile, and the verdicts on the
    results the request delivered."""

    jobs: list[LeasedJob]
    cancelled: list[str]
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


@dataclass(slots=True)
class EventsRequest:
    """``POST /workers/{id}/events``."""

    __pydantic_config__ = _FORBID

    events: Annotated[list[WorkerEvent], MaxLen(MAX_ITEMS)]


@dataclass(slots=True)
class EventsAnswer:
    """The jobs the worker still holds, and those cancelled since it last asked."""

    held: list[str]
    cancelled: list[str]


@dataclass(slots=True)
class ResultsRequest:
    """``POST /workers/{id}/results``."""

    __pydantic_config__ = _FORBID

    results: Annotated[list[Result], MaxLen(MAX_ITEMS)]


_T = TypeVar("_T")
_ADAPTERS: dict[type[Any], Any] = {}


def encode(message: Any) -> bytes:
    """A wire message (one of the dataclasses above) as JSON."""
    return orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)


def decode(cls: type[_T], data: bytes | str) -> _T:
    """A wire message from JSON, validated against its shape.

    Raises :class:`pydantic.ValidationError` naming each wrong field.
    """
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        import pydantic

        adapter = _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    message: _T = adapter.validate_json(data)
    return message
