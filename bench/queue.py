"""Queue benchmark: fill a store with jobs no worker takes yet, then drain it with workers.

    python bench/queue.py                      # 100,000 jobs, 64 connections, 2 worker processes
    python bench/queue.py --jobs 2000 --only sqlite

For each store (``sqlite``: a file in a scratch directory; ``redis``: a private
``redis-server`` on a free loopback port, no persistence; ``cluster``: a private Redis
Cluster of three primaries made with ``redis-cli --cluster create``, the store URL
``redis+cluster://``; one endpoint's keys share one hash slot, and this row has one
endpoint, so it measures a cluster's overhead, not a spread over three primaries) an API
server is started with no
local model, a worker token and ``--config bench/models/queue_noop.toml``, so the endpoint
takes jobs while no worker is connected. Then:

1. submit: ``--jobs`` small jobs, ``POST /endpoints/queue_noop/jobs`` with
   ``Prefer: respond-async`` (answered 202 at once), over ``--connections`` keep-alive
   connections, each sending its next request when the previous answer is in, until exactly
   ``--jobs`` requests were sent. Reported: submits/s, p50/p99 latency, non-202 answers.
   The client is a lean asyncio protocol on uvloop (tens of microseconds of CPU per submit;
   httpx took about 2.6 ms each at 64 connections, too slow to load the server on 2 cores).
2. memory: the server's RSS (every process of its group, VmRSS) before and after the
   submit phase, per queued job; the store's growth per job (``used_memory`` from Redis
   ``INFO memory``; the SQLite file plus its -wal and -shm). The queue depth must be
   ``--jobs``.
3. drain: ``modelport worker bench/models/queue_noop.py --processes N`` (a model that
   returns its inputs, whole leased batches of up to 64 at once); the endpoint is polled
   every 0.2 s until nothing is queued or running. Reported: jobs/s from the first finished
   job to the end (``drain jobs/s``) and from the worker's start (``incl. start``), which
   also counts the worker's start-up (``start s``, to within one poll).

Every process runs in its own process group on loopback and is stopped on exit; every wait
is bounded (``--stall-timeout`` without progress, ``--deadline`` for a whole phase).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is bench/queue.py and Python puts bench/ first on sys.path when it runs a script
# from there: the standard library's queue module (which uvloop and redis import) would be
# this file. Move bench/ to the end (its first entry goes; _load and _servers are still
# found) before anything imports queue.
sys.path.append(str(Path(__file__).resolve().parent))
sys.path.remove(str(Path(__file__).resolve().parent))
import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import queue  # noqa: F401 -- the standard library's, loaded before anything else asks
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import IO, Any, cast

from _load import HttpLoop, percentile
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
    get_json,
    group_usage,
    http_call,
    log_tail,
    redis_client,
    redis_command,
    redis_used_memory,
    serve_command,
    sqlite_bytes,
    wait_redis,
    worker_command,
)

MODEL = "bench/models/queue_noop.py"
CONFIG = ROOT / "bench" / "models" / "queue_noop.toml"
ENDPOINT = "queue_noop"
PATH = f"/endpoints/{ENDPOINT}/jobs"
BODY = b'{"input": {"n": 7, "text": "hello"}}'
STORES = ("sqlite", "redis", "cluster")
POLL = 0.2


@dataclass
class Submitted:
    """What the submit phase saw."""

    jobs: int
    seconds: float
    statuses: dict[str, int]
    p50_ms: float
    p99_ms: float
    early_rate: float
    """Answers per second over the first tenth of the jobs."""
    late_rate: float
    """Answers per second over the last tenth of the jobs."""
    client_cpu_s: float | None = None
    """CPU time of this process (the load generator) during the phase."""
    server_cpu_s: float | None = None
    """CPU time of the API server's processes during the phase."""

    @property
    def accepted(self) -> int:
        return self.statuses.get("202", 0)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Drained:
    """What the drain phase saw: times from the worker's start, in seconds."""

    first_done: float
    """The first poll that saw a finished job."""
    finished_at_first: int
    """Jobs already finished at that poll."""
    end: float
    """The first poll that saw nothing queued or running."""
    jobs: int
    succeeded: int | None
    mean_batch: float | None
    server_cpu_s: float | None = None
    """CPU time of the API server's processes during the phase."""
    worker_cpu_s: float | None = None
    """CPU time of the worker's processes during the phase (those still running at its end)."""

    @property
    def rate(self) -> float | None:
        """Jobs per second from the first finished job to the end."""
        span = self.end - self.first_done
        return (self.jobs - self.finished_at_first) / span if span > 0 else None

    @property
    def rate_with_start(self) -> float | None:
        return self.jobs / self.end if self.end > 0 else None


