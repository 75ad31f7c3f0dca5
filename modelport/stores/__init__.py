"""Job stores, chosen by URL: ``memory://``, ``sqlite:///path/to/jobs.db``,
``redis://host:6379/0?prefix=modelport:`` (also ``rediss://``, ``unix://``,
``redis+sentinel://s1:26379,s2:26379/mymaster/0`` and ``redis+cluster://n1:7000,n2:7001``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode, urlsplit

from modelport.errors import SpecError
from modelport.stores.base import JobStore, Update

__all__ = ["JobStore", "Update", "store_from_url", "store_options"]

_REDIS = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
_FLAGS = {"password_file": "--store-password-file", "max_bytes": "--max-store-bytes"}


def store_options(url: str, **options: str | int | None) -> str:
    """The store URL with the options the command line gave (``None``: not given) added
    to its query; they name files and bounds, never a secret itself."""
    given = {name: value for name, value in options.items() if value is not None}
    if not given:
        return url
    if urlsplit(url).scheme not in _REDIS:
        flags = " and ".join(_FLAGS.get(name, name) for name in given)
        raise SpecError(f"{flags}: only for a redis store (--store redis://...)")
    return url + ("&" if "?" in url else "?") + urlencode(given)


def store_from_url(url: str) -> JobStore:
    """The store a URL names; ``sqlite:///jobs.db`` is relative, ``sqlite:////abs.db`` absolute."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from modelport.stores.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from modelport.stores.sqlite import SqliteStore

        path = url.removeprefix("sqlite://").removeprefix("/")
        if not path:
            raise SpecError(f"store URL {url!r}: give a file, e.g. sqlite:///modelport.db")
        return SqliteStore(Path(path))
    if scheme in _REDIS:
        from modelport.stores.redis import RedisStore

        return RedisStore(url)
    raise SpecError(
        f"store URL {url!r}: unknown scheme"
        " (use memory://, sqlite:///file.db, redis://host:6379/0,"
        " redis+sentinel://host:26379,.../primary/0 or redis+cluster://host:7000,...)"
    )
