"""The security options of ``modelport serve`` and ``modelport worker``: who may call, over
what, and the secrets they need (each also from a file or the environment, since a secret
on a command line is visible to every local user in ``ps``)."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path
from typing import Any

from modelport.errors import InvalidInput, ModelportError
from modelport.keys import parse_rate
from modelport.settings import Limits

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--worker-token-file",
        default=os.environ.get("MODELPORT_WORKER_TOKEN_FILE"),
        metavar="PATH",
        help="read the worker token from this file (default: $MODELPORT_WORKER_TOKEN_FILE)",
    )
    serve.add_argument(
        "--auth",
        choices=["keys", "none"],
        default=os.environ.get("MODELPORT_AUTH", "none"),
        help="keys: every client, OpenAI and admin route needs an API key (modelport keys "
        "create); none: open to anyone who reaches the port, allowed on a loopback address "
        "only unless --insecure (default: $MODELPORT_AUTH or none)",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow --auth none on an address other than loopback",
    )
    serve.add_argument(
        "--metrics-auth",
        action="store_true",
        help="with --auth keys, /metrics needs an admin key too",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call the API, e.g. https://app.example "
        "(repeatable; default: none)",
    )
    serve.add_argument(
        "--anonymous-rate",
        default=os.environ.get("MODELPORT_ANONYMOUS_RATE"),
        metavar="RATE",
        help="with --auth none, submits allowed per client address, e.g. 20/s or 600/min "
        "(a token bucket in the store, shared by every server; the address is the "
        "X-Forwarded-For one from a --forwarded-allow-ips proxy) "
        "(default: $MODELPORT_ANONYMOUS_RATE, else no limit)",
    )
    serve.add_argument(
        "--session-ttl",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="the longest a browser session (POST /sessions) lasts (default: %(default)s)",
    )


def add_input_limits(serve: argparse.ArgumentParser) -> None:
    defaults = Limits()
    for option, value, what in (
        ("--max-json-depth", defaults.max_json_depth, "deepest nesting of lists and objects"),
        ("--max-string-length", defaults.max_string_length, "longest string, in characters"),
        ("--max-list-length", defaults.max_list_length, "longest list"),
        ("--max-object-keys", defaults.max_object_keys, "most keys in one object"),
    ):
        serve.add_argument(
            option,
            type=int,
            default=value,
            metavar="N",
            help=f"in a job's inputs: the {what} accepted (default: %(default)s)",
        )


def add_tls_options(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--ssl-certfile", default=None, metavar="PEM", help="serve HTTPS with this certificate"
    )
    serve.add_argument(
        "--ssl-keyfile", default=None, metavar="PEM", help="the certificate's private key"
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=None,
        metavar="IPS",
        help="comma-separated addresses of trusted reverse proxies: X-Forwarded-For and "
        "-Proto are honoured from these only (default: from none)",
    )


def uvicorn_options(args: argparse.Namespace) -> dict[str, Any]:
    """TLS and proxy options for uvicorn, checked."""
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ModelportError("give both --ssl-certfile and --ssl-keyfile")
    options: dict[str, Any] = {}
    for option, path in (
        ("--ssl-certfile", args.ssl_certfile),
        ("--ssl-keyfile", args.ssl_keyfile),
    ):
        if path is not None and not Path(path).is_file():
            raise ModelportError(f"{option} {path}: no such file")
    if args.ssl_certfile:
        options.update(ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    if args.forwarded_allow_ips:
        options.update(proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips)
    return options


def read_secret(path: str, option: str) -> str:
    """A secret kept in a file (its whitespace stripped)."""
    try:
        secret = Path(path).read_text().strip()
    except OSError as e:
        raise ModelportError(f"{option} {path}: {e.strerror or e}") from None
    if not secret:
        raise ModelportError(f"{option} {path}: the file is empty")
    return secret


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The security settings of ``serve``, after refusing an unsafe combination."""
    if args.worker_token_file:
        args.worker_token = read_secret(args.worker_token_file, "--worker-token-file")
    if args.auth == "none" and not is_loopback(args.host) and not args.insecure:
        raise ModelportError(
            f"refusing to serve on {args.host} with --auth none: anyone who reaches the port "
            "could submit, read and cancel every job. Use --auth keys (create keys with "
            "'modelport keys create'), or --insecure if the network is trusted"
        )
    if args.metrics_auth and args.auth != "keys":
        raise ModelportError("--metrics-auth needs --auth keys")
    if args.allow_runtime_adapters and args.auth != "keys" and not is_loopback(args.host):
        raise ModelportError(
            f"refusing --allow-runtime-adapters on {args.host} with --auth none: anyone who"
            " reaches the port could make the server start a program. Use --auth keys (only"
            " admin keys may put endpoints)"
        )
    anonymous_rate = None
    if args.anonymous_rate:
        if args.auth != "none":
            raise ModelportError(
                "--anonymous-rate limits callers without a key: it needs --auth none"
                " (with --auth keys, give each key a --rate)"
            )
        try:
            anonymous_rate = parse_rate(args.anonymous_rate)
        except InvalidInput as e:
            raise ModelportError(f"--anonymous-{e.message}") from None
    if args.session_ttl <= 0:
        raise ModelportError("--session-ttl must be positive")
    for option in ("max_json_depth", "max_string_length", "max_list_length", "max_object_keys"):
        if getattr(args, option) < 1:
            raise ModelportError(f"--{option.replace('_', '-')} must be at least 1")
    for origin in args.cors_origin:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ModelportError(f"--cors-origin {origin!r}: give e.g. https://app.example")
    return {
        "auth": args.auth,
        "metrics_auth": args.metrics_auth,
        "session_ttl": args.session_ttl,
        "anonymous_rate": anonymous_rate,
        "cors_origins": tuple(o.rstrip("/") for o in args.cors_origin),
        "max_json_depth": args.max_json_depth,
        "max_string_length": args.max_string_length,
        "max_list_length": args.max_list_length,
        "max_object_keys": args.max_object_keys,
    }


