"""Shared test helpers: in-process servers, free ports, real server processes and Redis,
all waited on by readiness."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from modelport.model import Model
from modelport.server.app import Server, Settings
from modelport.spec import EndpointSpec
from modelport.stores import JobStore

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).resolve().parent / "models"


STARTUP = 30.0
"""A safety net for an in-process server's startup, shutdown and model setup (under load)."""


@dataclass
class InProcessApp:
    """A server in this process: its ASGI app with the lifespan running, as uvicorn runs it,
    and an ``httpx.AsyncClient`` of it."""

    server: Server
    front: ASGIApp
    """The app as ``Server.app()`` built it."""
    app: ASGIApp
    """What the clients call: ``front`` as the lifespan runner hands it on."""
    http: httpx.AsyncClient

    def transport(self, **options: Any) -> httpx.ASGITransport:
        """Another transport to the same app (e.g. ``raise_app_exceptions=False``)."""
        return httpx.ASGITransport(app=self.app, **options)

    def client(self, **options: Any) -> httpx.AsyncClient:
        """Another client of the same app, over ``transport(**options)``; close it."""
        return httpx.AsyncClient(transport=self.transport(**options), base_url="http://test")

    def model(self, endpoint: str) -> Any:
        """The model instance serving ``endpoint`` in this process."""
        return next(r.model for r in self.server.runners if r.spec.name == endpoint)

    async def ready(self) -> None:
        """Return once every in-process model has finished ``setup()``."""
        waits = [r.ready.wait() for r in self.server.runners]
        await asyncio.wait_for(asyncio.gather(*waits), STARTUP)


class AppFactory(Protocol):
    async def __call__(
        self,
        models: Sequence[type[Model] | Model] = (),
        specs: Sequence[EndpointSpec] = (),
        *,
        store: str | JobStore = "memory://",
        settings: Settings | None = None,
        clock: Callable[[], float] | None = None,
        ready: bool = True,
    ) -> InProcessApp: ...


