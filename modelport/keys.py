"""API keys: random secrets shown once and stored as a hash, with a scope and limits.

A key's secret is ``mp_`` and 43 characters of :func:`secrets.token_urlsafe` (32 random
bytes); the store keeps only its SHA-256, which is what a request's bearer token is looked
up by. A key's ``id`` is public: it names the key in listings, metrics and job records.

The token bucket that enforces a key's rate is :func:`spend`; every store applies it
atomically to the bucket it keeps (Redis runs the same arithmetic in Lua).
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from modelport.errors import InvalidInput

Scope = Literal["client", "worker", "admin"]
SCOPES: tuple[Scope, ...] = ("client", "worker", "admin")
PREFIX = "mp_"
DAY = 86_400.0

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0, "d": DAY}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")
_NAME = re.compile(r"^[A-Za-z0-9_.:@ -]{1,100}$")
_ENDPOINT = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
WEBHOOK_SECRET_PATTERN = (
    r"^whsec_(?:[A-Za-z0-9+/]{4}){8,256}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
)
"""A key's own webhook secret: ``whsec_`` and the base64 of 24 to 768 bytes."""


def new_secret() -> str:
    """A fresh key secret: 32 random bytes, URL-safe."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the store keeps of a secret, and looks a presented one up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_rate(text: str) -> float:
    """``20/s``, ``600/min``, ``1000/h`` as requests per second."""
    match = _RATE.match(text.lower())
    unit = _UNITS.get(match.group(2)) if match else None
    if match is None or unit is None or float(match.group(1)) <= 0:
        raise InvalidInput(
            f"rate {text!r}: give a count per unit, e.g. 20/s, 600/min or 1000/h",
            errors=[{"field": "rate", "message": "expected N/s, N/min or N/h"}],
        )
    return float(match.group(1)) / unit


def parse_quota(text: str) -> int:
    """``10000/day`` (or a bare number) as requests per UTC day."""
    count, _, unit = text.strip().lower().partition("/")
    if not count.strip().isdigit() or unit.strip() not in ("", "d", "day") or int(count) < 1:
        raise InvalidInput(
            f"quota {text!r}: give a count per day, e.g. 10000/day",
            errors=[{"field": "quota", "message": "expected N/day"}],
        )
    return int(count)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """``3600``, ``90s``, ``30m``, ``12h``, ``90d`` as seconds."""
    match = _DURATION.match(text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise InvalidInput(
            f"expires_in {text!r}: give seconds or a number with s, m, h or d, e.g. 90d",
            errors=[{"field": "expires_in", "message": "expected e.g. 3600, 12h or 90d"}],
        )
    return (
        float(match.group(1))
        * {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}[match.group(2)]
    )


@dataclass
class ApiKey:
    """A key as the store keeps it (``hash``, never the secret) and as admins list it."""

    id: str
    name: str
    scope: Scope
    hash: str
    endpoints: list[str] | None = None
    """The endpoints a client or worker key may use; None for all."""
    expires_at: float | None = None
    rate: float | None = None
    """Requests per second (a token bucket refilled at this rate)."""
    burst: int | None = None
    """The bucket's size: requests allowed at once after a quiet spell."""
    quota: int | None = None
    """Requests per UTC day."""
    max_queued: int | None = None
    """Jobs of this key that may wait in queues at once."""
    created_at: float = field(default_factory=time.time)
    last_used: float | None = None
    webhook_secret: str | None = None
    """What the webhooks of this key's jobs are signed with instead of the server's secret
    (kept as given, since signing needs it; never listed)."""

    @property
    def limited(self) -> bool:
        return self.rate is not None or self.quota is not None

    @property
    def bucket_size(self) -> int:
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.rate or 1))

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ApiKey:
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})

    def public(self) -> dict[str, Any]:
        """The key as listed: everything but its hash and its webhook secret."""
        body = self.to_dict()
        del body["hash"], body["webhook_secret"]
        return body


_FIELDS = frozenset(ApiKey.__dataclass_fields__)


