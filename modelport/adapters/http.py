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
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import httpx
import orjson

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
POOL_SIZE = 8
"""The most connections of one of the event loop's connection pools."""
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
        options: dict[str, Any] = {
            "timeout": httpx.Timeout(c.timeout, connect=connect),
            "limits": httpx.Limits(
                max_connections=c.concurrency, max_keepalive_connections=c.concurrency
            ),
            "headers": self.headers,
            "trust_env": False,
            "follow_redirects": False,
        }
        self.client = httpx.Client(**options)
        """For ``predict`` on a model thread (``modelport run``, ``pipe``)."""
        # Several small pools, taken in turn: finding a free connection costs httpcore time
        # in proportion to its pool's size, for every request.
        shards = -(-c.concurrency // POOL_SIZE)
        size = -(-c.concurrency // shards)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self.transports = [
            httpx.AsyncHTTPTransport(limits=limits, trust_env=False) for _ in range(shards)
        ]
        self.async_clients = [
            httpx.AsyncClient(**{**options, "transport": transport})
            for transport in self.transports
        ]
        """For ``predict_async`` on the runner's event loop (served): requests are built
        once parsed (see :meth:`_asend`) and sent by their transports."""
        self._url = httpx.URL(c.url)
        self._request_headers = httpx.Headers(
            {**self.async_clients[0].headers, "content-type": "application/json"}
        )
        self._timeout = options["timeout"].as_dict()
        self._turn = itertools.count()
        if c.health_url is not None:
            self.health = HealthCheck(c.health_url, c.health_interval, self.headers)

    def info(self) -> dict[str, Any]:
        return {"adapter": "http", "concurrency": self.upstream.concurrency}

    async def aclose(self) -> None:
        """Close the connections to the upstream."""
        if hasattr(self, "client"):
            self.client.close()
            for client in self.async_clients:
                await client.aclose()

    @called_as_is
    def predict(self, **inputs: Any) -> Any:
        return _output(self._send(inputs), self.adapter_spec)  # read and closed by send

    @called_as_is
    def predict_stream(self, **inputs: Any) -> Iterator[Any]:
        response = self._send(inputs, stream=True)
        try:
            chunks = _Chunks(response)
            for line in response.iter_lines():
                yield from chunks.feed(line)
            yield from chunks.end()
        except httpx.HTTPError as e:
            raise _broke_off(e) from None
        finally:
            response.close()

    async def predict_async(self, **inputs: Any) -> Any:
        """``predict`` on the event loop: no thread per request in flight."""
        return _output(await self._asend(inputs), self.adapter_spec)

    async def predict_stream_async(self, **inputs: Any) -> AsyncIterator[Any]:
        response = await self._asend(inputs, stream=True)
        try:
            chunks = _Chunks(response)
            async for line in response.aiter_lines():
                for chunk in chunks.feed(line):
                    yield chunk
            for chunk in chunks.end():
                yield chunk
        except httpx.HTTPError as e:
            raise _broke_off(e) from None
        finally:
            await response.aclose()

    def _send(self, inputs: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        """The upstream's 2xx answer (its body not yet read when ``stream``), after retrying
        what may pass; raises for anything else."""
        request = self.client.build_request(self.upstream.method, self.upstream.url, json=inputs)
        for attempt in itertools.count(1):
            try:
                response = self.client.send(request, stream=stream)
            except httpx.TransportError as e:
                time.sleep(self._judge(attempt, e))
                continue
            if response.is_success:
                return response
            response.read()
            response.close()
            time.sleep(self._judge(attempt, response))
        raise AssertionError("unreachable")

    async def _asend(self, inputs: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        """:meth:`_send` on the event loop. The request is built from the URL and headers
        parsed once, and goes to the transport itself: the client's URL merging, cookies,
        auth and redirect layers (none of which an upstream call uses) cost about a quarter
        of httpx's time per request."""
        transport = self.transports[next(self._turn) % len(self.transports)]
        request = httpx.Request(
            self.upstream.method,
            self._url,
            headers=self._request_headers,
            content=_body(inputs),
            extensions={"timeout": self._timeout},
        )
        for attempt in itertools.count(1):
            try:
                response = await transport.handle_async_request(request)
            except httpx.TransportError as e:
                await asyncio.sleep(self._judge(attempt, e))
                continue
            response.request = request
            if response.is_success and stream:
                return response
            try:
                await response.aread()
            except httpx.TransportError as e:
                await response.aclose()
                await asyncio.sleep(self._judge(attempt, e))
                continue
            await response.aclose()
            if response.is_success:
                return response
            await asyncio.sleep(self._judge(attempt, response))
        raise AssertionError("unreachable")

    def _judge(self, attempt: int, outcome: httpx.Response | httpx.TransportError) -> float:
        """After a try that failed: the seconds to wait before the next one, or the error
        to fail the job with. Connection errors and 502/503/504 are tried again."""
        c = self.upstream
        tries = c.retries + 1
        if isinstance(outcome, httpx.ReadTimeout | httpx.WriteTimeout | httpx.PoolTimeout):
            raise UpstreamError(f"the upstream did not answer within {c.timeout:g} s (timeout)")
        if isinstance(outcome, httpx.TransportError):
            why = f"cannot reach the upstream: {_explain(outcome)}"
        elif outcome.status_code in RETRY_STATUS:
            why = _answered(outcome)
        else:
            raise UpstreamError(_answered(outcome))
        if attempt >= tries:
            raise UpstreamUnavailable(f"{why} (tried {tries} times)")
        log.warning("%s %s, try %d of %d: %s", c.method, c.url, attempt, tries, why)
        context.log("warning", f"try {attempt} of {tries}: {why}; retrying", stream="http")
        return float(min(c.retry_backoff * 2 ** (attempt - 1), MAX_BACKOFF))


class _Chunks:
    """An answer's lines as output chunks: the data of each server-sent event (until
    ``[DONE]``), or each JSON line."""

    def __init__(self, response: httpx.Response) -> None:
        self.sse = "text/event-stream" in response.headers.get("content-type", "")
        self.data: list[str] = []
        self.done = False

    def feed(self, line: str) -> list[Any]:
        if self.done:
            return []
        if not self.sse:
            return [_value(line)] if line.strip() else []
        if line.startswith("data:"):
            self.data.append(line[5:].removeprefix(" "))
        elif line == "":
            return self.end()
        return []

    def end(self) -> list[Any]:
        payload, self.data = "\n".join(self.data), []
        if self.done or not payload:
            return []
        if payload == "[DONE]":
            self.done = True
            return []
        return [_value(payload)]


def _broke_off(e: httpx.HTTPError) -> UpstreamError:
    return UpstreamError(f"the upstream's stream broke off: {_explain(e)}")


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


def _body(inputs: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(inputs)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return json.dumps(inputs, separators=(",", ":")).encode()


def _value(text: str) -> Any:
    """A line or event payload: JSON if it parses, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


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
        attributes["predict_async"] = HttpModel.predict_stream_async
    return subclass(HttpModel, spec, **attributes)
