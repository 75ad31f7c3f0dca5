"""The worker API over HTTP(S), outbound from the worker: nothing listens on the worker host.

Connection errors and 502/503/504 answers are retried with capped exponential backoff, so
a worker rides out a server restart; a 4xx answer raises the matching error at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, TypeVar

import aiohttp
import orjson

from modelport import wire
from modelport.errors import ModelportError, from_problem
from modelport.spec import EndpointSpec
from modelport.wire import Event, LeasedJob, Result, WorkerInfo

log = logging.getLogger("modelport.worker")

_RETRY_STATUS = frozenset({502, 503, 504})
LEAVE_TIMEOUT = 5.0
_T = TypeVar("_T")


def tls_verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """What to check an HTTPS server's certificate against: ``ca_file`` (PEM), or the
    system's trust store."""
    return True if ca_file is None else ssl.create_default_context(cafile=ca_file)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP_PROXY``, ``HTTPS_PROXY`` or
    ``ALL_PROXY``, unless ``NO_PROXY`` lists the host), as httpx and curl read them; a
    proxy given without a scheme is ``http://``. None for none.

    Read once per worker: aiohttp's own ``trust_env`` reads ``~/.netrc`` on a thread for
    every request."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.netloc):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class HttpTransport:
    """A runner's link to a remote API server."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_backoff: float = 5.0,
        ca_file: str | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self.max_backoff = max_backoff
        self.timeout = timeout
        self._headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self._verify = tls_verify(ca_file)
        self._proxy = env_proxy(self.server)
        self._http: aiohttp.ClientSession | None = None
        self._closed = False
        self.cancelled: set[str] = set()

    def _session(self) -> aiohttp.ClientSession:
        """The connection pool, made on first use: aiohttp's belongs to the running loop."""
        if self._closed:
            raise RuntimeError("the worker's connection to the server was closed")
        if self._http is None:
            self._http = aiohttp.ClientSession(
                headers=self._headers,
                # Every lane of every model in this process long-polls on its own connection
                # while others send events: no cap that would queue a lane behind idle polls.
                connector=aiohttp.TCPConnector(limit=0, ssl=self._verify),
            )
        return self._http

    async def _call(
        self, method: str, path: str, body: bytes | None = None, *, timeout: float | None = None
    ) -> bytes:
        """Send one request, retrying while the server is away; the answer's body, or the
        error its problem document names.

        aiohttp, not httpx as the client: a worker's calls are its hot path (a lease, a
        batch of events, results), and httpx spent about 6 times aiohttp's CPU on each
        here (about 540 against 90 us for a small POST)."""
        http = self._session()
        url = self.server + path
        limit = timeout or self.timeout
        # Like httpx's timeouts: to connect, and between reads; a long answer may take longer.
        timeouts = aiohttp.ClientTimeout(total=None, sock_connect=limit, sock_read=limit)
        delay = 0.1
        while True:
            try:
                async with http.request(
                    method,
                    url,
                    data=body,
                    timeout=timeouts,
                    proxy=self._proxy,
                    allow_redirects=False,  # a redirected POST would arrive as a GET
                ) as response:
                    status, content = response.status, await response.read()
                    headers = response.headers
            except (aiohttp.ClientError, TimeoutError) as e:
                log.warning(
                    "cannot reach the server at %s (%s %s: %s); retrying in %.1f s",
                    self.server,
                    method,
                    path,
                    str(e) or type(e).__name__,
                    delay,
                )
            else:
                if status not in _RETRY_STATUS:
                    break
                log.warning(
                    "%s %s%s answered %d; retrying in %.1f s",
                    method,
                    self.server,
                    path,
                    status,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_backoff)
        if status >= 400:
            try:
                problem = orjson.loads(content)
            except orjson.JSONDecodeError:
                problem = {"detail": content[:500].decode(errors="replace")}
            problem = problem if isinstance(problem, dict) else {}
            raise from_problem(status, problem, headers)
        return content

    async def _send(
        self, path: str, message: Any, answer: type[_T], *, timeout: float | None = None
    ) -> _T:
        raw = await self._call("POST", path, wire.encode(message), timeout=timeout)
        return wire.decode(answer, raw)

    async def register(
        self, info: WorkerInfo, specs: Sequence[EndpointSpec], worker_id: str | None
    ) -> str:
        request = wire.Registration(
            name=info.name,
            endpoints=[s.to_dict() for s in specs],
            max_batch_size=info.max_batch_size,
            metadata=info.metadata,
            worker_id=worker_id,
        )
        return (await self._send("/workers", request, wire.Registered)).worker_id

    async def lease(
        self,
        worker_id: str,
        max_jobs: int,
        wait: float,
        results: Sequence[Result] = (),
        batches: int = 1,
    ) -> list[LeasedJob]:
        request = wire.LeaseRequest(max_jobs, wait, list(results), batches)
        path = f"/workers/{worker_id}/lease"
        answer = await self._send(path, request, wire.LeaseAnswer, timeout=wait + self.timeout)
        self.cancelled.update(answer.cancelled)
        _log_refused(answer.refused)
        return answer.jobs

    async def heartbeat(self, worker_id: str, job_ids: Sequence[str]) -> list[str]:
        return await self._events(worker_id, [wire.WorkerEvent(j, "heartbeat") for j in job_ids])

    async def events(self, worker_id: str, events: Sequence[Event]) -> list[str]:
        return await self._events(
            worker_id, [wire.WorkerEvent(e.job_id, e.type, e.data) for e in events]
        )

    async def release(self, worker_id: str, job_ids: Sequence[str]) -> None:
        await self._events(worker_id, [wire.WorkerEvent(j, "release") for j in job_ids])

    async def _events(self, worker_id: str, events: list[wire.WorkerEvent]) -> list[str]:
        path = f"/workers/{worker_id}/events"
        answer = await self._send(path, wire.EventsRequest(events), wire.EventsAnswer)
        self.cancelled.update(answer.cancelled)
        return answer.held

    async def results(self, worker_id: str, results: Sequence[Result]) -> list[bool]:
        path = f"/workers/{worker_id}/results"
        answer = await self._send(path, wire.ResultsRequest(list(results)), wire.Verdicts)
        accepted = set(answer.accepted)
        _log_refused([r.job_id for r in results if r.job_id not in accepted])
        return [r.job_id in accepted for r in results]

    async def leave(self, worker_id: str) -> None:
        # Best effort, and quick: a worker that cannot say goodbye is expired by the server.
        try:
            await asyncio.wait_for(self._call("DELETE", f"/workers/{worker_id}"), LEAVE_TIMEOUT)
        except (ModelportError, TimeoutError) as e:
            log.warning("could not leave cleanly (%s); the server will expire the leases", e)

    async def aclose(self) -> None:
        self._closed = True
        if self._http is not None:
            await self._http.close()
            self._http = None


def _log_refused(job_ids: Sequence[str]) -> None:
    if job_ids:
        log.warning("the server refused results for %s (lease lost or cancelled)", list(job_ids))
