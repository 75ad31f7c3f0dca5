"""What the local modes write: JSON on stdout (indented for a terminal, one compact line
when piped), progress on stderr (a rich progress bar on a terminal when the ``cli`` extra is
installed, else one plain line per update), errors as ``modelport: error: ...``."""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
from typing import IO, Any

import orjson

from modelport.wire import Event

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
"""How the local modes write JSON."""


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(value, option=OPTIONS | (orjson.OPT_INDENT_2 if pretty else 0))


def write_output(value: Any, stream: IO[str]) -> None:
    """An output as the user reads it: text as it is, anything else as JSON."""
    if isinstance(value, str):
        stream.write(value + "\n")
    else:
        stream.write(dumps(value, pretty=stream.isatty()).decode() + "\n")
    stream.flush()


def error(message: str) -> None:
    print(f"modelport: error: {message}", file=sys.stderr, flush=True)


def debug_logging(debug: bool) -> None:
    """With ``--debug``, the model's tracebacks (logged by the invoker) go to stderr."""
    if debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def print_exception(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    error(describe(exc))


class Progress:
    """The model's progress reports, shown on stderr until :meth:`close`."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._bar: Any = None
        self._task: Any = None
        self._last: tuple[Any, Any] | None = None
        if quiet or not sys.stderr.isatty():
            return
        try:
            from rich.progress import Progress as RichProgress
        except ImportError:
            return
        from rich.console import Console

        self._bar = RichProgress(console=Console(stderr=True), transient=True)

    def update(self, event: Event) -> None:
        if self.quiet or event.type != "progress":
            return
        fraction = event.data.get("fraction")
        message = event.data.get("message") or ""
        if self._bar is not None:
            if self._task is None:
                self._bar.start()
                self._task = self._bar.add_task(message, total=1.0)
            self._bar.update(self._task, completed=fraction or 0.0, description=message)
            return
        if (fraction, message) == self._last:
            return
        self._last = (fraction, message)
        percent = "" if fraction is None else f"{fraction:4.0%}"
        line = " ".join(p for p in ("progress:", percent.strip(), message) if p)
        print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.stop()
        self._task = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
