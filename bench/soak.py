"""Soak benchmark: does throughput hold with millions of finished jobs in the store?

    python bench/soak.py                      # 2,000,000 finished jobs; sqlite and redis
    python bench/soak.py --smoke              # 50,000 jobs, 2 s runs: does it work at all
    python bench/soak.py --stores sqlite --models default --jobs 500000 --duration 30

For each store (``sqlite``: a file in a scratch directory; ``redis``: a private
``redis-server`` on a free loopback port, ``--save "" --appendonly no``) and each echo model
(``batched``: ``examples/echo``, ``max_batch_size = 64``; ``default``:
``bench/models/echo_default.py``, no batching attribute), in one run:

1. empty: a fresh store and ``modelport serve MODEL --store URL``, loaded over HTTP as
   bench/overhead.py does (``wrk`` when on PATH, 64 keep-alive connections, ``--warmup``
   seconds discarded, then ``--duration`` seconds measured).
2. fill: with no server running, ``--jobs`` finished jobs are written straight into the
   store as copies of one the server itself finished in step 1 (every column or hash field
   of it, with new ids, seqs and times spread over the last hour): ``executemany`` on the
   ``jobs`` table for sqlite; for redis, ``HSET`` of the job hash, ``ZADD`` to the
   finished-jobs index (and the events, if any), by a Lua script fed 20,000 jobs a call.
   Reported: store bytes per job (sqlite: the file with its -wal and -shm; redis:
   ``used_memory``) and the fill's rate.
3. filled: the same load against the filled store (default ``result_ttl``: nothing filled
   is old enough to be purged).
4. purge: the same with ``--result-ttl`` (default 1 s), so every filled job has expired and
   each round of the reaper's purge has work (today a round runs at start and then every
   15 s, deleting up to 1000 jobs per endpoint: a ``--duration`` over 16 s puts one inside
   the window). Reported: the jobs the server purged over its life.

Per run: the jobs in the store when it started, req/s, p50, p99, errors, ``cpu us/job`` (CPU
time of the server's processes in the measured window, from /proc, per OK response) and the
server's RSS at the end of the window. Ratios: filled / empty (target >= 0.9, issue 11) and
purge / filled (the purge should cost the hot path nothing measurable).

Every process runs in its own process group on loopback and is stopped on exit; every wait
is bounded (``--startup-timeout``, ``--fill-timeout``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds queue.py, which would shadow the standard library's module redis imports: move
# bench/ to the end of sys.path (as bench/queue.py does) before anything imports queue.
sys.path.append(str(Path(__file__).resolve().parent))
sys.path.remove(str(Path(__file__).resolve().parent))
import argparse
import contextlib
import dataclasses
import json
import os
import secrets
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from http.client import HTTPException
from typing import Any, Protocol

from _load import (
    Load,
    LoadResult,
    Plan,
    Target,
    add_load_arguments,
    check_load_arguments,
    describe,
    median_run,
    result_json,
)
from _servers import (
    HOST,
    BenchError,
    CpuWindow,
    LoadError,
    Process,
    Server,
    StartError,
    check_call,
    exit_on_signals,
    fmt,
    free_port,
    http_call,
    log_tail,
    ratio,
    redis_client,
    redis_command,
    redis_used_memory,
    serve_command,
    sqlite_bytes,
    wait_redis,
)

from modelport.stores.redis import DEFAULT_PREFIX

MODELS = {"batched": "examples/echo/model.py", "default": "bench/models/echo_default.py"}
STORES = ("sqlite", "redis")
PHASES = ("empty", "filled", "purge")
ENDPOINT = "echo"
PATH = f"/endpoints/{ENDPOINT}/jobs"
BODY = b'{"input": {"text": "hello"}}'
EXPECT = b'"status":"succeeded"'
TARGET = 0.9
SPREAD = 3600.0
"""The filled jobs finished over this many seconds before the fill."""
CHUNK = 20_000
"""Jobs written per transaction (sqlite) or pipeline (redis)."""
SMOKE = {"jobs": 50_000, "duration": 2.0, "warmup": 1.0}


class Copies:
    """Ids and times for ``jobs`` copies of a finished job: created, started and completed
    as far apart as the original's, completed evenly over the ``SPREAD`` before ``now``."""

    def __init__(self, jobs: int, now: float, created: float, started: float | None) -> None:
        self.jobs = jobs
        self.now = now
        self.created = created
        self.started = started
        self.salt = secrets.randbits(62)
        self.ends: dict[int, str] = {}

    def times(self, i: int, completed_was: float) -> tuple[float, float | None, float]:
        completed = self.now - SPREAD + SPREAD * (i + 1) / self.jobs
        shift = completed - completed_was
        started = None if self.started is None else self.started + shift
        return self.created + shift, started, completed

    def job_id(self, i: int, created: float) -> str:
        # The server's form (milliseconds, then 64 bits), the counter keeping them unique.
        job_id = f"{int(created * 1000):012x}{self.salt + i:016x}"
        if i in (0, self.jobs - 1):
            self.ends[i] = job_id
        return job_id

    def ids(self) -> list[str]:
        """The first and the last copy's ids."""
        return [self.ends[i] for i in sorted(self.ends)]


