"""The ``[endpoint]`` keys of an adapter: a model that is an HTTP service (``kind = "http"``)
or a program speaking JSON lines (``kind = "subprocess"``).

Read by :func:`modelport.spec.spec_from_dict`, which hands these keys here and keeps the
rest; imports nothing beyond the standard library.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

KINDS = ("http", "subprocess")
METHODS = ("POST", "PUT", "PATCH")
MAX_CONCURRENCY = 1024

HTTP_KEYS = (
    "url",
    "method",
    "headers",
    "concurrency",
    "retries",
    "retry_backoff",
    "stream",
    "health_url",
    "health_interval",
)
SUBPROCESS_KEYS = ("command", "processes", "env", "cwd", "setup_timeout")
KEYS = {"http": HTTP_KEYS, "subprocess": SUBPROCESS_KEYS}

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Problem = tuple[str, str]


@dataclass(frozen=True)
class HttpConfig:
    """Where and how to forward a job: ``url``, ``method``, ``headers`` (``${VAR}`` in a
    value is read from the environment where the adapter runs), ``concurrency`` requests in
    flight, ``retries`` with ``retry_backoff`` for connection errors and 502/503/504,
    ``stream`` (an SSE or JSON-lines answer becomes output chunks), ``health_url``."""

    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    concurrency: int = 1
    retries: int = 3
    retry_backoff: float = 0.1
    stream: bool = False
    health_url: str | None = None
    health_interval: float = 5.0

    @property
    def lanes(self) -> int:
        return self.concurrency


@dataclass(frozen=True)
class SubprocessConfig:
    """A ``command`` started ``processes`` times, one job at a time each; ``timeout`` bounds
    an answer, ``setup_timeout`` a fresh process's first one (or its ``{"ready": true}``)."""

    command: tuple[str, ...]
    processes: int = 1
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: float | None = None
    setup_timeout: float = 300.0

    @property
    def lanes(self) -> int:
        return self.processes


AdapterConfig = HttpConfig | SubprocessConfig


def parse(
    kind: str, data: dict[str, Any], problems: list[Problem], *, required: bool
) -> AdapterConfig | None:
    """Take ``kind``'s keys (and ``timeout``) out of ``data``; their mistakes go to
    ``problems``. The other kind's keys are refused by name. None when there are none and
    they are not ``required`` (a spec as a worker publishes it: the contract only)."""
    raw = {k: data.pop(k) for k in (*KEYS[kind], "timeout") if k in data}
    other = next(k for k in KINDS if k != kind)
    for key in sorted(set(data) & set(KEYS[other])):
        problems.append((f"endpoint.{key}", f'only for kind = "{other}", not "{kind}"'))
        del data[key]
    if not required and not raw.keys() - {"timeout"}:
        return None
    before = len(problems)
    timeout = _seconds(raw, "timeout", None, problems)
    if kind == "http":
        url = raw.get("url")
        if url is None:
            problems.append(("endpoint.url", 'required for kind = "http"'))
        elif not _is_url(url):
            problems.append(("endpoint.url", f"expected an http:// or https:// URL, got {url!r}"))
        method = raw.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in METHODS:
            problems.append(("endpoint.method", f"use one of {', '.join(METHODS)}"))
            method = "POST"
        health = raw.get("health_url")
        if health is not None and not _is_url(health):
            got = f"got {health!r}"
            problems.append(("endpoint.health_url", f"expected an http(s) URL, {got}"))
        stream = raw.get("stream", False)
        if not isinstance(stream, bool):
            problems.append(("endpoint.stream", f"expected true or false, got {stream!r}"))
        config: AdapterConfig = HttpConfig(
            url=url if isinstance(url, str) else "",
            method=method.upper(),
            headers=_strings(raw, "headers", problems),
            timeout=timeout,
            concurrency=_count(raw, "concurrency", 1, problems),
            retries=_count(raw, "retries", 3, problems, low=0, high=100),
            retry_backoff=_seconds(raw, "retry_backoff", 0.1, problems) or 0.1,
            stream=stream is True,
            health_url=health,
            health_interval=_seconds(raw, "health_interval", 5.0, problems) or 5.0,
        )
    else:
        command = raw.get("command")
        if command is None:
            problems.append(("endpoint.command", 'required for kind = "subprocess"'))
            command = []
        elif (
            not isinstance(command, list)
            or not command
            or not all(isinstance(c, str) and c for c in command)
        ):
            problems.append(
                ("endpoint.command", 'expected a list of strings, like ["node", "x.js"]')
            )
            command = []
        cwd = raw.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            problems.append(("endpoint.cwd", f"expected a folder name, got {cwd!r}"))
            cwd = None
        config = SubprocessConfig(
            command=tuple(command),
            processes=_count(raw, "processes", 1, problems),
            env=_strings(raw, "env", problems),
            cwd=cwd,
            timeout=timeout,
            setup_timeout=_seconds(raw, "setup_timeout", 300.0, problems) or 300.0,
        )
    return config if len(problems) == before else None


def resolve(headers: dict[str, str], where: str) -> dict[str, str]:
    """Header values with each ``${VAR}`` replaced by the environment's value; an unset
    variable raises ``ValueError`` naming the header and the variable."""
    out = {}
    for name, value in headers.items():

        def lookup(m: re.Match[str], header: str = name) -> str:
            found = os.environ.get(m.group(1))
            if found is None:
                raise ValueError(
                    f"{where}endpoint.headers.{header}: the environment variable"
                    f" {m.group(1)} is not set"
                )
            return found

        out[name] = _VARIABLE.sub(lookup, value)
    return out


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://[^\s/]+", value) is not None


def _strings(raw: dict[str, Any], key: str, problems: list[Problem]) -> dict[str, str]:
    value = raw.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        problems.append((f"endpoint.{key}", 'expected a table of strings, like { X-Key = "..." }'))
        return {}
    return dict(value)


def _count(
    raw: dict[str, Any],
    key: str,
    default: int,
    problems: list[Problem],
    low: int = 1,
    high: int = MAX_CONCURRENCY,
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(
            (f"endpoint.{key}", f"must be an integer from {low} to {high}, got {value!r}")
        )
        return default
    return value


def _seconds(
    raw: dict[str, Any], key: str, default: float | None, problems: list[Problem]
) -> float | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= 86_400
    ):
        problems.append((f"endpoint.{key}", f"must be a number of seconds above 0, got {value!r}"))
        return default
    return float(value)
