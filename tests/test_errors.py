"""Every error class round-trips: raised on the server, mapped to problem+json in its one
place, and caught as the same class from ``Client`` and ``AsyncClient``."""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.requests import Request
from starlette.routing import Route

import modelport
from modelport import errors
from modelport.server.app import Server
from modelport.spec import EndpointSpec, FieldSpec
from tests.conftest import AppFactory, free_port, wait_for

CLASSES = sorted(set(errors._BY_KIND.values()), key=lambda cls: cls.__name__)


def build(cls: type[modelport.ModelportError]) -> modelport.ModelportError:
    message = f"a {cls.__name__} for the test"
    if issubclass(cls, modelport.Overloaded | modelport.Unavailable):
        return cls(message, retry_after=7)
    return cls(message, errors=[{"field": "x", "message": "too big"}])


async def raise_named(request: Request) -> Any:
    raise build(errors._BY_KIND[request.path_params["id"]])


SPEC = EndpointSpec(name="echo", inputs={"x": FieldSpec(type="integer", required=True)})
SETTINGS = modelport.Settings(max_body_size=64, worker_token="worker-secret")


def raising(front: Any) -> Any:
    """The real server app, with GET /jobs/{id} answering the error whose kind is the id."""
    front.app.router.routes.insert(0, Route("/jobs/{id}", raise_named))
    return front


def check(caught: modelport.ModelportError, cls: type[modelport.ModelportError]) -> None:
    expected = build(cls)
    assert type(caught) is cls
    assert (caught.status, caught.message) == (expected.status, expected.message)
    assert caught.errors == expected.errors
    if isinstance(expected, modelport.Overloaded | modelport.Unavailable):
        assert caught.retry_after == 7  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    port = free_port()
    front = raising(Server(specs=[SPEC], settings=SETTINGS).app())
    server = uvicorn.Server(uvicorn.Config(front, port=port, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    with httpx.Client() as http:
        assert http.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
async def aclient(app_factory: AppFactory) -> AsyncIterator[modelport.AsyncClient]:
    app = await app_factory(specs=[SPEC], settings=SETTINGS)
    raising(app.front)
    async with modelport.AsyncClient("http://test", transport=app.transport()) as client:
        yield client


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_sync_client_catches_the_class_the_server_raised(
    url: str, cls: type[modelport.ModelportError]
) -> None:
    with modelport.Client(url) as client, pytest.raises(cls) as caught:
        client.job(cls.kind)
    check(caught.value, cls)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
async def test_async_client_catches_the_class_the_server_raised(
    aclient: modelport.AsyncClient, cls: type[modelport.ModelportError]
) -> None:
    with pytest.raises(cls) as caught:
        await aclient.job(cls.kind)
    check(caught.value, cls)


async def test_the_server_s_own_refusals_come_back_as_themselves(
    aclient: modelport.AsyncClient,
) -> None:
    with pytest.raises(modelport.NotFound):
        await aclient.endpoint("nope")
    with pytest.raises(modelport.InvalidInput) as invalid:
        await aclient.submit("echo", x="three")
    assert invalid.value.errors[0]["field"] == "x"
    with pytest.raises(modelport.PayloadTooLarge):
        await aclient.submit("echo", x=1, padding="y" * 100)
    with pytest.raises(modelport.BadRequest):
        await aclient._request("POST", "/endpoints/echo/jobs", content=b"{")
    with pytest.raises(modelport.InvalidRequest):  # the parent catches every 4xx
        await aclient.endpoint("nope")
    aclient._http.headers["authorization"] = "Bearer worker-secret"
    with pytest.raises(modelport.Forbidden):  # a worker token on a client route
        await aclient.endpoints()


def test_an_unreachable_server_is_unreachable() -> None:
    with (
        modelport.Client(f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(modelport.Unreachable),
    ):
        client.endpoints()


async def test_a_wait_that_runs_out_is_timed_out(aclient: modelport.AsyncClient) -> None:
    job = await aclient.submit("echo", x=1)  # no worker: it stays queued
    with pytest.raises(modelport.TimedOut):
        await asyncio.wait_for(job.wait(timeout=0.0), 5)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ValidationError", "InvalidInput"),
        ("Timeout", "TimedOut"),
        ("RequestError", "InvalidRequest"),
    ],
)
def test_old_names_still_work_with_a_warning(old: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(modelport, old) is getattr(modelport, new)
    with pytest.warns(DeprecationWarning, match=new):
        assert getattr(errors, old) is getattr(errors, new)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert modelport.InvalidInput.__name__ == "InvalidInput"


def test_no_name_collides_with_pydantic_httpx_or_builtins() -> None:
    import builtins

    import pydantic

    public = {n for n in modelport.__all__ if isinstance(getattr(modelport, n), type)}
    errors_public = {n for n in public if issubclass(getattr(modelport, n), BaseException)}
    for other in (vars(builtins), vars(httpx), vars(pydantic)):
        assert not errors_public & set(other), errors_public & set(other)
