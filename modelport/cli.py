"""The ``modelport`` command: a thin layer over the public functions."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport._version import __version__
from modelport.errors import ModelportError

if TYPE_CHECKING:  # the server is an extra: imported by `serve` only
    from starlette.types import ASGIApp

    from modelport.server.app import Server

log = logging.getLogger("modelport")

DEFAULT_STORE = "sqlite:///modelport.db"


def _parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: `modelport pipe` and the other modes that parse their
    # own arguments start without loading what only this parser's commands need.
    from modelport import batch, cli_security
    from modelport.settings import Limits

    defaults = Limits()
    parser = argparse.ArgumentParser(
        prog="modelport",
        description="Serve Python models as typed, queued web APIs, or run them without a "
        "server (run, pipe).",
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
        help="an endpoint spec (TOML): served by remote workers, or by this server for "
        'kind = "http" or "subprocess" (an adapter); repeatable',
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
        "redis://host:6379/0[?prefix=name:] (shared by several servers; also rediss://, "
        "redis+sentinel://s1:26379,s2:26379/primary/0, redis+cluster://n1:7000,n2:7001) "
        "or memory://",
    )
    serve.add_argument(
        "--store-password-file",
        metavar="FILE",
        help="the file holding the Redis (ACL user's) password, if the --store URL has none "
        "(default: $MODELPORT_STORE_PASSWORD)",
    )
    serve.add_argument(
        "--max-store-bytes",
        type=int,
        metavar="BYTES",
        help="refuse new jobs (503 + Retry-After) while the redis store's memory is over BYTES",
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
        default=defaults.max_body_size,
        metavar="BYTES",
        help="largest request body accepted; larger ones get 413 (default: %(default)s)",
    )
    serve.add_argument(
        "--max-queue-length",
        type=int,
        default=defaults.max_queue_length,
        metavar="N",
        help="queued jobs per endpoint before submits get 429 (default: %(default)s)",
    )
    serve.add_argument(
        "--wait",
        type=float,
        default=defaults.default_wait,
        metavar="SECONDS",
        help="how long a submit waits for its result before answering 202 (default: %(default)s)",
    )
    serve.add_argument(
        "--max-queue-time",
        type=float,
        default=defaults.max_queue_time,
        metavar="SECONDS",
        help="expire jobs no worker started within this time (default: no limit)",
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        metavar="SECONDS",
        help="fail jobs that compute longer than this (default: no limit)",
    )
    serve.add_argument(
        "--result-ttl",
        type=float,
        default=defaults.result_ttl,
        metavar="SECONDS",
        help="delete finished jobs after this long (default: %(default)s)",
    )
    serve.add_argument(
        "--log-max-entries",
        type=int,
        default=defaults.log_max_entries,
        metavar="N",
        help="log lines of models kept per endpoint (default: %(default)s)",
    )
    serve.add_argument(
        "--log-max-bytes",
        type=int,
        default=defaults.log_max_bytes,
        metavar="BYTES",
        help="bytes of models' log lines kept per endpoint (default: %(default)s)",
    )
    serve.add_argument(
        "--log-max-age",
        type=float,
        default=defaults.log_max_age,
        metavar="SECONDS",
        help="delete models' log lines after this long (default: %(default)s)",
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
        "--fetch-allow",
        type=_hosts,
        default=(),
        metavar="HOSTS",
        help="fetch media inputs given as http(s) URLs from these hosts (comma-separated;"
        " '*.example.com' for a domain, '*' for any public host); loopback and private"
        " addresses only for hosts named exactly (default: fetch nothing)",
    )
    serve.add_argument(
        "--allow-runtime-adapters",
        action="store_true",
        help='let PUT /endpoints/{name} add kind = "http" and "subprocess" endpoints, '
        "which this server then runs: anyone allowed to put endpoints (an admin key with "
        "--auth keys) can make it start any program (default: refused with 403)",
    )
    serve.add_argument(
        "--precomputed",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="answer endpoint NAME from a table of predictions (a `modelport batch` SQLite "
        "output) when it holds the input, else from the model; repeatable",
    )
    serve.add_argument(
        "--webhook-allow",
        action="append",
        default=[],
        metavar="HOST[:PORT],...",
        help="hosts webhooks may go to ('*': any public host; loopback and private "
        "addresses only when listed); repeatable",
    )
    serve.add_argument(
        "--webhook-secret-file",
        metavar="FILE",
        help="the file holding the secret webhooks are signed with "
        "(default: $MODELPORT_WEBHOOK_SECRET)",
    )
    serve.add_argument(
        "--worker-token",
        default=os.environ.get("MODELPORT_WORKER_TOKEN"),
        metavar="TOKEN",
        help="a token remote workers may present besides worker keys "
        "(default: $MODELPORT_WORKER_TOKEN)",
    )
    cli_security.add_serve_options(serve)
    cli_security.add_tls_options(serve)
    cli_security.add_input_limits(serve)

    worker = commands.add_parser(
        "worker",
        help="serve models for a remote API server, pulling jobs over HTTP(S)",
        description="Run models in supervised child processes that lease jobs from an API "
        "server over outbound HTTP(S): no open port is needed on this host. A crashed "
        "process is restarted; a server that is down is retried. SIGTERM or Ctrl+C drains "
        "(a second one stops at once). A server that refuses this worker (a wrong token, a "
        "spec that differs) ends it with exit code 2.",
    )
    worker.add_argument(
        "targets", nargs="*", metavar="TARGET", help="path/to/file.py[:Class] or module[:Class]"
    )
    worker.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="TOML",
        help='an adapter\'s spec (kind = "http" or "subprocess") to serve; repeatable',
    )
    worker.add_argument(
        "--server", required=True, help="the API server's URL, e.g. http://host:8000"
    )
    worker.add_argument(
        "--token",
        default=os.environ.get("MODELPORT_WORKER_TOKEN"),
        help="the server's worker token or a worker key (default: $MODELPORT_WORKER_TOKEN)",
    )
    cli_security.add_worker_options(worker)
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
    batch.add_parser(commands)
    _add_modes(commands)
    from modelport import cli_keys

    cli_keys.add_parser(commands, DEFAULT_STORE)
    return parser


def worker(args: argparse.Namespace) -> int:
    from modelport import cli_security
    from modelport.logs import configure as configure_logs
    from modelport.worker.supervisor import run_worker

    configure_logs(args.log_level, args.log_format)
    args.token = cli_security.worker_token(args)
    if not args.token:
        raise ModelportError(
            "give the server's worker token or a worker key: --token, --token-file or"
            " $MODELPORT_WORKER_TOKEN"
        )
    if args.processes < 1:
        raise ModelportError("--processes must be at least 1")
    devices = [] if args.devices is None else args.devices.split(",")
    if any(not d.strip() for d in devices):
        raise ModelportError(f"--devices: give GPU ids separated by commas, got {args.devices!r}")
    from modelport.loader import load_models

    targets = [*args.targets, *args.config]
    if not targets:
        raise ModelportError("give a model to serve: a TARGET, or --config TOML for an adapter")
    for target in args.config:
        if not target.endswith(".toml"):
            raise ModelportError(f"--config {target}: expected a .toml file")
    for target in targets:
        load_models(target)  # fail here, with a clear message, rather than in every child
    return run_worker(
        targets,
        server=args.server,
        token=args.token,
        processes=args.processes,
        name=args.name,
        grace=args.grace,
        log_level=args.log_level,
        log_format=args.log_format,
        devices=devices,
        ca_file=args.ca_file,
    )


def _server(args: argparse.Namespace) -> Server:
    try:
        from modelport.server.app import Server
    except ModuleNotFoundError as e:
        raise ModelportError(
            f"serving needs the server extra ({e.name} is not installed):"
            " pip install 'modelport[server]'"
        ) from None
    from modelport import cli_security
    from modelport.loader import load_models
    from modelport.settings import Settings
    from modelport.spec import spec_from_toml

    security = cli_security.serve_settings(args)
    from modelport import adapters
    from modelport.loader import adapter_from_toml

    models = [cls for target in args.targets for cls in load_models(target)]
    specs = [spec_from_toml(path) for path in args.config]
    models += [
        adapter_from_toml(path)
        for path, s in zip(args.config, specs, strict=True)
        if s.kind in adapters.KINDS
    ]
    specs = [s for s in specs if s.kind not in adapters.KINDS]
    later = args.worker_token or args.auth == "keys" or args.allow_runtime_adapters
    if not models and not specs and not later:  # workers or endpoints to come
        raise ModelportError(
            "nothing to serve: give a model file, --config TOML,"
            " --worker-token (or --auth keys and worker keys) for remote workers,"
            " or --allow-runtime-adapters for endpoints put at run time"
        )
    settings = Settings(
        max_body_size=args.max_body_size,
        max_queue_length=args.max_queue_length,
        default_wait=args.wait,
        worker_token=args.worker_token or None,
        max_queue_time=args.max_queue_time,
        timeout=args.timeout,
        result_ttl=args.result_ttl,
        log_max_entries=args.log_max_entries,
        log_max_bytes=args.log_max_bytes,
        log_max_age=args.log_max_age,
        precomputed=_pairs("--precomputed", args.precomputed),
        webhook_allow=tuple(args.webhook_allow),
        webhook_secret=_webhook_secret(args.webhook_secret_file),
        fetch_allow=args.fetch_allow,
        allow_runtime_adapters=args.allow_runtime_adapters,
        **security,
    )
    from modelport.stores import store_options

    store = store_options(
        args.store, password_file=args.store_password_file, max_bytes=args.max_store_bytes
    )
    server = Server(models, specs, store=store, settings=settings)
    server.freeze_heap = True  # the process is the server's alone
    return server


def _pairs(flag: str, values: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ModelportError(f"{flag} {value!r}: give NAME=FILE")
        pairs[name] = path
    return pairs


def _webhook_secret(path: str | None) -> str | None:
    if path is None:
        return os.environ.get("MODELPORT_WEBHOOK_SECRET") or None
    from modelport import cli_security

    return cli_security.read_secret(path, "--webhook-secret-file")


def _hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in text.split(",") if h.strip())
    for host in hosts:
        if "/" in host or " " in host:
            raise argparse.ArgumentTypeError(f"{host!r} is not a host name (no scheme or path)")
    return hosts


_ARGV_ENV = "MODELPORT_SERVE_ARGV"


def serve(args: argparse.Namespace, argv: Sequence[str]) -> None:
    from modelport import cli_security
    from modelport.logs import configure as configure_logs

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
        "access_log": False,  # modelport's own (logs.AccessLog) has the duration
        "timeout_graceful_shutdown": 10,
        "proxy_headers": False,
        **cli_security.uvicorn_options(args),
    }
    from modelport.server.lock import lock_store
    from modelport.server.running import url_of

    # Held until this process exits; the kernel releases it however that happens.
    lock = lock_store(args.store, url=url_of(args.host, args.port))
    try:
        _run(server, args, argv, options)
    finally:
        if lock is not None:
            lock.release()


def _run(
    server: Server, args: argparse.Namespace, argv: Sequence[str], options: dict[str, Any]
) -> None:
    import uvicorn

    from modelport.server.running import UvicornServer, banner, url_of

    if args.processes == 1 and not args.reload:
        config = uvicorn.Config(_app(server, args), **options)
        # uvicorn raises the Ctrl+C it deferred once it has shut down; like `uvicorn`, end quietly.
        with contextlib.suppress(KeyboardInterrupt):
            UvicornServer(config, server, store=args.store).run()
        return
    for line in banner(server, url_of(args.host, args.port), args.store):
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
    from modelport.logs import configure as configure_logs

    args = _parser().parse_args(json.loads(os.environ[_ARGV_ENV]))
    configure_logs(args.log_level, args.log_format)
    return _app(_server(args), args)


def _app(server: Server, args: argparse.Namespace) -> ASGIApp:
    from modelport.logs import AccessLog

    app = server.app()
    return AccessLog(app) if args.access_log else app


def _watched(server: Server, args: argparse.Namespace) -> list[str]:
    """The folders of the served files: each model's source file and each --config TOML."""
    from modelport.adapters.base import Adapter

    files = [
        Path(inspect.getfile(type(r.model)))
        for r in server.runners
        if not isinstance(r.model, Adapter)  # its file is a --config
    ]
    files += [Path(path) for path in args.config]
    if not files:
        raise ModelportError("--reload watches the served files: give a model file or --config")
    return list(dict.fromkeys(str(f.resolve().parent) for f in files))