@pytest.fixture
async def app_factory() -> AsyncIterator[AppFactory]:
    """Start in-process servers with ``await app_factory(models, specs, store=..., ...)``.

    Each runs its lifespan until the test ends. ``clock`` replaces the broker's wall clock
    before it starts; ``ready=False`` returns before the models' ``setup()`` finished.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def factory(
            models: Sequence[type[Model] | Model] = (),
            specs: Sequence[EndpointSpec] = (),
            *,
            store: str | JobStore = "memory://",
            settings: Settings | None = None,
            clock: Callable[[], float] | None = None,
            ready: bool = True,
        ) -> InProcessApp:
            server = Server(models, specs, store=store, settings=settings)
            if clock is not None:
                server.broker.clock = clock
            front = server.app()
            lifespan = LifespanManager(front, startup_timeout=STARTUP, shutdown_timeout=STARTUP)
            manager = await stack.enter_async_context(lifespan)
            transport = httpx.ASGITransport(app=manager.app)
            http = httpx.AsyncClient(transport=transport, base_url="http://test")
            app = InProcessApp(server, front, manager.app, await stack.enter_async_context(http))
            if ready:
                await app.ready()
            return app

        yield factory


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Ask ``check`` again (bounded in time) until it holds; fail naming ``what`` if never."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def free_port() -> int:
    """A loopback port free now, for a server started next. Under ``make test`` each test
    process takes its own share of them (one in ``_WORKERS`` by ``port // 2``: the kernel
    hands ``bind`` odd ports first), so that a port one process let go, and is about to
    start a server on, is never the one the other process is handed meanwhile."""
    for _ in range(100 * _WORKERS):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if (port // 2) % _WORKERS == _WORKER:
            return port
    raise RuntimeError(f"no free port of test process {_WORKER} of {_WORKERS}")


class ServerProcess:
    """``modelport serve`` in a child process on 127.0.0.1."""

    def __init__(self, args: list[str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelport",
                "serve",
                *self.args,
                "--port",
                str(self.port),
                "--log-level",
                "info",
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> ServerProcess:
        """Poll /health/ready until it answers 200 (bounded), failing fast if the process died."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
                try:
                    if http.get(self.url + "/health/ready").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, like a crash or an OOM kill."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Serve(Protocol):
    def __call__(self, args: list[str], port: int | None = None) -> ServerProcess: ...


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start servers with ``serve(args).start().wait_ready()``; all are stopped afterwards."""
    started: list[ServerProcess] = []

    def factory(args: list[str], port: int | None = None) -> ServerProcess:
        server = ServerProcess(args, tmp_path / f"server-{len(started)}.log", port)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


class WorkerProcess:
    """``modelport worker`` (a supervisor and its children) in its own process group."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelport", "worker", *self.args, "--log-level", "info"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        log.close()
        return self

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill_all(self) -> None:
        """SIGKILL the whole group, like the host losing power."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


Workers = Callable[[list[str]], WorkerProcess]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Start workers with ``workers(args).start()``; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def factory(args: list[str]) -> WorkerProcess:
        worker = WorkerProcess(args, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield factory
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition (bounded in time); fail with ``what`` if it never holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class RedisServer:
    """A private ``redis-server`` on a free loopback port, keeping nothing on disk."""

    def __init__(self, log_path: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self, binary: str) -> list[str]:
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.log_path.parent),
            *self.extra,
        ]

    def start(self, timeout: float = 20.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(binary), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):
                    return self
            time.sleep(0.02)
        raise TimeoutError(f"redis-server not answering after {timeout} s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _redis_missing(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and no Redis for the tests: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL for the whole run: ``MODELPORT_TEST_REDIS_URL``, else a private server."""
    given = os.environ.get("MODELPORT_TEST_REDIS_URL")
    if given:
        yield given
        return
    if shutil.which("redis-server") is None:
        _redis_missing("no MODELPORT_TEST_REDIS_URL and no redis-server on PATH")
    server = RedisServer(tmp_path_factory.mktemp("redis") / "redis.log").start()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The run's Redis, with a key prefix of this test's own."""
    separator = "&" if "?" in redis_server else "?"
    return f"{redis_server}{separator}prefix=test-{uuid.uuid4().hex[:12]}:"


class SentinelProcess(RedisServer):
    """A Redis Sentinel (``redis-server CONF --sentinel``) watching ``mymaster``."""

    def __init__(self, log_path: Path, primary_port: int) -> None:
        super().__init__(log_path)
        self.conf = log_path.with_suffix(".conf")
        # Short timings, so a failover takes seconds, not the default minutes.
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {log_path.parent}\n"
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 800\n"
            f"sentinel failover-timeout {SENTINEL_SERVICE} 4000\n"
            f"sentinel parallel-syncs {SENTINEL_SERVICE} 1\n"
        )

    def command(self, binary: str) -> list[str]:
        return [binary, str(self.conf), "--sentinel"]


SENTINEL_SERVICE = "mymaster"


def _redis_info(port: int, *command: str) -> Any:
    import redis

    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) as r:
        return r.execute_command(*command)


class RedisSentinels:
    """One primary, one replica and three sentinels on loopback, keeping nothing on disk."""

    def __init__(self, root: Path) -> None:
        self.primary = RedisServer(root / "primary.log")
        self.replica = RedisServer(
            root / "replica.log", extra=["--replicaof", "127.0.0.1", str(self.primary.port)]
        )
        self.sentinels = [
            SentinelProcess(root / f"sentinel{i}.log", self.primary.port) for i in range(3)
        ]
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}/0"

    def start(self, timeout: float = 30.0) -> RedisSentinels:
        for server in (self.primary, self.replica, *self.sentinels):
            server.start()

        def watching() -> bool:
            # Each sentinel must know the replica and the two other sentinels, or it
            # could not agree on (nor carry out) a failover.
            for s in self.sentinels:
                about = _redis_info(s.port, "SENTINEL", "MASTER", SENTINEL_SERVICE)
                if about[b"num-slaves"] != b"1" or about[b"num-other-sentinels"] != b"2":
                    return False
            link = _redis_info(self.replica.port, "INFO", "replication")
            return bool(link.get("master_link_status") == "up")

        wait_for(watching, timeout, "sentinels watching a primary with its replica")
        return self

    def primary_port(self) -> int:
        """The port of the primary the sentinels name now."""
        _, port = _redis_info(
            self.sentinels[0].port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE
        )
        return int(port)

    def kill(self) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.kill()


class RedisClusterNodes:
    """A Redis Cluster of three primaries (no replicas) on loopback ports."""

    def __init__(self, root: Path) -> None:
        self.nodes = []
        for i in range(3):
            (root / f"node{i}").mkdir()
            log = root / f"node{i}" / "redis.log"
            self.nodes.append(
                RedisServer(
                    log,
                    # its bus port (by default port + 10000) free too
                    extra=[
                        *("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
                        *("--cluster-port", str(free_port())),
                    ],
                )
            )
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        self.url = f"redis+cluster://{hosts}"

    def start(self, timeout: float = 30.0) -> RedisClusterNodes:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not on PATH")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                *("--cluster-replicas", "0", "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

        def ok() -> bool:
            return all(
                b"cluster_state:ok" in _redis_info(n.port, "CLUSTER", "INFO") for n in self.nodes
            )

        wait_for(ok, timeout, "the cluster's state to be ok on every node")
        return self

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


def _start_or_skip(start: Callable[[], Any], what: str) -> None:
    """Start Redis processes; if they cannot start, fail under ``CI=true``, else skip."""
    for binary in ("redis-server", "redis-cli"):
        if shutil.which(binary) is None:
            _redis_missing(f"no {binary} on PATH for {what}")
    try:
        start()
    except (OSError, RuntimeError, TimeoutError, AssertionError, subprocess.SubprocessError) as e:
        last = str(e).strip().splitlines()[-1:] or [type(e).__name__]
        _redis_missing(f"{what} could not start: {last[0]}")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis+cluster://`` URL of three primaries for the whole run."""
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    try:
        _start_or_skip(cluster.start, "a Redis Cluster")
        yield cluster.url
    finally:
        cluster.kill()


