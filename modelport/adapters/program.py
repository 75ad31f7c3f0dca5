"""``kind = "subprocess"``: a program started ``processes`` times, one job at a time each,
speaking JSON lines over stdin and stdout.

modelport writes ``{"id": ID, "input": {...}}``; the program answers ``{"id": ID,
"output": ...}`` or ``{"id": ID, "error": "message"}``, and may first send ``{"id": ID,
"progress": fraction, "message": ...}`` and ``{"id": ID, "chunk": ...}`` lines. A
``{"ready": true}`` line (or the first answer) ends its setup. What it writes to stderr
during a job becomes the job's log; other lines on stdout are logged and skipped. A program
that exits during a job, or does not answer within the endpoint's ``timeout``, is stopped
and started again, and the job goes back to the queue until its ``max_attempts``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import queue
import re
import selectors
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Generator
from typing import Any, ClassVar

import orjson

from modelport import _context as context
from modelport import logs
from modelport.adapters.base import Adapter, called_as_is, subclass
from modelport.adapters.config import SubprocessConfig
from modelport.errors import SpecError
from modelport.spec import EndpointSpec
from modelport.worker.invoke import TransientError

log = logging.getLogger("modelport.adapters")

EXCERPT = 200
CHECK_EVERY = 0.25
"""Seconds between checks, while a program works, that its job was not cancelled."""
_LEVEL = re.compile(r"^\W*(debug|info|warn(?:ing)?|error|critical|fatal)\b", re.IGNORECASE)
_LEVELS = {"warn": "warning", "fatal": "critical"}


class ProgramError(Exception):
    """The program answered the job with an error."""


class ProgramFailed(TransientError):
    """The program exited during the job, or did not answer in time; it is restarted."""


_Line = tuple[str, Any, str]
"""From a program: ``("out", message or None if not a JSON object, text)``,
``("err", None, text)`` or ``("eof", None, "")``."""


class Program:
    """One running copy of the command, its stdout and stderr read into one queue."""

    def __init__(self, config: SubprocessConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[_Line] = queue.Queue()
        self.ready = False
        self._reader = threading.Thread()

    def start(self) -> None:
        c = self.config
        try:
            self.proc = subprocess.Popen(
                list(c.command),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=c.cwd,
                env={**os.environ, **c.env},
                start_new_session=True,  # its own group: stopping it stops what it started
            )
        except OSError as e:
            raise SpecError(f"{self.name}: cannot start {c.command[0]!r}: {e.strerror}") from None
        self.lines = queue.Queue()
        self.ready = False
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        _running.add(self)

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """Queue the program's lines, each stream's in order, and what it wrote to stderr
        before a stdout line ahead of that line (one thread, stderr first when both have
        data), so a job's log lines are in before its answer."""
        assert proc.stdout is not None and proc.stderr is not None
        lines = self.lines
        sources = {proc.stderr.fileno(): "err", proc.stdout.fileno(): "out"}
        held = {fd: b"" for fd in sources}
        with selectors.DefaultSelector() as selector:
            for fd in sources:
                selector.register(fd, selectors.EVENT_READ)
            while held:
                ready = [key.fd for key, _ in selector.select()]
                for fd in sorted(ready, key=lambda fd: sources[fd] != "err"):
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if data:
                        *complete, held[fd] = (held[fd] + data).split(b"\n")
                        for raw in complete:
                            lines.put(_line(sources[fd], raw))
                        continue
                    if held[fd]:
                        lines.put(_line(sources[fd], held[fd]))
                    selector.unregister(fd)
                    del held[fd]
                    if sources[fd] == "out":
                        lines.put(("eof", None, ""))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """Kill the program (and what it started); its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        _running.discard(self)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        code = proc.wait()
        self._reader.join(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return code

    def call(
        self, job_id: str, inputs: dict[str, Any], model: Adapter
    ) -> Generator[Any, None, Any]:
        """Send one job and follow the program's lines until its answer (the generator's
        value); chunks are yielded."""
        if not self.running:
            if self.proc is not None:
                self.stop()
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        finished = False
        try:
            try:
                self.proc.stdin.write(orjson.dumps({"id": job_id, "input": inputs}) + b"\n")
                self.proc.stdin.flush()
            except OSError:
                pass  # it exited: its end of output says how
            deadline = self._deadline()
            while True:
                context.check()  # a cancelled job stops here; the program is restarted
                wait = CHECK_EVERY
                if deadline is not None:
                    wait = min(wait, max(deadline - time.monotonic(), 0.0))
                try:
                    source, message, text = self.lines.get(timeout=wait)
                except queue.Empty:
                    if deadline is None or time.monotonic() < deadline:
                        continue
                    limit = self.config.timeout if self.ready else self.config.setup_timeout
                    raise ProgramFailed(
                        f"the program did not answer within {limit:g} s"
                        f" ({'timeout' if self.ready else 'setup_timeout'}); it was stopped"
                        " and is started again"
                    ) from None
                if source == "err":
                    _log_line(text)
                elif source == "eof":
                    code = self.stop()
                    raise ProgramFailed(
                        f"the program exited with code {code} during the job; it is started again"
                    )
                elif message is None:
                    context.log(
                        "warning",
                        f"skipped a line that is not a JSON object: {_excerpt(text)}",
                        stream="stdout",
                    )
                elif message.get("ready") is True and "id" not in message:
                    self.ready = True
                    deadline = self._deadline()
                elif message.get("id") != job_id:
                    context.log(
                        "warning",
                        f"skipped a line for another id: {_excerpt(text)}",
                        stream="stdout",
                    )
                elif "output" in message or "error" in message:
                    finished = self.ready = True
                    self._drain_stderr()
                    if "error" in message:
                        raise ProgramError(str(message["error"]))
                    return message["output"]
                elif "chunk" in message:
                    self.ready = True
                    yield message["chunk"]
                elif "progress" in message or "message" in message:
                    self.ready = True
                    _progress(model, message)
                else:
                    context.log("warning", f"skipped a line: {_excerpt(text)}", stream="stdout")
        finally:
            if not finished and self.proc is not None:
                self.stop()  # it may still be working on the job: start afresh for the next

    def _deadline(self) -> float | None:
        limit = self.config.timeout if self.ready else self.config.setup_timeout
        return None if limit is None else time.monotonic() + limit

    def _drain_stderr(self) -> None:
        """Log the stderr lines that already arrived, as the job's (they may trail its answer)."""
        held: list[_Line] = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line[0] == "err":
                _log_line(line[2])
            else:
                held.append(line)
        for line in held:
            self.lines.put(line)


