"""The ``modelport`` command: a thin layer over the public functions."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from starlette.types import ASGIApp

from modelport._version import __version__
from modelport.errors import ModelportError
from modelport.logs import AccessLog
from modelport.logs import configure as configure_logs
from modelport.server.app import Server
from modelport.server.lock import lock_store

log = logging.getLogger("modelport")

DEFAULT_STORE = "sqlite:///modelport.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelport",
        description="Serve Python models as typed, queued web APIs.",
    )
    parser.add_argument("--version", action="version", version=f"modelport {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the API server, with embedded workers for local models",
        description="Run the API server. Models given as targets run in this process "
        "(embedded workers); endpoints given with --config wait for remote workers.",
    )
    serve.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="a model to serve: path/to/file.py[:Class] or package.module[:Class] "
        "(every Model subclass in the file when no class is named)",
    )
    serve.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="TOML",
        help="an endpoint spec (TOML) to serve without a local model; repeatable",
    )
    serve.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="API server processes on this host, like uvicorn --workers; N > 1 needs a "
        "redis:// store (default: %(default)s)",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="job store URL: sqlite:///file.db (durable, one server; default: %(default)s), "
        "redis://host:6379/0[?prefix=name:] (shared by several servers) or memory://",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: %(default)s)",
    )
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines as text or as one JSON object each (default: %(default)s)",
    )
    serve.add_argument(
        "--max-body-size",
        type=int,
        default=10 * 1024 * 1024,
        metavar="BYTES",
        help="largest request body accepted; larger ones get 413 (default: %(default)s)",
    )
    serve.add_argument(
        "--max-queue-length",
        type=int,
        default=10_000,
        metavar="N",
        help="queued jobs per endpoint before submits get 429 (default: %(default)s)",
    )
    serve.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a submit waits for its result before answering 202 (default: %(default)s)",
    )
    serve.add_argument(
        "--max-queue-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="expire jobs no worker started within this time (default: no limit)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="fail jobs that compute longer than this (default: no limit)",
    )
    serve.add_argument(
        "--result-ttl",
        type=float,
        default=86_400.0,
        metavar="SECONDS",
        help="delete finished jobs after this long (default: %(default)s)",
    )
    serve.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="log one line per request with its status and duration (default: on)",
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="for development: restart when a served file (a model's .py or a TOML spec, or "
        "another .py or .toml file beside them) changes",
    )
    serve.add_argument(
        "--worker-token",
        default=os.environ.get("MODELPORT_WORKER_TOKEN"),
        metavar="TOKEN",
        help="the token remote workers must present (default: $MODELPORT_WORKER_TOKEN); "
        "without one, no remote worker is accepted",
    )

    worker = commands.add_parser(
        "worker",
        help="serve models for a remote API server, pulling jobs over HTTP(S)",
        description="Run models in supervised child processes that lease jobs from an API "
        "server over outbound HTTP(S): no open port is needed on this host. A crashed "
        "process is restarted; SIGTERM drains.",
    )
    worker.add_argument(
        "targets", nargs="+", metavar="TARGET", help="path/to/file.py[:Class] or module[:Class]"
    )
    worker.add_argument(
        "--server", required=True, help="the API server's URL, e.g. http://host:8000"
    )
    worker.add_argument(
        "--token",
        default=os.environ.get("MODELPORT_WORKER_TOKEN"),
        help="the server's worker token (default: $MODELPORT_WORKER_TOKEN)",
    )
    worker.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="model processes to run, e.g. one per GPU (default: %(default)s)",
    )
    worker.add_argument(
        "--devices",
        default=None,
        metavar="IDS",
        help="GPU ids for the processes, dealt out in turn, e.g. --processes 4 --devices "
        "0,1,2,3: each process sees only its own (CUDA_VISIBLE_DEVICES)",
    )
    worker.add_argument(
        "--name", default=None, help="worker name shown by the server (default: host name)"
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM, how long in-flight jobs may take to finish (default: %(default)s)",
    )
    worker.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: %(default)s)",
    )
    worker.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="log lines as text or as one JSON object each (default: %(default)s)",
    )
    return parser


def worker(args: argparse.Namespace) -> int:
    from modelport.worker.supervisor import run_worker

    configure_logs(args.log_level, args.log_format)
    if not args.token:
        raise ModelportError("give the server's worker token: --token or $MODELPORT_WORKER_TOKEN")
    if args.processes < 1:
        raise ModelportError("--processes must be at least 1")
    devices = [] if args.devices is None else args.devices.split(",")
    if any(not d.strip() for d in devices):
        raise ModelportError(f"--devices: give GPU ids separated by commas, got {args.devices!r}")
    from modelport.loader import load_models

    for target in args.targets:
        load_models(target)  # fail here, with a clear message, rather than in every child
    return run_worker(
        list(args.targets),
        server=args.server,
        token=args.token,
        processes=args.processes,
        name=args.name,
        grace=args.grace,
        log_level=args.log_level,
        log_format=args.log_format,
        devices=devices,
    )


def _server(args: argparse.Namespace) -> Server:
    from modelport.loader import load_models
    from modelport.server.app import Settings
    from modelport.spec import spec_from_toml

    models = [cls for target in args.targets for cls in load_models(target)]
    specs = [spec_from_toml(path) for path in args.config]
    if not models and not specs and not args.worker_token:
        raise ModelportError(
            "nothing to serve: give a model file, --config TOML,"
            " or --worker-token for remote workers"
        )
    settings = Settings(
        max_body_size=args.max_body_size,
        max_queue_length=args.max_queue_length,
        default_wait=args.wait,
        worker_token=args.worker_token or None,
        max_queue_time=args.max_queue_time,
        timeout=args.timeout,
        result_ttl=args.result_ttl,
    )
    return Server(models, specs, store=args.store, settings=settings)


_ARGV_ENV = "MODELPORT_SERVE_ARGV"


def serve(args: argparse.Namespace, argv: Sequence[str]) -> None:
    configure_logs(args.log_level, args.log_format)
    server = _server(args)  # also checks everything before any process starts
    if args.processes > 1 and not server.broker.store.shared:
        raise ModelportError("--processes N needs a store they can share: --store redis://...")
    if args.reload and args.processes > 1:
        raise ModelportError("--reload runs one server process; leave out --processes")
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        "log_config": None,
        "access_log": False,  # modelport's own (AccessLog) has the duration
        "timeout_graceful_shutdown": 10,
        "proxy_headers": False,
    }
    url = _url(args.host, args.port)
    lock = lock_store(args.store, url=url)
    try:
        _run(server, args, argv, options, url)
    finally:
        if lock is not None:
            lock.release()


def _run(
    server: Server,
    args: argparse.Namespace,
    argv: Sequence[str],
    options: dict[str, Any],
    url: str,
) -> None:
    if args.processes == 1 and not args.reload:
        # uvicorn raises the Ctrl+C it deferred once it has shut down; like `uvicorn`, end quietly.
        with contextlib.suppress(KeyboardInterrupt):
            _Uvicorn(uvicorn.Config(_app(server, args), **options), server, args).run()
        return
    for line in banner(server, url, args.store):
        log.info("%s", line)
    os.environ[_ARGV_ENV] = json.dumps(list(argv))
    if args.reload:
        dirs = _watched(server, args)
        log.info("restarting on changes to *.py and *.toml in %s", ", ".join(dirs))
        uvicorn.run(
            "modelport.cli:app_from_env",
            factory=True,
            reload=True,
            reload_dirs=dirs,
            reload_includes=["*.py", "*.toml"],
            **options,
        )
        return
    uvicorn.run("modelport.cli:app_from_env", factory=True, workers=args.processes, **options)


def app_from_env() -> ASGIApp:
    """The app of a server process started by another (``serve --processes N`` or
    ``serve --reload``)."""
    args = _parser().parse_args(json.loads(os.environ[_ARGV_ENV]))
    configure_logs(args.log_level, args.log_format)
    return _app(_server(args), args)


def _app(server: Server, args: argparse.Namespace) -> ASGIApp:
    app = server.app()
    return AccessLog(app) if args.access_log else app


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _watched(server: Server, args: argparse.Namespace) -> list[str]:
    """The folders of the served files: each model's source file and each --config TOML."""
    files = [Path(inspect.getfile(type(r.model))) for r in server.runners]
    files += [Path(path) for path in args.config]
    if not files:
        raise ModelportError("--reload watches the served files: give a model file or --config")
    return list(dict.fromkeys(str(f.resolve().parent) for f in files))