@dataclass
class Result:
    store: str
    submitted: Submitted
    rss_before: int | None
    rss_after: int | None
    store_before: int | None
    store_after: int | None
    queue_depth: int | None
    drained: Drained | None = None
    rss_drained: int | None = None
    problems: list[str] = field(default_factory=list)

    def per_job(self, before: int | None, after: int | None) -> float | None:
        if before is None or after is None or self.submitted.accepted == 0:
            return None
        return (after - before) / self.submitted.accepted

    def to_json(self) -> dict[str, Any]:
        s, d = self.submitted, self.drained
        return {
            "submit": {
                **asdict(s),
                "accepted": s.accepted,
                "submits_per_s": s.rate,
            },
            "server_rss_bytes": {
                "before": self.rss_before,
                "after_submit": self.rss_after,
                "after_drain": self.rss_drained,
                "per_queued_job": self.per_job(self.rss_before, self.rss_after),
            },
            "store_bytes": {
                "measure": "db + wal + shm" if self.store == "sqlite" else "redis used_memory",
                "before": self.store_before,
                "after_submit": self.store_after,
                "per_queued_job": self.per_job(self.store_before, self.store_after),
            },
            "queue_depth": self.queue_depth,
            "drain": None
            if d is None
            else {
                **asdict(d),
                "jobs_per_s": d.rate,
                "jobs_per_s_with_start": d.rate_with_start,
            },
            "problems": self.problems,
        }


