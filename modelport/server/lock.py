"""One serving process per SQLite file: ``modelport serve`` holds a lock on ``FILE.lock``.

Two servers on one file would each run the other's jobs and each count only its own workers.
The lock is an ``flock`` on a file beside the database, so the kernel releases it when its
process dies however it dies (``kill -9`` included): a stale lock file never blocks a restart.
The file says who holds it, for the message the next server shows. In-process stores
(tests, the Python API) take no lock: it belongs to a serving process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from modelport.errors import ModelportError
from modelport.stores import store_from_url
from modelport.stores.sqlite import SqliteStore


class StoreInUse(ModelportError):
    """Another serving process holds the store's lock."""


class ServeLock:
    """An exclusive, non-blocking lock on ``path``, released by :meth:`release` or on exit."""

    def __init__(self, path: Path, database: Path) -> None:
        self.path = path
        self.database = database
        self._fd: int | None = None

    def acquire(self, **about: Any) -> ServeLock:
        """Take the lock and record this process in the file (with ``about``), or raise
        :class:`StoreInUse` naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreInUse(self._in_use()) from None
        except BaseException:
            os.close(fd)
            raise
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            **about,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, orjson.dumps(holder) + b"\n", 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # Emptied, not deleted: a process waiting on the old inode would lock a file no
            # one else sees.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def _in_use(self) -> str:
        holder = _holder(self.path)
        if holder is None:
            who = "another process"
        else:
            who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
            if holder.get("url"):
                who += f", serving {holder['url']}"
            if holder.get("since"):
                who += f", since {holder['since']}"
        return (
            f"the store {self.database} is in use by another modelport serve ({who}); "
            "stop that server first, or give this one its own file "
            "(--store sqlite:///other.db); servers that share jobs need a redis:// store"
        )

    def __enter__(self) -> ServeLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def _holder(path: Path) -> dict[str, Any] | None:
    # The holder writes its line just after it takes the lock: a reader may see it empty.
    for _ in range(20):
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            text = path.read_bytes()
            if text.strip():
                found = orjson.loads(text)
                return found if isinstance(found, dict) else None
        time.sleep(0.01)
    return None


def lock_store(store: str, **about: Any) -> ServeLock | None:
    """Lock the SQLite file the store URL ``store`` names for this serving process
    (``None`` for other stores: private to the process, or made to be shared)."""
    if urlsplit(store).scheme != "sqlite":
        return None
    sqlite = store_from_url(store)
    assert isinstance(sqlite, SqliteStore)
    database = sqlite.path.resolve()
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = ServeLock(database.with_name(database.name + ".lock"), database)
    return lock.acquire(**about)
