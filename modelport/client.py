"""Python clients: :class:`Client` and :class:`AsyncClient`, twins over one base.

with Client("http://127.0.0.1:8000") as c:
    c.predict("iris", sepal_length=5.1, sepal_width=3.5, petal_length=1.4, petal_width=0.2)
    job = c.submit("iris", {...})
    job.wait(timeout=10)
"""

from __future__ import annotations

import math
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson

from modelport.errors import JobFailed, TimedOut, Unreachable, from_problem
from modelport.wire import FINAL, Event, JobStatus

_LONG_POLL = 30.0
"""The longest single wait asked of the server; longer waits are several requests."""


API_KEY_ENV = "MODELPORT_API_KEY"


class _BaseClient:
    def __init__(
        self, base_url: str, *, api_key: str | None, token: str | None, timeout: float
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"accept": "application/json", "content-type": "application/json"}
        secret = api_key or token or os.environ.get(API_KEY_ENV)
        if secret:
            self.headers["authorization"] = f"Bearer {secret}"

    @staticmethod
    def _verify(ca_file: str | None, verify: bool | ssl.SSLContext) -> bool | ssl.SSLContext:
        """What httpx checks the server's certificate with: ``ca_file`` (a PEM bundle, e.g.
        a private CA's) when given."""
        if ca_file is None:
            return verify
        return ssl.create_default_context(cafile=ca_file)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                problem = {"detail": response.text[:500] or response.reason_phrase}
            if not isinstance(problem, dict):
                problem = {"detail": str(problem)}
            raise from_problem(response.status_code, problem, response.headers)
        return orjson.loads(response.content)

    @staticmethod
    def _inputs(inputs: dict[str, Any] | None, kwargs: dict[str, Any]) -> bytes:
        return orjson.dumps({"input": {**(inputs or {}), **kwargs}})

    @staticmethod
    def _wait_headers(seconds: float) -> dict[str, str]:
        return {"prefer": f"wait={max(0, math.ceil(seconds))}"}

    @staticmethod
    def _output(data: dict[str, Any]) -> Any:
        if data["status"] == JobStatus.SUCCEEDED:
            return data.get("output")
        raise JobFailed(f"job {data['id']} {data['status']}: {data.get('error')}", job=data)

    @staticmethod
    def _event(job_id: str, line: str) -> Event | None:
        """One JSON line of a job's event stream (blank lines are keep-alives)."""
        if not line.strip():
            return None
        item = orjson.loads(line)
        return Event(job_id, item["event"], item["data"], item["id"] or 0)

    @staticmethod
    def _stream_headers(after: int | None = None) -> dict[str, str]:
        headers = {"accept": "application/jsonl"}
        if after is not None:
            headers["last-event-id"] = str(after)
        return headers

    def _remaining(self, deadline: float | None) -> float:
        if deadline is None:
            return _LONG_POLL
        return min(_LONG_POLL, deadline - time.monotonic())


class _JobBase:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def id(self) -> str:
        return str(self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data["status"])

    @property
    def done(self) -> bool:
        return self.status in FINAL

    @property
    def output(self) -> Any:
        return self.data.get("output")

    @property
    def error(self) -> str | None:
        return self.data.get("error")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"