class _Submits:
    """State shared by the connections of one submit phase: exactly ``total`` requests are
    sent, each answer (or lost request, status 0) is recorded once."""

    def __init__(self, port: int, total: int) -> None:
        self.port = port
        self.total = total
        self.request = (
            f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Type: application/json\r\nPrefer: respond-async\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        ).encode() + BODY
        self.issued = 0
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.answered_at: list[float] = []
        self.running = True
        self.finished = asyncio.Event()
        self.connections: set[_Submitter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def take(self) -> bool:
        """Claim the next request to send, if any is left."""
        if self.running and self.issued < self.total:
            self.issued += 1
            return True
        return False

    def record(self, status: int, started: float) -> None:
        now = perf_counter()
        self.statuses[status] += 1
        self.latencies.append(now - started)
        self.answered_at.append(now)
        if len(self.answered_at) >= self.total:
            self.finished.set()

    def spawn_connect(self) -> None:
        task = asyncio.get_running_loop().create_task(self.connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while self.running and self.issued < self.total:
            try:
                await loop.create_connection(lambda: _Submitter(self), HOST, self.port)
                return
            except OSError:
                await asyncio.sleep(0.05)

    def stop(self) -> None:
        self.running = False
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        for task in list(self.tasks):
            task.cancel()


class _Submitter(HttpLoop):
    """A connection of the submit phase: submits while requests are left."""

    def __init__(self, run: _Submits) -> None:
        super().__init__()
        self.run = run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.run.connections.add(self)
        super().connection_made(transport)

    def request(self) -> bytes | None:
        return self.run.request if self.run.take() else None

    def answered(self, now: float) -> None:
        self.run.record(self.status, self.started)

    def malformed(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # counted as lost in connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        run.connections.discard(self)
        if self.in_flight:
            self.in_flight = False
            run.record(0, self.started)
        if run.running and run.issued < run.total:
            run.spawn_connect()


async def _submit_all(
    port: int, jobs: int, connections: int, stall: float, deadline: float
) -> _Submits:
    run = _Submits(port, jobs)
    start = perf_counter()
    last_count, last_progress = 0, start
    try:
        for _ in range(min(connections, jobs)):
            run.spawn_connect()
        while not run.finished.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.finished.wait(), 1.0)
            now = perf_counter()
            count = len(run.answered_at)
            if count > last_count:
                last_count, last_progress = count, now
            elif now - last_progress > stall:
                raise LoadError(f"no answer for {stall:g}s after {count} of {jobs} submits")
            if now - start > deadline:
                raise LoadError(f"{count} of {jobs} submits answered after {deadline:g}s")
    finally:
        run.stop()
    run.answered_at.insert(0, start)
    return run


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)


def submit_jobs(port: int, args: argparse.Namespace) -> Submitted:
    """Send exactly ``args.jobs`` submits over ``args.connections`` connections."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        run = runner.run(
            _submit_all(port, args.jobs, args.connections, args.stall_timeout, args.deadline)
        )
    times = run.answered_at  # the start, then each answer's time
    tenth = max(1, args.jobs // 10)

    def rate(first: int, last: int) -> float:
        span = times[last] - times[first]
        return (last - first) / span if span > 0 else 0.0

    ordered = sorted(run.latencies)
    return Submitted(
        jobs=args.jobs,
        seconds=times[-1] - times[0],
        statuses={str(k): v for k, v in sorted(run.statuses.items())},
        p50_ms=percentile(ordered, 50) * 1000,
        p99_ms=percentile(ordered, 99) * 1000,
        early_rate=rate(0, tenth),
        late_rate=rate(len(times) - 1 - tenth, len(times) - 1),
    )


def endpoint_state(port: int) -> tuple[int, int]:
    """``(queue_depth, running)`` of the endpoint."""
    status, body = get_json(port, f"/endpoints/{ENDPOINT}", 10.0)
    if status != 200 or not isinstance(body, dict):
        raise LoadError(f"GET /endpoints/{ENDPOINT} answered {status}: {body!r:.300}")
    return int(body["queue_depth"]), int(body["running"])


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample of a Prometheus text exposition (None when it is not there)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if want else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def drain(server: Server, worker: Process, jobs: int, args: argparse.Namespace) -> Drained:
    """Poll the endpoint from the worker's start until nothing is queued or running."""
    start = time.monotonic()
    first: tuple[float, int] | None = None
    last_left, last_progress = jobs + 1, start
    while True:
        for proc in (server, worker):
            if proc.proc.poll() is not None:
                raise LoadError(f"{proc.name} exited with status {proc.proc.returncode}")
        try:
            queued, running = endpoint_state(server.port)
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError) as e:
            raise LoadError(f"polling the endpoint failed: {e}") from None
        now = time.monotonic()
        left = queued + running
        if first is None and left < jobs:
            first = (now - start, jobs - left)
        if queued == 0 and running == 0:
            end = now - start
            break
        if left < last_left:
            last_left, last_progress = left, now
        elif now - last_progress > args.stall_timeout:
            raise LoadError(
                f"no job finished for {args.stall_timeout:g}s: {queued} queued, {running} running"
            )
        if now - start > args.deadline:
            raise LoadError(f"not drained after {args.deadline:g}s: {queued} queued, {running}")
        time.sleep(POLL)
    assert first is not None
    status, body = http_call(server.port, "GET", "/metrics", None, 10.0)
    text = body.decode(errors="replace") if status == 200 else ""
    count = metric(text, "modelport_batch_size_count", endpoint=ENDPOINT)
    total = metric(text, "modelport_batch_size_sum", endpoint=ENDPOINT)
    succeeded = metric(
        text, "modelport_jobs_finished_total", endpoint=ENDPOINT, outcome="succeeded"
    )
    return Drained(
        first_done=first[0],
        finished_at_first=first[1],
        end=end,
        jobs=jobs,
        succeeded=None if succeeded is None else int(succeeded),
        mean_batch=total / count if count and total is not None else None,
    )


def _cluster_ok(port: int) -> bool:
    client = redis_client(port)
    try:
        return b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
    finally:
        client.close()