def add_worker_options(worker: argparse.ArgumentParser) -> None:
    worker.add_argument(
        "--ca-file",
        default=os.environ.get("MODELPORT_CA_FILE"),
        metavar="PEM",
        help="certificates to trust for an https:// server, e.g. a private CA's "
        "(default: $MODELPORT_CA_FILE, else the system's)",
    )
    worker.add_argument(
        "--token-file",
        default=os.environ.get("MODELPORT_WORKER_TOKEN_FILE"),
        metavar="PATH",
        help="read the token (or worker key) from this file "
        "(default: $MODELPORT_WORKER_TOKEN_FILE)",
    )


def add_api_key_options(parser: argparse.ArgumentParser, *, again: bool = False) -> None:
    """``--api-key`` and its ``--api-key-file`` twin (``again``: on a subcommand, where
    they are optional repeats of the parent's)."""
    default: Any = argparse.SUPPRESS if again else None
    parser.add_argument(
        "--api-key",
        default=default,
        metavar="KEY",
        help="the server's client API key (default: $MODELPORT_API_KEY); on a shared host "
        "prefer --api-key-file, as every local user sees a command line",
    )
    parser.add_argument(
        "--api-key-file",
        default=default if again else os.environ.get("MODELPORT_API_KEY_FILE"),
        metavar="PATH",
        help="read the API key from this file (default: $MODELPORT_API_KEY_FILE)",
    )


def api_key(args: argparse.Namespace) -> str | None:
    """The key of ``--api-key``, else of ``--api-key-file``, else None (the client then
    reads ``$MODELPORT_API_KEY``)."""
    if getattr(args, "api_key", None):
        return str(args.api_key)
    path = getattr(args, "api_key_file", None)
    return read_secret(path, "--api-key-file") if path else None


def worker_token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return read_secret(args.token_file, "--token-file")
    return str(args.token) if args.token else None