class Backend(Protocol):
    """A store the benchmark can reset, count, size and fill while no server runs."""

    name: str

    @property
    def url(self) -> str: ...

    def reset(self) -> None: ...

    def count(self) -> int:
        """Jobs in the store."""

    def size(self) -> int:
        """Bytes the store takes."""

    def fill(self, jobs: int, deadline: float) -> list[str]:
        """Write ``jobs`` copies of the newest succeeded job (by ``deadline``, a monotonic time);
        return the ids of the first and the last copy."""


def check_deadline(deadline: float, done: int, jobs: int) -> None:
    if time.monotonic() > deadline:
        raise LoadError(f"fill not done by --fill-timeout: {done} of {jobs} jobs written")


class SqliteBackend:
    """A fresh database file per reset, in the scratch directory."""

    name = "sqlite"

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.path = scratch / "unused.db"
        self.reset()

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def reset(self) -> None:
        self.path = Path(tempfile.mkdtemp(dir=self.scratch)) / "soak.db"

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            (n,) = db.execute("SELECT count(*) FROM jobs").fetchone()
        return int(n)

    def size(self) -> int:
        return sqlite_bytes(self.path)

    def fill(self, jobs: int, deadline: float) -> list[str]:
        db = sqlite3.connect(self.path, isolation_level=None)
        try:
            cur = db.execute(
                "SELECT * FROM jobs WHERE status = 'succeeded' ORDER BY seq DESC LIMIT 1"
            )
            row = cur.fetchone()
            if row is None:
                raise LoadError("no succeeded job in the store to copy")
            template = dict(zip([d[0] for d in cur.description], row, strict=True))
            cur = db.execute("SELECT * FROM events WHERE job_id = ?", (template["id"],))
            event_columns = [d[0] for d in cur.description]
            events = [dict(zip(event_columns, e, strict=True)) for e in cur.fetchall()]
            columns = [c for c in template if c != "seq"]  # the rowid: sqlite numbers them
            insert_job = (
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            )
            insert_event = (
                f"INSERT INTO events ({', '.join(event_columns)})"
                f" VALUES ({', '.join('?' * len(event_columns))})"
            )
            copies = Copies(jobs, time.time(), template["created_at"], template["started_at"])
            for start in range(0, jobs, CHUNK):
                rows, event_rows = [], []
                for i in range(start, min(jobs, start + CHUNK)):
                    created, started, completed = copies.times(i, template["completed_at"])
                    job = {
                        **template,
                        "id": copies.job_id(i, created),
                        "created_at": created,
                        "started_at": started,
                        "completed_at": completed,
                        "idempotency_key": None,
                    }
                    rows.append(tuple(job[c] for c in columns))
                    shift = completed - template["completed_at"]
                    for e in events:
                        copied = {**e, "job_id": job["id"], "time": e["time"] + shift}
                        event_rows.append(tuple(copied[c] for c in event_columns))
                db.execute("BEGIN")
                db.executemany(insert_job, rows)
                db.executemany(insert_event, event_rows)
                db.execute("COMMIT")
                check_deadline(deadline, start + len(rows), jobs)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return copies.ids()
        finally:
            db.close()


