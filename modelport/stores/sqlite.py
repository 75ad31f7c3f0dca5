"""The embedded default store: one SQLite file in WAL mode, durable across restarts.

Statements run on the event loop thread: in WAL mode with ``synchronous=NORMAL`` a commit
writes to the OS page cache without an fsync, so it costs microseconds and a killed
server process loses no committed job. Checkpoints (copying the log into the database file,
with its fsyncs) run on a thread of their own, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from modelport.errors import Overloaded, Unavailable
from modelport.keys import Allowance, spend
from modelport.stores.base import (
    CHANGEABLE,
    LOG_LEVELS,
    LogBounds,
    Update,
    full_queue,
    log_size,
)
from modelport.wire import Event, JobRecord, JobStatus

log = logging.getLogger("modelport.stores")

CHECKPOINT_EVERY = 0.1
"""Seconds between the checkpoint thread's looks at the log."""
CHECKPOINT_ROWS = 1_000
"""Rows changed (triggers' included) after which the thread checkpoints: about SQLite's own
1,000 pages. Not after every write: the commit that starts the log over after a checkpoint
syncs the log's new header (0.4 ms here), so a server with a request now and then would
pay that on each one."""
CHECKPOINT_PAGES = 10_000
"""Log pages after which a commit checkpoints on the event loop after all (SQLite's own
automatic checkpoint; its default is 1,000). Under a steady stream of writes the log never
starts over from a checkpoint another connection makes (the writer restarts the log only
when every page of it was copied, and pages come in while a checkpoint syncs), so this
bounds the log's size; the pages the thread copied are not copied again."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL,
    input BLOB NOT NULL,
    output BLOB,
    error TEXT,
    progress BLOB,
    created_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    worker_id TEXT,
    lease_until REAL,
    idempotency_key TEXT,
    owner TEXT,
    revision INTEGER NOT NULL DEFAULT 1,
    model_version TEXT
);
CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_until) WHERE status = 'running';
CREATE UNIQUE INDEX IF NOT EXISTS jobs_key ON jobs (endpoint, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_done ON jobs (completed_at) WHERE completed_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    id INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB,
    time REAL NOT NULL,
    PRIMARY KEY (job_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS specs (
    name TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    value BLOB NOT NULL,
    expires REAL NOT NULL,
    stored INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_age ON cache (grp, stored);
CREATE INDEX IF NOT EXISTS cache_expires ON cache (expires);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    due REAL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due) WHERE due IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries (job_id);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    tokens REAL NOT NULL,
    at REAL NOT NULL,
    window INTEGER NOT NULL,
    used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS logs (
    endpoint TEXT NOT NULL,
    id INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    time REAL NOT NULL,
    level INTEGER NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (endpoint, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS logs_job ON logs (job_id);
CREATE TABLE IF NOT EXISTS log_totals (
    endpoint TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL,
    n INTEGER NOT NULL,
    bytes INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (endpoint, status)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS jobs_count_insert AFTER INSERT ON jobs
WHEN NEW.status IN ('queued', 'running') BEGIN
    INSERT INTO counts VALUES (NEW.endpoint, NEW.status, 1) ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_leave AFTER UPDATE OF status ON jobs
WHEN OLD.status IN ('queued', 'running') AND NEW.status IS NOT OLD.status BEGIN
    UPDATE counts SET n = n - 1 WHERE endpoint = OLD.endpoint AND status = OLD.status;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_enter AFTER UPDATE OF status ON jobs
WHEN NEW.status IN ('queued', 'running') AND NEW.status IS NOT OLD.status BEGIN
    INSERT INTO counts VALUES (NEW.endpoint, NEW.status, 1) ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs
WHEN OLD.status IN ('queued', 'running') BEGIN
    UPDATE counts SET n = n - 1 WHERE endpoint = OLD.endpoint AND status = OLD.status;
END;
"""
_QUEUE_INDEXES = """
DROP INDEX IF EXISTS jobs_queue;
DROP INDEX IF EXISTS jobs_owner;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (endpoint, seq) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_queued_owner ON jobs (owner)
    WHERE status = 'queued' AND owner IS NOT NULL;
"""
"""The queue's indexes hold queued jobs only (and the owner index only jobs submitted with a
key), so finishing a job touches neither, and a server without keys keeps no owner index.
Files written before them had whole-table indexes by other names, dropped here."""
# Queued and running jobs per endpoint, kept by the triggers above in the same transaction as
# the change, so a depth is one row read instead of a scan of the queue. Recounted at open, for
# files written before the counts existed.
_RECOUNT = """
DELETE FROM counts;
INSERT INTO counts SELECT endpoint, status, count(*) FROM jobs
    WHERE status IN ('queued', 'running') GROUP BY endpoint, status;
"""
_EXACT_POSITION = 4096
"""A position below this is counted from the front of the queue; a later one as the queue's
depth less the jobs behind it (a job just submitted has few behind it)."""

