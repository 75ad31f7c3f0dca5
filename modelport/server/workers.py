"""The worker API: register, long-poll lease, events, results, leave.

Every route needs a worker credential (checked at the edge, :mod:`modelport.server.auth`),
and a worker id belongs to the credential that registered it: another one gets 404. Bodies
are the shapes of :mod:`modelport.wire`, decoded and encoded by its codec; the core does
the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TypeVar

import pydantic
from starlette.requests import Request
from starlette.responses import Response

from modelport import wire
from modelport.core import Broker
from modelport.errors import Forbidden, InvalidInput, NotFound, SpecError, invalid
from modelport.server.auth import principal_of
from modelport.server.messages import read_body
from modelport.spec import EndpointSpec, spec_from_dict
from modelport.wire import Event, Verdicts, WorkerInfo

log = logging.getLogger("modelport.server")
_T = TypeVar("_T")


def _answer(message: object, status: int = 200) -> Response:
    return Response(wire.encode(message), status, media_type="application/json")


class WorkerRoutes:
    """Handlers for /workers."""

    def __init__(self, broker: Broker, max_body_size: int) -> None:
        self.broker = broker
        self.max_body_size = max_body_size

    async def owner(self, worker_id: str) -> str | None:
        """The credential a worker id belongs to (None when the id is free)."""
        worker = self.broker.workers.get(worker_id)
        if worker is not None:
            return worker.owner
        if self.broker.store.shared:
            record = await self.broker.store.get_worker(worker_id)
            if record is not None:
                return str(record.get("owner") or "") or None
        return None

    async def check(self, request: Request) -> str:
        """The route's worker id, if it belongs to the caller's credential (else 404)."""
        worker_id: str = request.path_params["id"]
        worker = self.broker.workers.get(worker_id)
        if worker is None or worker.owner != principal_of(request).id:
            raise NotFound(f"no worker with id {worker_id!r}; register first")
        return worker_id

    async def _read(self, request: Request, cls: type[_T]) -> _T:
        body = await read_body(request, self.max_body_size)
        try:
            return wire.decode(cls, body)
        except pydantic.ValidationError as e:
            raise invalid(e.errors(include_url=False, include_input=False)) from None

    async def register(self, request: Request) -> Response:
        body = await self._read(request, wire.Registration)
        principal = principal_of(request)
        if body.worker_id is not None:
            owner = await self.owner(body.worker_id)
            if owner is not None and owner != principal.id:
                raise NotFound(f"no worker with id {body.worker_id!r} for this credential")
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
        outside = [s.name for s in specs if not principal.may_use(s.name)]
        if outside:
            raise Forbidden(f"this worker key may not serve the endpoint {outside[0]!r}")
        info = WorkerInfo(
            name=body.name,
            endpoints=[s.name for s in specs],
            max_batch_size=body.max_batch_size,
            metadata=dict(body.metadata),
        )
        rejoined = body.worker_id is not None
        worker = await self.broker.join(info, specs, worker_id=body.worker_id, owner=principal.id)
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
        held = {
            s.name: (
                self.broker.registry.spec_of(s.name, worker.revisions.get(s.name)) or s
            ).to_dict()
            for s in specs
        }
        return _answer(wire.Registered(worker.id, held), 201)

    async def lease(self, request: Request) -> Response:
        worker_id = await self.check(request)
        body = await self._read(request, wire.LeaseRequest)
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
        worker_id = await self.check(request)
        body = await self._read(request, wire.EventsRequest)
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
        worker_id = await self.check(request)
        body = await self._read(request, wire.ResultsRequest)
        accepted = await self.broker.finish(worker_id, body.results)
        return _answer(Verdicts.of(body.results, accepted))

    async def leave(self, request: Request) -> Response:
        worker_id = await self.check(request)
        worker = self.broker.workers.get(worker_id)
        await self.broker.leave(worker_id)
        name = f" ({worker.info.name})" if worker is not None else ""
        log.info("worker %s%s left", worker_id, name)
        return Response(status_code=204)


async def _hangup(request: Request) -> None:
    """Return when the client disconnects (its body was already read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
