"""The ASGI application: client routes over the core, with embedded workers for local models.

HTTP is translated here and in the other route groups (worker API, OpenAI routes); every
:class:`ModelportError` becomes an ``application/problem+json`` answer in
:mod:`modelport.server.problems`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import gc
import itertools
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pydantic
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport import logs
from modelport.adapters import KINDS as ADAPTER_KINDS
from modelport.core import Broker
from modelport.errors import (
    BadRequest,
    InvalidInput,
    ModelportError,
    NotFound,
    SpecError,
    Unavailable,
    invalid,
)
from modelport.media import files as media_files
from modelport.media import inputs as media_in
from modelport.media.prepare import limits_of
from modelport.model import Model
from modelport.server import docs as doc_pages
from modelport.server import pages
from modelport.server.adapters import RuntimeAdapters
from modelport.server.admin import AdminRoutes
from modelport.server.auth import Auth, client_host, cors, principal_of
from modelport.server.conversations import ConversationRoutes
from modelport.server.dashboard import Dashboard
from modelport.server.index import IndexPage
from modelport.server.limits import check_shape, nested_too_deep
from modelport.server.local import LocalTransport
from modelport.server.messages import json_response as _json
from modelport.server.messages import read_body
from modelport.server.openai import OpenAIRoutes
from modelport.server.openapi import ENDPOINT_NAME, openapi
from modelport.server.pages.chat import ChatPage
from modelport.server.pages.views import Pages
from modelport.server.problems import (
    EXCEPTION_HANDLERS,
    error_response,
    problem_response,
    unexpected,
)
from modelport.server.streaming import event_stream, negotiate, resume_point, stream_format
from modelport.server.workers import WorkerRoutes
from modelport.settings import Settings
from modelport.spec import EndpointSpec, spec_from_document
from modelport.stores import JobStore, store_from_url
from modelport.stores.base import LOG_LEVELS
from modelport.wire import JobRecord
from modelport.worker.runner import Runner, lanes, set_up, tear_down

__all__ = ["Server", "Settings", "create_app"]

log = logging.getLogger("modelport.server")

SETUP_FAILED_RETRY = 30
"""The ``Retry-After`` of a refusal because a model's ``setup()`` failed: a person must act."""


JOB_STATUS = "X-Job-Status"
"""On every answer that carries a job: its status, so a failed job (HTTP 200: the request
worked) shows without reading the body, e.g. with ``curl -i`` or a proxy's log."""


X_CACHE = "X-Cache"
"""On a submit's answer from an endpoint with a result cache or a precomputed table:
``hit``, ``miss`` or ``precomputed``."""

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?(\d+(?:\.\d+)?)\"?", re.IGNORECASE)


def _prefer(header: str, default: float, most: float) -> tuple[bool, float]:
    """(respond-async?, seconds to wait) from an RFC 7240 ``Prefer`` header."""
    if "respond-async" in header.lower():
        return True, 0.0
    match = _PREFER_WAIT.search(header)
    return False, min(float(match.group(1)), most) if match else default