def banner(server: Server, url: str, store: str) -> list[str]:
    """The lines a server logs when it starts: where it listens, its docs, its store, and
    each endpoint with the URL to submit to."""
    local = {r.spec.name for r in server.runners}
    lines = [
        f"modelport {__version__} serving {url} (docs: {url}/docs)",
        f"store: {_public_url(store)}{_where(store)}",
    ]
    for name, spec in server.broker.specs.items():
        where = "model in this process" if name in local else "jobs wait for remote workers"
        if spec.kind == "chat":
            where += f"; OpenAI-style at {url}/v1/chat/completions"
        elif spec.kind == "embedding":
            where += f"; OpenAI-style at {url}/v1/embeddings"
        lines.append(f"endpoint {name}: POST {url}/endpoints/{name}/jobs ({where})")
    if server.settings.worker_token:
        lines.append(f"remote workers welcome: modelport worker MODEL.py --server {url} --token …")
    return lines


def _where(store: str) -> str:
    """Where a relative sqlite:/// file is, since it depends on the working directory."""
    path = store.removeprefix("sqlite:///")
    if path == store or path.startswith("/"):
        return ""
    return f" ({Path(path).resolve()})"


def _public_url(url: str) -> str:
    """A store URL fit for a log line: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _Uvicorn(uvicorn.Server):
    """uvicorn, logging modelport's banner once it listens, and ending long polls at the first
    exit signal so shutdown is not held up."""

    def __init__(self, config: uvicorn.Config, server: Server, args: argparse.Namespace) -> None:
        super().__init__(config)
        self.modelport = server
        self.args = args
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        super()._log_started_message(listeners)
        port = listeners[0].getsockname()[1] if listeners else self.args.port
        for line in banner(self.modelport, _url(self.args.host, port), self.args.store):
            log.info("%s", line)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.modelport.broker.closing)
        super().handle_exit(sig, frame)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "worker":
            return worker(args)
        serve(args, argv)
    except ModelportError as e:
        print(f"modelport: error: {e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