_COLUMNS = (
    "seq, id, endpoint, status, input, output, error, progress, created_at, started_at,"
    " completed_at, attempts, max_attempts, worker_id, lease_until, idempotency_key, owner,"
    " revision, model_version"
)
_JSON = frozenset({"input", "output", "progress"})
_STATUS = {s.value: s for s in JobStatus}


_COPY_BELOW = 1 << 16


def _param(data: bytes) -> bytes | bytearray:
    """Bytes as a statement parameter. The sqlite3 module binds ``str``, ``int``, ``float``
    and ``bytearray`` as they are, and first tries to adapt anything else (``bytes`` and
    ``None`` too), at the cost of a failed attribute lookup that raises and clears an
    exception each time: a few thousand instructions, more than copying a small value."""
    return bytearray(data) if len(data) < _COPY_BELOW else data


def _dump(value: Any) -> bytes | bytearray | None:
    return None if value is None else _param(orjson.dumps(value))


def _stored(column: str, value: Any) -> Any:
    """A changed field's value as its column holds it."""
    if column in _JSON:
        return _dump(value)
    return str(value) if isinstance(value, JobStatus) else value  # str(): its value


def _load(value: bytes | None) -> Any:
    return None if value is None else orjson.loads(value)


def _row(r: tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        seq=r[0],
        id=r[1],
        endpoint=r[2],
        status=_STATUS[r[3]],
        input=orjson.loads(r[4]),
        output=_load(r[5]),
        error=r[6],
        progress=_load(r[7]),
        created_at=r[8],
        started_at=r[9],
        completed_at=r[10],
        attempts=r[11],
        max_attempts=r[12],
        worker_id=r[13],
        lease_until=r[14],
        idempotency_key=r[15],
        owner=r[16],
        revision=r[17],
        model_version=r[18],
    )


def _check_changeable(changes: tuple[str, ...]) -> None:
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")


@functools.lru_cache(maxsize=256)
def _update_sql(
    changes: tuple[str, ...], expected: int, held: bool, attempt: bool, nulls: frozenset[str]
) -> str:
    """The statement of an :class:`Update` of this shape: a compare-and-set on the source
    states (and the holding worker and attempt), returning the changed row. The fields in
    ``nulls`` are set to NULL by the statement itself (see :func:`_param`)."""
    _check_changeable(changes)
    where = f"id = ? AND status IN ({','.join('?' * expected)})"
    if held:
        where += " AND worker_id = ?"
    if attempt:
        where += " AND attempts = ?"
    if not changes:
        return f"SELECT {_COLUMNS} FROM jobs WHERE {where}"
    sets = ", ".join(f"{k} = NULL" if k in nulls else f"{k} = ?" for k in changes)
    return f"UPDATE jobs SET {sets} WHERE {where} RETURNING {_COLUMNS}"


_ALIKE = 256
"""Updates applied by one statement at most (a VALUES list of that many rows)."""


def _one_shape(updates: Sequence[Update]) -> bool:
    """Whether ``updates`` change the same fields of distinct jobs under the same conditions
    (held or not, on an attempt or not): then one statement applies them all."""
    if len(updates) < 2:
        return False
    first = updates[0]
    keys = tuple(first.changes)  # in order: each row lists its values in this order
    held, attempt = first.worker_id is not None, first.attempt is not None
    return (
        bool(keys)
        and len({u.job_id for u in updates}) == len(updates)
        and all(
            tuple(u.changes) == keys
            and u.expect == first.expect
            and (u.worker_id is not None) == held
            and (u.attempt is not None) == attempt
            for u in updates
        )
    )


@functools.lru_cache(maxsize=64)
def _update_alike_sql(
    changes: tuple[str, ...],
    expect: tuple[str, ...],
    held: bool,
    attempt: bool,
    nulls: frozenset[str],
) -> tuple[str, int]:
    """The statement of :meth:`SqliteStore._update_alike`, with ``%ROWS%`` for its VALUES
    rows (one per update: id, [worker], [attempt], then the changed values but those in
    ``nulls``, which every update sets to NULL), and their width."""
    _check_changeable(changes)
    column = itertools.count(2)
    where = f"jobs.id = v.column1 AND jobs.status IN ({','.join(repr(s) for s in expect)})"
    if held:
        where += f" AND jobs.worker_id = v.column{next(column)}"
    if attempt:
        where += f" AND jobs.attempts = v.column{next(column)}"
    sets = ", ".join(
        f"{k} = NULL" if k in nulls else f"{k} = v.column{next(column)}" for k in changes
    )
    returning = ", ".join(f"jobs.{c.strip()}" for c in _COLUMNS.split(","))
    sql = f"UPDATE jobs SET {sets} FROM (VALUES %ROWS%) AS v WHERE {where} RETURNING {returning}"
    return sql, next(column) - 1


