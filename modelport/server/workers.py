"""The worker API: register, long-poll lease, events, results, leave.

Every route needs the worker token; the core does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Annotated, Any, TypeVar

import orjson
import pydantic
from starlette.requests import Request
from starlette.responses import Response

from modelport.core import Broker
from modelport.errors import BadRequest, Forbidden, ModelportError, SpecError, Unauthorized
from modelport.errors import ValidationError as InputError
from modelport.spec import MAX_BATCH_SIZE, EndpointSpec, spec_from_dict, storable
from modelport.wire import Event, Result, WorkerInfo

MAX_LEASE_WAIT = 60.0
_T = TypeVar("_T", bound=pydantic.BaseModel)
_Json = Annotated[pydantic.JsonValue, pydantic.AfterValidator(storable)]
MAX_JOBS = MAX_BATCH_SIZE


class _Registration(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(min_length=1, max_length=200)
    endpoints: list[dict[str, Any]] = pydantic.Field(min_length=1, max_length=100)
    max_batch_size: int = pydantic.Field(default=1, ge=1, le=MAX_JOBS)
    metadata: dict[str, _Json] = pydantic.Field(default_factory=dict)
    worker_id: str | None = pydantic.Field(default=None, pattern=r"^[0-9a-f]{16}$")


class _Event(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    job_id: str
    type: str = pydantic.Field(pattern=r"^(heartbeat|progress|output|log)$")
    data: _Json = None


class _Events(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    events: list[_Event] = pydantic.Field(max_length=10_000)


class _Result(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    job_id: str
    endpoint: str
    attempt: int = pydantic.Field(ge=0, le=2**31)
    output: pydantic.JsonValue = None  # checked by the core, which fails the job if unstorable
    error: str | None = None
    retry: bool = False


class _Results(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    results: list[_Result] = pydantic.Field(max_length=10_000)

    def parsed(self) -> list[Result]:
        return _parsed(self.results)


def _parsed(results: list[_Result]) -> list[Result]:
    return [
        Result(r.job_id, r.endpoint, r.attempt, output=r.output, error=r.error, retry=r.retry)
        for r in results
    ]


class _Lease(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    max_jobs: int = pydantic.Field(default=1, ge=1, le=MAX_JOBS)
    wait: float = pydantic.Field(default=20.0, ge=0, le=MAX_LEASE_WAIT)
    results: list[_Result] = pydantic.Field(default_factory=list, max_length=10_000)
    """The previous batch's results, delivered before leasing (saves a round trip)."""


def _verdicts(results: list[Result], accepted: list[bool]) -> dict[str, list[str]]:
    return {
        "accepted": [r.job_id for r, ok in zip(results, accepted, strict=True) if ok],
        "refused": [r.job_id for r, ok in zip(results, accepted, strict=True) if not ok],
    }


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def _parse(model: type[_T], body: bytes) -> _T:
    try:
        return model.model_validate_json(body)
    except pydantic.ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)
        if any(err["type"] == "json_invalid" for err in errors):
            raise BadRequest(f"the body is not valid JSON: {errors[0]['msg']}") from None
        fields = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in errors
        ]
        raise InputError(
            "; ".join(f"{f['field']}: {f['message']}" for f in fields), errors=fields
        ) from None


class WorkerRoutes:
    """Handlers for /workers; the token is checked before anything else."""

    def __init__(self, broker: Broker, token: str | None, read_body: Any) -> None:
        self.broker = broker
        self.token = token
        self._read_body = read_body

    def check(self, request: Request) -> None:
        if self.token is None:
            raise Unauthorized(
                "this server accepts no remote workers; start it with --worker-token"
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            err = Unauthorized("a valid worker token is required (Authorization: Bearer ...)")
            err.headers["WWW-Authenticate"] = "Bearer"
            raise err

    async def register(self, request: Request) -> Response:
        self.check(request)
        body = _parse(_Registration, await self._read_body(request))
        specs: list[EndpointSpec] = []
        names = [raw.get("name") for raw in body.endpoints]
        if len(set(map(str, names))) != len(names):
            raise InputError("endpoints: each endpoint may be listed once")
        for raw in body.endpoints:
            try:
                specs.append(spec_from_dict(raw))
            except SpecError as e:
                raise InputError(f"endpoint spec: {e.message}") from None
            except (TypeError, ValueError) as e:
                raise InputError(f"endpoint spec: {e}") from None
        info = WorkerInfo(
            name=body.name,
            endpoints=[s.name for s in specs],
            max_batch_size=body.max_batch_size,
            metadata=dict(body.metadata),
        )
        worker = await self.broker.join(info, specs, worker_id=body.worker_id)
        return _json(
            {
                "worker_id": worker.id,
                "endpoints": {s.name: self.broker.specs[s.name].to_dict() for s in specs},
            },
            201,
        )

    async def lease(self, request: Request) -> Response:
        self.check(request)
        worker_id = request.path_params["id"]
        body = _parse(_Lease, await self._read_body(request))
        results = _parsed(body.results)
        accepted = await self.broker.finish(worker_id, results) if results else []
        if body.wait > 0:
            lease = asyncio.ensure_future(self.broker.lease(worker_id, body.max_jobs, body.wait))
            hangup = asyncio.ensure_future(_hangup(request))
            await asyncio.wait((lease, hangup), return_when=asyncio.FIRST_COMPLETED)
            hangup.cancel()
            if not lease.done():
                # The worker gave up on this long poll; the broker hands back what it took.
                lease.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lease
                return Response(status_code=499)
            jobs = lease.result()
        else:  # no long poll (at most the batch window): nothing to watch for
            jobs = await self.broker.lease(worker_id, body.max_jobs, 0.0)
        return _json(
            {
                "jobs": [
                    {
                        "id": j.id,
                        "endpoint": j.endpoint,
                        "input": j.input,
                        "attempt": j.attempt,
                        "lease_until": j.lease_until,
                    }
                    for j in jobs
                ],
                "cancelled": self.broker.take_cancelled(worker_id),
                **(_verdicts(results, accepted) if results else {}),
            }
        )

    async def events(self, request: Request) -> Response:
        self.check(request)
        worker_id = request.path_params["id"]
        body = _parse(_Events, await self._read_body(request))
        beats = [e.job_id for e in body.events if e.type == "heartbeat"]
        others = [Event(e.job_id, e.type, e.data) for e in body.events if e.type != "heartbeat"]
        held = set(await self.broker.heartbeat(worker_id, beats)) if beats else set()
        if others:
            held |= set(await self.broker.events(worker_id, others))
        if not beats and not others:
            self.broker.worker(worker_id)
        return _json({"held": sorted(held), "cancelled": self.broker.take_cancelled(worker_id)})

    async def results(self, request: Request) -> Response:
        self.check(request)
        worker_id = request.path_params["id"]
        results = _parse(_Results, await self._read_body(request)).parsed()
        accepted = await self.broker.finish(worker_id, results)
        return _json(_verdicts(results, accepted))

    async def leave(self, request: Request) -> Response:
        self.check(request)
        await self.broker.leave(request.path_params["id"])
        return Response(status_code=204)


async def _hangup(request: Request) -> None:
    """Return when the client disconnects (its body was already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def refuse_worker_token(token: str | None, authorization: str) -> ModelportError | None:
    """Client routes never accept the worker token."""
    if token is None:
        return None
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return Forbidden("the worker token is not accepted on client routes")
    return None
