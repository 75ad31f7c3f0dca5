"""Webhooks: a job's events POSTed to the URL its submit named, signed, from a durable queue.

A submit may name a ``webhook`` and the ``webhook_events`` it wants (``started``,
``progress``, ``output``, ``log``, ``completed``; all by default). Each delivery's body is
the job as ``GET /jobs/{id}`` shows it, signed the Standard Webhooks way: headers
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">``, with the secret of the key that submitted the job if it has
one, else the server's. Intermediate events (progress, output, log) are sent at most
every :data:`THROTTLE` seconds per job, the last one always; ``started`` and ``completed``
once each. Deliveries wait in the store and are retried with backoff, by whichever server
claims them, so a restart loses none; a delivery never blocks or fails its job.

A target must be on the allow-list (``host`` or ``host:port``; ``*`` for any public host);
a loopback, private, link-local or otherwise non-public address is refused unless its host
is listed by name, at submit and again at each delivery (the name may resolve elsewhere
by then).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import math
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from modelport.core.jobs import Jobs
from modelport.core.reaper import stop_if_cancelled
from modelport.errors import InvalidInput, ModelportError
from modelport.spec import WEBHOOK_EVENTS
from modelport.wire import JobRecord, JobStatus

log = logging.getLogger("modelport.webhooks")

THROTTLE = 0.5
"""Seconds between two intermediate deliveries of one job, at least."""
RETRY_BASE = 0.5
"""Seconds before the first retry; each next one waits twice as long, up to :data:`RETRY_MAX`."""
RETRY_MAX = 300.0
MAX_ATTEMPTS = 10
TIMEOUT = 10.0
"""Seconds one delivery attempt may take."""
HOLD = TIMEOUT + 5.0
"""Seconds a claimed delivery is held by its server before another may claim it again."""
INTERMEDIATE = ("progress", "output", "log")
_GROUP = ":webhooks"
"""The cache group subscriptions are kept in (no endpoint name has a colon)."""


def signature(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header of the Standard Webhooks convention."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: a Standard Webhooks ``whsec_<base64>`` one decoded, any
    other text as its UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            raise ModelportError(
                "the webhook secret starts with whsec_ but is not base64"
            ) from None
    return secret.encode()


def _refused(message: str) -> InvalidInput:
    return InvalidInput(message, errors=[{"field": "webhook", "message": message}])


@dataclass(slots=True)
class _Watch:
    """What this server knows of one job's webhook."""

    url: str
    events: frozenset[str]
    after: int = 0
    """The last event id looked at."""
    last_sent: float = -THROTTLE
    trailing: asyncio.TimerHandle | None = None
    busy: bool = False
    again: bool = False