@functools.lru_cache(maxsize=256)
def _marks(rows: int, width: int) -> str:
    """``rows`` rows of ``width`` parameter marks, for a VALUES list."""
    return ",".join(["(" + ",".join("?" * width) + ")"] * rows)


def _extend(
    db: sqlite3.Connection,
    worker_id: str,
    job_ids: Sequence[str],
    lease_until: float,
    renew_below: float | None = None,
) -> list[str]:
    """Extend the leases of the jobs ``worker_id`` holds (with ``renew_below``, only those
    that end before it: a lease rewritten is a row and an index entry more in the commit);
    their ids."""
    marks = ",".join("?" * len(job_ids))
    held = f"id IN ({marks}) AND status = 'running' AND worker_id = ?"
    if renew_below is None:
        rows = db.execute(
            f"UPDATE jobs SET lease_until = ? WHERE {held} RETURNING id",
            (lease_until, *job_ids, worker_id),
        ).fetchall()
        return [r[0] for r in rows]
    rows = db.execute(
        f"SELECT id, lease_until FROM jobs WHERE {held}", (*job_ids, worker_id)
    ).fetchall()
    due = [r[0] for r in rows if r[1] is None or r[1] < renew_below]
    if due:
        _extend(db, worker_id, due, lease_until)
    return [r[0] for r in rows]


def _queued(db: sqlite3.Connection, endpoint: str) -> int:
    row = db.execute(
        "SELECT n FROM counts WHERE endpoint = ? AND status = 'queued'", (endpoint,)
    ).fetchone()
    return int(row[0]) if row else 0


_INSERTED = ("id", "endpoint", "status", "input", "created_at", "attempts", "max_attempts")
_INSERTED_IF_SET = (
    "idempotency_key",
    "owner",
    "revision",
    "model_version",
    "worker_id",
    "started_at",
    "lease_until",
)
"""A new job's columns: those always given, and those left out (NULL) when None."""


@functools.cache
def _set_columns(which: tuple[bool, ...]) -> tuple[str, ...]:
    """The columns of :data:`_INSERTED_IF_SET` that ``which`` says a new job gives."""
    return tuple(k for k, given in zip(_INSERTED_IF_SET, which, strict=True) if given)


def _insert_values(job: JobRecord, data: bytes) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """A new job's values for its INSERT, and the columns of :data:`_INSERTED_IF_SET` they
    give (see :func:`_param`)."""
    optional = (
        job.idempotency_key,
        job.owner,
        job.revision,
        job.model_version,
        job.worker_id,
        job.started_at,
        job.lease_until,
    )
    columns = _set_columns(tuple(v is not None for v in optional))
    values = (
        job.id,
        job.endpoint,
        str(job.status),  # its value: cheaper than .value, a property
        _param(data),
        job.created_at,
        job.attempts,
        job.max_attempts,
        *(v for v in optional if v is not None),
    )
    return values, columns


@functools.lru_cache(maxsize=256)
def _insert_sql(columns: tuple[str, ...], rows: int) -> str:
    """The INSERT of ``rows`` new jobs that give the optional ``columns``."""
    names = ", ".join((*_INSERTED, *columns))
    return f"INSERT INTO jobs ({names}) VALUES {_marks(rows, len(_INSERTED) + len(columns))}"


def _insert_all(
    db: sqlite3.Connection, rows: Sequence[tuple[JobRecord, bytes, int | None]]
) -> list[JobRecord | Overloaded]:
    """Insert jobs in order, in the open transaction: each with an idempotency key or a
    queue limit to check on its own, the rest in runs of one statement each (a statement per
    job costs about a third more)."""
    out: list[JobRecord | Overloaded] = []
    run: list[JobRecord] = []
    values: list[Any] = []
    shape: tuple[str, ...] = ()

    def insert_run() -> None:
        sql = f"{_insert_sql(shape, len(run))} RETURNING id, seq"
        seqs = dict(db.execute(sql, values).fetchall())
        for job in run:
            job.seq = seqs[job.id]
        out.extend(run)
        run.clear()
        values.clear()

    for job, data, limit in rows:
        if job.idempotency_key is not None or limit is not None:
            if run:
                insert_run()
            out.append(_insert_one(db, job, data, limit))
            continue
        given, columns = _insert_values(job, data)
        if run and (columns != shape or len(run) == _ALIKE):
            insert_run()
        shape = columns
        run.append(job)
        values.extend(given)
    if run:
        insert_run()
    return out


