"""Principals: a request's credential, resolved once at the edge, and the one place that
says what each may do.

    anonymous   no credential (or, with ``--auth none``, one that is not a key)
    client      a client key: the client routes, maybe only some endpoints; its own jobs
    session     a browser session made from a client key: the same, for less, for a while
    worker      the worker token or a worker key: the worker routes, maybe some endpoints
    admin       an admin key: everything but the worker routes; every job

:meth:`Auth.guard` checks a route against a principal before any handler runs; handlers
ask :meth:`Principal.sees` before showing a job and :meth:`Auth.admit` before queueing one
(rate, quota and queued-jobs cap, kept in the store so every server agrees).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import math
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Scope

from modelport.errors import Forbidden, ModelportError, RateLimited, Unauthorized
from modelport.keys import DAY, ApiKey, digest
from modelport.metrics import Metrics
from modelport.settings import Settings
from modelport.stores.base import JobStore
from modelport.wire import JobRecord

Kind = Literal["anonymous", "invalid", "client", "session", "worker", "admin"]

CACHE_TTL = 0.5
"""Seconds a key read from the store answers requests before it is read again: a revoked
key stops working on every server within this time."""
TOUCH_EVERY = 60.0
"""Seconds between writes of a key's ``last_used`` from one server."""
SESSION_PREFIX = "mps_"
API_KEY = "apiKey"
"""The name of the API-key security scheme in the OpenAPI document."""
WORKER_TOKEN_ID = "worker-token"
_SCOPE_KEY = "modelport.principal"
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the kind of credential, its id (a key id) and what it is limited to."""

    kind: Kind
    id: str | None = None
    """The key id (for a session: the id of the key it was made from)."""
    endpoints: frozenset[str] | None = None
    """The endpoints it may use; None for all."""
    key: ApiKey | None = None
    problem: str | None = None
    """Why a credential was refused (kind ``invalid``)."""

    @property
    def owner(self) -> str | None:
        """Whose jobs it submits: its key's id (None for anonymous callers)."""
        return self.id if self.kind in ("client", "session", "admin") else None

    def may_use(self, endpoint: str) -> bool:
        return self.endpoints is None or endpoint in self.endpoints

    def sees(self, job: JobRecord) -> bool:
        """Whether the job exists for this principal (others get 404, never a hint)."""
        return self.kind in ("anonymous", "admin") or (
            self.owner is not None and job.owner == self.owner
        )


ANONYMOUS = Principal("anonymous")


def principal_of(request: Request) -> Principal:
    """The principal :class:`Auth` resolved for this request at the edge."""
    found = request.scope.get(_SCOPE_KEY)
    return found if isinstance(found, Principal) else ANONYMOUS


def client_host(request: Request) -> str | None:
    """The caller's address: the peer's, or the ``X-Forwarded-For`` one when the peer is a
    proxy trusted by ``--forwarded-allow-ips`` (uvicorn's proxy headers put it there)."""
    client = request.scope.get("client")  # as request.client has it, with no Address made
    return client[0] if client else None


def area_of(path: str) -> str:
    """Which group of routes a path is in: ``client``, ``workers``, ``keys``, ``sessions``,
    ``metrics``, ``admin`` or ``open``."""
    first = path.split("/", 2)[1] if path.startswith("/") and len(path) > 1 else ""
    if first in ("endpoints", "jobs", "v1", "conversations"):
        return "client"
    if first == "admin" and path.rstrip("/") != "/admin":  # the page is open, its data not
        return "admin"
    if first in ("workers", "keys", "sessions", "metrics"):
        return first
    return "open"


def _unauthorized(message: str) -> Unauthorized:
    err = Unauthorized(message)
    err.headers["WWW-Authenticate"] = "Bearer"
    return err


