"""A command line for a server that already runs, over :class:`modelport.Client`:
``endpoints``, ``predict``, ``submit`` and ``jobs get|watch|cancel``. ``predict`` and
``submit`` build their flags from the remote endpoint's spec, so they match ``run``.

Exit codes: 0 done, 1 the job failed (or the server could not be reached), 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from modelport.cli_security import add_api_key_options, api_key
from modelport.client import Client
from modelport.errors import InvalidRequest, ModelportError, NotFound
from modelport.modes import console
from modelport.modes.flags import add_input_flags, inputs_of
from modelport.modes.local import validate
from modelport.modes.run import read_json_object
from modelport.spec import EndpointSpec, spec_from_dict
from modelport.wire import Event

DEFAULT_SERVER = "http://127.0.0.1:8000"


def _server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=os.environ.get("MODELPORT_URL") or DEFAULT_SERVER,
        metavar="URL",
        help="the API server (default: $MODELPORT_URL or %(default)s)",
    )
    add_api_key_options(parser)


def _guarded(run: Callable[[], int]) -> int:
    try:
        return run()
    except InvalidRequest as e:
        console.error(e.message)
        return 2
    except ModelportError as e:
        console.error(e.message)
        return 1
    except KeyboardInterrupt:
        return 130


def endpoints(argv: Sequence[str]) -> int:
    """List a server's endpoints, with their state, workers online and queue depth."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="modelport endpoints", description=endpoints.__doc__
    )
    _server_option(parser)
    parser.add_argument("--json", action="store_true", help="print the server's JSON")
    args = parser.parse_args(list(argv))

    def run() -> int:
        with Client(args.server, api_key=api_key(args)) as client:
            found = client.endpoints()
        if args.json:
            console.write_output(found, sys.stdout)
            return 0
        rows = [("NAME", "STATE", "WORKERS", "QUEUED", "DESCRIPTION")]
        for e in found:
            description = (e.get("description") or "").splitlines()
            rows.append(
                (
                    e["name"],
                    e.get("state", ""),
                    str(e.get("workers_online", "")),
                    str(e.get("queue_depth", "")),
                    description[0] if description else "",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
        return 0

    return _guarded(run)


def _endpoint_parser(prog: str, argv: Sequence[str]) -> tuple[Client, str, list[str]]:
    pre = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    _server_option(pre)
    known, rest = pre.parse_known_args(list(argv))
    if not rest or rest[0].startswith("-"):
        if rest and rest[0] in ("-h", "--help"):
            print(
                f"usage: {prog} NAME [--server URL] [--INPUT ...]\n\n"
                f"`{prog} NAME --help` lists the endpoint's inputs."
            )
            raise SystemExit(0)
        print(
            f"usage: {prog} NAME [--server URL] [--INPUT ...]\n{prog}: error: give an "
            "endpoint name",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return Client(known.server, api_key=api_key(known)), rest[0], rest[1:]


def _remote(
    prog: str, argv: Sequence[str], what: str
) -> tuple[Client, EndpointSpec, argparse.Namespace, dict[str, Any]]:
    client, name, rest = _endpoint_parser(prog, argv)
    server = client.base_url
    try:
        spec = spec_from_dict(client.endpoint(name)["spec"])
    except BaseException:
        client.close()
        raise
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=f"{prog} {name}",
        description=f"{what} on {server}. {spec.description}".strip(),
    )
    _server_option(parser)
    parser.add_argument("--quiet", action="store_true", help="show no progress on stderr")
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="read the inputs as one JSON object from FILE (- for stdin); flags override it",
    )
    add_input_flags(parser, spec)
    args = parser.parse_args(rest)
    data = {**(read_json_object(args.json) if args.json else {}), **inputs_of(args, spec)}
    return client, spec, args, data


def predict(argv: Sequence[str]) -> int:
    """Run a job on a server and print its output, streaming chunks and progress."""

    def run() -> int:
        client, spec, args, data = _remote("modelport predict", argv, "Run a job")
        with client:
            return _follow(client.stream(spec.name, validate(spec, data)), args.quiet)

    return _guarded(run)


def submit(argv: Sequence[str]) -> int:
    """Queue a job on a server and print its id."""

    def run() -> int:
        client, spec, _, data = _remote("modelport submit", argv, "Queue a job")
        with client:
            print(client.submit(spec.name, validate(spec, data)).id)
        return 0

    return _guarded(run)


def _follow(events: Any, quiet: bool) -> int:
    """Print a job's events: chunks to stdout as they come, progress to stderr, then the
    output (unless it was streamed) or the error."""
    out = sys.stdout
    streamed: list[bool] = []
    with console.Progress(quiet) as progress:
        for event in events:
            assert isinstance(event, Event)
            if event.type == "output":
                if isinstance(event.data, str):
                    out.write(event.data)
                else:
                    out.write(console.dumps(event.data).decode() + "\n")
                out.flush()
                streamed.append(isinstance(event.data, str))
            elif event.type == "progress":
                progress.update(event)
            elif event.type in ("succeeded", "failed", "cancelled", "expired"):
                progress.close()
                if streamed and streamed[-1]:
                    out.write("\n")
                    out.flush()
                job = event.data or {}
                if event.type != "succeeded":
                    console.error(f"job {job.get('id')} {event.type}: {job.get('error')}")
                    return 1
                if not streamed:
                    console.write_output(job.get("output"), out)
                return 0
    console.error("the event stream ended before the job did")
    return 1


def jobs(argv: Sequence[str]) -> int:
    """Look at a job on a server: get, watch (follow its events) or cancel."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="modelport jobs", description=jobs.__doc__
    )
    _server_option(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, text in (
        ("get", "print the job as JSON"),
        ("watch", "follow the job's events to its end: progress, streamed output, result"),
        ("cancel", "cancel the job and print it"),
    ):
        sub = actions.add_parser(action, help=text, description=text)
        sub.add_argument("job_id", metavar="JOB_ID")
        sub.add_argument("--server", default=argparse.SUPPRESS, metavar="URL", help="as above")
        add_api_key_options(sub, again=True)
        if action == "watch":
            sub.add_argument("--quiet", action="store_true", help="show no progress on stderr")
    args = parser.parse_args(list(argv))

    def run() -> int:
        with Client(args.server, api_key=api_key(args)) as client:
            try:
                job = client.job(args.job_id)
            except NotFound as e:
                console.error(e.message)
                return 1
            if args.action == "get":
                console.write_output(job.data, sys.stdout)
            elif args.action == "cancel":
                console.write_output(job.cancel().data, sys.stdout)
            else:
                return _follow(job.events(), args.quiet)
        return 0

    return _guarded(run)