def new_key(
    scope: str,
    *,
    name: str | None = None,
    endpoints: Sequence[str] | None = None,
    expires_at: float | None = None,
    rate: str | float | None = None,
    burst: int | None = None,
    quota: str | int | None = None,
    max_queued: int | None = None,
    webhook_secret: str | None = None,
    now: float | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret (shown once; only its hash is kept)."""
    if scope not in SCOPES:
        raise InvalidInput(
            f"scope {scope!r}: use one of {', '.join(SCOPES)}",
            errors=[{"field": "scope", "message": f"expected one of {', '.join(SCOPES)}"}],
        )
    key_id = "key_" + secrets.token_hex(8)
    if name is not None and not _NAME.match(name):
        raise InvalidInput(
            "name: 1 to 100 letters, digits, spaces or _.:@-",
            errors=[{"field": "name", "message": "1 to 100 letters, digits, spaces or _.:@-"}],
        )
    if endpoints is not None:
        endpoints = list(dict.fromkeys(endpoints))
        bad = [e for e in endpoints if not _ENDPOINT.match(e)]
        if bad or not endpoints:
            raise InvalidInput(
                f"endpoints: {bad[0]!r} is not an endpoint name"
                if bad
                else "endpoints: none given",
                errors=[{"field": "endpoints", "message": "expected endpoint names"}],
            )
        if scope == "admin":
            raise InvalidInput(
                "endpoints: an admin key is not limited to endpoints",
                errors=[{"field": "endpoints", "message": "not allowed for admin keys"}],
            )
    for label, value in (("burst", burst), ("max_queued", max_queued)):
        if value is not None and value < 1:
            raise InvalidInput(
                f"{label}: must be at least 1", errors=[{"field": label, "message": "below 1"}]
            )
    if burst is not None and rate is None:
        raise InvalidInput(
            "burst: give a rate too", errors=[{"field": "burst", "message": "needs a rate"}]
        )
    if webhook_secret is not None:
        _check_webhook_secret(scope, webhook_secret)
    secret = new_secret()
    key = ApiKey(
        id=key_id,
        name=name or key_id,
        scope=scope,
        hash=digest(secret),
        endpoints=None if endpoints is None else list(endpoints),
        expires_at=expires_at,
        rate=parse_rate(rate) if isinstance(rate, str) else rate,
        burst=burst,
        quota=parse_quota(quota) if isinstance(quota, str) else quota,
        max_queued=max_queued,
        created_at=time.time() if now is None else now,
        webhook_secret=webhook_secret,
    )
    return key, secret


def _check_webhook_secret(scope: str, secret: str) -> None:
    message = None
    if scope == "worker":
        message = "a worker key submits no jobs, so it sends no webhooks"
    elif not re.fullmatch(WEBHOOK_SECRET_PATTERN, secret):
        message = "give a Standard Webhooks secret: whsec_ and the base64 of 24 to 768 bytes"
    if message is not None:
        raise InvalidInput(
            f"webhook_secret: {message}", errors=[{"field": "webhook_secret", "message": message}]
        )


@dataclass(frozen=True, slots=True)
class Allowance:
    """What spending one request from a key's bucket and quota gave."""

    allowed: bool
    retry_after: float
    """Seconds until a request would be allowed (0 when this one was)."""
    tokens: float
    """Requests left in the bucket."""
    used: int
    """Requests counted against today's quota, this one included when allowed."""


Bucket = tuple[float, float, int, int]
"""A bucket's state: (tokens, time of last refill, quota window, requests in the window)."""


def spend(
    state: Bucket | None,
    now: float,
    rate: float | None,
    burst: int,
    quota: int | None,
    window: int,
    window_end: float,
) -> tuple[Allowance, Bucket]:
    """Take one request from a bucket: the answer and the bucket's new state.

    A refusal by the quota takes no token, and a refusal by the rate counts nothing.
    """
    tokens, at, seen, used = state if state is not None else (float(burst), now, window, 0)
    if seen != window:
        used = 0
    tokens = float(burst) if rate is None else min(float(burst), tokens + max(0.0, now - at) * rate)
    if quota is not None and used >= quota:
        return Allowance(False, max(0.0, window_end - now), tokens, used), (
            tokens,
            now,
            window,
            used,
        )
    if rate is not None and tokens < 1.0:
        return Allowance(False, (1.0 - tokens) / rate, tokens, used), (tokens, now, window, used)
    if rate is not None:
        tokens -= 1.0
    return Allowance(True, 0.0, tokens, used + 1), (tokens, now, window, used + 1)
