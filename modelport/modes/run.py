"""``modelport run TARGET --input-flags``: one prediction in this process, no server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from modelport.errors import ModelportError
from modelport.modes import console
from modelport.modes.flags import add_input_flags, inputs_of
from modelport.modes.local import LocalModel, load_target
from modelport.wire import Event

USAGE = "modelport run TARGET [--endpoint NAME] [--json FILE|-] [--quiet] [--debug] [--INPUT ...]"


def target_and_rest(
    prog: str, argv: Sequence[str], doc: str | None = __doc__
) -> tuple[str, str | None, list[str]]:
    """The target (the first argument), ``--endpoint`` and the other arguments; ``--help``
    before a target prints ``doc`` (the calling mode's module docstring)."""
    argv = list(argv)
    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: {prog} TARGET [options] [--INPUT ...]\n\n{doc or ''}".rstrip())
            print("\n`modelport " + prog.split()[-1] + " TARGET --help` lists the model's inputs.")
            raise SystemExit(0)
        print(
            f"usage: {prog} TARGET ...\n{prog}: error: give a model: path/to/file.py[:Class]",
            file=sys.stderr,
        )
        raise SystemExit(2)
    pre = argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    pre.add_argument("--endpoint")
    known, rest = pre.parse_known_args(argv[1:])
    return argv[0], known.endpoint, rest


def common_options(parser: argparse.ArgumentParser, *, progress: bool = True) -> None:
    parser.add_argument(
        "--endpoint", metavar="NAME", help="the model to run when the target has several"
    )
    if progress:
        parser.add_argument("--quiet", action="store_true", help="show no progress on stderr")
    parser.add_argument(
        "--debug", action="store_true", help="show the model's tracebacks on stderr"
    )


def set_up(local: LocalModel, debug: bool) -> bool:
    """Run the model's ``setup()``; False (the error on stderr) if it raised."""
    try:
        local.setup()
    except Exception as e:
        console.print_exception(e, debug)
        return False
    return True


def read_json_object(path: str) -> dict[str, Any]:
    try:
        raw = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()  # noqa: SIM115
    except OSError as e:
        raise ModelportError(f"--json: cannot read {path}: {e.strerror}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ModelportError(f"--json: {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ModelportError(f"--json: give a JSON object of inputs, got {type(data).__name__}")
    return data


def main(argv: Sequence[str]) -> int:
    """Run a model once on inputs given as flags; print its output."""
    target, endpoint, _ = target_and_rest("modelport run", argv)
    try:
        local = LocalModel(load_target(target, endpoint))
    except ModelportError as e:
        console.error(e.message)
        return 2
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=f"modelport run {target}",
        description=f"Run the {local.spec.name!r} endpoint once, in this process, and print "
        "its output: text as it is, anything else as JSON (indented on a terminal). "
        "Exit codes: 0 done, 1 the model failed, 2 bad input.",
    )
    common_options(parser)
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="read the inputs as one JSON object from FILE (- for stdin); flags override it",
    )
    add_input_flags(parser, local.spec)
    args = parser.parse_args(list(argv[1:]))
    console.debug_logging(args.debug)
    given = inputs_of(args, local.spec)
    try:
        data = {**(read_json_object(args.json) if args.json else {}), **given}
        inputs = local.validate(data)
    except ModelportError as e:
        console.error(e.message)
        return 2
    if not set_up(local, args.debug):
        return 1
    return _predict(local, inputs, args.quiet)


def _predict(local: LocalModel, inputs: dict[str, Any], quiet: bool) -> int:
    out = sys.stdout
    streamed: list[bool] = []  # each chunk: was it text

    with console.Progress(quiet) as progress:

        def on_event(event: Event) -> None:
            if event.type != "output":
                progress.update(event)
                return
            if isinstance(event.data, str):
                out.write(event.data)
            else:
                out.write(console.dumps(event.data).decode() + "\n")
            out.flush()
            streamed.append(isinstance(event.data, str))

        (outcome,) = local.call([inputs], on_event)
    if streamed and streamed[-1]:
        out.write("\n")
        out.flush()
    if outcome.error is not None:
        console.error(f"the model failed: {outcome.error}")
        return 1
    if not streamed:
        console.write_output(outcome.output, out)
    return 0