def _line(source: str, raw: bytes) -> _Line:
    text = raw.decode("utf-8", errors="replace").rstrip("\r")
    if source == "err":
        return ("err", None, text)
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        message = None
    return ("out", message if isinstance(message, dict) else None, text)


def _log_line(text: str) -> None:
    found = _LEVEL.match(text)
    level = found.group(1).lower() if found else "info"
    level = _LEVELS.get(level, level)
    if not context.log(level, text, stream="stderr"):
        log.info("%s", text)


def _progress(model: Adapter, message: dict[str, Any]) -> None:
    fraction = message.get("progress")
    text = message.get("message")
    data = message.get("data")
    try:
        model.progress(
            fraction if isinstance(fraction, int | float) else None,
            text if isinstance(text, str) else None,
            **(data if isinstance(data, dict) else {}),
        )
    except ValueError as e:
        context.log("warning", f"skipped a progress line: {e}", stream="stdout")


def _excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"


_running: weakref.WeakSet[Program] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for program in list(_running):
        program.stop()


class SubprocessModel(Adapter):
    """Runs each job on a free copy of the program."""

    program: ClassVar[SubprocessConfig]

    def setup(self) -> None:
        c = self.program
        self.free: queue.Queue[Program] = queue.Queue()
        self.programs = [Program(c, f"{self.adapter_spec.name}/{i}") for i in range(c.processes)]
        self._ids = itertools.count(1)
        for program in self.programs:
            program.start()
            self.free.put(program)

    def info(self) -> dict[str, Any]:
        return {"adapter": "subprocess", "processes": self.program.processes}

    def close(self) -> None:
        """Stop every copy of the program."""
        for program in getattr(self, "programs", []):
            program.stop()

    @called_as_is
    def predict(self, **inputs: Any) -> Generator[Any, None, Any]:
        job = logs.job_id.get()
        job_id = job if job and "," not in job else str(next(self._ids))
        program = self.free.get()
        try:
            return (yield from program.call(job_id, inputs, self))
        finally:
            self.free.put(program)


def program_model(spec: EndpointSpec) -> type[SubprocessModel]:
    assert isinstance(spec.adapter, SubprocessConfig)
    return subclass(SubprocessModel, spec, program=spec.adapter)
