"""Test a model through the real server, in the test's own process.

    import modelport.testing

    def test_scores_good_text() -> None:
        with modelport.testing.serve(Sentiment) as client:
            assert client.predict("sentiment", text="good") == {"score": 1.0}

    async def test_streams() -> None:
        async with modelport.testing.aserve(Textgen) as client:
            chunks = [e.data async for e in client.stream("textgen", messages=[...])
                      if e.event == "output"]

Both start the same app ``modelport serve`` runs (uvicorn on a free 127.0.0.1 port, an
in-memory store, each model's ``setup()`` done before the client is handed over), so a
test sees what a user would: validation errors as 422s, outputs checked against the
declared types, streams as they are made. Calling ``predict`` on an instance
(``Sentiment().predict(text="good")``) is the quicker unit test; it fills in the declared
defaults but validates nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence

import uvicorn

from modelport.client import AsyncClient, Client
from modelport.errors import ModelportError
from modelport.model import Model
from modelport.server.app import Server
from modelport.settings import Settings
from modelport.spec import EndpointSpec
from modelport.stores import JobStore

__all__ = ["aserve", "serve"]

READY_TIMEOUT = 60.0
"""Seconds the models' ``setup()`` may take before :func:`serve` gives up."""


class _Uvicorn(uvicorn.Server):
    """uvicorn that leaves the process's signal handlers to the test runner."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listening() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    return sock


def _server(
    models: Sequence[type[Model] | Model],
    specs: Sequence[EndpointSpec],
    store: str | JobStore,
    settings: Settings | None,
) -> tuple[Server, _Uvicorn]:
    server = Server(models, specs, store=store, settings=settings)
    config = uvicorn.Config(
        server.app(), log_config=None, log_level="warning", access_log=False, lifespan="on"
    )
    return server, _Uvicorn(config)


async def _until_ready(server: Server, app: _Uvicorn, timeout: float) -> None:
    """Wait for uvicorn to start and every model's ``setup()`` to finish; a failed setup
    raises its error here, in the test, instead of leaving the endpoint unready."""
    deadline = time.monotonic() + timeout
    waiting = [asyncio.ensure_future(r.ready.wait()) for r in server.runners]
    try:
        while True:
            if server.setup_errors:
                name, error = next(iter(server.setup_errors.items()))
                raise ModelportError(f"{name}: {error}")
            if app.started and all(w.done() for w in waiting):
                return
            if app.should_exit or time.monotonic() > deadline:
                raise ModelportError(f"the server was not ready within {timeout} s")
            # Woken by a model becoming ready; the short timeout notices a failed setup,
            # which sets no event.
            pending = [w for w in waiting if not w.done()]
            if pending:
                await asyncio.wait(pending, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            else:  # uvicorn is still starting: it sets a flag, not an event
                await asyncio.sleep(0.005)
    finally:
        for w in waiting:
            w.cancel()


@contextlib.contextmanager
def serve(
    *models: type[Model] | Model,
    specs: Sequence[EndpointSpec] = (),
    store: str | JobStore = "memory://",
    settings: Settings | None = None,
    timeout: float = 60.0,
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[Client]:
    """Serve ``models`` (classes or instances) on a free port in a background thread and
    yield a :class:`~modelport.Client` for it; the server stops when the block ends.

    Raises :class:`~modelport.ModelportError` if a model's ``setup()`` fails.
    """
    server, app = _server(models, specs, store, settings)
    sock = _listening()
    port = sock.getsockname()[1]
    loop = asyncio.new_event_loop()
    # Scheduled now, it runs as soon as the server's loop does, beside uvicorn.
    ready = asyncio.run_coroutine_threadsafe(_until_ready(server, app, ready_timeout), loop)
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(app.serve(sockets=[sock]))
        except BaseException as e:
            failure.append(e)
        finally:
            ready.cancel()  # a server that ended before it was ready: tell the waiting test
            loop.close()

    thread = threading.Thread(target=run, name="modelport-testing", daemon=True)
    thread.start()
    try:
        try:
            ready.result(ready_timeout + 5)
        except concurrent.futures.CancelledError:
            why = f": {failure[0]!r}" if failure else " (see the log)"
            raise ModelportError(f"the server stopped before it was ready{why}") from None
        with Client(f"http://127.0.0.1:{port}", timeout=timeout) as client:
            yield client
    finally:
        app.should_exit = True
        thread.join(30)
        sock.close()


@contextlib.asynccontextmanager
async def aserve(
    *models: type[Model] | Model,
    specs: Sequence[EndpointSpec] = (),
    store: str | JobStore = "memory://",
    settings: Settings | None = None,
    timeout: float = 60.0,
    ready_timeout: float = READY_TIMEOUT,
) -> AsyncIterator[AsyncClient]:
    """:func:`serve` for async tests: the server runs as a task on the test's own event loop,
    and the block gets an :class:`~modelport.AsyncClient`."""
    server, app = _server(models, specs, store, settings)
    sock = _listening()
    port = sock.getsockname()[1]
    task = asyncio.create_task(app.serve(sockets=[sock]), name="modelport-testing")
    try:
        ready = asyncio.ensure_future(_until_ready(server, app, ready_timeout))
        await asyncio.wait((ready, task), return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            task.result()  # the server ended before it was ready: its error
            raise ModelportError("the server stopped before it was ready")
        ready.result()
        async with AsyncClient(f"http://127.0.0.1:{port}", timeout=timeout) as client:
            yield client
    finally:
        app.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