class Job(_JobBase):
    """A submitted job: refresh, wait for and cancel it."""

    def __init__(self, client: Client, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._client = client

    def refresh(self) -> Job:
        """Fetch the job's current state."""
        self.data = self._client._get_job(self.id, wait=0)
        return self

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job is final; raise :class:`TimedOut` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = self._client._remaining(deadline)
            if remaining <= 0:
                raise TimedOut(f"job {self.id} is still {self.status} after {timeout} s")
            self.data = self._client._get_job(self.id, wait=remaining)
        return self

    def result(self, timeout: float | None = None) -> Any:
        """Wait, then return the output, or raise :class:`JobFailed`."""
        return self._client._output(self.wait(timeout).data)

    def cancel(self) -> Job:
        """Cancel the job (a running job's worker is told)."""
        self.data = self._client._request("POST", f"/jobs/{self.id}/cancel")
        return self

    def events(self, after: int | None = None) -> Iterator[Event]:
        """The job's events as they happen (``output`` chunks, ``progress``, ...) to the final one.

        ``after`` resumes after the event with that id.
        """
        for event in self._client._events(f"/jobs/{self.id}/events", self.id, after):
            if event.type in FINAL:
                self.data = event.data
            yield event


class Client(_BaseClient):
    """A blocking client for a modelport server."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        ca_file: str | None = None,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        """``api_key`` (or ``token``, its old name; default: ``$MODELPORT_API_KEY``) is sent
        as ``Authorization: Bearer``; ``ca_file`` is a PEM bundle to trust for HTTPS."""
        super().__init__(base_url, api_key=api_key, token=token, timeout=timeout)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self.headers,
            timeout=timeout,
            transport=transport,
            verify=self._verify(ca_file, verify),
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise TimedOut(f"{method} {path}: {e}") from e
        except httpx.TransportError as e:
            raise Unreachable(f"cannot reach {self.base_url}: {e}") from e
        return self._decode(response)

    def _get_job(self, job_id: str, *, wait: float) -> dict[str, Any]:
        data: dict[str, Any] = self._request(
            "GET", f"/jobs/{job_id}", headers=self._wait_headers(wait), timeout=wait + self.timeout
        )
        return data

    def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint with its workers online and queue depth."""
        result: list[dict[str, Any]] = self._request("GET", "/endpoints")
        return result

    def endpoint(self, name: str) -> dict[str, Any]:
        """One endpoint: JSON Schemas, limits and workers."""
        result: dict[str, Any] = self._request("GET", f"/endpoints/{name}")
        return result

    def submit(self, endpoint: str, inputs: dict[str, Any] | None = None, /, **kw: Any) -> Job:
        """Queue a job and return at once with its handle."""
        data = self._request(
            "POST",
            f"/endpoints/{endpoint}/jobs",
            content=self._inputs(inputs, kw),
            headers={"prefer": "respond-async"},
        )
        return Job(self, data)

    def predict(self, endpoint: str, inputs: dict[str, Any] | None = None, /, **kw: Any) -> Any:
        """Run a job and return its output; raise :class:`JobFailed` if it fails."""
        wait = min(self.timeout, _LONG_POLL)
        data = self._request(
            "POST",
            f"/endpoints/{endpoint}/jobs",
            content=self._inputs(inputs, kw),
            headers=self._wait_headers(wait),
            timeout=wait + self.timeout,
        )
        job = Job(self, data)
        return job.result(timeout=self.timeout)

    def job(self, job_id: str) -> Job:
        """The handle of an existing job."""
        return Job(self, self._get_job(job_id, wait=0))

    def stream(
        self, endpoint: str, inputs: dict[str, Any] | None = None, /, **kw: Any
    ) -> Iterator[Event]:
        """Run a job and yield its events as they happen; leaving the loop early cancels it."""
        with self._http.stream(
            "POST",
            f"/endpoints/{endpoint}/jobs",
            content=self._inputs(inputs, kw),
            headers=self._stream_headers(),
            timeout=httpx.Timeout(self.timeout, read=None),
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._decode(response)
            job_id = response.headers.get("x-job-id", "")
            for line in response.iter_lines():
                event = self._event(job_id, line)
                if event is not None:
                    yield event

    def _events(self, path: str, job_id: str, after: int | None) -> Iterator[Event]:
        with self._http.stream(
            "GET",
            path,
            headers=self._stream_headers(after),
            timeout=httpx.Timeout(self.timeout, read=None),
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._decode(response)
            for line in response.iter_lines():
                event = self._event(job_id, line)
                if event is not None:
                    yield event

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncJob(_JobBase):
    """A submitted job, for :class:`AsyncClient`."""

    def __init__(self, client: AsyncClient, data: dict[str, Any]) -> None:
        super().__init__(data)
        self._client = client

    async def refresh(self) -> AsyncJob:
        """Fetch the job's current state."""
        self.data = await self._client._get_job(self.id, wait=0)
        return self

    async def wait(self, timeout: float | None = None) -> AsyncJob:
        """Wait until the job is final; raise :class:`TimedOut` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            remaining = self._client._remaining(deadline)
            if remaining <= 0:
                raise TimedOut(f"job {self.id} is still {self.status} after {timeout} s")
            self.data = await self._client._get_job(self.id, wait=remaining)
        return self

    async def result(self, timeout: float | None = None) -> Any:
        """Wait, then return the output, or raise :class:`JobFailed`."""
        return self._client._output((await self.wait(timeout)).data)

    async def cancel(self) -> AsyncJob:
        """Cancel the job (a running job's worker is told)."""
        self.data = await self._client._request("POST", f"/jobs/{self.id}/cancel")
        return self

    async def events(self, after: int | None = None) -> AsyncIterator[Event]:
        """The job's events as they happen (``output`` chunks, ``progress``, ...) to the final one.

        ``after`` resumes after the event with that id.
        """
        async for event in self._client._events(f"/jobs/{self.id}/events", self.id, after):
            if event.type in FINAL:
                self.data = event.data
            yield event


class AsyncClient(_BaseClient):
    """An asyncio client for a modelport server."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        ca_file: str | None = None,
        verify: bool | ssl.SSLContext = True,
    ) -> None:
        """``api_key`` (or ``token``, its old name; default: ``$MODELPORT_API_KEY``) is sent
        as ``Authorization: Bearer``; ``ca_file`` is a PEM bundle to trust for HTTPS."""
        super().__init__(base_url, api_key=api_key, token=token, timeout=timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=timeout,
            transport=transport,
            verify=self._verify(ca_file, verify),
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise TimedOut(f"{method} {path}: {e}") from e
        except httpx.TransportError as e:
            raise Unreachable(f"cannot reach {self.base_url}: {e}") from e
        return self._decode(response)

    async def _get_job(self, job_id: str, *, wait: float) -> dict[str, Any]:
        data: dict[str, Any] = await self._request(
            "GET", f"/jobs/{job_id}", headers=self._wait_headers(wait), timeout=wait + self.timeout
        )
        return data

    async def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint with its workers online and queue depth."""
        result: list[dict[str, Any]] = await self._request("GET", "/endpoints")
        return result

    async def endpoint(self, name: str) -> dict[str, Any]:
        """One endpoint: JSON Schemas, limits and workers."""
        result: dict[str, Any] = await self._request("GET", f"/endpoints/{name}")
        return result

    async def submit(
        self, endpoint: str, inputs: dict[str, Any] | None = None, /, **kw: Any
    ) -> AsyncJob:
        """Queue a job and return at once with its handle."""
        data = await self._request(
            "POST",
            f"/endpoints/{endpoint}/jobs",
            content=self._inputs(inputs, kw),
            headers={"prefer": "respond-async"},
        )
        return AsyncJob(self, data)

    async def predict(
        self, endpoint: str, inputs: dict[str, Any] | None = None, /, **kw: Any
    ) -> Any:
        """Run a job and return its output; raise :class:`JobFailed` if it fails."""
        wait = min(self.timeout, _LONG_POLL)
        data = await self._request(
            "POST",
            f"/endpoints/{endpoint}/jobs",
            content=self._inputs(inputs, kw),
            headers=self._wait_headers(wait),
            timeout=wait + self.timeout,
        )
        return await AsyncJob(self, data).result(timeout=self.timeout)

    async def job(self, job_id: str) -> AsyncJob:
        """The handle of an existing job."""
        return AsyncJob(self, await self._get_job(job_id, wait=0))

    async def stream(
        self, endpoint: str, inputs: dict[str, Any] | None = None, /, **kw: Any
    ) -> AsyncIterator[Event]:
        """Run a job and yield its events as they happen; leaving the loop early cancels it."""
        async with self._http.stream(
            "POST",
            f"/endpoints/{endpoint}/jobs",
            content=self._inputs(inputs, kw),
            headers=self._stream_headers(),
            timeout=httpx.Timeout(self.timeout, read=None),
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                self._decode(response)
            job_id = response.headers.get("x-job-id", "")
            async for line in response.aiter_lines():
                event = self._event(job_id, line)
                if event is not None:
                    yield event

    async def _events(self, path: str, job_id: str, after: int | None) -> AsyncIterator[Event]:
        async with self._http.stream(
            "GET",
            path,
            headers=self._stream_headers(after),
            timeout=httpx.Timeout(self.timeout, read=None),
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                self._decode(response)
            async for line in response.aiter_lines():
                event = self._event(job_id, line)
                if event is not None:
                    yield event

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
