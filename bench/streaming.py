"""Streaming benchmark: how late is the first chunk, and how fast do the chunks come?

    python bench/streaming.py --streams 50

The model (``bench/models/streamer.py``) is a generator making ``--chunks`` short text
chunks, one every ``--interval-ms`` milliseconds (default 100 chunks at 10 ms: 100 chunks a
second, an LLM's pace), paced against deadlines so its own rate is exact. The same
generator is measured six ways in one run:

- ``direct``: called in this process; a chunk counts when the generator yields it;
- ``embedded``: ``modelport serve bench/models/streamer.py``, each stream a ``POST
  /endpoints/streamer/jobs`` with ``Accept: text/event-stream`` (its ``output`` events are
  the chunks; ``queued``, ``started``, the final event and keep-alives are not counted);
- ``remote``: an API server with no local model (``--worker-token``) and ``modelport
  worker bench/models/streamer.py --processes C``, measured once all C are online;
- ``asgi``: ``bench/apps/asgi_stream.py``, a bare ASGI app on uvicorn (no framework) taking
  each chunk of the same generator on a worker thread and sending it as a Server-Sent Event:
  the floor of the HTTP server stack here;
- ``fastapi``: ``bench/apps/fastapi_stream.py``, a plain FastAPI route handing the same
  generator to ``StreamingResponse`` as Server-Sent Events (no queue, no store): what a user
  serving it by hand gets;
- ``litserve``: ``bench/apps/litserve_stream.py``, a LitAPI with ``stream=True`` yielding the
  same generator's chunks (one JSON line each), C inference workers.

Each system gets ``--warmup-streams`` unmeasured streams, then ``--streams`` measured ones,
``--concurrency`` C at a time (default 1: one stream after another, each on a fresh
loopback connection opened before its clock starts). With C > 1, ``embedded`` serves the
model with ``concurrency = C`` (one instance, C streams at once), ``remote`` gets C worker
processes and ``litserve`` C workers.

Reported per system: the time from sending the request to the first chunk's arrival (p50,
p99), what it adds at p50 to the direct call's, the chunk rate of a stream (chunks after
the first over the time from first to last, p50 over streams) and its ratio to direct, each
chunk's delay from being made to reaching the client (p50, p99 over all chunks; the chunks
carry the system-wide monotonic time they were made at) and the time to the stream's end;
then what modelport adds to the first chunk over the bare ASGI app's and plain FastAPI's.
Targets (issue 11): first chunk p50 <= direct + 1 ms embedded and + 3 ms remote; embedded's
chunk rate p50 >= 0.95 x direct.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _load import percentile
from _servers import (
    HOST,
    ROOT,
    WORKER_TOKEN,
    BenchError,
    LoadError,
    Process,
    Server,
    StartError,
    exit_on_signals,
    fmt,
    free_port,
    log_tail,
    ratio,
    serve_command,
    worker_command,
)

MODEL = "bench/models/streamer.py:Streamer"
ENDPOINT = "streamer"
PATH = f"/endpoints/{ENDPOINT}/jobs"
LITSERVE_APP = ROOT / "bench" / "apps" / "litserve_stream.py"
FASTAPI_APP = ROOT / "bench" / "apps" / "fastapi_stream.py"
ASGI_APP = ROOT / "bench" / "apps" / "asgi_stream.py"
BASELINE_APPS = {"asgi": ASGI_APP, "fastapi": FASTAPI_APP}
"""The plain HTTP servers streaming the same generator: what modelport adds is reported over
each too."""
SYSTEMS = ("direct", "embedded", "remote", *BASELINE_APPS, "litserve")
BASELINE = "direct"
TARGET_SYSTEM = "embedded"
# What each system may add to the model's own first chunk (p50), in ms (issue 11).
TARGET_ADDED_MS = {"embedded": 1.0, "remote": 3.0}
TARGET_RATE = 0.95
STORES = ("sqlite", "memory")
FINAL_EVENTS = {b"succeeded", b"failed", b"cancelled", b"expired"}
READ_SIZE = 65536

Generate = Callable[[int, float], Iterator[str]]


def load_model_module() -> tuple[Generate, Callable[[str], float]]:
    """``generate`` and ``made_at`` of ``bench/models/streamer.py``, as LitServe's app gets them."""
    sys.path.insert(0, str(ROOT))
    module = importlib.import_module("bench.models.streamer")
    generate: Generate = module.generate
    made_at: Callable[[str], float] = module.made_at
    return generate, made_at


