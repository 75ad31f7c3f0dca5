"""``modelport pipe TARGET``: inputs on stdin, one output per input on stdout, in order.

JSON lines by default (blank lines are skipped); ``--format pickle`` reads a stream of
pickled dicts and writes pickled outputs; ``--raw`` reads the whole of stdin as one file,
for a model with one media input (``modelport pipe classify.py --raw < cat.jpg``). An
input that fails (not JSON, invalid, or the model raised) gets ``{"index": i, "error":
"..."}`` in its place, ``i`` counting the inputs from 0, and the stream goes on. Inputs are
read ``--batch-size`` at a time (the model's ``max_batch_size`` by default), so memory
stays bounded however long the stream is; a ``predict_batch`` model gets each batch in one
call. What the model prints goes to stderr: stdout holds only the outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import pickle
import select
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import orjson

from modelport.errors import ModelportError
from modelport.modes import console
from modelport.modes.local import LocalModel, load_target
from modelport.modes.run import common_options, set_up, target_and_rest

_CHUNK = 1 << 16
_GROUP = 1024
"""Lines at hand run as one group by a model without ``predict_batch``."""
_FLUSH_EVERY = 0.05
"""Seconds after a flush before an output written while a group runs is flushed with it."""


class Lines:
    """The lines of a binary stream, read in large chunks; :meth:`waiting` says whether more
    input is at hand without blocking (so output is flushed before the reader would wait)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._fd: int | None
        try:
            self._fd = stream.fileno()
        except (OSError, ValueError):
            self._fd = None
        self._lines: list[bytes] = []
        self._next = 0
        self._tail = b""
        self._eof = False

    def waiting(self) -> bool:
        if self._next < len(self._lines) or self._eof:
            return True
        if self._fd is None:
            return True
        ready, _, _ = select.select([self._fd], [], [], 0)
        return bool(ready)

    def take(self, limit: int) -> list[bytes]:
        """Up to ``limit`` lines that are not blank: the first waited for, the others those
        at hand. Empty at the end of the stream."""
        taken: list[bytes] = []
        while len(taken) < limit:
            if self._next >= len(self._lines):
                if (taken and not self.waiting()) or not self._read():
                    break
                continue
            end = min(len(self._lines), self._next + limit - len(taken))
            taken += [line for line in self._lines[self._next : end] if line.strip()]
            self._next = end
        return taken

    def _read(self) -> bool:
        """The next chunk's whole lines read (waiting for them); False at the end."""
        if self._eof:
            return False
        chunk = os.read(self._fd, _CHUNK) if self._fd is not None else self._stream.read(_CHUNK)
        if not chunk:
            self._eof = True
            self._lines, self._next = [self._tail], 0
            self._tail = b""
            return True
        parts = (self._tail + chunk).split(b"\n")
        self._tail = parts.pop()
        self._lines, self._next = parts, 0
        return True


def _parsed(group: list[bytes]) -> tuple[list[Any], dict[int, str]]:
    """The lines' JSON values, and the error of each line (by position) that is not JSON."""
    try:
        return [orjson.loads(line) for line in group], {}
    except orjson.JSONDecodeError:
        pass
    values: list[Any] = []
    problems: dict[int, str] = {}
    for position, line in enumerate(group):
        try:
            values.append(orjson.loads(line))
        except orjson.JSONDecodeError as e:
            values.append(None)
            problems[position] = f"not valid JSON: {e}"
    return values, problems


def _pickle_inputs(stream: IO[bytes]) -> Iterator[Any]:
    unpickler = pickle.Unpickler(stream)
    while True:
        try:
            yield unpickler.load()
        except EOFError:
            return
        except pickle.UnpicklingError as e:
            raise ModelportError(f"stdin is not a stream of pickles: {e}") from None


def main(argv: Sequence[str]) -> int:
    """Run a model on a stream of inputs on stdin (JSON lines or pickles), outputs on stdout."""
    target, endpoint, _ = target_and_rest("modelport pipe", argv, __doc__)
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=f"modelport pipe {target}",
        description=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common_options(parser, progress=False)
    parser.add_argument(
        "--format",
        choices=["jsonl", "pickle"],
        default="jsonl",
        help="jsonl: one JSON object per line (default); pickle: a stream of pickled dicts, "
        "ONLY for input you trust (unpickling runs code)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        metavar="N",
        help="inputs per call of the model (default: its max_batch_size)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="read the whole of stdin as the model's one media input (an image, a recording,"
        " a file) and run it once; its other inputs take their defaults. Exit 1 if the model"
        " failed, 2 if the file was refused",
    )
    args = parser.parse_args(list(argv[1:]))
    console.debug_logging(args.debug)
    try:
        local = LocalModel(load_target(target, endpoint))
    except ModelportError as e:
        console.error(e.message)
        return 2
    if args.raw:
        return _raw(parser, local, args)
    size = args.batch_size or local.spec.max_batch_size
    if size < 1:
        parser.error("--batch-size must be at least 1")
    out: IO[bytes] = sys.stdout.buffer
    if isinstance(out, io.RawIOBase):  # python -u, PYTHONUNBUFFERED: flushed as said below
        out = open(out.fileno(), "wb", closefd=False)  # noqa: SIM115
    with _prints_to_stderr():
        if not set_up(local, args.debug):
            return 1
        # What is loaded by now (modules, the model) lives as long as the process: kept out
        # of the collector's sight, so the collections a long stream's many small objects
        # set off do not scan it again and again.
        gc.freeze()
        try:
            _pipe(local, args.format, size, out)
        except BrokenPipeError:
            # The reader went away (`| head`): done. Point stdout at /dev/null so the flush
            # at exit does not raise again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            return 0
        except ModelportError as e:
            console.error(e.message)
            return 2
        except KeyboardInterrupt:
            return 130
    return 0