class Server:
    """Holds the broker and the embedded runners; builds the Starlette app."""

    def __init__(
        self,
        models: Sequence[type[Model] | Model] = (),
        specs: Sequence[EndpointSpec] = (),
        *,
        store: str | JobStore = "memory://",
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.freeze_heap = False
        """gc.freeze() after startup and each setup() (see :meth:`_freeze`)."""
        self.broker = Broker(
            store_from_url(store) if isinstance(store, str) else store, self.settings
        )
        self.auth = Auth(self.broker.store, self.settings, self.broker.metrics)
        self.admin = AdminRoutes(self.broker.store, self.auth, self.settings)
        self.workers = WorkerRoutes(self.broker, self.settings.max_body_size)
        self.openai = OpenAIRoutes(
            self.broker, self.settings, self.auth, check_serving=self.check_serving
        )
        self.index = IndexPage(self)
        self.conversations = ConversationRoutes(self.broker.store, self._find_spec)
        self.chat = ChatPage(self)
        self.pages = Pages(self)
        self.dashboard = Dashboard(self)
        self.runners: list[Runner] = []
        self._instances: list[list[Runner]] = []
        """The runners of each model instance (one per batch it may run at once)."""
        transport = LocalTransport(self.broker)
        for spec in specs:
            self._add(spec)
        for model in models:
            group = lanes(model() if isinstance(model, type) else model, transport)
            self._add(group[0].spec)
            self._instances.append(group)
            self.runners += group
        self._add_tables()
        self.broker.webhooks.configure(self.settings.webhook_allow, self.settings.webhook_secret)
        self._tasks: list[asyncio.Task[None]] = []
        self._setup_lock = asyncio.Lock()
        self.setup_errors: dict[str, str] = {}
        self.adapters = RuntimeAdapters(
            self.broker, self.runners, self._run, allowed=self.settings.allow_runtime_adapters
        )
        """HTTP and subprocess endpoints put at run time, which this server runs."""

    def _add(self, spec: EndpointSpec) -> None:
        if spec.name in self.broker.specs:
            raise ModelportError(f"two endpoints are named {spec.name!r}")
        self.broker.add_endpoint(spec)

    def _add_tables(self) -> None:
        for name in sorted(set(self.settings.precomputed) - set(self.broker.specs)):
            raise ModelportError(f"--precomputed {name}=...: there is no endpoint {name!r}")
        for name, spec in self.broker.specs.items():
            path = self.settings.precomputed.get(name) or spec.precomputed
            if path is not None:
                self.broker.cache.add_table(spec, path)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.broker.start()
        self._freeze()
        self._tasks = [
            asyncio.create_task(self._run(group), name=f"runner-{group[0].spec.name}")
            for group in self._instances
        ]
        try:
            yield
        finally:
            await self.adapters.stop()
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.broker.stop()

    def _freeze(self) -> None:
        """What startup and ``setup()`` made lives as long as the server process: left to
        the collector, each full collection walks all of it (tens of thousands of objects,
        tens of milliseconds in the middle of requests). Frozen, collections walk only what
        requests make. Only for a server that owns its process (``modelport serve``)."""
        if self.freeze_heap:
            gc.freeze()

    async def _run(self, group: list[Runner]) -> None:
        try:
            await self._serve(group)
        finally:
            await tear_down(group)

    async def _serve(self, group: list[Runner]) -> None:
        name = group[0].spec.name
        self.setup_errors.pop(name, None)
        try:
            # One setup() at a time: imports of heavy libraries racing in two threads can
            # see each other half-initialized (torch and scipy do).
            async with self._setup_lock:
                log.info("setting up %s…", name)
                started = time.monotonic()
                await set_up(group)
        except Exception as e:
            log.exception("setup() of %s failed; its endpoint stays not ready", name)
            self.setup_errors[name] = f"setup() failed: {type(e).__name__}: {e}"
            return
        log.info("%s ready in %s", name, logs.took(time.monotonic() - started))
        self._freeze()
        async with asyncio.TaskGroup() as running:  # one failing, or shutdown, stops them all
            for runner in group:
                running.create_task(runner.run())

    async def list_endpoints(self, request: Request) -> Response:
        depths = await self.broker.store.queue_depths()
        await self.broker.sync_specs()
        principal = principal_of(request)
        specs = [s for s in self.broker.specs.values() if principal.may_use(s.name)]
        return _json([await self.summary(s, depths) for s in specs])

    async def summary(
        self, spec: EndpointSpec, depths: dict[str, dict[str, int]]
    ) -> dict[str, Any]:
        depth = depths.get(spec.name, {})
        online = len(await self.broker.workers_online(spec.name))
        state, reason = self._state(spec.name, online)
        return {
            "name": spec.name,
            "title": spec.title,
            "description": spec.description,
            "version": spec.version,
            "revision": self.broker.registry.endpoints[spec.name].revision
            if spec.name in self.broker.registry.endpoints
            else 1,
            "kind": spec.kind,
            "state": state,
            "reason": reason,
            "workers_online": online,
            "queue_depth": depth.get("queued", 0),
            "running": depth.get("running", 0),
        }

    def _state(self, name: str, online: int) -> tuple[str, str | None]:
        """Whether an endpoint can run jobs now (``ready``), soon (``loading``), once a
        worker joins (``no-workers``), or not until a healthy one does (``setup-failed``);
        or whether an admin stopped it (``disabled``, ``deleting``)."""
        endpoint = self.broker.registry.endpoints.get(name)
        if endpoint is not None and endpoint.state != "enabled":
            return endpoint.state, endpoint.reason
        if online:
            return "ready", None
        if name in self.setup_errors:
            return "setup-failed", self.setup_errors[name]
        if any(r.spec.name == name and not r.ready.is_set() for r in self.runners):
            return "loading", "setup() is running; jobs wait in the queue until it is done"
        return "no-workers", "no worker serves it now; jobs wait in the queue until one joins"

    async def check_serving(self, name: str) -> None:
        """Refuse new jobs for an endpoint whose only workers failed ``setup()``: they could
        never run. Jobs already queued stay queued for a healthy worker."""
        error = self.setup_errors.get(name)
        if error is None or await self.broker.workers_online(name):
            return
        raise Unavailable(
            f"endpoint {name!r} cannot run jobs: its model's {error} (see the server log); "
            "it accepts jobs again when a healthy worker serves it",
            retry_after=SETUP_FAILED_RETRY,
        )

    async def _find_spec(self, name: str) -> EndpointSpec:
        """The endpoint's spec; an unknown name answers 404 listing the endpoints there are."""
        try:
            return await self.broker.find_spec(name)
        except NotFound:
            if name in self.broker.registry.deleted:
                raise  # it says when and how to define it again
            names = sorted(self.broker.specs)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = ", ".join(names) if names else "none yet"
            raise NotFound(
                f"no endpoint named {name!r}{hint}; the endpoints are: {listed}"
            ) from None

    async def get_endpoint(self, request: Request) -> Response:
        await self.broker.sync_specs()  # replaced, disabled or deleted on another server
        spec = await self._find_spec(request.path_params["name"])
        return _json(await self._endpoint_body(spec))

    async def _endpoint_body(self, spec: EndpointSpec) -> dict[str, Any]:
        depths = await self.broker.store.queue_depths()
        now = self.broker.clock()
        body = await self.summary(spec, depths)
        body.update(
            input_schema=spec.input_schema(),
            output_schema=spec.output_schema(),
            progress_schema=spec.progress_schema(),
            limits={
                "max_batch_size": spec.max_batch_size,
                "max_batch_wait": spec.max_batch_wait,
                "lease_duration": spec.lease_duration,
                "max_attempts": spec.max_attempts,
                "max_queue_length": spec.max_queue_length or self.settings.max_queue_length,
                "max_body_size": self.settings.max_body_size,
            },
            workers=[
                w.public(now, self.broker.offline_after)
                for w in await self.broker.all_workers()
                if spec.name in w.info.endpoints
            ],
            spec=spec.to_dict(),
            metadata=spec.metadata,
        )
        table = self.broker.cache.tables.get(spec.name)
        if table is not None:
            body["precomputed"] = table.report()
        endpoint = self.broker.registry.endpoints.get(spec.name)
        if endpoint is not None and endpoint.earlier:
            body["earlier_revisions"] = sorted(endpoint.earlier)
        return body

    async def endpoint_metadata(self, request: Request) -> Response:
        """``GET /endpoints/{name}/metadata``: what the model declares, and each worker's."""
        await self.broker.sync_specs()
        spec = await self._find_spec(request.path_params["name"])
        now = self.broker.clock()
        workers = [
            {
                "id": w.id,
                "name": w.info.name,
                "state": w.public(now, self.broker.offline_after)["state"],
                "revision": w.revisions.get(spec.name, 1),
                "model": w.info.metadata.get("model") or {},
                "device": w.info.metadata.get("device"),
            }
            for w in await self.broker.all_workers()
            if spec.name in w.info.endpoints
        ]
        models = {orjson.dumps(w["model"], option=orjson.OPT_SORT_KEYS) for w in workers}
        return _json(
            {
                "name": spec.name,
                "version": spec.version,
                "revision": self.broker.registry.revision(spec.name),
                "description": spec.description,
                "metadata": spec.metadata,
                "workers": workers,
                "workers_differ": len(models) > 1,
            }
        )

    async def put_endpoint(self, request: Request) -> Response:
        """``PUT /endpoints/{name}``: add the endpoint, or replace it as its next revision."""
        self.auth.check_admin(principal_of(request))
        name = request.path_params["name"]
        if not _NAME.match(name):
            raise BadRequest(f"endpoint names are letters, digits, '-', '_' and '.': {name!r}")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _SPEC_TYPES:
            raise BadRequest(
                f"send the spec as application/toml or application/json, not {content_type!r}"
            )
        body = await read_body(request, self.settings.max_body_size)
        text, toml = body.decode("utf-8", "replace"), _SPEC_TYPES[content_type]
        adapter = None
        try:
            spec = spec_from_document(text, toml=toml, name=name)
            if spec.kind in ADAPTER_KINDS:
                self.adapters.check(spec)
                spec = spec_from_document(text, toml=toml, name=name, runnable=True)
                adapter = self.adapters.model(spec)
        except SpecError as e:
            raise InvalidInput(e.message, errors=e.errors) from None
        _, new = await self.broker.put_endpoint(spec)
        self.adapters.put(spec, adapter)
        response = await self._endpoint_body(spec)
        status = 201 if new else 200
        return _json(response, status, {"Location": f"/endpoints/{name}"} if new else None)

    async def disable_endpoint(self, request: Request) -> Response:
        return await self._switch(request, enabled=False)

    async def enable_endpoint(self, request: Request) -> Response:
        return await self._switch(request, enabled=True)

    async def _switch(self, request: Request, *, enabled: bool) -> Response:
        self.auth.check_admin(principal_of(request))
        spec = await self._find_spec(request.path_params["name"])
        reason = None
        has_body = request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        )
        body = await read_body(request, self.settings.max_body_size) if has_body else b""
        if body.strip() and not enabled:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise BadRequest(f"the body is not JSON: {e}") from None
            reason = data.get("reason") if isinstance(data, dict) else None
            if not isinstance(reason, str | None) or len(reason or "") > 500:
                message = "reason: a text of at most 500 characters"
                raise InvalidInput(message, errors=[{"field": "reason", "message": message}])
        await self.broker.set_endpoint_state(spec.name, enabled, reason)
        return _json(await self._endpoint_body(spec))

    async def delete_endpoint(self, request: Request) -> Response:
        self.auth.check_admin(principal_of(request))
        spec = await self._find_spec(request.path_params["name"])
        drain = request.query_params.get("drain", "true").lower()
        if drain not in ("true", "false", "1", "0"):
            raise BadRequest(f"drain must be true or false, not {drain!r}")
        result = await self.broker.delete_endpoint(spec.name, drain=drain in ("true", "1"))
        self.adapters.deleted(spec.name, removed=result["state"] == "deleted")
        return _json(result, 200 if result["state"] == "deleted" else 202)

    async def submit(self, request: Request) -> Response:
        name = request.path_params["name"]
        spec = await self._find_spec(name)
        self.broker.registry.check_open(name)
        revision = self.broker.registry.revision(name)
        await self.check_serving(name)
        # The headers by name (the first of a repeated one), read once: Starlette's
        # ``Headers`` scans the list, lower-casing the name asked for, at each look-up.
        headers = dict(reversed(request.scope["headers"]))
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        if media_in.is_form(content_type) or media_in.is_media(content_type):
            parsed = await media_in.parse_upload(request, spec, self.settings)
        else:
            body = await read_body(request, self.settings.max_body_size)
            try:
                parsed = spec.request_model.model_validate_json(body)
            except pydantic.ValidationError as e:
                errors = e.errors(include_url=False, include_input=False)
                if any("recursion limit" in str(err["msg"]) for err in errors):
                    raise nested_too_deep(self.settings) from None
                raise _envelope_error(body) or invalid(errors, strip="input") from None
        raw_key = headers.get(b"idempotency-key")
        key = None if raw_key is None else raw_key.decode("latin-1")
        if key is not None and not 1 <= len(key) <= 255:
            raise BadRequest("Idempotency-Key must be 1 to 255 characters")
        respond_async, wait = _prefer(
            headers.get(b"prefer", b"").decode("latin-1"),
            self.settings.default_wait,
            self.settings.max_wait,
        )
        accept = headers.get(b"accept")
        fmt = None if accept is None else negotiate(accept.decode("latin-1"))
        inputs = parsed.input.model_dump()  # type: ignore[attr-defined]
        # media values are bounded by their own limits (bytes, pixels, duration), not as text
        media = spec.media_inputs
        plain = {k: v for k, v in inputs.items() if k not in media} if media else inputs
        check_shape(plain, self.settings)
        principal = principal_of(request)
        # a cache hit counts against the limits too
        limits = await self.auth.admit(principal, name, client_host(request))
        if spec.media_inputs:
            inputs = await media_in.normalise(spec, inputs, limits_of(self.settings))
        hook = await self.broker.webhooks.check(
            parsed.webhook,  # type: ignore[attr-defined]
            parsed.webhook_events,  # type: ignore[attr-defined]
        )
        answer = await self.broker.answer(
            name,
            inputs,
            idempotency_key=key,
            owner=principal.owner,
            own_job=fmt is not None or hook is not None,
            revision=revision,
            spec=spec,
        )
        extra = {**limits, X_CACHE: answer.cache} if answer.cache is not None else limits
        if answer.body is not None:
            return _json(answer.body, headers={JOB_STATUS: answer.body["status"], **extra})
        job = answer.job
        assert job is not None
        if hook is not None:
            await self.broker.webhooks.subscribe(job, hook)
        if fmt is not None:
            return event_stream(
                self.broker,
                job.id,
                fmt,
                headers={"location": f"/jobs/{job.id}", "x-job-id": job.id, **limits},
                cancel_on_hangup=True,
            )
        if not respond_async and not job.status.final:
            job = await self.broker.wait(job.id, wait, job=job)
        if accept is not None:
            binary = await media_files.binary_answer(request, self.broker.store, spec, job)
            if binary is not None:
                return binary
        return await self._job_response(job, created=True, headers=extra)

    async def _visible(self, request: Request) -> str:
        """The job id of the route, once the job is known to exist for the caller (a job of
        another key answers 404, exactly as one that does not exist)."""
        job_id: str = request.path_params["id"]
        principal = principal_of(request)
        if principal.kind not in ("anonymous", "admin"):
            job = await self.broker.get(job_id)
            if not principal.sees(job) or not principal.may_use(job.endpoint):
                raise NotFound(f"no job with id {job_id!r}")
        return job_id

    async def _job_response(
        self, job: JobRecord, *, created: bool = False, headers: dict[str, str] | None = None
    ) -> Response:
        position = None if job.status.final else await self.broker.position(job)
        body = job.public(queue_position=position)
        spec = self.broker.specs.get(job.endpoint)
        if spec is not None and spec.media_inputs:
            body["input"] = media_files.linked_inputs(spec, job)
        if position is not None:
            body["eta"] = await self.broker.eta(job, position)
        if self.broker.webhooks.enabled:
            body["webhook"] = await self.broker.webhooks.describe(job.id)
        headers = {**(headers or {}), JOB_STATUS: str(job.status)}
        if job.status.final or not created:
            return _json(body, headers=headers)
        return _json(body, 202, {"Location": f"/jobs/{job.id}", **headers})

    async def get_job(self, request: Request) -> Response:
        job_id = await self._visible(request)
        prefer = request.headers.get("prefer", "")
        respond_async, wait = _prefer(prefer, 0.0, self.settings.max_wait)
        job = await self.broker.wait(job_id, 0.0 if respond_async else wait)
        if "accept" in request.headers:
            try:
                spec = await self.broker.find_spec(job.endpoint)
            except NotFound:  # the endpoint was deleted since: the job is still there
                return await self._job_response(job)
            binary = await media_files.binary_answer(request, self.broker.store, spec, job)
            if binary is not None:
                return binary
        return await self._job_response(job)

    async def job_events(self, request: Request) -> Response:
        job_id = await self._visible(request)
        after = resume_point(request)
        await self.broker.get(job_id)  # a 404 before the stream starts
        fmt = stream_format(request) or "sse"
        return event_stream(self.broker, job_id, fmt, after=after)

    async def job_logs(self, request: Request) -> Response:
        """``GET /jobs/{id}/logs``: what the job's model printed and logged (as long as its
        endpoint's log keeps it)."""
        job = await self.broker.get(await self._visible(request))
        query = _log_query(request)
        lines = await self.broker.store.logs(
            job.endpoint, job_id=job.id, since=query.since, level=query.level, limit=query.limit
        )
        return _logs_response(request, lines)

    async def endpoint_logs(self, request: Request) -> Response:
        """``GET /endpoints/{name}/logs?since=&job=&level=&limit=``: its models' log lines,
        oldest first (JSON, or ``Accept: text/plain``). An admin's, when keys are on: the
        lines come from every caller's jobs."""
        self.auth.check_admin(principal_of(request))
        spec = await self._find_spec(request.path_params["name"])
        query = _log_query(request)
        job = request.query_params.get("job")
        lines = await self.broker.store.logs(
            spec.name, since=query.since, job_id=job, level=query.level, limit=query.limit
        )
        return _logs_response(request, lines)

    async def delete_endpoint_logs(self, request: Request) -> Response:
        self.auth.check_admin(principal_of(request))
        spec = await self._find_spec(request.path_params["name"])
        return _json(
            {"endpoint": spec.name, "deleted": await self.broker.store.delete_logs(spec.name)}
        )

    async def job_file(self, request: Request) -> Response:
        job = await self.broker.get(await self._visible(request))
        return await media_files.file_response(self.broker.store, job, request.path_params["name"])

    async def cancel_job(self, request: Request) -> Response:
        job = await self.broker.cancel(await self._visible(request))
        return _json(job.public(), headers={JOB_STATUS: job.status.value})

    async def live(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        await self.broker.store.ping()
        waiting = list(dict.fromkeys(r.spec.name for r in self.runners if not r.ready.is_set()))
        if waiting:
            failed = {n: self.setup_errors[n] for n in waiting if n in self.setup_errors}
            detail = "; ".join(f"{n}: {e}" for n, e in failed.items()) or (
                f"models still loading: {', '.join(waiting)}"
            )
            raise Unavailable(detail, retry_after=1 if not failed else SETUP_FAILED_RETRY)
        endpoints = {
            name: {"workers_online": len(await self.broker.workers_online(name))}
            for name in sorted(self.broker.specs)
        }
        return _json({"status": "ready", "endpoints": endpoints})

    async def metrics(self, request: Request) -> Response:
        await self.broker.sync_specs()
        depths = await self.broker.store.queue_depths()
        names = sorted(self.broker.specs)
        workers = {name: len(await self.broker.workers_online(name)) for name in names}
        job_bytes = await self.broker.store.queued_job_bytes()
        body = self.broker.metrics.render(depths, workers, names, job_bytes)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def openapi_json(self, request: Request) -> Response:
        await self.broker.sync_specs()
        root_path = request.scope.get("root_path", "")
        doc = openapi(
            self.broker.specs,
            root_path=root_path,
            auth=self.settings.auth,
            metrics_auth=self.settings.metrics_auth,
        )
        return _json(doc)

    async def docs(self, request: Request) -> Response:
        return doc_pages.swagger_ui(request)

    async def redoc(self, request: Request) -> Response:
        return doc_pages.redoc(request)

    def app(self) -> ASGIApp:
        routes = [
            Route("/", self.index.get, methods=["GET"]),
            Route("/endpoints/{name}/jobs", self.submit, methods=["POST"]),
            Route("/endpoints", self.list_endpoints, methods=["GET"]),
            Route("/endpoints/{name}", self.get_endpoint, methods=["GET"]),
            Route("/endpoints/{name}", self.put_endpoint, methods=["PUT"]),
            Route("/endpoints/{name}", self.delete_endpoint, methods=["DELETE"]),
            Route("/endpoints/{name}/metadata", self.endpoint_metadata, methods=["GET"]),
            Route("/endpoints/{name}/disable", self.disable_endpoint, methods=["POST"]),
            Route("/endpoints/{name}/enable", self.enable_endpoint, methods=["POST"]),
            Route("/jobs/{id}", self.get_job, methods=["GET"]),
            Route("/jobs/{id}/events", self.job_events, methods=["GET"]),
            Route("/jobs/{id}/files/{name}", self.job_file, methods=["GET"]),
            Route("/jobs/{id}/logs", self.job_logs, methods=["GET"]),
            Route("/endpoints/{name}/logs", self.endpoint_logs, methods=["GET"]),
            Route("/endpoints/{name}/logs", self.delete_endpoint_logs, methods=["DELETE"]),
            Route("/jobs/{id}/cancel", self.cancel_job, methods=["POST"]),
            Route("/health/live", self.live, methods=["GET"]),
            Route("/health/ready", self.ready, methods=["GET"]),
            Route("/openapi.json", self.openapi_json, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/docs", self.docs, methods=["GET"]),
            Route("/redoc", self.redoc, methods=["GET"]),
            Route("/v1/models", self.openai.models, methods=["GET"]),
            Route("/v1/chat/completions", self.openai.chat, methods=["POST"]),
            Route("/v1/embeddings", self.openai.embeddings, methods=["POST"]),
            Route("/keys", self.admin.keys, methods=["GET", "POST"]),
            Route("/keys/{id}", self.admin.delete_key, methods=["DELETE"]),
            Route("/sessions", self.admin.create_session, methods=["POST"]),
            Route("/conversations", self.conversations.conversations, methods=["GET", "POST"]),
            Route("/conversations/{id}", self.conversations.one, methods=["GET", "DELETE"]),
            Route(
                "/conversations/{id}/messages",
                self.conversations.add_messages,
                methods=["POST"],
            ),
            Route("/ui/{name}/chat", self.chat.get, methods=["GET"]),
            Route("/workers", self.workers.register, methods=["POST"]),
            Route("/workers/{id}/lease", self.workers.lease, methods=["POST"]),
            Route("/workers/{id}/events", self.workers.events, methods=["POST"]),
            Route("/workers/{id}/results", self.workers.results, methods=["POST"]),
            Route("/workers/{id}", self.workers.leave, methods=["DELETE"]),
            Route("/admin", self.pages.admin, methods=["GET"]),
            Route("/admin/overview", self.dashboard.get, methods=["GET"]),
            Route("/admin/events", self.dashboard.events, methods=["GET"]),
            Mount(pages.STATIC_PREFIX, pages.static_files(), name="ui-static"),
            Route("/ui/{name}", self.pages.playground, methods=["GET"]),
            Mount(
                doc_pages.STATIC_PREFIX,
                StaticFiles(directory=doc_pages.static_dir()),
                name="docs-static",
            ),
        ]
        app = Starlette(
            routes=routes, lifespan=self.lifespan, exception_handlers=dict(EXCEPTION_HANDLERS)
        )
        app.state.server = self
        front = FrontDoor(app, self)
        return cors(front, self.settings.cors_origins) if self.settings.cors_origins else front


@dataclasses.dataclass(frozen=True)
class _LogQuery:
    since: float | None
    level: int
    limit: int


def _log_query(request: Request) -> _LogQuery:
    """``since`` (Unix seconds), ``level`` (that level and above), ``limit`` (the newest N)."""
    params = request.query_params
    since = None
    if "since" in params:
        try:
            since = float(params["since"])
        except ValueError:
            raise BadRequest(f"since: Unix time in seconds, not {params['since']!r}") from None
        if not math.isfinite(since):
            raise BadRequest(f"since: Unix time in seconds, not {params['since']!r}")
    level = params.get("level", "debug").lower()
    if level not in LOG_LEVELS:
        raise BadRequest(f"level: one of {', '.join(LOG_LEVELS)}, not {level!r}")
    limit = params.get("limit", "1000")
    if not limit.isdigit() or not 1 <= int(limit) <= 10_000:
        raise BadRequest(f"limit: a whole number from 1 to 10000, not {limit!r}")
    return _LogQuery(since, LOG_LEVELS[level], int(limit))


def _logs_response(request: Request, lines: list[dict[str, Any]]) -> Response:
    """Log lines as JSON, or as text (``Accept: text/plain``): one line each."""
    accept = request.headers.get("accept", "")
    if "text/plain" in accept and "application/json" not in accept:
        text = "".join(
            f"{logs.iso_time(e['time'])} {e['level'].upper():<8} {e['job_id']} {e['stream']}:"
            f" {e['message']}\n"
            for e in lines
        )
        return Response(text, media_type="text/plain; charset=utf-8")
    return _json(lines)


def _envelope_error(body: bytes) -> InvalidInput | None:
    """The first mistake of users of other servers: the inputs sent bare, not under "input"."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not data or "input" in data:
        return None
    corrected = orjson.dumps({"input": data}).decode()
    if len(corrected) > 200:
        corrected = corrected[:180] + " ... }}"
    message = f'the inputs go under "input": send {corrected}'
    return InvalidInput(message, errors=[{"field": "input", "message": message}])


_NAME = re.compile(ENDPOINT_NAME)
_SPEC_TYPES = {
    "application/toml": True,
    "text/toml": True,
    "application/x-toml": True,
    "application/json": False,
}
"""The content types of a spec sent to ``PUT /endpoints/{name}``: True for TOML."""
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_SUBMIT_PATH = re.compile(r"^/endpoints/([^/]+)/jobs$")


class FrontDoor:
    """Gives every response an ``X-Request-ID`` (the client's if it sent a sane one), and
    dispatches job submission straight to its handler: it is the hot path, and the full
    routing and middleware stack would cost about a fifth of its time."""

    def __init__(self, app: Starlette, server: Server) -> None:
        self.app = app
        self.server = server
        self.state = app.state
        self._prefix = secrets.token_hex(4) + "-"
        self._ids = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID.match(text):
                    request_id = text
                break
        rid = request_id or f"{self._prefix}{next(self._ids):x}"
        logs.request_id.set(rid)
        raw = rid.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", raw)]
            await send(message)

        auth = self.server.auth
        try:
            principal = await auth.resolve_scope(scope)
        except ModelportError as e:  # the store is down
            await error_response(scope["path"], e)(scope, receive, send_with_id)
            return
        refused = auth.guard(principal, scope["path"])
        if refused is not None:
            await error_response(scope["path"], refused)(scope, receive, send_with_id)
            return
        match = _SUBMIT_PATH.match(scope["path"]) if scope["method"] == "POST" else None
        if match is None:
            await self.app(scope, receive, send_with_id)
            return
        scope["path_params"] = {"name": match.group(1)}
        request = Request(scope, receive)
        try:
            response = await self.server.submit(request)
        except ModelportError as e:
            response = problem_response(e)
        except Exception as e:
            response = unexpected(request, e)
        # A response of its own: the id goes in its headers, with no wrapper around send.
        response.raw_headers.append((b"x-request-id", raw))
        await response(scope, receive, send)


def create_app(
    models: Sequence[type[Model] | Model] = (),
    specs: Sequence[EndpointSpec] = (),
    *,
    store: str | JobStore = "memory://",
    settings: Settings | None = None,
) -> ASGIApp:
    """An ASGI app serving these models (run in-process) and specs (for remote workers)."""
    return Server(models, specs, store=store, settings=settings).app()