class RedisBackend:
    """The private redis-server's database 0, flushed on reset."""

    name = "redis"

    def __init__(self, port: int) -> None:
        self.port = port
        self.prefix = DEFAULT_PREFIX

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def reset(self) -> None:
        client = redis_client(self.port)
        try:
            client.flushall()
        finally:
            client.close()

    def count(self) -> int:
        client = redis_client(self.port)
        try:
            with client.pipeline(transaction=False) as pipe:
                for index in ("q", "r", "d"):
                    pipe.zcard(self.key(index, ENDPOINT))
                return sum(int(n) for n in pipe.execute())
        finally:
            client.close()

    def size(self) -> int:
        return redis_used_memory(self.port)

    def fill(self, jobs: int, deadline: float) -> list[str]:
        client = redis_client(self.port)
        try:
            done = self.key("d", ENDPOINT)
            newest = client.zrange(done, -1, -1)
            if not newest:
                raise LoadError("no finished job in the store to copy")
            template = newest[0].decode()
            fields: dict[bytes, bytes] = client.hgetall(self.key("job", template))
            if fields.get(b"status") != b"succeeded":
                raise LoadError(f"the newest finished job is not succeeded: {fields!r:.300}")
            completed_was = float(fields[b"completed_at"])
            started = fields.get(b"started_at")
            copies = Copies(
                jobs,
                time.time(),
                float(fields[b"created_at"]),
                None if started is None else float(started),
            )
            first_seq = int(client.incrby(self.key("seq"), jobs)) - jobs + 1
            client.sadd(self.key("endpoints"), ENDPOINT)
            copy = client.register_script(_COPY)
            for start in range(0, jobs, CHUNK):
                stop = min(jobs, start + CHUNK)
                args: list[Any] = [self.prefix, template, ENDPOINT]
                for i in range(start, stop):
                    created, started_at, completed = copies.times(i, completed_was)
                    job_id = copies.job_id(i, created)
                    args += [
                        job_id,
                        first_seq + i,
                        repr(created),
                        repr(started_at),
                        repr(completed),
                    ]
                copy(args=args)
                check_deadline(deadline, stop, jobs)
            return copies.ids()
        finally:
            client.close()


# Copies of one job, made inside Redis so the fill sends five values per job: the template's
# hash with id, seq and times replaced, its entry in the finished index, its events.
# ARGV: prefix, template id, endpoint, then id, seq, created_at, started_at, completed_at
# for each copy.
_COPY = """
local P, ep = ARGV[1], ARGV[3]
local fields = redis.call('HGETALL', P .. 'job:' .. ARGV[2])
local events = redis.call('LRANGE', P .. 'ev:' .. ARGV[2], 0, -1)
local at = {id = 0, seq = 1, created_at = 2, started_at = 3, completed_at = 4}
for i = 4, #ARGV, 5 do
  local job = {}
  for f = 1, #fields, 2 do
    local o = at[fields[f]]
    job[#job + 1] = fields[f]
    job[#job + 1] = o and ARGV[i + o] or fields[f + 1]
  end
  redis.call('HSET', P .. 'job:' .. ARGV[i], unpack(job))
  redis.call('ZADD', P .. 'd:' .. ep, ARGV[i + 4], ARGV[i])
  if #events > 0 then redis.call('RPUSH', P .. 'ev:' .. ARGV[i], unpack(events)) end
end
return (#ARGV - 3) / 5
"""


@dataclass(frozen=True)
class Run:
    """One measured server: its load result (with CPU), what the store held, what it purged."""

    result: LoadResult
    jobs_at_start: int
    rss: int | None
    purged: int | None


@dataclass
class Fill:
    jobs: int
    seconds: float
    bytes_before: int
    bytes_after: int

    @property
    def bytes_per_job(self) -> float:
        return (self.bytes_after - self.bytes_before) / self.jobs

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0


def finished_total(port: int, timeout: float) -> int:
    """Jobs of the endpoint this server finished, from its /metrics."""
    status, body = http_call(port, "GET", "/metrics", None, timeout)
    if status != 200:
        raise LoadError(f"GET /metrics answered {status}")
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("modelport_jobs_finished_total{") and f'endpoint="{ENDPOINT}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def check_copies(port: int, job_ids: list[str], timeout: float) -> None:
    """The server reads filled jobs as its own: ``GET /jobs/{id}`` answers them succeeded."""
    for job_id in job_ids:
        status, body = http_call(port, "GET", f"/jobs/{job_id}", None, timeout)
        if status != 200 or EXPECT not in body or job_id.encode() not in body:
            raise StartError(
                f"a filled job is not served: GET /jobs/{job_id} {status} {body!r:.300}"
            )