@contextlib.contextmanager
def _prints_to_stderr() -> Iterator[None]:
    """While the model runs, what it prints goes to stderr: stdout is for its outputs."""
    stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout = stdout


def _raw(parser: argparse.ArgumentParser, local: LocalModel, args: argparse.Namespace) -> int:
    """One media file on stdin, one output (or error line) on stdout."""
    from modelport.media.prepare import limits_of, single_media_input
    from modelport.settings import Limits

    key = single_media_input(local.spec)
    if key is None:
        parser.error(
            "--raw needs a model with exactly one media input (image, audio, video or bytes);"
            f" {local.spec.name!r} has {len(local.spec.media_inputs)}"
        )
    limit = limits_of(Limits()).max_bytes
    data = sys.stdin.buffer.read(limit + 1)  # one byte over is refused by the conversion
    write = _writer(args.format, sys.stdout.buffer)
    try:
        inputs = local.validate({key: data})
    except ModelportError as e:
        write({"index": 0, "error": e.message})
        console.error(e.message)
        return 2
    with _prints_to_stderr():
        if not set_up(local, args.debug):
            return 1
        (outcome,) = local.call([inputs])
    if outcome.error is not None:
        write({"index": 0, "error": outcome.error})
        console.error(f"the model failed: {outcome.error}")
        return 1
    write(outcome.output)
    return 0


def _writer(fmt: str, out: IO[bytes]) -> Callable[[Any], None]:
    if fmt == "pickle":

        def write(value: Any) -> None:
            pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)
    else:
        dumps, line = orjson.dumps, console.OPTIONS | orjson.OPT_APPEND_NEWLINE

        def write(value: Any) -> None:
            out.write(dumps(value, option=line))

    return write


def _pipe(local: LocalModel, fmt: str, size: int, out: IO[bytes]) -> None:
    stdin = sys.stdin.buffer
    write = _writer(fmt, out)
    # A predict_batch model gets `size` inputs a call; any other model runs the lines at
    # hand one by one, a group of them sharing the per-call costs (validation, set-up).
    index = 0
    if fmt == "pickle":
        batch: list[Any] = []
        for item in _pickle_inputs(stdin):
            batch.append(item)
            if len(batch) == size:
                index = _run_batch(local, index, batch, {}, write, out)
                out.flush()
                batch = []
        if batch:
            _run_batch(local, index, batch, {}, write, out)
        out.flush()
        return
    lines = Lines(stdin)
    bound = size if local.batched else max(size, _GROUP)
    while group := lines.take(bound):
        index = _run_batch(local, index, *_parsed(group), write, out)
        if not lines.waiting():
            out.flush()
    out.flush()


def _run_batch(
    local: LocalModel,
    first: int,
    batch: list[Any],
    problems: dict[int, str],
    write: Callable[[Any], None],
    out: IO[bytes],
) -> int:
    """The inputs of ``batch`` (numbered from ``first``; ``problems`` holds the error of
    those that cannot be run, by position) validated and run, their outputs (or error lines)
    written in order, each as soon as it is made, and flushed with it once
    :data:`_FLUSH_EVERY` seconds have passed since the last flush (a slow model's outputs
    come out one by one). The number of the next input."""
    todo = [p for p in range(len(batch)) if p not in problems] if problems else range(len(batch))
    valid: list[dict[str, Any]] = []
    for position, value in zip(todo, local.validate_many([batch[p] for p in todo]), strict=True):
        if isinstance(value, ModelportError):
            problems[position] = value.message
        else:
            valid.append(value)
    outcomes = local.call_each(valid)
    monotonic = time.monotonic
    flushed = monotonic()
    for position in range(len(batch)):
        error = problems.get(position) if problems else None
        if error is None:
            output, error = next(outcomes)
            if error is None:
                write(output)
        if error is not None:
            write({"index": first + position, "error": error})
        if monotonic() - flushed >= _FLUSH_EVERY:
            out.flush()
            flushed = monotonic()
    return first + len(batch)