class StreamFailed(Exception):
    """One stream that did not deliver all its chunks in time."""


@dataclass
class Stream:
    """What one stream saw, in seconds of ``time.monotonic()``: when it was asked for, when
    each chunk arrived and when each was made, and when the stream ended."""

    sent: float
    arrived: list[float] = field(default_factory=list)
    made: list[float] = field(default_factory=list)
    ended: float = 0.0

    @property
    def first_ms(self) -> float:
        return (self.arrived[0] - self.sent) * 1000

    @property
    def first_made_ms(self) -> float:
        """When the model made the first chunk, after the request was sent."""
        return (self.made[0] - self.sent) * 1000

    @property
    def rate(self) -> float | None:
        """Chunks after the first, per second from the first to the last."""
        span = self.arrived[-1] - self.arrived[0]
        return (len(self.arrived) - 1) / span if len(self.arrived) > 1 and span > 0 else None

    @property
    def end_ms(self) -> float:
        return (self.ended - self.sent) * 1000

    def delays_ms(self) -> list[float]:
        return [(a - m) * 1000 for a, m in zip(self.arrived, self.made, strict=True)]


@dataclass(frozen=True)
class Settings:
    chunks: int
    interval_ms: float
    timeout: float
    """Seconds one stream may take, from its request to its end."""

    @property
    def body(self) -> bytes:
        return json.dumps(
            {"input": {"chunks": self.chunks, "interval_ms": self.interval_ms}}
        ).encode()


@dataclass
class Summary:
    """One system's measured streams."""

    streams: int
    errors: int
    first_p50: float
    first_p99: float
    made_p50: float
    rate_p50: float | None
    delay_p50: float
    delay_p99: float
    end_p50: float
    first_ms: list[float]
    rates: list[float]
    end_ms: list[float]

    @classmethod
    def of(cls, streams: list[Stream], errors: int) -> Summary:
        first = sorted(s.first_ms for s in streams)
        rates = sorted(r for s in streams if (r := s.rate) is not None)
        delays = sorted(d for s in streams for d in s.delays_ms())
        return cls(
            streams=len(streams),
            errors=errors,
            first_p50=percentile(first, 50),
            first_p99=percentile(first, 99),
            made_p50=percentile(sorted(s.first_made_ms for s in streams), 50),
            rate_p50=percentile(rates, 50) if rates else None,
            delay_p50=percentile(delays, 50),
            delay_p99=percentile(delays, 99),
            end_p50=percentile(sorted(s.end_ms for s in streams), 50),
            first_ms=[s.first_ms for s in streams],
            rates=[s.rate or 0.0 for s in streams],
            end_ms=[s.end_ms for s in streams],
        )

    def json(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "errors": self.errors,
            "first_chunk_p50_ms": self.first_p50,
            "first_chunk_p99_ms": self.first_p99,
            "first_chunk_made_p50_ms": self.made_p50,
            "chunks_per_s_p50": self.rate_p50,
            "chunk_delay_p50_ms": self.delay_p50,
            "chunk_delay_p99_ms": self.delay_p99,
            "end_p50_ms": self.end_p50,
            "first_chunk_ms": self.first_ms,
            "chunks_per_s": self.rates,
            "end_ms": self.end_ms,
        }


def direct_stream(generate: Generate, made_at: Callable[[str], float], s: Settings) -> Stream:
    """The generator called in this process: a chunk arrives when it is yielded."""
    stream = Stream(time.monotonic())
    for chunk in generate(s.chunks, s.interval_ms):
        stream.arrived.append(time.monotonic())
        stream.made.append(made_at(chunk))
    stream.ended = time.monotonic()
    return stream