@pytest.fixture
def redis_cluster_url(redis_cluster: str) -> str:
    """The run's cluster, with a key prefix (and so a hash slot) of this test's own."""
    return f"{redis_cluster}?prefix=test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``redis+sentinel://`` URL (primary, replica, three sentinels) for the whole run."""
    sentinels = RedisSentinels(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        _start_or_skip(sentinels.start, "Redis Sentinel")
        yield sentinels.url
    finally:
        sentinels.kill()


@pytest.fixture
def redis_sentinel_url(redis_sentinel: str) -> str:
    """The run's Sentinel-watched primary, with a key prefix of this test's own."""
    return f"{redis_sentinel}?prefix=test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def own_sentinels(tmp_path: Path) -> Iterator[RedisSentinels]:
    """Sentinel-watched Redis of this test's own, to kill the primary of."""
    sentinels = RedisSentinels(tmp_path)
    try:
        _start_or_skip(sentinels.start, "Redis Sentinel")
        yield sentinels
    finally:
        sentinels.kill()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, to kill and restart."""
    if shutil.which("redis-server") is None:
        _redis_missing("no redis-server on PATH")
    server = RedisServer(tmp_path / "redis.log").start()
    try:
        yield server
    finally:
        server.kill()


WORKER_TOKEN = "test-worker-token"


@pytest.fixture
def trace(tmp_path: Path) -> Iterator[Path]:
    """A file the models in tests/models/remote.py note what they did in."""
    path = tmp_path / "trace.txt"
    path.touch()
    os.environ["MODELPORT_TEST_TRACE"] = str(path)
    yield path
    os.environ.pop("MODELPORT_TEST_TRACE", None)


def worker_args(server: ServerProcess, target: str, processes: int = 1) -> list[str]:
    """``modelport worker`` arguments for a model served through ``server``."""
    return [target, "--server", server.url, "--token", WORKER_TOKEN, "--processes", str(processes)]


def online(server: ServerProcess, endpoint: str) -> int:
    """Workers online for an endpoint, as the server lists them (0 if it does not answer)."""
    try:
        r = httpx.get(f"{server.url}/endpoints/{endpoint}", timeout=5)
    except httpx.TransportError:
        return 0
    return int(r.json()["workers_online"]) if r.status_code == 200 else 0
