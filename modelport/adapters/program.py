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

import asyncio
import atexit
import collections
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


class _Splitter:
    """A stream's bytes as lines, the last partial one held until its end."""

    def __init__(self) -> None:
        self.held: dict[str, bytes] = {"err": b"", "out": b""}

    def feed(self, source: str, data: bytes) -> list[_Line]:
        *complete, self.held[source] = (self.held[source] + data).split(b"\n")
        return [_line(source, raw) for raw in complete]

    def end(self, source: str) -> list[_Line]:
        rest, self.held[source] = self.held[source], b""
        lines = [_line(source, rest)] if rest else []
        return lines + ([("eof", None, "")] if source == "out" else [])


class Program:
    """One running copy of the command. Its stdout and stderr are read into one sequence of
    lines, by a thread (for ``predict`` on a model thread) or by the event loop (for
    ``predict_async``); each job's exchange is followed by :meth:`call` or :meth:`acall`."""

    def __init__(self, config: SubprocessConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[_Line] = queue.Queue()
        """The lines read by the thread."""
        self.ready = False
        self._reader: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop reading the lines, into :attr:`_pending`."""
        self._pending: collections.deque[_Line] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._split = _Splitter()

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
        self._pending.clear()
        self._split = _Splitter()
        self.ready = False
        _running.add(self)

    def _read_in_thread(self) -> None:
        if self._reader is None and self._loop is None:
            assert self.proc is not None
            self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
            self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """Queue the program's lines, each stream's in order, and what it wrote to stderr
        before a stdout line ahead of that line (one thread, stderr first when both have
        data), so a job's log lines are in before its answer."""
        assert proc.stdout is not None and proc.stderr is not None
        lines = self.lines
        split = self._split
        sources = {proc.stderr.fileno(): "err", proc.stdout.fileno(): "out"}
        with selectors.DefaultSelector() as selector:
            for fd in sources:
                selector.register(fd, selectors.EVENT_READ)
            while sources:
                ready = [key.fd for key, _ in selector.select()]
                for fd in sorted(ready, key=lambda fd: sources[fd] != "err"):
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    for line in split.feed(sources[fd], data) if data else split.end(sources[fd]):
                        lines.put(line)
                    if not data:
                        selector.unregister(fd)
                        del sources[fd]

    def _read_on_loop(self) -> None:
        """Read the program's lines on this event loop (as :meth:`_read` does on a thread)."""
        if self._loop is not None or self._reader is not None:
            return
        proc = self.proc
        assert proc is not None and proc.stdout is not None and proc.stderr is not None
        assert proc.stdin is not None
        self._loop = loop = asyncio.get_running_loop()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
        loop.add_reader(proc.stderr.fileno(), self._readable, "err")
        loop.add_reader(proc.stdout.fileno(), self._readable, "out")

    def _readable(self, source: str) -> None:
        proc = self.proc
        if proc is None:
            return
        assert proc.stdout is not None and proc.stderr is not None
        if source == "out":
            self._take_in("err", proc.stderr.fileno())  # what it wrote before this line
        self._take_in(source, (proc.stdout if source == "out" else proc.stderr).fileno())
        if self._pending and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take_in(self, source: str, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._pending.extend(self._split.feed(source, data))
            return
        assert self._loop is not None
        self._loop.remove_reader(fd)
        self._pending.extend(self._split.end(source))

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
        if self._reader is not None:
            self._reader.join(timeout=5)
            self._reader = None
        if self._loop is not None:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(Exception):  # its loop may be closed by now
                        self._loop.remove_reader(stream.fileno())
            self._loop = None
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return code

    def _begin(self, job_id: str, inputs: dict[str, Any]) -> bytes:
        """Start the program again if it is not running; the job's line to send."""
        if not self.running:
            if self.proc is not None:
                self.stop()
            self.start()
        return orjson.dumps({"id": job_id, "input": inputs}) + b"\n"

    def call(
        self, job_id: str, inputs: dict[str, Any], model: Adapter
    ) -> Generator[Any, None, Any]:
        """Send one job and follow the program's lines until its answer (the generator's
        value); chunks are yielded."""
        request = self._begin(job_id, inputs)
        self._read_in_thread()
        assert self.proc is not None and self.proc.stdin is not None
        finished = False
        try:
            try:
                self.proc.stdin.write(request)
                self.proc.stdin.flush()
            except OSError:
                pass  # it exited: its end of output says how
            deadline = self._deadline()
            while True:
                context.check()  # a cancelled job stops here; the program is restarted
                try:
                    line = self.lines.get(timeout=self._wait(deadline))
                except queue.Empty:
                    if deadline is None or time.monotonic() < deadline:
                        continue
                    raise self._timed_out() from None
                step, value = self._follow(line, job_id, model)
                if step == "ready":
                    deadline = self._deadline()
                elif step == "chunk":
                    yield value
                elif step == "answer":
                    finished = True
                    while True:  # the stderr lines that already arrived are the job's too
                        try:
                            self._pending.append(self.lines.get_nowait())
                        except queue.Empty:
                            break
                    for held in self._stderr_logged():
                        self.lines.put(held)
                    return _answer(value)
        finally:
            if not finished and self.proc is not None:
                self.stop()  # it may still be working on the job: start afresh for the next

    async def acall(self, job_id: str, inputs: dict[str, Any], model: Adapter) -> Any:
        """:meth:`call` on the event loop: the answer's output; chunks go out through
        ``context.chunk``."""
        request = self._begin(job_id, inputs)
        self._read_on_loop()
        finished = False
        try:
            await self._write(request)
            deadline = self._deadline()
            while True:
                context.check()  # a cancelled job stops here; the program is restarted
                if not self._pending:
                    await self._arrival(self._wait(deadline))
                    if not self._pending:
                        if deadline is None or time.monotonic() < deadline:
                            continue
                        raise self._timed_out()
                step, value = self._follow(self._pending.popleft(), job_id, model)
                if step == "ready":
                    deadline = self._deadline()
                elif step == "chunk":
                    context.chunk(value)
                elif step == "answer":
                    finished = True
                    self._pending.extendleft(reversed(self._stderr_logged()))
                    return _answer(value)
        finally:
            if not finished and self.proc is not None:
                self.stop()

    async def _write(self, data: bytes) -> None:
        """Write a job's line to the program's stdin without blocking the loop."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None and self._loop is not None
        fd = proc.stdin.fileno()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError:
                return  # it exited: its end of output says how
            writable = self._loop.create_future()
            self._loop.add_writer(fd, writable.set_result, None)
            try:
                await writable
            finally:
                self._loop.remove_writer(fd)

    async def _arrival(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for a line."""
        assert self._loop is not None
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(wait, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _follow(self, line: _Line, job_id: str, model: Adapter) -> tuple[str, Any]:
        """One line of the program's during a job: ``("answer", message)``, ``("chunk",
        value)``, ``("ready", None)``, or ``("", None)`` for one handled here (a log line, a
        progress report, a skipped line); raises if the program exited."""
        source, message, text = line
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
            return "ready", None
        elif message.get("id") != job_id:
            context.log(
                "warning", f"skipped a line for another id: {_excerpt(text)}", stream="stdout"
            )
        elif "output" in message or "error" in message:
            self.ready = True
            return "answer", message
        elif "chunk" in message:
            self.ready = True
            return "chunk", message["chunk"]
        elif "progress" in message or "message" in message:
            self.ready = True
            _progress(model, message)
        else:
            context.log("warning", f"skipped a line: {_excerpt(text)}", stream="stdout")
        return "", None

    def _stderr_logged(self) -> list[_Line]:
        """Log the stderr lines that already arrived, as the job's (they may trail its
        answer); the other lines, kept for the next job."""
        held: list[_Line] = []
        while self._pending:
            line = self._pending.popleft()
            if line[0] == "err":
                _log_line(line[2])
            else:
                held.append(line)
        return held

    def _deadline(self) -> float | None:
        limit = self.config.timeout if self.ready else self.config.setup_timeout
        return None if limit is None else time.monotonic() + limit

    def _wait(self, deadline: float | None) -> float:
        """How long to wait for a line before looking whether the job was cancelled."""
        if deadline is None:
            return CHECK_EVERY
        return min(CHECK_EVERY, max(deadline - time.monotonic(), 0.0))

    def _timed_out(self) -> ProgramFailed:
        limit = self.config.timeout if self.ready else self.config.setup_timeout
        return ProgramFailed(
            f"the program did not answer within {limit:g} s"
            f" ({'timeout' if self.ready else 'setup_timeout'}); it was stopped"
            " and is started again"
        )


def _answer(message: dict[str, Any]) -> Any:
    if "error" in message:
        raise ProgramError(str(message["error"]))
    return message["output"]


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


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
        self.free_async: asyncio.Queue[Program] = asyncio.Queue()
        self.programs = [Program(c, f"{self.adapter_spec.name}/{i}") for i in range(c.processes)]
        self._ids = itertools.count(1)
        for program in self.programs:
            program.start()
            self.free.put(program)
            self.free_async.put_nowait(program)

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

    async def predict_async(self, **inputs: Any) -> Any:
        """``predict`` on the event loop: the program's lines are read there, with no thread
        for each job or program."""
        job = logs.job_id.get()
        job_id = job if job and "," not in job else str(next(self._ids))
        program = await self.free_async.get()
        try:
            return await program.acall(job_id, inputs, self)
        finally:
            self.free_async.put_nowait(program)


def program_model(spec: EndpointSpec) -> type[SubprocessModel]:
    assert isinstance(spec.adapter, SubprocessConfig)
    return subclass(SubprocessModel, spec, program=spec.adapter)