def _insert_one(
    db: sqlite3.Connection, job: JobRecord, data: bytes, limit: int | None
) -> JobRecord | Overloaded:
    """Insert one job, unless its idempotency key has a job already (that job, then) or the
    queue is at ``limit``."""
    if job.idempotency_key is not None:
        row = db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE endpoint = ? AND idempotency_key = ?",
            (job.endpoint, job.idempotency_key),
        ).fetchone()
        if row is not None:
            return _row(row)
    if limit is not None:
        depth = _queued(db, job.endpoint)
        if depth >= limit:
            return Overloaded(full_queue(job.endpoint, depth, limit))
    values, columns = _insert_values(job, data)
    cur = db.execute(_insert_sql(columns, 1), values)
    assert cur.lastrowid is not None
    job.seq = cur.lastrowid
    return job


class SqliteStore:
    """Jobs in one SQLite file (``sqlite:///path/to/file.db``)."""

    shared = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[JobRecord, int | None, asyncio.Future[JobRecord]]] = []
        self._checkpoints: _Checkpoints | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise Unavailable("the sqlite store is not open")
        return self._db

    async def open(self) -> None:
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Statements of a batch's size (an insert, a batch's results) differ by their row
            # count: room for those of every size up to a batch of 64 of each, and the rest.
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=512
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(jobs)")}
            if "owner" not in columns:  # a file from before jobs had owners
                db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")
            if "revision" not in columns:  # a file from before endpoints had revisions
                db.execute("ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 1")
            if "model_version" not in columns:
                db.execute("ALTER TABLE jobs ADD COLUMN model_version TEXT")
            db.executescript(_QUEUE_INDEXES)
            db.executescript(f"BEGIN IMMEDIATE; {_RECOUNT} COMMIT;")
            db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            self._db = db
        self._checkpoints = _Checkpoints(self.path, lambda: db.total_changes)
        self._checkpoints.start()

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.stop()
            self._checkpoints = None
        if self._db is not None:
            self._db.close()
            self._db = None

    async def ping(self) -> None:
        with self._errors():
            self.db.execute("SELECT 1").fetchone()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise Unavailable(f"sqlite store {self.path}: {e}") from e

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        with self._errors():
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    async def insert(self, job: JobRecord, limit: int | None = None) -> JobRecord:
        # Group commit: inserts that arrive in the same event-loop turn share one transaction.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[JobRecord] = loop.create_future()
        self._pending.append((job, limit, done))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_inserts)
        return await done

    def _flush_inserts(self) -> None:
        pending, self._pending = self._pending, []
        rows: list[tuple[JobRecord, bytes, int | None, asyncio.Future[JobRecord]]] = []
        for job, limit, done in pending:
            try:
                rows.append((job, orjson.dumps(job.input), limit, done))
            except TypeError as e:  # one unstorable input must not fail its neighbours
                done.set_exception(ValueError(f"input cannot be stored as JSON: {e}"))
        try:
            with self._transaction() as db:
                stored = _insert_all(db, [(job, data, limit) for job, data, limit, _ in rows])
        except Exception as e:
            for _, _, _, done in rows:
                if not done.done():
                    done.set_exception(e)
            return
        for (_, _, _, done), outcome in zip(rows, stored, strict=True):
            if done.done():
                continue
            if isinstance(outcome, Overloaded):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

    async def get(self, job_id: str) -> JobRecord | None:
        with self._errors():
            row = self.db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _row(row)

    async def lease(
        self,
        endpoint: str,
        worker_id: str,
        limit: int,
        now: float,
        lease_until: float,
        revision: int | None = None,
    ) -> list[JobRecord]:
        which = "" if revision is None else " AND revision = ?"
        args = (endpoint,) if revision is None else (endpoint, revision)
        with self._errors():
            db = self.db
            # A long poll asks again at each wakeup: reading the count kept by the triggers
            # answers "nothing queued" without taking the write lock or writing the log.
            if _queued(db, endpoint) == 0:
                return []
            # One statement: its own transaction, committed once its rows are all read.
            rows = db.execute(
                "UPDATE jobs SET status = 'running', worker_id = ?, attempts = attempts + 1,"
                " started_at = ?, lease_until = ? WHERE seq IN (SELECT seq FROM jobs"
                f" WHERE endpoint = ? AND status = 'queued'{which} ORDER BY seq LIMIT ?)"
                f" RETURNING {_COLUMNS}",
                (worker_id, now, lease_until, *args, limit),
            ).fetchall()
        rows.sort()  # by seq, each row's first and unique value
        return [_row(r) for r in rows]

    async def extend(self, worker_id: str, job_ids: Sequence[str], lease_until: float) -> list[str]:
        if not job_ids:
            return []
        with self._transaction() as db:
            return _extend(db, worker_id, job_ids, lease_until)

    async def update(self, updates: Sequence[Update]) -> list[JobRecord | None]:
        if len(updates) == 1:  # one statement: its own transaction
            with self._errors():
                return [self._update_one(self.db, updates[0])]
        with self._transaction() as db:
            if not _one_shape(updates):
                return [self._update_one(db, u) for u in updates]
            out: list[JobRecord | None] = []
            for start in range(0, len(updates), _ALIKE):
                out += self._update_alike(db, updates[start : start + _ALIKE])
            return out

    @staticmethod
    def _update_alike(db: sqlite3.Connection, updates: Sequence[Update]) -> list[JobRecord | None]:
        """Updates of one shape (a batch's results) as one statement: each row of a VALUES
        list finds its job by id, as the lone statement would."""
        first = updates[0]
        keys = tuple(first.changes)
        held, attempt = first.worker_id is not None, first.attempt is not None
        nulls = frozenset(k for k in keys if all(u.changes[k] is None for u in updates))
        values: list[Any] = []
        for u in updates:
            values.append(u.job_id)
            if held:
                values.append(u.worker_id)
            if attempt:
                values.append(u.attempt)
            values.extend(_stored(k, v) for k, v in u.changes.items() if k not in nulls)
        expect = tuple(s.value for s in first.expect)
        sql, width = _update_alike_sql(keys, expect, held, attempt, nulls)
        rows = db.execute(sql.replace("%ROWS%", _marks(len(updates), width)), values).fetchall()
        found = {r[1]: _row(r) for r in rows}
        return [found.get(u.job_id) for u in updates]

    @staticmethod
    def _update_one(db: sqlite3.Connection, u: Update) -> JobRecord | None:
        nulls = frozenset(k for k, v in u.changes.items() if v is None)
        values: list[Any] = [_stored(k, v) for k, v in u.changes.items() if v is not None]
        values.append(u.job_id)
        values.extend(s.value for s in u.expect)
        if u.worker_id is not None:
            values.append(u.worker_id)
        if u.attempt is not None:
            values.append(u.attempt)
        held, attempt = u.worker_id is not None, u.attempt is not None
        sql = _update_sql(tuple(u.changes), len(u.expect), held, attempt, nulls)
        # fetchall, not fetchone: the statement runs to its end, so a lone one commits here
        rows = db.execute(sql, values).fetchall()
        return _row(rows[0]) if rows else None

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        with self._errors():
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running' AND lease_until < ?"
                " ORDER BY lease_until LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    async def running(self, worker_id: str | None = None) -> list[JobRecord]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE status = 'running'"
        args: tuple[Any, ...] = ()
        if worker_id is not None:
            sql += " AND worker_id = ?"
            args = (worker_id,)
        with self._errors():
            rows = self.db.execute(sql, args).fetchall()
        return [_row(r) for r in rows]

    async def position(self, job: JobRecord) -> int:
        queued = "FROM jobs WHERE endpoint = ? AND status = 'queued'"
        key = (job.endpoint, job.seq)
        with self._errors():
            db = self.db
            (ahead,) = db.execute(
                f"SELECT count(*) FROM (SELECT 1 {queued} AND seq < ? LIMIT {_EXACT_POSITION})",
                key,
            ).fetchone()
            if ahead < _EXACT_POSITION:
                return int(ahead)
            db.execute("BEGIN")  # one snapshot for the depth and the jobs behind
            try:
                (behind,) = db.execute(f"SELECT count(*) {queued} AND seq >= ?", key).fetchone()
                depth = _queued(db, job.endpoint)
            finally:
                db.execute("COMMIT")
        return max(depth - int(behind), _EXACT_POSITION)

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        with self._errors():
            rows = self.db.execute("SELECT endpoint, status, n FROM counts WHERE n > 0").fetchall()
        depths: dict[str, dict[str, int]] = {}
        for endpoint, status, n in rows:
            depths.setdefault(endpoint, {"queued": 0, "running": 0})[status] = n
        return depths

    async def queued_job_bytes(self) -> dict[str, float]:
        with self._errors():
            rows = self.db.execute(
                "SELECT endpoint, AVG(length(input)) FROM jobs WHERE status = 'queued'"
                " GROUP BY endpoint"
            ).fetchall()
        return {endpoint: float(size) for endpoint, size in rows}

    async def add_events(
        self,
        events: Sequence[Event],
        *,
        holder: str | None = None,
        lease_until: float = 0.0,
        renew_below: float | None = None,
    ) -> list[Event]:
        stored: list[Event] = []
        if not events:
            return stored
        with self._transaction() as db:
            if holder is not None:  # the lease extended in the same commit, where due
                ids = list(dict.fromkeys(e.job_id for e in events))
                held = set(_extend(db, holder, ids, lease_until, renew_below))
                events = [e for e in events if e.job_id in held]
            last: dict[str, int] = {}
            for event in events:
                if event.job_id not in last:
                    (n,) = db.execute(
                        "SELECT coalesce(max(id), 0) FROM events WHERE job_id = ?", (event.job_id,)
                    ).fetchone()
                    last[event.job_id] = n
                last[event.job_id] += 1
                copied = dataclasses.replace(event, id=last[event.job_id])
                db.execute(
                    "INSERT INTO events (job_id, id, type, data, time) VALUES (?, ?, ?, ?, ?)",
                    (copied.job_id, copied.id, copied.type, _dump(copied.data), copied.time),
                )
                stored.append(copied)
        return stored

    async def events(self, job_id: str, after: int = 0, limit: int = 10_000) -> list[Event]:
        with self._errors():
            rows = self.db.execute(
                "SELECT id, type, data, time FROM events WHERE job_id = ? AND id > ?"
                " ORDER BY id LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        return [Event(job_id, r[1], _load(r[2]), r[0], r[3]) for r in rows]

    async def purge(self, completed_before: float, limit: int, endpoint: str | None = None) -> int:
        with self._transaction() as db:
            rows = db.execute(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE completed_at < ?"
                " AND status IN ('succeeded', 'failed', 'cancelled', 'expired')"
                " AND (? IS NULL OR endpoint = ?) LIMIT ?) RETURNING id",
                (completed_before, endpoint, endpoint, limit),
            ).fetchall()
            db.executemany("DELETE FROM events WHERE job_id = ?", rows)
            db.executemany("DELETE FROM blobs WHERE job_id = ?", rows)
        return len(rows)

    async def put_blob(
        self, job_id: str, name: str, mime: str, data: bytes, ttl: float | None
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO blobs (job_id, name, mime, data) VALUES (?, ?, ?, ?)",
                (job_id, name, mime, data),
            )

    async def get_blob(self, job_id: str, name: str) -> tuple[str, bytes] | None:
        with self._errors():
            row = self.db.execute(
                "SELECT mime, data FROM blobs WHERE job_id = ? AND name = ?", (job_id, name)
            ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))

    async def oldest_queued(self, endpoint: str, limit: int) -> list[JobRecord]:
        with self._errors():
            rows = self.db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE endpoint = ? AND status = 'queued'"
                " ORDER BY seq LIMIT ?",
                (endpoint, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    async def put_worker(self, worker: dict[str, Any], ttl: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO workers (id, data, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires = excluded.expires",
                (worker["id"], orjson.dumps(worker), time.time() + ttl),
            )

    async def get_worker(self, worker_id: str) -> dict[str, Any] | None:
        with self._errors():
            row = self.db.execute(
                "SELECT data FROM workers WHERE id = ? AND expires >= ?", (worker_id, time.time())
            ).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def list_workers(self) -> list[dict[str, Any]]:
        with self._errors():
            rows = self.db.execute(
                "SELECT data FROM workers WHERE expires >= ? ORDER BY id", (time.time(),)
            ).fetchall()
        return [dict(orjson.loads(r[0])) for r in rows]

    async def delete_worker(self, worker_id: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    async def put_spec(self, spec: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        conflict = "UPDATE SET data = excluded.data" if replace else "NOTHING"
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO specs (name, data) VALUES (?, ?) ON CONFLICT (name) DO {conflict}",
                (spec["name"], orjson.dumps(spec)),
            )
            (data,) = db.execute(
                "SELECT data FROM specs WHERE name = ?", (spec["name"],)
            ).fetchone()
        return dict(orjson.loads(data))

    async def specs(self) -> list[dict[str, Any]]:
        with self._errors():
            rows = self.db.execute("SELECT data FROM specs ORDER BY name").fetchall()
        return [dict(orjson.loads(r[0])) for r in rows]

    async def cache_get(self, key: str) -> Any | None:
        with self._errors():
            row = self.db.execute(
                "SELECT value FROM cache WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
        return None if row is None else orjson.loads(row[0])

    async def cache_add(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> Any | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT value FROM cache WHERE key = ? AND expires > ?", (key, time.time())
            ).fetchone()
            if row is not None:
                return orjson.loads(row[0])
            self._cache_store(db, key, value, ttl, group, max_entries)
        return None

    async def cache_put(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> None:
        with self._transaction() as db:
            self._cache_store(db, key, value, ttl, group, max_entries)

    @staticmethod
    def _cache_store(
        db: sqlite3.Connection,
        key: str,
        value: Any,
        ttl: float,
        group: str,
        max_entries: int | None,
    ) -> None:
        now = time.time()
        (stored,) = db.execute(
            "SELECT coalesce(max(stored), 0) + 1 FROM cache WHERE grp = ?", (group,)
        ).fetchone()
        db.execute(
            "INSERT INTO cache (key, grp, value, expires, stored) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET grp = excluded.grp, value = excluded.value,"
            " expires = excluded.expires, stored = excluded.stored",
            (key, group, orjson.dumps(value), now + ttl, stored),
        )
        # A few expired entries go with each put, so the table keeps only live ones.
        db.execute(
            "DELETE FROM cache WHERE key IN"
            " (SELECT key FROM cache WHERE expires <= ? ORDER BY expires LIMIT 16)",
            (now,),
        )
        if max_entries is None:
            return
        (count,) = db.execute("SELECT count(*) FROM cache WHERE grp = ?", (group,)).fetchone()
        if count > max_entries:
            db.execute(
                "DELETE FROM cache WHERE key IN"
                " (SELECT key FROM cache WHERE grp = ? ORDER BY stored LIMIT ?)",
                (group, count - max_entries),
            )

    async def cache_delete(self, key: str, group: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM cache WHERE key = ? AND grp = ?", (key, group))

    async def put_delivery(self, delivery: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO deliveries (id, job_id, due, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET due = excluded.due, data = excluded.data",
                (delivery["id"], delivery["job_id"], delivery["due"], orjson.dumps(delivery)),
            )

    async def claim_deliveries(
        self, now: float, limit: int, hold_until: float
    ) -> list[dict[str, Any]]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT data FROM deliveries WHERE due IS NOT NULL AND due <= ?"
                " ORDER BY due LIMIT ?",
                (now, limit),
            ).fetchall()
            claimed = []
            for (raw,) in rows:
                d = dict(orjson.loads(raw))
                d["due"] = hold_until
                db.execute(
                    "UPDATE deliveries SET due = ?, data = ? WHERE id = ?",
                    (hold_until, orjson.dumps(d), d["id"]),
                )
                claimed.append(d)
        return claimed

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        with self._errors():
            rows = self.db.execute(
                "SELECT data FROM deliveries WHERE job_id = ? ORDER BY seq", (job_id,)
            ).fetchall()
        return [dict(orjson.loads(r[0])) for r in rows]

    async def publish(self, topic: str) -> None:
        pass

    def subscribe(self, callback: Callable[[str], None]) -> None:
        pass

    async def put_key(self, key: dict[str, Any]) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO api_keys (id, hash, created_at, data) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, data = excluded.data",
                (key["id"], key["hash"], key["created_at"], orjson.dumps(key)),
            )

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        with self._errors():
            row = self.db.execute("SELECT data FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def find_key(self, key_hash: str) -> dict[str, Any] | None:
        with self._errors():
            row = self.db.execute(
                "SELECT data FROM api_keys WHERE hash = ?", (key_hash,)
            ).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def list_keys(self) -> list[dict[str, Any]]:
        with self._errors():
            rows = self.db.execute("SELECT data FROM api_keys ORDER BY created_at, id").fetchall()
        return [dict(orjson.loads(r[0])) for r in rows]

    async def delete_key(self, key_id: str) -> bool:
        with self._transaction() as db:
            gone = db.execute(
                "DELETE FROM api_keys WHERE id = ? RETURNING id", (key_id,)
            ).fetchall()
            db.execute("DELETE FROM buckets WHERE name = ?", (key_id,))
        return len(gone) > 0

    async def touch_key(self, key_id: str, at: float) -> None:
        with self._transaction() as db:
            row = db.execute("SELECT data FROM api_keys WHERE id = ?", (key_id,)).fetchone()
            if row is not None:
                key = orjson.loads(row[0])
                key["last_used"] = at
                db.execute("UPDATE api_keys SET data = ? WHERE id = ?", (orjson.dumps(key), key_id))

    async def spend(
        self,
        bucket: str,
        now: float,
        rate: float | None,
        burst: int,
        quota: int | None,
        window: int,
        window_end: float,
    ) -> Allowance:
        with self._transaction() as db:
            row = db.execute(
                "SELECT tokens, at, window, used FROM buckets WHERE name = ?", (bucket,)
            ).fetchone()
            state = (
                None if row is None else (float(row[0]), float(row[1]), int(row[2]), int(row[3]))
            )
            allowance, new = spend(state, now, rate, burst, quota, window, window_end)
            db.execute(
                "INSERT INTO buckets (name, tokens, at, window, used) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, at = excluded.at,"
                " window = excluded.window, used = excluded.used",
                (bucket, *new),
            )
        return allowance

    async def queued_by(self, owner: str) -> int:
        with self._errors():
            (n,) = self.db.execute(
                "SELECT count(*) FROM jobs WHERE owner = ? AND status = 'queued'", (owner,)
            ).fetchone()
        return int(n)

    async def add_logs(
        self, endpoint: str, entries: Sequence[dict[str, Any]], bounds: LogBounds, now: float
    ) -> None:
        if not entries:
            return
        with self._transaction() as db:
            row = db.execute(
                "SELECT last_id, n, bytes FROM log_totals WHERE endpoint = ?", (endpoint,)
            ).fetchone()
            last, n, size = row if row is not None else (0, 0, 0)
            rows = []
            for entry in entries:
                last += 1
                rows.append(
                    (
                        endpoint,
                        last,
                        entry["job_id"],
                        entry["time"],
                        LOG_LEVELS.get(entry["level"], 0),
                        log_size(entry),
                        orjson.dumps(entry),
                    )
                )
                n, size = n + 1, size + log_size(entry)
            db.executemany("INSERT INTO logs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            cutoff = None
            oldest = now - bounds.max_age
            first = db.execute(
                "SELECT time FROM logs WHERE endpoint = ? ORDER BY id LIMIT 1", (endpoint,)
            ).fetchone()
            if n > bounds.max_entries or size > bounds.max_bytes or first[0] < oldest:
                for log_id, at, bytes_ in db.execute(
                    "SELECT id, time, size FROM logs WHERE endpoint = ? ORDER BY id", (endpoint,)
                ):
                    if n <= bounds.max_entries and size <= bounds.max_bytes and at >= oldest:
                        break
                    cutoff, n, size = log_id, n - 1, size - bytes_
            if cutoff is not None:
                db.execute("DELETE FROM logs WHERE endpoint = ? AND id <= ?", (endpoint, cutoff))
            db.execute(
                "INSERT INTO log_totals VALUES (?, ?, ?, ?) ON CONFLICT (endpoint) DO UPDATE"
                " SET last_id = excluded.last_id, n = excluded.n, bytes = excluded.bytes",
                (endpoint, last, n, size),
            )

    async def logs(
        self,
        endpoint: str,
        *,
        since: float | None = None,
        job_id: str | None = None,
        level: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where, args = "endpoint = ? AND level >= ?", [endpoint, level]
        if since is not None:
            where, args = where + " AND time >= ?", [*args, since]
        if job_id is not None:
            where, args = where + " AND job_id = ?", [*args, job_id]
        with self._errors():
            rows = self.db.execute(
                f"SELECT id, data FROM logs WHERE {where} ORDER BY id DESC LIMIT ?",
                (*args, limit),
            ).fetchall()
        return [{**orjson.loads(data), "id": log_id} for log_id, data in reversed(rows)]

    async def delete_logs(self, endpoint: str) -> int:
        with self._transaction() as db:
            (n,) = db.execute(
                "SELECT count(*) FROM logs WHERE endpoint = ?", (endpoint,)
            ).fetchone()
            db.execute("DELETE FROM logs WHERE endpoint = ?", (endpoint,))
            db.execute("UPDATE log_totals SET n = 0, bytes = 0 WHERE endpoint = ?", (endpoint,))
        return int(n)


class _Checkpoints(threading.Thread):
    """Checkpoints the log from a connection of its own, off the event loop: SQLite's
    automatic checkpoint runs inside the commit that fills the log, so every thousandth page
    a request waited for a copy of the log and two fsyncs (milliseconds on a virtual disk)."""

    def __init__(self, path: Path, changes: Callable[[], int]) -> None:
        super().__init__(name="sqlite-checkpoints", daemon=True)
        self.path = path
        self.changes = changes
        """Rows the store's connection has changed so far."""
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            log.warning("sqlite store %s: no checkpoint thread: %s", self.path, e)
            return
        done = self.changes()
        try:
            while not self._stopped.wait(CHECKPOINT_EVERY):
                changed = self.changes()
                if changed - done >= CHECKPOINT_ROWS:
                    done = changed
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:
            log.warning("sqlite store %s: checkpoints stopped: %s", self.path, e)
        finally:
            db.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join()
