"""The worker API: register, long-poll lease, events, results, leave.

Every route needs the worker token; bodies are the shapes of :mod:`modelport.wire`, decoded
and encoded by its codec; the core does the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from typing import TypeVar

import pydantic
from starlette.requests import Request
from starlette.responses import Response

from modelport import wire
from modelport.core import Broker
from modelport.errors import (
    Forbidden,
    InvalidInput,
    ModelportError,
    SpecError,
    Unauthorized,
    invalid,
)
from modelport.server.messages import read_body
from modelport.spec import EndpointSpec, spec_from_dict
from modelport.wire import Event, Verdicts, WorkerInfo

log = logging.getLogger("modelport.server")
_T = TypeVar("_T")


def _answer(message: object, status: int = 200) -> Response:
    return Response(wire.encode(message), status, media_type="application/json")


class WorkerRoutes:
    """Handlers for /workers; the token is checked before anything else."""

    def __init__(self, broker: Broker, token: str | None, max_body_size: int) -> None:
        self.broker = broker
        self.token = token
        self.max_body_size = max_body_size

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

    async def _read(self, request: Request, cls: type[_T]) -> _T:
        self.check(request)
        body = await read_body(request, self.max_body_size)
        try:
            return wire.decode(cls, body)
        except pydantic.ValidationError as e:
            raise invalid(e.errors(include_url=False, include_input=False)) from None

    async def register(self, request: Request) -> Response:
        body = await self._read(request, wire.Registration)
        specs: list[EndpointSpec] = []
        names = [raw.get("name") for raw in body.endpoints]
        if len(set(map(str, names))) != len(names):
            raise InvalidInput("endpoints: each endpoint may be listed once")
        for raw in body.endpoints:
            try:
                specs.append(spec_from_dict(raw))
            except SpecError as e:
                raise InvalidInput(f"endpoint spec: {e.message}") from None
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"endpoint spec: {e}") from None
        info = WorkerInfo(
            name=body.name,
            endpoints=[s.name for s in specs],
            max_batch_size=body.max_batch_size,
            metadata=dict(body.metadata),
        )
        rejoined = body.worker_id is not None
        worker = await self.broker.join(info, specs, worker_id=body.worker_id)
        where, host = info.name, info.metadata.get("host")
        if isinstance(host, str) and not where.startswith(host):
            where += f" on {host}"
        if "pid" in info.metadata:
            where += f", pid {info.metadata['pid']}"
        log.info(
            "worker %s (%s) %s, serving %s",
            worker.id,
            where,
            "joined again" if rejoined else "joined",
            ", ".join(info.endpoints),
        )
        held = {s.name: self.broker.specs[s.name].to_dict() for s in specs}
        return _answer(wire.Registered(worker.id, held), 201)

    async def lease(self, request: Request) -> Response:
        body = await self._read(request, wire.LeaseRequest)
        worker_id = request.path_params["id"]
        results = body.results
        accepted = await self.broker.finish(worker_id, results) if results else []
        if body.wait > 0:
            lease = asyncio.ensure_future(
                self.broker.lease(worker_id, body.max_jobs, body.wait, body.batches)
            )
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
            jobs = await self.broker.lease(worker_id, body.max_jobs, 0.0, body.batches)
        verdicts = Verdicts.of(results, accepted)
        cancelled = self.broker.take_cancelled(worker_id)
        return _answer(wire.LeaseAnswer(jobs, cancelled, verdicts.accepted, verdicts.refused))

    async def events(self, request: Request) -> Response:
        body = await self._read(request, wire.EventsRequest)
        worker_id = request.path_params["id"]
        beats = [e.job_id for e in body.events if e.type == "heartbeat"]
        handed_back = [e.job_id for e in body.events if e.type == "release"]
        others = [
            Event(e.job_id, e.type, e.data)
            for e in body.events
            if e.type not in ("heartbeat", "release")
        ]
        if handed_back:
            self.broker.worker(worker_id)
            await self.broker.release(worker_id, handed_back)
        held = set(await self.broker.heartbeat(worker_id, beats)) if beats else set()
        if others:
            held |= set(await self.broker.events(worker_id, others))
        if not beats and not others and not handed_back:
            self.broker.worker(worker_id)
        cancelled = self.broker.take_cancelled(worker_id)
        return _answer(wire.EventsAnswer(sorted(held), cancelled))

    async def results(self, request: Request) -> Response:
        body = await self._read(request, wire.ResultsRequest)
        accepted = await self.broker.finish(request.path_params["id"], body.results)
        return _answer(Verdicts.of(body.results, accepted))

    async def leave(self, request: Request) -> Response:
        self.check(request)
        worker_id = request.path_params["id"]
        worker = self.broker.workers.get(worker_id)
        await self.broker.leave(worker_id)
        name = f" ({worker.info.name})" if worker is not None else ""
        log.info("worker %s%s left", worker_id, name)
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