@dataclass(slots=True)
class AllowList:
    """Where webhooks may go: ``host``, ``host:port``, or ``*`` (any public host)."""

    entries: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def parse(cls, values: Sequence[str]) -> AllowList:
        entries = {e.strip().lower() for v in values for e in v.split(",") if e.strip()}
        return cls(frozenset(entries))

    def listed(self, host: str, port: int) -> bool:
        host = host.lower()
        return (
            host in self.entries
            or f"{host}:{port}" in self.entries
            or (":" in host and f"[{host}]:{port}" in self.entries)
        )

    async def check(self, url: str) -> None:
        """Refuse a URL the server may not call, saying why."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise _refused(f"not a URL: {e}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused("the webhook must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise _refused("the webhook URL must not carry credentials")
        host = parts.hostname
        port = port or (443 if parts.scheme == "https" else 80)
        listed = self.listed(host, port)
        if not listed and "*" not in self.entries:
            allowed = ", ".join(sorted(self.entries))
            raise _refused(f"webhooks may not go to {host}:{port} (allowed: {allowed})")
        if listed:
            return
        for address in await _addresses(host, port):
            if not address.is_global:
                raise _refused(
                    f"webhooks may not go to {host}, a non-public address ({address});"
                    " list it in --webhook-allow to allow it"
                )


async def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    with contextlib.suppress(ValueError):
        return [ipaddress.ip_address(host)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise _refused(f"cannot resolve the webhook's host {host}: {e}") from None
    return [ipaddress.ip_address(info[4][0]) for info in infos]


class Webhooks:
    """Subscriptions, the events they are told of, and the delivery loop of this server."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.allow = AllowList()
        self.secret: bytes | None = None
        self._watches: dict[str, _Watch] = {}
        self._kick: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._http: Any = None

    @property
    def enabled(self) -> bool:
        return self.secret is not None and bool(self.allow.entries)

    def configure(self, allow: Sequence[str], secret: str | None) -> None:
        """Send webhooks to the allowed hosts, signed with ``secret``."""
        self.allow = AllowList.parse(allow)
        if self.allow.entries and not secret:
            raise ModelportError(
                "webhooks need a signing secret: --webhook-secret-file or $MODELPORT_WEBHOOK_SECRET"
            )
        self.secret = secret_key(secret) if secret else None
        if self.enabled and self.jobs.wakeups.observers.count(self.changed) == 0:
            self.jobs.wakeups.observers.append(self.changed)

    async def start(self) -> None:
        if not self.enabled:
            return
        import httpx

        self._http = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False)
        self._kick = asyncio.Event()
        await self._resume()
        if not self.store.shared:
            # Alone with the store, every held or waiting delivery is this server's: try them
            # now rather than when a hold made before the restart runs out.
            await self.store.claim_deliveries(math.inf, 100_000, time.time())
        if self.store.shared:
            self.store.subscribe(self._on_message)
        self._task = asyncio.create_task(self._deliver_forever(), name="modelport-webhooks")

    async def stop(self) -> None:
        for task in [self._task, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        for watch in self._watches.values():
            if watch.trailing is not None:
                watch.trailing.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def check(self, url: str | None, events: Sequence[str] | None) -> dict[str, Any] | None:
        """The subscription a submit asks for, checked (None if it asks for none)."""
        if url is None:
            if events is not None:
                raise InvalidInput(
                    "webhook_events needs a webhook",
                    errors=[{"field": "webhook_events", "message": "needs a webhook URL"}],
                )
            return None
        if not self.enabled:
            raise _refused("this server sends no webhooks (it was started without --webhook-allow)")
        await self.allow.check(url)
        chosen = list(dict.fromkeys(events)) if events is not None else list(WEBHOOK_EVENTS)
        return {"url": url, "events": chosen}

    async def subscribe(self, job: JobRecord, hook: dict[str, Any]) -> None:
        """Tell ``hook`` of the job's events (catching up on what already happened)."""
        self._watch(job.id, hook)
        ttl = self.jobs.limits.result_ttl or 30 * 86_400.0
        await self.store.cache_put(":hook:" + job.id, hook, ttl + 3_600, _GROUP)
        if self.store.shared:
            await self.store.publish(f"webhook:{job.id}")
        self.changed(job.id)

    def _watch(self, job_id: str, hook: dict[str, Any]) -> None:
        if job_id not in self._watches:
            self._watches[job_id] = _Watch(str(hook["url"]), frozenset(hook["events"]))

    async def _resume(self) -> None:
        """After a restart, watch again the unfinished jobs that have webhooks."""
        jobs = await self.store.running()
        for name in list(self.jobs.registry.specs):
            jobs += await self.store.oldest_queued(name, self.jobs.limits.max_queue_length)
        for job in jobs:
            hook = await self.store.cache_get(":hook:" + job.id)
            if isinstance(hook, dict):
                self._watch(job.id, hook)
                self.changed(job.id)

    def _on_message(self, message: str) -> None:
        """Another server subscribed a job (load it), or changed a watched one (look at it:
        ``started`` and ``completed`` are queued once, whoever sees them first)."""
        for line in message.split("\n"):
            if line.startswith("j:"):
                self.changed(line.removeprefix("j:"))
            elif line.startswith("webhook:"):
                task = asyncio.ensure_future(self._load(line.removeprefix("webhook:")))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _load(self, job_id: str) -> None:
        hook = await self.store.cache_get(":hook:" + job_id)
        if isinstance(hook, dict):
            self._watch(job_id, hook)

    def changed(self, job_id: str) -> None:
        """A job changed here: if it has a webhook, queue what its subscriber is owed."""
        watch = self._watches.get(job_id)
        if watch is None:
            return
        if watch.busy:
            watch.again = True
            return
        watch.busy = True
        task = asyncio.ensure_future(self._look(job_id, watch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _look(self, job_id: str, watch: _Watch) -> None:
        try:
            while True:
                watch.again = False
                await self._queue_owed(job_id, watch)
                if not watch.again:
                    return
        except Exception:
            log.exception("webhook of job %s: could not queue its events", job_id)
        finally:
            watch.busy = False

    async def _queue_owed(self, job_id: str, watch: _Watch) -> None:
        job = await self.store.get(job_id)
        if job is None:
            self._watches.pop(job_id, None)
            return
        if job.status is not JobStatus.QUEUED and "started" in watch.events:
            await self._once(job, watch, "started")
        if job.status.final:
            self._watches.pop(job_id, None)
            if watch.trailing is not None:
                watch.trailing.cancel()
            if "completed" in watch.events:
                await self._once(job, watch, "completed")
            return
        events = await self.store.events(job_id, after=watch.after)
        if events:
            watch.after = events[-1].id
        kinds = [e.type for e in events if e.type in watch.events and e.type in INTERMEDIATE]
        if not kinds:
            return
        wait = watch.last_sent + THROTTLE - time.monotonic()
        if wait > 0:
            # Throttled: one delivery at the end of the window carries the latest state.
            if watch.trailing is None:
                loop = asyncio.get_running_loop()
                watch.trailing = loop.call_later(wait, self._trailing, job_id, watch, kinds[-1])
            return
        watch.last_sent = time.monotonic()
        await self._queue(job, watch, kinds[-1])

    def _trailing(self, job_id: str, watch: _Watch, kind: str) -> None:
        watch.trailing = None

        async def send() -> None:
            job = await self.store.get(job_id)
            if job is not None and not job.status.final and job_id in self._watches:
                watch.last_sent = time.monotonic()
                await self._queue(job, watch, kind)

        task = asyncio.ensure_future(send())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _once(self, job: JobRecord, watch: _Watch, kind: str) -> None:
        """Queue ``started`` or ``completed`` once per job, whichever server sees it."""
        ttl = (self.jobs.limits.result_ttl or 30 * 86_400.0) + 3_600
        if await self.store.cache_add(f":hook:{job.id}:{kind}", 1, ttl, _GROUP) is None:
            await self._queue(job, watch, kind)

    async def _queue(self, job: JobRecord, watch: _Watch, kind: str) -> None:
        now = time.time()
        await self.store.put_delivery(
            {
                "id": "msg_" + secrets.token_hex(12),
                "job_id": job.id,
                "owner": job.owner,
                "event": kind,
                "url": watch.url,
                "body": job.public(),
                "created_at": now,
                "due": now,
                "state": "pending",
                "attempts": [],
            }
        )
        if self._kick is not None:
            self._kick.set()

    async def describe(self, job_id: str) -> dict[str, Any] | None:
        """The job's webhook as ``GET /jobs/{id}`` shows it, with its delivery attempts."""
        if not self.enabled:
            return None
        hook = await self.store.cache_get(":hook:" + job_id)
        if not isinstance(hook, dict):
            return None
        deliveries = [
            {
                "id": d["id"],
                "event": d["event"],
                "state": d["state"],
                "attempts": d["attempts"],
                "next_attempt_at": d["due"] if d["state"] == "pending" else None,
            }
            for d in await self.store.deliveries(job_id)
        ]
        return {"url": hook["url"], "events": hook["events"], "deliveries": deliveries}

    async def _deliver_forever(self) -> None:
        assert self._kick is not None
        while True:
            try:
                now = time.time()
                claimed = await self.store.claim_deliveries(now, 16, now + HOLD)
            except ModelportError as e:
                log.warning("webhook deliveries: the store does not answer (%s)", e)
                claimed = []
            stop_if_cancelled()
            if claimed:
                await asyncio.gather(*(self._deliver(d) for d in claimed))
                continue
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETRY_BASE):  # retries come due with time
                    await self._kick.wait()

    async def _secret_of(self, owner: str | None) -> bytes:
        """The secret a job's webhooks are signed with: its key's own, else the server's."""
        assert self.secret is not None
        key = None if owner is None else await self.store.get_key(owner)
        own = None if key is None else key.get("webhook_secret")
        return secret_key(own) if own else self.secret

    async def _deliver(self, delivery: dict[str, Any]) -> None:
        assert self.secret is not None and self._http is not None
        started = time.time()
        attempt: dict[str, Any] = {"at": started}
        try:
            await self.allow.check(delivery["url"])
            secret = await self._secret_of(delivery.get("owner"))
            body = orjson.dumps(delivery["body"])
            stamp = int(started)
            response = await self._http.post(
                delivery["url"],
                content=body,
                headers={
                    "content-type": "application/json",
                    "user-agent": "modelport-webhooks",
                    "webhook-id": delivery["id"],
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": signature(secret, delivery["id"], stamp, body),
                    "modelport-event": delivery["event"],
                },
            )
            attempt["status"] = response.status_code
            ok = 200 <= response.status_code < 300
        except InvalidInput as e:
            attempt["error"] = e.message
            ok = False
        except Exception as e:  # the receiver's trouble never becomes the job's or ours
            attempt["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            ok = False
        attempt["duration"] = round(time.time() - started, 6)
        attempts = [*delivery["attempts"], attempt]
        if ok:
            state, due = "delivered", None
        elif len(attempts) >= MAX_ATTEMPTS or (
            "error" in attempt and "may not go" in attempt["error"]
        ):
            state, due = "failed", None
            log.warning(
                "webhook %s of job %s given up: %s", delivery["id"], delivery["job_id"], attempt
            )
        else:
            state = "pending"
            due = time.time() + min(RETRY_BASE * 2 ** (len(attempts) - 1), RETRY_MAX)
        try:
            await self.store.put_delivery(
                {**delivery, "attempts": attempts, "state": state, "due": due}
            )
        except ModelportError as e:
            log.warning("webhook %s: could not record the attempt (%s)", delivery["id"], e)