def create_cluster(ports: list[int], timeout: float) -> None:
    """Join the nodes into a cluster of primaries; wait (bounded) until every node says ok."""
    nodes = [f"{HOST}:{p}" for p in ports]
    create = ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0"]
    done = subprocess.run(
        [*create, "--cluster-yes"], capture_output=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise StartError(f"redis-cli --cluster create: {done.stdout.decode(errors='replace')}")
    deadline = time.monotonic() + timeout
    while not all(_cluster_ok(p) for p in ports):
        if time.monotonic() > deadline:
            raise StartError(f"the cluster's state not ok after {timeout:.0f}s")
        time.sleep(0.05)


def measure(store: str, scratch: Path, args: argparse.Namespace) -> Result:
    """Start the store and the server, fill the queue, drain it, stop everything."""
    timeout = args.startup_timeout
    with contextlib.ExitStack() as stack:

        def log(name: str) -> IO[bytes]:
            return stack.enter_context(tempfile.TemporaryFile(dir=scratch, prefix=f"{name}-"))

        server_log, store_log, worker_log = log("server"), log("redis"), log("worker")
        store_size: Callable[[], int]
        if store == "cluster":
            ports = [free_port() for _ in range(3)]
            try:
                for i, node in enumerate(ports):
                    argv = [*redis_command(node), "--dir", str(scratch)]
                    argv += ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
                    argv += ["--cluster-config-file", f"nodes-{node}.conf"]
                    proc = stack.enter_context(Process(f"redis-server {i}", argv, store_log))
                    wait_redis(node, proc, timeout)
                create_cluster(ports, timeout)
            except (StartError, OSError) as e:
                raise StartError(f"{e}\n{log_tail(store_log)}") from None
            url = "redis+cluster://" + ",".join(f"{HOST}:{p}" for p in ports)
            store_size = lambda: sum(redis_used_memory(p) for p in ports)  # noqa: E731
        elif store == "redis":
            redis_port = free_port()
            redis_argv = redis_command(redis_port)
            try:
                redis_proc = stack.enter_context(Process("redis-server", redis_argv, store_log))
                wait_redis(redis_port, redis_proc, timeout)
            except (StartError, OSError) as e:
                raise StartError(f"{e}\n{log_tail(store_log)}") from None
            url = f"redis://{HOST}:{redis_port}/0"
            store_size = lambda: redis_used_memory(redis_port)  # noqa: E731
        else:
            db = Path(tempfile.mkdtemp(dir=scratch)) / "queue.db"
            url = f"sqlite:///{db}"
            store_size = lambda: sqlite_bytes(db)  # noqa: E731
        port = free_port()
        command = serve_command(port, url, worker_token=WORKER_TOKEN)
        command += [
            "--config",
            str(CONFIG),
            "--max-queue-length",
            str(max(1_000_000, 2 * args.jobs)),
        ]
        server = stack.enter_context(Server(f"server ({store})", command, port, server_log))
        try:
            server.wait_ready("/health/ready", timeout)
            if endpoint_state(port) != (0, 0):
                raise StartError(f"{ENDPOINT!r} is not empty at start: {endpoint_state(port)}")
        except (BenchError, OSError, http.client.HTTPException, ValueError, KeyError) as e:
            raise StartError(f"{e}\n{log_tail(server_log)}") from None

        before, store_before = group_usage(server.proc.pid), store_size()
        client_cpu = time.process_time()
        try:
            submitted = submit_jobs(port, args)
        except (BenchError, OSError) as e:
            raise LoadError(f"{e}\n{log_tail(server_log)}") from None
        after, store_after = group_usage(server.proc.pid), store_size()
        submitted.client_cpu_s = time.process_time() - client_cpu
        if before is not None and after is not None:
            submitted.server_cpu_s = after.cpu - before.cpu
        rss_before = None if before is None else before.rss
        rss_after = None if after is None else after.rss
        try:
            depth, running = endpoint_state(port)
        except (BenchError, OSError, http.client.HTTPException, ValueError, KeyError) as e:
            raise LoadError(f"{e}\n{log_tail(server_log)}") from None
        result = Result(store, submitted, rss_before, rss_after, store_before, store_after, depth)
        bad = {k: v for k, v in submitted.statuses.items() if k != "202"}
        if bad:
            result.problems.append(f"answers other than 202: {bad}")
        if depth != submitted.accepted or running != 0:
            result.problems.append(
                f"queue depth {depth} (running {running}) after {submitted.accepted} accepted"
            )
        print(
            f"{store}: {submitted.accepted} queued in {submitted.seconds:.1f}s; draining",
            file=sys.stderr,
            flush=True,
        )

        server_start = group_usage(server.proc.pid)
        worker = stack.enter_context(
            Process("worker", worker_command(port, MODEL, args.workers), worker_log)
        )
        try:
            result.drained = drain(server, worker, depth, args)
        except (BenchError, OSError, http.client.HTTPException) as e:
            tail = f"server:\n{log_tail(server_log)}\nworker:\n{log_tail(worker_log)}"
            raise LoadError(f"{e}\n{tail}") from None
        server_end, worker_end = group_usage(server.proc.pid), group_usage(worker.proc.pid)
        if server_start is not None and server_end is not None:
            result.drained.server_cpu_s = server_end.cpu - server_start.cpu
        if worker_end is not None:
            result.drained.worker_cpu_s = worker_end.cpu
        result.rss_drained = None if server_end is None else server_end.rss
        if result.drained.succeeded != depth:
            result.problems.append(
                f"{result.drained.succeeded} of {depth} jobs succeeded (server metrics)"
            )
        return result


def report(results: dict[str, Result], failed: dict[str, BenchError], stores: list[str]) -> str:
    columns = (
        ("store", "<8"),
        ("submits/s", ">10"),
        ("p50 ms", ">8"),
        ("p99 ms", ">8"),
        ("non-202", ">8"),
        ("RSS B/job", ">10"),
        ("store B/job", ">12"),
        ("drain jobs/s", ">13"),
        ("incl. start", ">12"),
        ("start s", ">8"),
    )
    lines = ["".join(f"{name:{spec}}" for name, spec in columns)]
    for store in stores:
        if store in failed:
            lines.append(f"{store:<8}{failed[store].stage:>30}")
            continue
        if store not in results:
            continue
        r = results[store]
        s, d = r.submitted, r.drained
        cells = [
            store,
            f"{s.rate:.0f}",
            f"{s.p50_ms:.2f}",
            f"{s.p99_ms:.2f}",
            str(s.jobs - s.accepted),
            fmt(r.per_job(r.rss_before, r.rss_after), ".0f"),
            fmt(r.per_job(r.store_before, r.store_after), ".0f"),
            fmt(None if d is None else d.rate, ".0f"),
            fmt(None if d is None else d.rate_with_start, ".0f"),
            fmt(None if d is None else d.first_done, ".1f"),
        ]
        lines.append("".join(f"{c:{spec}}" for c, (_, spec) in zip(cells, columns, strict=True)))
    notes = []
    for store in stores:
        if store not in results:
            continue
        r = results[store]
        s, d = r.submitted, r.drained
        notes.append(
            f"{store}: submits/s over the first tenth {s.early_rate:.0f}, the last tenth "
            f"{s.late_rate:.0f}; CPU s server {fmt(s.server_cpu_s, '.1f')}, load generator "
            f"{fmt(s.client_cpu_s, '.1f')}; server RSS {fmt(mib(r.rss_before), '.1f')} -> "
            f"{fmt(mib(r.rss_after), '.1f')} MiB queued -> {fmt(mib(r.rss_drained), '.1f')} "
            f"MiB drained; mean batch {fmt(None if d is None else d.mean_batch, '.1f')}"
            f"; drain CPU s server {fmt(None if d is None else d.server_cpu_s, '.1f')}, "
            f"worker {fmt(None if d is None else d.worker_cpu_s, '.1f')}"
        )
        notes += [f"{store}: PROBLEM: {p}" for p in r.problems]
    return "\n".join([*lines, "", *notes])


def mib(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fill sqlite and redis job queues over HTTP with no worker, then drain "
        "them with workers: submits/s, server memory per queued job, drain jobs/s."
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs to submit")
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument(
        "--workers", type=int, default=2, metavar="N", help="worker processes for the drain"
    )
    parser.add_argument(
        "--only", metavar="STORE[,STORE]", help=f"stores to run, from: {', '.join(STORES)}"
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="fail a phase when nothing progresses this long (default: %(default)s)",
    )
    parser.add_argument(
        "--deadline",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="fail a phase that takes longer than this (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON")
    args = parser.parse_args(argv)
    if args.only:
        args.only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(args.only) - set(STORES))
        if unknown:
            parser.error(f"unknown store(s) {', '.join(unknown)}; choose from {', '.join(STORES)}")
    else:
        args.only = list(STORES)
    if args.jobs < 1 or args.connections < 1 or args.workers < 1:
        parser.error("--jobs, --connections and --workers must be positive")
    if min(args.startup_timeout, args.stall_timeout, args.deadline) <= 0:
        parser.error("timeouts must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    print(
        f"{args.jobs} jobs, {args.connections} connections (asyncio, Prefer: respond-async), "
        f"{args.workers} worker processes; python {platform.python_version()}, "
        f"{os.cpu_count()} cores",
        file=sys.stderr,
    )
    results: dict[str, Result] = {}
    failed: dict[str, BenchError] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for store in args.only:
            print(f"{store}: submitting", file=sys.stderr, flush=True)
            try:
                results[store] = measure(store, Path(tmp), args)
            except BenchError as e:
                failed[store] = e
                print(f"{store}: {e.stage}: {e}", file=sys.stderr)
    print(report(results, failed, args.only))
    if args.json:
        document: dict[str, Any] = {
            "jobs": args.jobs,
            "connections": args.connections,
            "workers": args.workers,
            "body": BODY.decode(),
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "results": {store: r.to_json() for store, r in results.items()},
            "failed": {store: f"{e.stage}: {e}" for store, e in failed.items()},
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    problems = any(r.problems for r in results.values())
    return 1 if failed or problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