class Auth:
    """Resolves credentials (with a short cache of key lookups) and checks routes."""

    def __init__(self, store: JobStore, settings: Settings, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self.mode = settings.auth
        self.worker_token = settings.worker_token
        self.metrics_auth = settings.metrics_auth
        self.session_ttl = settings.session_ttl
        self.anonymous_rate = settings.anonymous_rate
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._touched: dict[str, float] = {}
        self._principals: dict[str, Principal] = {}
        self._background: set[asyncio.Task[Any]] = set()

    async def resolve_scope(self, scope: Scope) -> Principal:
        """Resolve the ``Authorization`` header of an ASGI request and keep the answer in
        its scope, for :func:`principal_of`."""
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        principal = await self.resolve(header)
        scope[_SCOPE_KEY] = principal
        return principal

    async def resolve(self, authorization: str | None) -> Principal:
        if not authorization:
            return ANONYMOUS
        scheme, _, given = authorization.partition(" ")
        token = given.strip()
        if scheme.lower() != "bearer" or not token:
            found = Principal("invalid", problem="send the key as Authorization: Bearer <key>")
        elif self.worker_token is not None and hmac.compare_digest(
            token.encode(), self.worker_token.encode()
        ):
            return Principal("worker", WORKER_TOKEN_ID)
        elif token.startswith(SESSION_PREFIX):
            found = await self._session(token)
        else:
            found = await self._key(token)
        if found.kind == "invalid" and self.mode == "none":
            return ANONYMOUS  # without --auth keys, a credential is needed on worker routes only
        return found

    async def lookup(self, key_hash: str) -> ApiKey | None:
        """The key with this hash, from the cache when it was read less than
        :data:`CACHE_TTL` s ago."""
        return await self._cached(key_hash, self.store.find_key(key_hash))

    async def _cached(
        self, name: str, read: Coroutine[Any, Any, dict[str, Any] | None]
    ) -> ApiKey | None:
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < CACHE_TTL:
            read.close()
            return cached[1]
        raw = await read
        key = None if raw is None else ApiKey.from_dict(raw)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
            self._principals.clear()
        self._cache[name] = (now, key)
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key from this server's cache at once (it was revoked here)."""
        for h, (_, key) in list(self._cache.items()):
            if key is not None and key.id == key_id:
                del self._cache[h]

    async def _key(self, token: str) -> Principal:
        key_hash = digest(token)
        key = await self.lookup(key_hash)
        if key is None or not hmac.compare_digest(key.hash, key_hash):
            return Principal("invalid", problem="the key is not valid (unknown or revoked)")
        now = time.time()
        if key.expired(now):
            return Principal("invalid", problem=f"the key {key.id} has expired")
        self._touch(key.id, now)
        principal = self._principals.get(key_hash)
        if principal is None or principal.key is not key:  # built once per read of the key
            endpoints = None if key.endpoints is None else frozenset(key.endpoints)
            principal = self._principals[key_hash] = Principal(key.scope, key.id, endpoints, key)
        return principal

    def _touch(self, key_id: str, now: float) -> None:
        if now - self._touched.get(key_id, 0.0) < TOUCH_EVERY:
            return
        self._touched[key_id] = now
        self._spawn(self.store.touch_key(key_id, now))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        async def quietly() -> None:
            with contextlib.suppress(ModelportError):  # a last-used time is not worth a 500
                await work

        task = asyncio.ensure_future(quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def guard(self, principal: Principal, path: str) -> ModelportError | None:
        """The refusal of this route to this principal, or None."""
        area = area_of(path)
        kind = principal.kind
        if area == "open" or (area == "metrics" and not self.metrics_auth):
            return None
        if kind == "invalid":
            return _unauthorized(f"{principal.problem}; send Authorization: Bearer <key>")
        if area == "workers":
            if kind == "worker":
                return None
            if kind == "anonymous":
                if self.worker_token is None and self.mode == "none":
                    return _unauthorized(
                        "this server has no worker token and was given no worker key: start"
                        " it with --worker-token, or give workers a worker key"
                        " (modelport keys create --scope worker)"
                    )
                return _unauthorized(
                    "a worker key or the worker token is required (Authorization: Bearer ...)"
                )
            return Forbidden(f"{kind} keys are not accepted on worker routes; use a worker key")
        if kind == "anonymous" and (area != "client" or self.mode == "keys"):
            return _unauthorized("an API key is required (Authorization: Bearer <key>)")
        if area in ("keys", "metrics", "admin"):
            return None if kind == "admin" else Forbidden("this route needs an admin key")
        if area == "sessions":
            if kind in ("client", "admin"):
                return None
            return Forbidden("sessions are made with a client key")
        if kind == "worker":
            if principal.id == WORKER_TOKEN_ID:
                return Forbidden("the worker token is not accepted on client routes")
            return Forbidden("worker keys are not accepted on client routes")
        if path.startswith("/endpoints/"):
            name = path.split("/", 3)[2]
            if not principal.may_use(name):
                return Forbidden(f"this key may not use the endpoint {name!r}")
        return None

    def check_admin(self, principal: Principal) -> None:
        """Refuse (403) a change to the server's endpoints or logs to anyone but an admin
        key; without keys (``--auth none``) anyone who may submit may make it."""
        if principal.kind == "admin" or (principal.kind == "anonymous" and self.mode != "keys"):
            return
        raise Forbidden("this route needs an admin key")

    def check_endpoint(self, principal: Principal, endpoint: str) -> None:
        """Refuse (403) an endpoint outside the principal's list."""
        if not principal.may_use(endpoint):
            raise Forbidden(f"this key may not use the endpoint {endpoint!r}")

    async def admit(
        self, principal: Principal, endpoint: str, client: str | None = None
    ) -> dict[str, str]:
        """Count one submit against the principal's key (its queued-jobs cap, rate and daily
        quota) or, for an anonymous caller, against the bucket of its address ``client``.
        Raise :class:`RateLimited` over a limit; else the RateLimit headers."""
        key = principal.key
        if key is None:
            if principal.kind != "anonymous" or self.anonymous_rate is None:
                return {}
            burst = max(1, math.ceil(self.anonymous_rate))
            where = client or "unknown"
            return await self._spend(
                "anon:" + where, "anonymous", f"address {where}", self.anonymous_rate, burst, None
            )
        if key.max_queued is not None:
            queued = await self.store.queued_by(key.id)
            if queued >= key.max_queued:
                self.metrics.key_request(key.id, "queued")
                raise RateLimited(
                    f"key {key.id} has {queued} queued jobs (limit {key.max_queued});"
                    " wait for some to start",
                    retry_after=1,
                )
        if not key.limited:
            self.metrics.key_request(key.id, "accepted")
            return {}
        return await self._spend(
            key.id, key.id, f"key {key.id}", key.rate, key.bucket_size, key.quota
        )

    async def _spend(
        self,
        bucket: str,
        label: str,
        who: str,
        rate: float | None,
        burst: int,
        quota: int | None,
    ) -> dict[str, str]:
        """Take one request from a bucket in the store; ``label`` names it in the metrics."""
        now = time.time()
        window = int(now // DAY)
        window_end = (window + 1) * DAY
        allowance = await self.store.spend(bucket, now, rate, burst, quota, window, window_end)
        policies, states = [], []
        if rate is not None:
            refill = max(1, math.ceil(burst / rate))
            policies.append(f'"burst";q={burst};w={refill}')
            full_in = max(0, math.ceil((burst - allowance.tokens) / rate))
            states.append(f'"burst";r={max(0, math.floor(allowance.tokens))};t={full_in}')
        if quota is not None:
            policies.append(f'"daily";q={quota};w={int(DAY)}')
            left = max(0, quota - allowance.used)
            states.append(f'"daily";r={left};t={max(0, math.ceil(window_end - now))}')
        headers = {"RateLimit-Policy": ", ".join(policies), "RateLimit": ", ".join(states)}
        if not allowance.allowed:
            daily = quota is not None and allowance.used >= quota
            over = "daily quota" if daily else "rate"
            self.metrics.key_request(label, "quota" if daily else "rate")
            err = RateLimited(
                f"{who} is over its {over}; retry in {math.ceil(allowance.retry_after)} s",
                retry_after=max(1, math.ceil(allowance.retry_after)),
            )
            err.headers.update(headers)
            raise err
        self.metrics.key_request(label, "accepted")
        return headers

    def session_token(
        self,
        principal: Principal,
        endpoints: frozenset[str] | None,
        ttl: float,
        *,
        admin: bool = False,
    ) -> tuple[str, float]:
        """A signed token for a browser: this principal's key, fewer endpoints, ``ttl`` s
        (``admin``: an admin key's session, with its powers).

        Signed with the key's own hash, so every server checks it with what the store has,
        and revoking the key ends its sessions too.
        """
        assert principal.key is not None
        expires = time.time() + ttl
        payload: dict[str, Any] = {
            "k": principal.key.id,
            "e": None if endpoints is None else sorted(endpoints),
            "x": expires,
        }
        if admin:
            payload["s"] = "admin"
        body = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
        return f"{SESSION_PREFIX}{body}.{_sign(principal.key.hash, body)}", expires

    async def _session(self, token: str) -> Principal:
        refused = Principal("invalid", problem="the session token is not valid")
        body, _, signature = token.removeprefix(SESSION_PREFIX).partition(".")
        try:
            payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            key_id, endpoints, expires = str(payload["k"]), payload["e"], float(payload["x"])
        except (ValueError, TypeError, KeyError):
            return refused
        key = await self._cached("id:" + key_id, self.store.get_key(key_id))
        if key is None:
            return refused
        if not hmac.compare_digest(_sign(key.hash, body), signature):
            return refused
        now = time.time()
        if now >= expires or key.expired(now):
            return Principal("invalid", problem="the session has expired")
        if payload.get("s") == "admin":
            if key.scope != "admin":
                return refused
            return Principal("admin", key.id, None, key)
        allowed = None if endpoints is None else frozenset(map(str, endpoints))
        return Principal("session", key.id, allowed, key)


def cors(app: ASGIApp, origins: Sequence[str]) -> ASGIApp:
    """``app`` answering browsers of these origins (preflight included), with the headers
    a page needs to read (Location, Retry-After, RateLimit, X-Request-ID, X-Job-Status)."""
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(
        app,
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=[
            "authorization",
            "content-type",
            "idempotency-key",
            "prefer",
            "last-event-id",
            "x-request-id",
        ],
        expose_headers=[
            "location",
            "retry-after",
            "ratelimit",
            "ratelimit-policy",
            "x-request-id",
            "x-job-status",
            "x-job-id",
        ],
        max_age=600,
    )


def _sign(secret: str, body: str) -> str:
    mac = hmac.new(bytes.fromhex(secret), b"modelport-session:" + body.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