def measure(
    backend: Backend,
    model: str,
    result_ttl: float | None,
    scratch: Path,
    plan: Plan,
    args: argparse.Namespace,
    probe: list[str] | None = None,
) -> Run:
    """Serve ``model`` on the store, load it, stop it; count what the store held and lost.
    The ``probe`` jobs (filled ones) must be served as they were written."""
    before = backend.count()
    port = free_port()
    command = serve_command(port, backend.url, MODELS[model])
    if result_ttl is not None:
        command += ["--result-ttl", repr(result_ttl)]
    timeout = args.startup_timeout
    with tempfile.TemporaryFile(dir=scratch, prefix="server-") as log:
        with Server(f"{backend.name} {model}", command, port, log) as server:
            try:
                server.wait_ready("/health/ready", timeout)
                check_copies(port, probe or [], timeout)
                check_call(port, PATH, BODY, EXPECT, timeout)
            except (StartError, OSError, HTTPException) as e:
                raise StartError(f"{e}\n{log_tail(log)}") from None
            window = CpuWindow(server)
            load: Load = args.load
            try:
                result = load(
                    Target(HOST, port, PATH, BODY, EXPECT),
                    plan,
                    settle=server.settler(ENDPOINT, timeout),
                    started=window.start,
                )
                window.stop()
                server.wait_idle(ENDPOINT, timeout)
                finished = finished_total(port, timeout)
            except (RuntimeError, OSError, subprocess.SubprocessError, HTTPException) as e:
                raise LoadError(f"{e}\n{log_tail(log)}") from None
        after = backend.count()
    return Run(
        result=dataclasses.replace(result, cpu_s=window.used[0]),
        jobs_at_start=before,
        rss=window.rss[0],
        purged=before + finished - after,
    )


Key = tuple[str, str, str]
"""(store, model, phase)"""


def soak_store(
    backend: Backend,
    scratch: Path,
    plan: Plan,
    args: argparse.Namespace,
    runs: dict[Key, list[Run]],
    failed: dict[Key, BenchError],
) -> Fill | None:
    """Every phase on one store: empty runs, the fill, filled runs, purge runs."""

    probe: list[str] = []

    def run(model: str, phase: str, ttl: float | None, reset: bool) -> None:
        key = (backend.name, model, phase)
        for round_ in range(1, args.rounds + 1):
            print(
                f"{backend.name} {model} {phase} (round {round_}/{args.rounds}): running",
                file=sys.stderr,
                flush=True,
            )
            if reset:
                backend.reset()
            try:
                check = probe if phase == "filled" else None
                runs[key].append(measure(backend, model, ttl, scratch, plan, args, check))
            except BenchError as e:
                failed[key] = e
                print(f"{' '.join(key)}: {e.stage}: {e}", file=sys.stderr)

    for model in args.models:
        run(model, "empty", None, reset=True)
    if not any(runs[(backend.name, m, "empty")] for m in args.models):
        return None
    print(f"{backend.name}: writing {args.jobs} finished jobs", file=sys.stderr, flush=True)
    bytes_before, start = backend.size(), time.monotonic()
    try:
        probe = backend.fill(args.jobs, start + args.fill_timeout)
    except (BenchError, OSError, sqlite3.Error) as e:
        for model in args.models:
            failed[(backend.name, model, "filled")] = LoadError(f"fill failed: {e}")
        print(f"{backend.name}: fill failed: {e}", file=sys.stderr)
        return None
    fill = Fill(args.jobs, time.monotonic() - start, bytes_before, backend.size())
    print(f"{backend.name}: filled in {fill.seconds:.1f}s", file=sys.stderr, flush=True)
    for model in args.models:
        run(model, "filled", None, reset=False)
    if args.result_ttl > 0:
        for model in args.models:
            run(model, "purge", args.result_ttl, reset=False)
    return fill


@contextlib.contextmanager
def open_store(store: str, scratch: Path, timeout: float) -> Iterator[Backend]:
    """The store to soak; for redis, a private redis-server, stopped on exit."""
    if store == "sqlite":
        yield SqliteBackend(scratch)
        return
    port = free_port()
    with (
        tempfile.TemporaryFile(dir=scratch, prefix="redis-") as log,
        Process("redis-server", redis_command(port), log) as proc,
    ):
        try:
            wait_redis(port, proc, timeout)
        except (StartError, OSError) as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        yield RedisBackend(port)