def serve_mode(argv: Sequence[str]) -> int:
    """Run the API server, with embedded workers for local models."""
    return main(["serve", *argv])


def worker_mode(argv: Sequence[str]) -> int:
    """Serve models for a remote API server, pulling jobs over HTTP(S)."""
    return main(["worker", *argv])


_OWN = ("serve", "worker", "keys")
"""The modes this module's parser handles itself; every other one parses its own arguments."""


def _add_modes(commands: Any) -> None:
    """List the other modes in ``modelport --help``; they are run before this parser."""
    from modelport.modes import installed

    for name, mode in installed().items():
        if name not in _OWN:
            commands.add_parser(name, help=mode.help(), add_help=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in _OWN and not argv[0].startswith("-"):
        from modelport.modes import BUILTIN, Mode, installed

        # A plugin cannot replace a built-in mode: those start without reading every
        # installed package's entry points.
        builtin = BUILTIN.get(argv[0])
        mode = Mode(argv[0], builtin, "modelport") if builtin else installed().get(argv[0])
        if mode is not None:
            return mode.load()(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "worker":
            return worker(args)
        if args.command == "batch":
            from modelport import batch

            return batch.main(args)
        if args.command == "keys":
            from modelport import cli_keys

            return cli_keys.run(args)
        serve(args, argv)
    except ModelportError as e:
        print(f"modelport: error: {e.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