def http_stream(
    port: int,
    path: str,
    headers: dict[str, str],
    frames: Callable[[bytearray, Stream], bool],
    s: Settings,
) -> Stream:
    """``POST path`` on a fresh connection (opened before the clock starts), reading the
    response as it arrives; ``frames`` takes the complete frames off the buffer into the
    stream and says whether the stream is over. Bounded by ``s.timeout``."""
    conn = http.client.HTTPConnection(HOST, port, timeout=min(s.timeout, 30.0))
    try:
        conn.connect()
        stream = Stream(time.monotonic())
        deadline = stream.sent + s.timeout
        conn.request(
            "POST", path, body=s.body, headers={"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        if response.status != 200:
            raise StreamFailed(f"answered {response.status}: {response.read(300)!r}")
        buffer = bytearray()
        done = False
        while not done:
            data = response.read1(READ_SIZE)
            now = time.monotonic()
            if not data:
                break
            buffer += data
            before = len(stream.arrived)
            done = frames(buffer, stream)
            stream.arrived += [now] * (len(stream.made) - before)
            if now > deadline and not done:
                raise StreamFailed(f"not over after {s.timeout:.0f}s")
        stream.ended = time.monotonic()
        if len(stream.arrived) != s.chunks:
            raise StreamFailed(f"{len(stream.arrived)} of {s.chunks} chunks arrived")
        return stream
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as e:
        raise StreamFailed(f"{type(e).__name__}: {e}") from None
    finally:
        conn.close()


def sse_frames(made_at: Callable[[str], float]) -> Callable[[bytearray, Stream], bool]:
    """modelport's Server-Sent Events: ``output`` events are chunks; a final event ends it."""

    def take(buffer: bytearray, stream: Stream) -> bool:
        while (end := buffer.find(b"\n\n")) >= 0:
            frame = bytes(buffer[:end])
            del buffer[: end + 2]
            event = data = b""
            for line in frame.split(b"\n"):
                if line.startswith(b"event: "):
                    event = line[7:]
                elif line.startswith(b"data: "):
                    data = line[6:]
            if event == b"output":
                stream.made.append(made_at(json.loads(data)))
            elif event in FINAL_EVENTS:
                if event != b"succeeded":
                    raise StreamFailed(f"job {event.decode()}: {data[:300]!r}")
                return True
        return False

    return take


def jsonl_frames(made_at: Callable[[str], float]) -> Callable[[bytearray, Stream], bool]:
    """LitServe's streamed dicts, one JSON line ``{"output": chunk}`` each; ends with the body."""

    def take(buffer: bytearray, stream: Stream) -> bool:
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            if line.strip():
                stream.made.append(made_at(json.loads(line)["output"]))
        return False

    return take


def run_streams(
    one: Callable[[], Stream], count: int, concurrency: int
) -> tuple[list[Stream], list[str]]:
    """``count`` streams, ``concurrency`` at a time: the streams and the failures' reasons."""
    streams: list[Stream] = []
    errors: list[str] = []
    lock = threading.Lock()
    left = [count]

    def loop() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                stream = one()
            except StreamFailed as e:
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                streams.append(stream)

    # Threads, not concurrent.futures: bench/queue.py shadows the standard library's queue
    # module, which concurrent.futures.thread imports, in scripts run from bench/.
    threads = [
        threading.Thread(target=loop, name=f"stream-{i}", daemon=True)
        for i in range(min(count, concurrency))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return streams, errors


def measure_streams(one: Callable[[], Stream], args: argparse.Namespace) -> Summary:
    """Warm-up streams (all must succeed), then the measured ones."""
    _, errors = run_streams(one, args.warmup_streams, args.concurrency)
    if errors:
        raise StartError(f"{len(errors)} warm-up streams failed; the first: {errors[0]}")
    streams, errors = run_streams(one, args.streams, args.concurrency)
    if not streams:
        raise LoadError(f"every stream failed; the first: {errors[0]}")
    for reason in errors[:3]:
        print(f"  a stream failed: {reason}", file=sys.stderr)
    return Summary.of(streams, len(errors))


def measure(system: str, scratch: Path, settings: Settings, args: argparse.Namespace) -> Summary:
    """Start ``system`` (nothing for direct), stream through it, stop it all."""
    generate, made_at = load_model_module()
    if system == "direct":
        return measure_streams(lambda: direct_stream(generate, made_at, settings), args)
    port = free_port()
    db = Path(tempfile.mkdtemp(dir=scratch)) / f"{system}.db"
    store = f"sqlite:///{db}" if args.store == "sqlite" else "memory://"
    timeout = args.startup_timeout
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(tempfile.TemporaryFile(dir=scratch))
        if system == "embedded":
            command = serve_command(port, store, MODEL)
        elif system == "remote":
            command = serve_command(port, store, worker_token=WORKER_TOKEN)
        elif system in BASELINE_APPS:
            command = [sys.executable, str(BASELINE_APPS[system]), f"--port={port}"]
        else:
            command = [
                sys.executable,
                str(LITSERVE_APP),
                f"--port={port}",
                f"--workers={args.concurrency}",
            ]
        # Embedded: one model instance streams C jobs at once (its concurrency, read by
        # bench/models/streamer.py from BENCH_STREAMS).
        env = {"BENCH_STREAMS": str(args.concurrency)} if system == "embedded" else None
        server = stack.enter_context(Server(system, command, port, log, env))
        try:
            ready = "/health" if system in (*BASELINE_APPS, "litserve") else "/health/ready"
            server.wait_ready(ready, timeout)
            if system == "remote":
                workers = Process("worker", worker_command(port, MODEL, args.concurrency), log)
                stack.enter_context(workers)
                server.wait_workers(ENDPOINT, args.concurrency, timeout, workers)
        except StartError as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        if system == "litserve":
            frames, path, accept = jsonl_frames(made_at), "/predict", "application/jsonl"
        elif system in BASELINE_APPS:
            frames, path, accept = sse_frames(made_at), "/predict", "text/event-stream"
        else:
            frames, path, accept = sse_frames(made_at), PATH, "text/event-stream"

        def one() -> Stream:
            return http_stream(port, path, {"Accept": accept}, frames, settings)

        try:
            return measure_streams(one, args)
        except BenchError as e:
            raise type(e)(f"{e}\n{log_tail(log)}") from None


def verdicts(results: dict[str, Summary]) -> dict[str, Any]:
    """The targets: first-chunk p50 added over direct by embedded and remote, and embedded's
    chunk rate against direct's."""
    base, got = results.get(BASELINE), results.get(TARGET_SYSTEM)
    if base is None:
        return {}
    out: dict[str, Any] = {}
    for floor in BASELINE_APPS:
        if floor not in results:
            continue
        for name in TARGET_ADDED_MS:
            if name in results:
                out[f"{name}_over_{floor}_first_chunk_p50_ms"] = (
                    results[name].first_p50 - results[floor].first_p50
                )
    for name, target in TARGET_ADDED_MS.items():
        if name in results:
            added = results[name].first_p50 - base.first_p50
            out[f"{name}_added_first_chunk_p50_ms"] = added
            out[f"{name}_added_met"] = added <= target
    if got is not None:
        rate = (
            None if got.rate_p50 is None or base.rate_p50 is None else got.rate_p50 / base.rate_p50
        )
        out["rate_ratio"] = rate
        out["rate_met"] = rate is not None and rate >= TARGET_RATE
    return out


def report(
    results: dict[str, Summary],
    failed: dict[str, BenchError],
    names: list[str],
    concurrency: int = 1,
) -> str:
    base = results.get(BASELINE)
    lines = [
        f"{'':<10}{'':>8}{'':>7}{'first chunk ms':>32}{'chunks/s':>18}"
        f"{'chunk delay ms':>18}{'end ms':>9}",
        f"{'system':<10}{'streams':>8}{'errors':>7}{'p50':>8}{'p99':>8}{'+p50':>8}{'+made':>8}"
        f"{'p50':>9}{'x dir':>9}{'p50':>9}{'p99':>9}{'p50':>9}",
    ]
    for name in names:
        if name in results:
            r = results[name]
            added = None if base is None else r.first_p50 - base.first_p50
            later = None if base is None else r.made_p50 - base.made_p50
            rate = (
                None
                if base is None or r.rate_p50 is None
                else ratio(r.rate_p50, base.rate_p50 or 0)
            )
            lines.append(
                f"{name:<10}{r.streams:>8}{r.errors:>7}{r.first_p50:>8.2f}{r.first_p99:>8.2f}"
                f"{fmt(added, '+.2f'):>8}{fmt(later, '+.2f'):>8}"
                f"{fmt(r.rate_p50, '.1f'):>9}{fmt(rate, '.3f'):>9}"
                f"{r.delay_p50:>9.2f}{r.delay_p99:>9.2f}{r.end_p50:>9.1f}"
            )
        if name in failed:
            lines.append(f"{name:<10}{failed[name].stage:>30}")
    v = verdicts(results)
    lines.append(
        "+p50: first chunk p50 over direct's; +made: of that, how much later the model made it "
        "(the rest is its way to the client)"
    )
    if concurrency > 1:
        lines.append(
            f"{concurrency} streams at a time: {TARGET_SYSTEM} with concurrency {concurrency} "
            "(one model instance), remote and litserve with that many model processes, "
            "asgi and fastapi with their thread pools"
        )
    for name in TARGET_ADDED_MS:
        for floor in BASELINE_APPS:
            over = v.get(f"{name}_over_{floor}_first_chunk_p50_ms")
            if over is not None:
                lines.append(f"{name} adds {over:+.2f} ms to the first chunk over {floor} (p50)")
    if v:
        lines.append("")
        for name, target in TARGET_ADDED_MS.items():
            if f"{name}_added_met" in v:
                lines.append(
                    f"target: {name} adds <= {target:g} ms to the first chunk (p50): "
                    f"{v[f'{name}_added_first_chunk_p50_ms']:+.2f} ms, "
                    f"{'met' if v[f'{name}_added_met'] else 'missed'}"
                )
        if "rate_met" in v:
            lines.append(
                f"target: {TARGET_SYSTEM} streams >= {TARGET_RATE:g} x the model's chunk rate "
                f"(p50): {fmt(v['rate_ratio'], '.3f')}, {'met' if v['rate_met'] else 'missed'}"
            )
    return "\n".join(lines)


def describe(args: argparse.Namespace) -> str:
    return (
        f"{args.streams} streams (+{args.warmup_streams} warm-up) per system, {args.concurrency} "
        f"at a time, of {args.chunks} chunks {args.interval_ms:g} ms apart; store {args.store}; "
        f"python {platform.python_version()}, {os.cpu_count()} cores"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure first-chunk latency and chunk rate of a streaming model, called "
        "directly, through modelport (embedded and remote), a bare ASGI app, plain FastAPI and "
        "LitServe."
    )
    parser.add_argument(
        "--streams", type=int, default=50, help="measured streams per system (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup-streams",
        type=int,
        default=3,
        help="unmeasured streams first (default: %(default)s)",
    )
    parser.add_argument(
        "--chunks", type=int, default=100, help="chunks per stream (default: %(default)s)"
    )
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=10.0,
        help="the model's compute time per chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="streams at a time; remote and litserve get this many model processes "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--systems",
        metavar="NAME[,NAME]",
        default=",".join(SYSTEMS),
        help="which systems to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="modelport's job store (default: %(default)s)",
    )
    parser.add_argument(
        "--stream-timeout",
        type=float,
        metavar="SECONDS",
        help="seconds one stream may take (default: its chunks' time + 30)",
    )
    parser.add_argument("--startup-timeout", type=float, default=120.0, metavar="SECONDS")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 also when a target is missed")
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= 100_000 or not 0 <= args.warmup_streams <= 1000:
        parser.error("--streams must be between 1 and 100000, --warmup-streams 0 to 1000")
    if not 2 <= args.chunks <= 100_000:
        parser.error("--chunks must be between 2 and 100000 (a rate needs two chunks)")
    if not 0 < args.interval_ms <= 10_000:
        parser.error("--interval-ms must be positive (and at most 10000)")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if args.startup_timeout <= 0 or (args.stream_timeout is not None and args.stream_timeout <= 0):
        parser.error("--startup-timeout and --stream-timeout must be positive")
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SYSTEMS))
    if unknown or not names:
        parser.error(f"--systems: choose from {', '.join(SYSTEMS)}")
    args.systems = [n for n in SYSTEMS if n in names]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    timeout = args.stream_timeout or args.chunks * args.interval_ms / 1000 + 30.0
    settings = Settings(args.chunks, args.interval_ms, timeout)
    print(describe(args), file=sys.stderr)
    results: dict[str, Summary] = {}
    failed: dict[str, BenchError] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for name in args.systems:
            print(f"{name}: running", file=sys.stderr, flush=True)
            try:
                results[name] = measure(name, Path(tmp), settings, args)
            except BenchError as e:
                failed[name] = e
                print(f"{name}: {e.stage}: {e}", file=sys.stderr)
    print(report(results, failed, args.systems, args.concurrency))
    v = verdicts(results)
    if args.json:
        document: dict[str, Any] = {
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "streams": args.streams,
            "warmup_streams": args.warmup_streams,
            "concurrency": args.concurrency,
            "chunks": args.chunks,
            "interval_ms": args.interval_ms,
            "store": args.store,
            "results": {name: r.json() for name, r in results.items()},
            "failed": {name: f"{e.stage}: {e}" for name, e in failed.items()},
            "targets": {"added_first_chunk_ms": TARGET_ADDED_MS, "rate_ratio": TARGET_RATE},
            "verdicts": v,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    missed = not all(met for key, met in v.items() if key.endswith("_met"))
    errors = any(r.errors for r in results.values())
    return 1 if failed or errors or (args.check and missed) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
