"""The predictions table: what ``modelport batch`` writes to SQLite and ``modelport serve
--precomputed`` answers from, one row per distinct validated input, keyed by its hash.

Light on purpose (sqlite3 and orjson only): the batch command, the server and a user's own
script read and write it the same way.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from modelport.errors import ModelportError

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    key TEXT PRIMARY KEY,
    row INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    model_version TEXT NOT NULL,
    input BLOB NOT NULL,
    output BLOB,
    error TEXT,
    created_at REAL NOT NULL
);
"""


def input_key(inputs: dict[str, Any]) -> str:
    """The canonical hash of a validated input: SHA-256 of its JSON with sorted keys."""
    return hashlib.sha256(orjson.dumps(inputs, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Prediction:
    """One row of the table."""

    key: str
    row: int
    endpoint: str
    model_version: str
    input: dict[str, Any]
    output: Any
    error: str | None
    created_at: float


HOT_ROWS = 4096
"""Rows a table keeps in memory once found (the least recently asked for go first)."""


class Table:
    """A predictions table opened read-only, for lookups by input hash."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelportError(f"precomputed table {self.path}: no such file")
        self._db: sqlite3.Connection | None = None
        self._hot: OrderedDict[tuple[str, str], Prediction] = OrderedDict()
        """The latest rows found, newest last: popular inputs are answered without a query."""
        try:
            rows = self.db.execute(
                "SELECT model_version, endpoint, count(*) FROM predictions"
                " WHERE error IS NULL GROUP BY model_version, endpoint"
            ).fetchall()
        except sqlite3.Error as e:
            raise ModelportError(
                f"precomputed table {self.path}: not a modelport batch output ({e})"
            ) from None
        self.versions: dict[str, int] = {}
        """Rows with an output, per model version."""
        self.endpoints: set[str] = set()
        for version, endpoint, n in rows:
            self.versions[str(version)] = self.versions.get(str(version), 0) + int(n)
            self.endpoints.add(str(endpoint))

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = sqlite3.connect(
                f"file:{self.path.resolve()}?mode=ro", uri=True, check_same_thread=False
            )
        return self._db

    def get(self, key: str, model_version: str) -> Prediction | None:
        """The successful prediction of this version for the input with this hash."""
        hot = self._hot.get((key, model_version))
        if hot is not None:
            self._hot.move_to_end((key, model_version))
            return hot
        row = self.db.execute(
            "SELECT key, row, endpoint, model_version, input, output, error, created_at"
            " FROM predictions WHERE key = ? AND model_version = ? AND error IS NULL",
            (key, model_version),
        ).fetchone()
        if row is None:
            return None  # not kept: a batch run may still be adding rows to the file
        found = Prediction(
            row[0], row[1], row[2], row[3], orjson.loads(row[4]), orjson.loads(row[5]), None, row[7]
        )
        self._hot[(key, model_version)] = found
        if len(self._hot) > HOT_ROWS:
            self._hot.popitem(last=False)
        return found

    def close(self) -> None:
        """Close the file (a later lookup opens it again)."""
        if self._db is not None:
            self._db.close()
            self._db = None


class TableWriter:
    """Appends predictions to a table, one transaction per call, so a killed writer leaves
    every row it wrote whole and none half-written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def done(self) -> set[str]:
        """The keys already in the table."""
        return {r[0] for r in self.db.execute("SELECT key FROM predictions")}

    def write(self, rows: Iterable[Prediction]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [
                    (
                        p.key,
                        p.row,
                        p.endpoint,
                        p.model_version,
                        orjson.dumps(p.input),
                        None if p.error is not None else orjson.dumps(p.output),
                        p.error,
                        p.created_at,
                    )
                    for p in rows
                ],
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def prediction(
    row: int,
    endpoint: str,
    model_version: str,
    inputs: dict[str, Any],
    output: Any = None,
    error: str | None = None,
) -> Prediction:
    """A row for ``inputs``, keyed by their hash and stamped with the time now."""
    return Prediction(
        input_key(inputs), row, endpoint, model_version, inputs, output, error, time.time()
    )