def mib(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def summary(runs: dict[Key, list[Run]]) -> dict[Key, Run]:
    """The median run (by req/s) of each case."""
    out = {}
    for key, rs in runs.items():
        if rs:
            middle = median_run([r.result for r in rs])
            out[key] = next(r for r in rs if r.result is middle)
    return out


def cpu_ratio(a: LoadResult, b: LoadResult) -> float | None:
    x, y = a.cpu_us_per_job, b.cpu_us_per_job
    return None if x is None or y is None else ratio(x, y)


def ratios(best: dict[Key, Run]) -> dict[str, dict[str, Any]]:
    """filled / empty (with the target) and purge / filled, per store and model."""
    out: dict[str, dict[str, Any]] = {}
    for (store, model, phase), run in best.items():
        base_phase = {"filled": "empty", "purge": "filled"}.get(phase)
        base = best.get((store, model, base_phase)) if base_phase else None
        if base is None:
            continue
        throughput = ratio(run.result.rps, base.result.rps)
        out[f"{store} {model} {phase} / {base_phase}"] = {
            "throughput": throughput,
            "p99": ratio(run.result.p99_ms, base.result.p99_ms),
            "cpu_us_per_job": cpu_ratio(run.result, base.result),
            "target": TARGET if phase == "filled" else None,
            "met": None if phase != "filled" or throughput is None else throughput >= TARGET,
        }
    return out


def report(
    runs: dict[Key, list[Run]],
    failed: dict[Key, BenchError],
    fills: dict[str, Fill],
    keys: list[Key],
) -> str:
    best = summary(runs)
    columns = (
        ("store", "<8"),
        ("model", "<9"),
        ("phase", "<8"),
        ("jobs in store", ">14"),
        ("req/s", ">8"),
        ("p50 ms", ">8"),
        ("p99 ms", ">8"),
        ("errors", ">7"),
        ("cpu us/job", ">11"),
        ("RSS MiB", ">9"),
        ("purged", ">8"),
    )
    lines = ["".join(f"{name:{spec}}" for name, spec in columns)]
    for key in keys:
        if key in best:
            run = best[key]
            r = run.result
            cells = [
                *key,
                f"{run.jobs_at_start:,}",
                f"{r.rps:.0f}",
                f"{r.p50_ms:.2f}",
                f"{r.p99_ms:.2f}",
                str(r.errors),
                fmt(r.cpu_us_per_job, ".0f"),
                fmt(mib(run.rss), ".1f"),
                fmt(run.purged, "d"),
            ]
            lines.append(
                "".join(f"{c:{spec}}" for c, (_, spec) in zip(cells, columns, strict=True))
            )
        if key in failed:
            lines.append(f"{' '.join(key):<25}{failed[key].stage}")
    rows = ratios(best)
    if rows:
        lines += ["", f"{'ratio':<34}{'throughput':>11}{'p99':>7}{'cpu/job':>9}  target"]
        for label, row in rows.items():
            target = ""
            if row["target"] is not None:
                target = f">={row['target']:g}x {'met' if row['met'] else 'missed'}"
            lines.append(
                f"{label:<34}{fmt(row['throughput']):>11}{fmt(row['p99']):>7}"
                f"{fmt(row['cpu_us_per_job']):>9}  {target}".rstrip()
            )
    if fills:
        lines.append("")
    for store, fill in fills.items():
        measure_ = "db + wal + shm" if store == "sqlite" else "redis used_memory"
        lines.append(
            f"{store}: {fill.jobs:,} finished jobs written in {fill.seconds:.1f}s "
            f"({fill.rate:,.0f}/s); store bytes per job {fill.bytes_per_job:.0f} ({measure_}, "
            f"{mib(fill.bytes_before) or 0:.1f} -> {mib(fill.bytes_after) or 0:.1f} MiB)"
        )
        for model in MODELS:
            empty, filled = best.get((store, model, "empty")), best.get((store, model, "filled"))
            if empty and filled and empty.rss is not None and filled.rss is not None:
                grown = filled.rss - empty.rss
                lines.append(
                    f"{store} {model}: server RSS {mib(empty.rss):.1f} MiB empty, "
                    f"{mib(filled.rss):.1f} MiB filled ({grown / fill.jobs:+.1f} B per stored job)"
                )
    lines.append(
        "cpu us/job: CPU time of the server's processes in the measured window / OK responses; "
        "purged: jobs the server deleted over its life (the reaper's purge of expired results)"
    )
    if any(len(r) > 1 for r in runs.values()):
        lines.append("each row is the median run by req/s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Throughput of the batched and the default echo with millions of finished "
        "jobs in the sqlite and redis stores, against the same store empty; server RSS, store "
        "bytes per job, and whether purging expired results costs the hot path.",
    )
    add_load_arguments(parser, duration=20.0)
    parser.add_argument(
        "--jobs",
        type=int,
        default=2_000_000,
        help="finished jobs written into the store before the filled runs (default: %(default)s)",
    )
    parser.add_argument(
        "--stores",
        metavar="STORE[,STORE]",
        default=",".join(STORES),
        help=f"stores to soak, from: {', '.join(STORES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--models",
        metavar="NAME[,NAME]",
        default=",".join(MODELS),
        help=f"echo models to measure, from: {', '.join(MODELS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--result-ttl",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="the servers' --result-ttl in the purge runs; 0 skips them (default: %(default)s)",
    )
    parser.add_argument(
        "--fill-timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="fail a fill that takes longer than this (default: %(default)s)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a quick check that the benchmark works: unless given, --jobs "
        f"{SMOKE['jobs']}, --duration {SMOKE['duration']:g}, --warmup {SMOKE['warmup']:g}",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 also when the target is missed"
    )
    known, _ = parser.parse_known_args(argv)
    if known.smoke:
        parser.set_defaults(**SMOKE)
    args = parser.parse_args(argv)
    check_load_arguments(parser, args)
    if args.jobs < 1:
        parser.error("--jobs must be positive")
    if args.result_ttl < 0 or args.fill_timeout <= 0:
        parser.error("--result-ttl must not be negative, --fill-timeout must be positive")
    for option, choices in (("stores", STORES), ("models", tuple(MODELS))):
        chosen = [n.strip() for n in getattr(args, option).split(",") if n.strip()]
        unknown = sorted(set(chosen) - set(choices))
        if unknown or not chosen:
            parser.error(f"--{option}: choose from {', '.join(choices)}")
        setattr(args, option, [n for n in choices if n in chosen])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_signals()
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    print(describe(args.generator_name, plan), file=sys.stderr)
    phases = [p for p in PHASES if p != "purge" or args.result_ttl > 0]
    keys = [(s, m, p) for s in args.stores for p in phases for m in args.models]
    runs: dict[Key, list[Run]] = {key: [] for key in keys}
    failed: dict[Key, BenchError] = {}
    fills: dict[str, Fill] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-soak-") as tmp:
        for store in args.stores:
            scratch = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{store}-"))
            try:
                with open_store(store, scratch, args.startup_timeout) as backend:
                    fill = soak_store(backend, scratch, plan, args, runs, failed)
                    if fill is not None:
                        fills[store] = fill
            except StartError as e:
                for key in keys:
                    if key[0] == store:
                        failed[key] = e
                print(f"{store}: {e.stage}: {e}", file=sys.stderr)
    print(report(runs, failed, fills, keys))
    best = summary(runs)
    rows = ratios(best)
    if args.json:
        document: dict[str, Any] = {
            "generator": args.generator_name,
            "plan": asdict(plan),
            "python": sys.version.split()[0],
            "cores": os.cpu_count(),
            "jobs": args.jobs,
            "result_ttl": args.result_ttl,
            "rounds": args.rounds,
            "results": {
                " ".join(key): {
                    **result_json(run.result),
                    "jobs_at_start": run.jobs_at_start,
                    "rss_bytes": run.rss,
                    "purged": run.purged,
                }
                for key, run in best.items()
            },
            "fills": {
                store: {**asdict(f), "bytes_per_job": f.bytes_per_job, "jobs_per_s": f.rate}
                for store, f in fills.items()
            },
            "failed": {" ".join(key): f"{e.stage}: {e}" for key, e in failed.items()},
            "ratios": rows,
            "target": TARGET,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    missed = [label for label, row in rows.items() if row["met"] is False]
    for label in missed:
        print(f"target missed: {label}", file=sys.stderr)
    return 1 if failed or (args.check and missed) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
