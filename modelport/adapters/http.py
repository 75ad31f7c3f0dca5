"""``kind = "http"``: each job's validated input is sent as JSON to the upstream's ``url``.

A JSON answer is the output (checked against the endpoint's outputs like any model's); with
``stream = true`` an answer in server-sent events or JSON lines becomes output chunks.
Connection errors and 502/503/504 are retried ``retries`` times with exponential backoff
from ``retry_backoff``; if they last, the attempt fails as transient (the job is requeued
until its ``max_attempts``). Any other status fails the job with the status and a short
excerpt of the body. With a ``health_url``, a worker serves (and counts as online) only
while it answers 2xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from modelport import _context as context
from modelport.adapters.base import Adapter, called_as_is, subclass
from modelport.adapters.config import HttpConfig, resolve
from modelport.errors import SpecError
from modelport.spec import EndpointSpec
from modelport.worker.invoke import TransientError

log = logging.getLogger("modelport.adapters")

RETRY_STATUS = frozenset({502, 503, 504})
MAX_BACKOFF = 5.0
EXCERPT = 200
"""The most characters of an upstream's body quoted in a job's error."""


class UpstreamError(Exception):
    """The upstream answered, but not with an output."""


class UpstreamUnavailable(TransientError):
    """The upstream could not be reached, or answered 502/503/504, through every retry."""


class HealthCheck:
    """Whether the upstream's health URL answers 2xx, asked at most every ``interval``
    seconds however many lanes ask."""

    def __init__(self, url: str, interval: float, headers: dict[str, str]) -> None:
        self.url = url
        self.interval = interval
        self.headers = headers
        self._checked = -1e9
        self._healthy = False
        self._lock: asyncio.Lock | None = None

    async def ok(self) -> bool:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.interval:
                self._healthy = await self._ask()
                self._checked = time.monotonic()
            return self._healthy

    async def _ask(self) -> bool:
        timeout = min(self.interval, 10.0)
        try:
            async with httpx.AsyncClient(timeout=timeout, trust_env=False) as http:
                response = await http.get(self.url, headers=self.headers)
        except httpx.HTTPError as e:
            log.warning("health check %s failed: %s", self.url, _explain(e))
            return False
        if not response.is_success:
            log.warning("health check %s answered %d", self.url, response.status_code)
        return response.is_success


class HttpModel(Adapter):
    """Forwards each job to an HTTP service."""

    upstream: ClassVar[HttpConfig]
    headers: ClassVar[dict[str, str]]
    health: HealthCheck | None = None

    def setup(self) -> None:
        c = self.upstream
        connect = 10.0 if c.timeout is None else min(c.timeout, 10.0)
        self.client = httpx.Client(
            timeout=httpx.Timeout(c.timeout, connect=connect),
            limits=httpx.Limits(
                max_connections=c.concurrency, max_keepalive_connections=c.concurrency
            ),
            headers=self.headers,
            trust_env=False,
            follow_redirects=False,
        )
        if c.health_url is not None:
            self.health = HealthCheck(c.health_url, c.health_interval, self.headers)

    def info(self) -> dict[str, Any]:
        return {"adapter": "http", "concurrency": self.upstream.concurrency}

    def close(self) -> None:
        """Close the connections to the upstream."""
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    @called_as_is
    def predict(self, **inputs: Any) -> Any:
        response = self._send(inputs)
        try:
            return _output(response, self.adapter_spec)
        finally:
            response.close()

    @called_as_is
    def predict_stream(self, **inputs: Any) -> Iterator[Any]:
        response = self._send(inputs, stream=True)
        try:
            lines = response.iter_lines()
            if "text/event-stream" in response.headers.get("content-type", ""):
                yield from _events(lines)
            else:
                yield from (_value(line) for line in lines if line.strip())
        except httpx.HTTPError as e:
            raise UpstreamError(f"the upstream's stream broke off: {_explain(e)}") from None
        finally:
            response.close()

    def _send(self, inputs: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        """The upstream's 2xx answer (its body not yet read when ``stream``), after retrying
        what may pass; raises for anything else."""
        c = self.upstream
        tries = c.retries + 1
        for attempt in range(1, tries + 1):
            why = ""
            try:
                request = self.client.build_request(c.method, c.url, json=inputs)
                response = self.client.send(request, stream=stream)
            except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
                raise UpstreamError(
                    f"the upstream did not answer within {c.timeout:g} s (timeout)"
                ) from None
            except httpx.TransportError as e:
                why = f"cannot reach the upstream: {_explain(e)}"
            else:
                if response.is_success:
                    return response
                response.read()
                response.close()
                if response.status_code not in RETRY_STATUS:
                    raise UpstreamError(_answered(response))
                why = _answered(response)
            if attempt == tries:
                raise UpstreamUnavailable(f"{why} (tried {tries} times)")
            log.warning("%s %s, try %d of %d: %s", c.method, c.url, attempt, tries, why)
            context.log("warning", f"try {attempt} of {tries}: {why}; retrying", stream="http")
            time.sleep(min(c.retry_backoff * 2 ** (attempt - 1), MAX_BACKOFF))
        raise AssertionError("unreachable")


def _answered(response: httpx.Response) -> str:
    status = f"{response.status_code} {response.reason_phrase}".strip()
    text = " ".join(response.text.split())
    if len(text) > EXCERPT:
        text = text[:EXCERPT] + "…"
    return f"the upstream answered {status}: {text}" if text else f"the upstream answered {status}"


def _output(response: httpx.Response, spec: EndpointSpec) -> Any:
    """The answer as the job's output: JSON (an object's declared ``[outputs]`` fields), or
    text for an endpoint whose output is text."""
    text_output = spec.output is not None and spec.output.type == "string"
    is_json = "json" in response.headers.get("content-type", "")
    if text_output and not is_json:
        return response.text
    try:
        answer = response.json()
    except ValueError:
        body = " ".join(response.text.split())[:EXCERPT]
        raise UpstreamError(
            f"the upstream answered {response.status_code} with a body that is not JSON: {body}"
        ) from None
    if spec.outputs is not None and isinstance(answer, dict):
        return {k: v for k, v in answer.items() if k in spec.outputs}  # the declared fields
    return answer


def _value(text: str) -> Any:
    """A line or event payload: JSON if it parses, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _events(lines: Iterator[str]) -> Iterator[Any]:
    """The data of each server-sent event, until ``[DONE]`` or the end."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                payload = "\n".join(data)
                data = []
                if payload == "[DONE]":
                    return
                yield _value(payload)
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data and "\n".join(data) != "[DONE]":
        yield _value("\n".join(data))


def _explain(e: httpx.HTTPError) -> str:
    return str(e) or type(e).__name__


def http_model(spec: EndpointSpec, where: str = "") -> type[HttpModel]:
    config = spec.adapter
    assert isinstance(config, HttpConfig)
    try:
        headers = resolve(config.headers, where)
    except ValueError as e:
        raise SpecError(str(e)) from None
    attributes: dict[str, Any] = {"upstream": config, "headers": headers}
    if config.stream:
        attributes["predict"] = HttpModel.predict_stream
    return subclass(HttpModel, spec, **attributes)
