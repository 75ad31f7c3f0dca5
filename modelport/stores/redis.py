"""The shared store: Redis, for several API servers (processes or hosts) on one queue.

``redis://host:6379/0?prefix=modelport:`` (also ``rediss://`` and ``unix://``), a
Sentinel-watched primary ``redis+sentinel://s1:26379,s2:26379/mymaster/0`` (the store
follows a failover) or a Cluster ``redis+cluster://n1:7000,n2:7001``. Every key starts
with the prefix, so several deployments can share one Redis.

On a cluster a deployment spreads over the primaries by endpoint: the deployment's own
keys (API keys, rate buckets, workers, specs, cache, webhooks, the index of endpoints,
the announcements channel) carry the hash tag ``{P}`` (``{modelport:}``), and each
endpoint's keys (queue, jobs, leases, events, logs, idempotency keys) the tag ``{P/S}`` of
its shard ``S`` (:func:`modelport.wire.endpoint_shard`, 3 hex digits: endpoints whose
names hash alike share a slot). A job id ends with its endpoint's shard
(:func:`modelport.wire.new_job_id`), so the store finds a job's keys from its id alone,
with no lookup. Every script works in one slot: a job's changes in its endpoint's, the
rate buckets, cache and webhook claims in the deployment's. A prefix that holds its own
hash tag (``?prefix={app}:``) keeps the whole deployment in that one slot, as on one Redis.
Options in the URL's query (see :func:`parse_url`): ``password_file`` (else
``$MODELPORT_STORE_PASSWORD``), ``sentinel_password_file``, ``wait_replicas`` and
``wait_timeout`` (a submit is acknowledged once that many replicas hold it: ``WAIT``),
``max_bytes`` (new jobs refused while Redis uses more memory), and redis-py's own.

Layout, with ``P`` the prefix and ``E`` an endpoint name; the keys of a job or an endpoint
(``job``, ``q``, ``r``, ``d``, ``key``, ``ev``, ``blob``, ``oq``, ``seq``, ``log``) begin,
on a spread cluster, with ``{P/S}`` instead (``S`` its endpoint's shard), so ``seq``
numbers each shard's queues and ``oq`` counts an owner's queued jobs per shard:

- ``Pjob:<id>``     hash: the job's fields (a missing field is ``None``; JSON ones encoded)
- ``Pq:E``          sorted set: the queued jobs of ``E``, scored by ``seq`` (FIFO)
- ``Pr:E``          sorted set: the running jobs of ``E``, scored by ``lease_until``
- ``Pd:E``          sorted set: the final jobs of ``E``, scored by ``completed_at``
- ``Pkey:E:<key>``  the job id an idempotency key was first given to
- ``Pev:<id>``      list: a job's events; an event's id is its position (1, 2, ...)
- ``Pc:<key>``     a cached value (expiring); ``Pcg:E`` sorted set: its keys by time stored
- ``Pdl:<id>``     a webhook delivery (JSON); ``Pdl-due`` sorted set of due ones by due
  time; ``Pdl-job:<job id>`` sorted set: a job's deliveries by time first recorded
- ``Poq:<owner>``   set: the queued jobs of one API key
- ``Pkeys``, ``Pkeyhash``, ``Pkeyused``  hashes: API keys by id, key ids by hash, last uses
- ``Pb:<bucket>``   hash: a rate-limit bucket (tokens, last refill, quota window and count)
- ``Plog:E``        list: the endpoint's log lines, ``id\ttime\tsize\tjson``, oldest first;
  ``Plogn:E`` hash: its last id and the bytes it holds
- ``Pseq``, ``Pendpoints``, ``Pworkers`` + ``Pw:<id>``, channel ``Pchanges``

Every change to a job is one Lua script, so it is atomic, and it moves the job between the
three sorted sets as its status changes; the sets are therefore exact indexes, and the
queue, the lease expiry scan and the purge never read a job they do not need. No script
spans endpoints: extending a worker's leases and purging run a script per slot, and the
expiry scan reads each endpoint's running set and then ends each expired job by its own
compare-and-set script, so a job keeps exactly one outcome however its slots fail. Changes are
announced on the ``Pchanges`` channel (pub/sub; sharded pub/sub on a cluster), so waiters
on other servers wake at once.
How durable the queue is across a Redis restart is the Redis server's own setting
(``appendonly yes`` keeps every accepted job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import NoScriptError, RedisError, ResponseError

from modelport.errors import Overloaded, SpecError, Unavailable
from modelport.keys import DAY, Allowance
from modelport.stores.base import (
    CHANGEABLE,
    LogBounds,
    Update,
    full_queue,
    log_matches,
    log_size,
)
from modelport.wire import Event, JobRecord, JobStatus, endpoint_shard, job_shard

log = logging.getLogger("modelport.stores.redis")

DEFAULT_PREFIX = "modelport:"
_MESSAGES = frozenset({"message", "smessage"})
PASSWORD_ENV = "MODELPORT_STORE_PASSWORD"
SENTINEL_PASSWORD_ENV = "MODELPORT_SENTINEL_PASSWORD"
_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 5, "socket_timeout": 10}
CLOSE_GRACE = 1.0
"""Seconds :meth:`RedisStore.close` waits for the commands in flight to end before it
cancels their tasks."""
_MAX_INDEX = 2**63 - 1
_REINDEX = 5.0
"""Seconds a process goes without writing an endpoint it submits to into ``Pendpoints``."""
_JSON = frozenset({"input", "output", "progress"})
_FLOAT = frozenset({"created_at", "started_at", "completed_at", "lease_until"})
_INT = frozenset({"seq", "attempts", "max_attempts", "revision"})
_FIELDS = (
    "id",
    "endpoint",
    "status",
    "seq",
    "input",
    "output",
    "error",
    "progress",
    "created_at",
    "started_at",
    "completed_at",
    "attempts",
    "max_attempts",
    "worker_id",
    "lease_until",
    "idempotency_key",
    "owner",
    "revision",
    "model_version",
)

# The helpers every script shares: keep a job's index entries true to its status.
_INDEX = """
local P = ARGV[1]
local FINAL = {succeeded = true, failed = true, cancelled = true, expired = true}
local function unqueue_owned(id)
  local owner = redis.call('HGET', P .. 'job:' .. id, 'owner')
  if owner then redis.call('SREM', P .. 'oq:' .. owner, id) end
end
local function unindex(id, ep, status)
  if status == 'queued' then
    redis.call('ZREM', P .. 'q:' .. ep, id)
    unqueue_owned(id)
  elseif status == 'running' then redis.call('ZREM', P .. 'r:' .. ep, id)
  elseif FINAL[status] then redis.call('ZREM', P .. 'd:' .. ep, id) end
end
local function index(key, id, ep)
  local f = redis.call('HMGET', key, 'status', 'seq', 'lease_until', 'completed_at', 'owner')
  local status = f[1]
  if status == 'queued' then
    redis.call('ZADD', P .. 'q:' .. ep, f[2], id)
    if f[5] then redis.call('SADD', P .. 'oq:' .. f[5], id) end
  elseif status == 'running' then redis.call('ZADD', P .. 'r:' .. ep, f[3] or '+inf', id)
  elseif FINAL[status] and f[4] then redis.call('ZADD', P .. 'd:' .. ep, f[4], id) end
end
"""

# ARGV: prefix, id, endpoint, idempotency key or '', queue limit or '', field/value pairs.
# Returns {seq, id}; {0, other id} for a repeated idempotency key; {-1, queued} when full.
_INSERT = """
local id, ep, ikey, limit = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ikey_key = P .. 'key:' .. ep .. ':' .. ikey
if ikey ~= '' then
  local existing = redis.call('GET', ikey_key)
  if existing and redis.call('EXISTS', P .. 'job:' .. existing) == 1 then
    return {0, existing}
  end
end
if limit ~= '' then
  local queued = redis.call('ZCARD', P .. 'q:' .. ep)
  if queued >= tonumber(limit) then return {-1, tostring(queued)} end
end
if ikey ~= '' then redis.call('SET', ikey_key, id) end
local seq = redis.call('INCR', P .. 'seq')
local key = P .. 'job:' .. id
redis.call('HSET', key, 'seq', seq, unpack(ARGV, 6))
redis.call('ZADD', P .. 'q:' .. ep, seq, id)
local owner = redis.call('HGET', key, 'owner')
if owner then redis.call('SADD', P .. 'oq:' .. owner, id) end
return {seq, id}
"""

# ARGV: prefix, key, group, value, ttl (ms), max entries or '', only if absent ('1'/'0'),
# now. Returns the live value already there (only if absent), else false.
_CACHE_PUT = """
local P, k, grp = ARGV[1], ARGV[2], ARGV[3]
local ck, gk = P .. 'c:' .. k, P .. 'cg:' .. grp
if ARGV[7] == '1' then
  local present = redis.call('GET', ck)
  if present then return present end
end
local now, ttl = tonumber(ARGV[8]), tonumber(ARGV[5])
redis.call('SET', ck, ARGV[4], 'PX', ttl)
redis.call('ZADD', gk, now, k)
redis.call('ZREMRANGEBYSCORE', gk, '-inf', '(' .. (now - ttl / 1000))
if ARGV[6] ~= '' then
  local extra = redis.call('ZCARD', gk) - tonumber(ARGV[6])
  if extra > 0 then
    for _, old in ipairs(redis.call('ZRANGE', gk, 0, extra - 1)) do
      redis.call('DEL', P .. 'c:' .. old)
    end
    redis.call('ZREMRANGEBYRANK', gk, 0, extra - 1)
  end
end
return false
"""

# ARGV: prefix, now, limit, hold_until. Returns the claimed deliveries (JSON), due first.
# A delivery's due time is its score in Pdl-due (the JSON's "due" is not kept up to date).
_CLAIM = """
local P = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', P .. 'dl-due', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('GET', P .. 'dl:' .. id)
  if raw then
    redis.call('ZADD', P .. 'dl-due', ARGV[4], id)
    table.insert(out, raw)
  else
    redis.call('ZREM', P .. 'dl-due', id)
  end
end
return out
"""

# ARGV: prefix, endpoint, worker, limit, now, lease_until[, revision]. Returns the leased ids
# in order.
_LEASE = """
local ep, worker, now, lease_until = ARGV[2], ARGV[3], ARGV[5], ARGV[6]
local limit, revision = tonumber(ARGV[4]), ARGV[7]
local popped = {}
if revision == nil or revision == '' then
  popped = redis.call('ZPOPMIN', P .. 'q:' .. ep, limit)
else
  -- Only jobs of one revision: pass over the others (looking at most 10000 deep).
  local start, taken = 0, {}
  while #taken < limit and start < 10000 do
    local queued = redis.call('ZRANGE', P .. 'q:' .. ep, start, start + 99)
    if #queued == 0 then break end
    for _, id in ipairs(queued) do
      if #taken >= limit then break end
      if (redis.call('HGET', P .. 'job:' .. id, 'revision') or '1') == revision then
        taken[#taken + 1] = id
      end
    end
    start = start + 100
  end
  for _, id in ipairs(taken) do
    redis.call('ZREM', P .. 'q:' .. ep, id)
    popped[#popped + 1] = id
    popped[#popped + 1] = 0
  end
end
local ids = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = P .. 'job:' .. id
  unqueue_owned(id)
  redis.call('HSET', key, 'status', 'running', 'worker_id', worker, 'started_at', now,
             'lease_until', lease_until)
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('ZADD', P .. 'r:' .. ep, lease_until, id)
  ids[#ids + 1] = id
end
return ids
"""

# ARGV: prefix, worker, lease_until, ids... Returns the ids the worker still holds.
_EXTEND = """
local worker, lease_until = ARGV[2], ARGV[3]
local held = {}
for i = 4, #ARGV do
  local key = P .. 'job:' .. ARGV[i]
  local f = redis.call('HMGET', key, 'status', 'worker_id', 'endpoint')
  if f[1] == 'running' and f[2] == worker then
    redis.call('HSET', key, 'lease_until', lease_until)
    redis.call('ZADD', P .. 'r:' .. f[3], lease_until, ARGV[i])
    held[#held + 1] = ARGV[i]
  end
end
return held
"""

# ARGV: prefix, id, expected statuses (comma-separated), worker or '', attempt or '',
# number of fields to set, then field/value pairs, then fields to delete.
# Returns 1 if the job matched (and was changed), else 0.
_UPDATE = """
local id = ARGV[2]
local key = P .. 'job:' .. id
local f = redis.call('HMGET', key, 'status', 'worker_id', 'attempts', 'endpoint')
if not f[1] then return 0 end
if not string.find(',' .. ARGV[3] .. ',', ',' .. f[1] .. ',', 1, true) then return 0 end
if ARGV[4] ~= '' and f[2] ~= ARGV[4] then return 0 end
if ARGV[5] ~= '' and f[3] ~= ARGV[5] then return 0 end
local nset = tonumber(ARGV[6])
if nset == 0 and #ARGV == 6 then return 1 end
unindex(id, f[4], f[1])
if nset > 0 then redis.call('HSET', key, unpack(ARGV, 7, 6 + 2 * nset)) end
if #ARGV > 6 + 2 * nset then redis.call('HDEL', key, unpack(ARGV, 7 + 2 * nset)) end
index(key, id, f[4])
return 1
"""

# ARGV: prefix, bucket, now, rate or '', burst, quota or '', window, window_end, ttl (ms).
# The arithmetic of modelport.keys.spend. Returns {allowed, retry_after, tokens, used}
# (floats as strings: Lua numbers would come back truncated to integers).
_SPEND = """
local key = P .. 'b:' .. ARGV[2]
local now, burst, window, window_end = tonumber(ARGV[3]), tonumber(ARGV[5]), ARGV[7],
  tonumber(ARGV[8])
local rate = tonumber(ARGV[4])
local quota = tonumber(ARGV[6])
local f = redis.call('HMGET', key, 'tokens', 'at', 'window', 'used')
local tokens, at, used = tonumber(f[1]) or burst, tonumber(f[2]) or now, tonumber(f[4]) or 0
if f[3] ~= window then used = 0 end
if rate then tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
else tokens = burst end
local allowed, retry = 1, 0
if quota and used >= quota then allowed, retry = 0, math.max(0, window_end - now)
elseif rate and tokens < 1 then allowed, retry = 0, (1 - tokens) / rate
else
  if rate then tokens = tokens - 1 end
  used = used + 1
end
redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'at', ARGV[3],
           'window', window, 'used', used)
redis.call('PEXPIRE', key, ARGV[9])
return {allowed, string.format('%.17g', retry), string.format('%.17g', tokens), used}
"""

# ARGV: prefix, endpoint, max entries, max bytes, oldest time, then (time, size, json) per
# line. Appends the lines with the next ids, then drops the oldest beyond the bounds.
_ADD_LOGS = """
local P, ep = ARGV[1], ARGV[2]
local max_n, max_bytes, oldest = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local list, totals = P .. 'log:' .. ep, P .. 'logn:' .. ep
local bytes = tonumber(redis.call('HGET', totals, 'bytes') or '0')
for i = 6, #ARGV, 3 do
  local id = redis.call('HINCRBY', totals, 'last', 1)
  redis.call('RPUSH', list, id .. '\t' .. ARGV[i] .. '\t' .. ARGV[i + 1] .. '\t' .. ARGV[i + 2])
  bytes = bytes + tonumber(ARGV[i + 1])
end
local n = redis.call('LLEN', list)
while n > 0 do
  local first = redis.call('LINDEX', list, 0)
  local _, _, at, size = string.find(first, '^%d+\t([^\t]+)\t(%d+)\t')
  if n <= max_n and bytes <= max_bytes and tonumber(at) >= oldest then break end
  redis.call('LPOP', list)
  n, bytes = n - 1, bytes - tonumber(size)
end
redis.call('HSET', totals, 'bytes', bytes)
"""

# ARGV: prefix, completed_before, limit, endpoints... Returns the number of jobs deleted.
_PURGE = """
local before, limit = ARGV[2], tonumber(ARGV[3])
local deleted = 0
for i = 4, #ARGV do
  if deleted >= limit then break end
  local ep = ARGV[i]
  local done = redis.call('ZRANGE', P .. 'd:' .. ep, '-inf', '(' .. before, 'BYSCORE',
                          'LIMIT', 0, limit - deleted)
  for _, id in ipairs(done) do
    local key = P .. 'job:' .. id
    local ikey = redis.call('HGET', key, 'idempotency_key')
    if ikey then
      local k = P .. 'key:' .. ep .. ':' .. ikey
      if redis.call('GET', k) == id then redis.call('DEL', k) end
    end
    redis.call('DEL', key, P .. 'ev:' .. id)
    redis.call('ZREM', P .. 'd:' .. ep, id)
    deleted = deleted + 1
  end
end
return deleted
"""


def _encode(field: str, value: Any) -> bytes | str:
    if field in _JSON:
        return orjson.dumps(value)
    if isinstance(value, JobStatus):
        return value.value
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decode(raw: Mapping[Any, Any]) -> JobRecord:
    fields: dict[str, Any] = {}
    for k, v in raw.items():
        name = _text(k)
        if name in _JSON:
            fields[name] = orjson.loads(v)
        elif name in _FLOAT:
            fields[name] = float(v)
        elif name in _INT:
            fields[name] = int(v)
        elif name == "status":
            fields[name] = JobStatus(_text(v))
        else:
            fields[name] = _text(v)
    return JobRecord(**fields)


def _secret(path: str | None, env: str, what: str) -> str | None:
    """A secret from a file (first line, stripped) or else an environment variable."""
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip() or None
        except OSError as e:
            raise SpecError(f"store URL option {what}={path}: {e.strerror}") from None
    return os.environ.get(env) or None


def _int_option(options: dict[str, str], name: str, default: int | None) -> int | None:
    text = options.pop(name, None)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise SpecError(f"store URL option {name}={text!r}: give a whole number") from None
    if value < 0:
        raise SpecError(f"store URL option {name}={text!r}: give 0 or more")
    return value


def _hosts(netloc: str, url: str) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SpecError(f"store URL {_redact(url)!r}: give HOST:PORT,HOST:PORT,... ({item!r})")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


def _redact(url: str) -> str:
    """The URL without its password (for messages)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}{':***' if ':' in userinfo else ''}@{hostpart}"


@dataclass
class Target:
    """What a store URL names: one Redis, a Sentinel-watched primary, or a Cluster."""

    kind: str
    """``redis`` (also ``rediss``, ``unix``), ``sentinel`` or ``cluster``."""
    url: str = field(repr=False)
    """For ``redis``: the URL redis-py is given (without modelport's options; it may hold
    a password); else the URL without its password."""
    hosts: list[tuple[str, int]] = field(default_factory=list)
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    """redis-py connection options given in the query (``sentinel``, ``cluster``)."""
    prefix: str = DEFAULT_PREFIX
    wait_replicas: int = 0
    wait_timeout: int = 1000
    max_bytes: int | None = None
    spread: bool = False
    """Whether each endpoint shard's keys get a hash tag of their own (a cluster whose
    prefix the user did not tag): a deployment spreads over the cluster's primaries."""

    def display(self) -> str:
        """The target for messages: no user, no password, no options."""
        if self.kind == "redis":
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            return urlunsplit(parts._replace(netloc=netloc, query=""))
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        tail = f"/{self.service}/{self.db}" if self.kind == "sentinel" else ""
        return f"redis+{self.kind}://{hosts}{tail}"


def parse_url(url: str) -> Target:
    """Parse a store URL: ``redis[s]://[user:pass@]host:port/db``, ``unix://...``,
    ``redis+sentinel://[user:pass@]s1:26379,s2:26379/service/db`` or
    ``redis+cluster://[user:pass@]n1:7000,n2:7001``; options in the query:
    ``prefix``, ``password_file``, ``sentinel_password_file``, ``wait_replicas``,
    ``wait_timeout`` (ms), ``max_bytes``, and redis-py's own connection options."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise SpecError(f"store URL {_redact(url)!r}: give SCHEME://...")
    body, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    password_file = options.pop("password_file", None)
    sentinel_password_file = options.pop("sentinel_password_file", None)
    wait_timeout = _int_option(options, "wait_timeout", 1000)
    max_bytes = _int_option(options, "max_bytes", None)
    password = _secret(password_file, PASSWORD_ENV, "password_file")
    kind = {"redis+sentinel": "sentinel", "redis+cluster": "cluster"}.get(scheme, "redis")
    wait_replicas = _int_option(options, "wait_replicas", 1 if kind == "sentinel" else 0)
    spread = kind == "cluster" and "{" not in prefix
    if spread:
        # the deployment's own keys share one hash slot; each endpoint shard has its own
        prefix = "{" + prefix + "}"
    common = Target(
        kind,
        "",
        prefix=prefix,
        wait_replicas=wait_replicas or 0,
        wait_timeout=wait_timeout or 0,
        max_bytes=max_bytes,
        spread=spread,
    )
    if kind == "redis":
        parts = urlsplit(url)
        kept = urlencode(list(options.items()))
        plain = urlunsplit(parts._replace(query=kept))
        return replace(common, url=plain, password=password if parts.password is None else None)
    netloc, _, path = body.partition("/")
    userinfo, at, hostpart = netloc.rpartition("@")
    username = password_in_url = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password_in_url = unquote(secret) if colon else None
    segments = [s for s in path.split("/") if s]
    service, db = "", 0
    if kind == "sentinel":
        if not segments:
            raise SpecError(
                f"store URL {_redact(url)!r}: name the monitored primary,"
                " e.g. redis+sentinel://s1:26379,s2:26379/mymaster/0"
            )
        service = unquote(segments[0])
        if len(segments) > 1:
            if not segments[1].isdigit():
                raise SpecError(f"store URL {_redact(url)!r}: the database is a number")
            db = int(segments[1])
    elif segments:
        raise SpecError(f"store URL {_redact(url)!r}: a cluster has one database; drop the path")
    if kind == "cluster" and wait_replicas:
        raise SpecError("store URL option wait_replicas is not supported on redis+cluster")
    connection: dict[str, Any] = {}
    for name, text in options.items():
        parser = URL_QUERY_ARGUMENT_PARSERS.get(name)
        try:
            connection[name] = parser(text) if parser else text
        except (TypeError, ValueError):
            raise SpecError(f"store URL option {name}={text!r}: not a valid value") from None
    return replace(
        common,
        url=_redact(url),
        hosts=_hosts(hostpart, url),
        service=service,
        db=db,
        username=username,
        password=password_in_url if password_in_url is not None else password,
        sentinel_password=_secret(
            sentinel_password_file, SENTINEL_PASSWORD_ENV, "sentinel_password_file"
        ),
        options=connection,
    )


async def _disconnect(client: Any, sentinel: Sentinel | None) -> None:
    """Close every connection of a store's client (again, if one was opened since)."""
    await client.aclose()
    if sentinel is not None:
        # master_for's client does not own its pool, nor the sentinels' clients
        await client.connection_pool.disconnect()
        for watcher in sentinel.sentinels:
            await watcher.aclose()


class _Commands:
    """Stands in for a pipeline while it is filled: records the commands, to run them (or
    some of them again) on a real one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record


class RedisStore:
    """Jobs in Redis, shared by every API server given the same URL and prefix."""

    shared = True

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        self.target = parse_url(url)
        self.url = self.target.url
        self.prefix = self.target.prefix if prefix is None else prefix
        self.cluster = self.target.kind == "cluster"
        self._spread = self.target.spread and prefix is None
        self._redis: Any = None
        self._sentinel: Sentinel | None = None
        self._memory_checked = 0.0
        self._memory_used = 0
        # Every script names one key of the slot it works in (see _on): a cluster routes
        # it by that key, and all the keys the script touches share its hash tag.
        self._anchor = self._on(self.prefix)
        self._pending: list[tuple[JobRecord, int | None, asyncio.Future[JobRecord]]] = []
        self._callbacks: list[Callable[[str], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._commands: dict[asyncio.Task[Any] | None, int] = {}
        """The tasks with a command in flight (inside :meth:`_errors`; how many each), for
        :meth:`close` to wait out."""
        self._drained: asyncio.Future[None] | None = None
        self._indexed: dict[str, float] = {}
        """The endpoints this process submitted to or leased from, and when it last wrote
        each into ``Pendpoints`` (monotonic; ``-inf``: not yet)."""

    def __repr__(self) -> str:
        return f"RedisStore({self._safe_url()!r}, prefix={self.prefix!r})"

    def _safe_url(self) -> str:
        return self.target.display()

    @property
    def redis(self) -> Any:
        if self._redis is None:
            raise Unavailable("the redis store is not open")
        return self._redis

    def _key(self, *parts: str) -> str:
        """A deployment-wide key: API keys, rate buckets, workers, specs, cache, webhooks."""
        return self.prefix + ":".join(parts)

    def _slot(self, endpoint: str) -> str:
        """The prefix of an endpoint's keys (queue, jobs, events, logs). On a cluster it is
        a hash tag of the endpoint's shard, so endpoints spread over the primaries while each
        endpoint's scripts touch one slot; else the deployment's prefix."""
        return self._shard_prefix(endpoint_shard(endpoint)) if self._spread else self.prefix

    def _home(self, job_id: str) -> str:
        """The prefix of a job's keys, found from its id alone (it names its endpoint's
        shard: :func:`modelport.wire.new_job_id`)."""
        shard = job_shard(job_id) if self._spread else None
        return self.prefix if shard is None else self._shard_prefix(shard)

    def _shard_prefix(self, shard: str) -> str:
        return f"{self.prefix[:-1]}/{shard}}}"

    def _jkey(self, kind: str, job_id: str, *rest: str) -> str:
        """A key of one job, beside its endpoint's queue."""
        return self._home(job_id) + ":".join((kind, job_id, *rest))

    def _ekey(self, kind: str, endpoint: str) -> str:
        """A key of one endpoint, in its shard's slot."""
        return self._slot(endpoint) + f"{kind}:{endpoint}"

    def _slots(self, endpoints: Sequence[str]) -> dict[str, list[str]]:
        """Endpoints by the prefix of their slot (one group unless spread)."""
        groups: dict[str, list[str]] = {}
        for ep in endpoints:
            groups.setdefault(self._slot(ep), []).append(ep)
        return groups

    @staticmethod
    def _on(prefix: str) -> list[str]:
        """The key a script in the slot of ``prefix`` names, for a cluster to route it."""
        return [prefix + "seq"]

    def _connect(self) -> Any:
        t = self.target
        auth: dict[str, Any] = {"username": t.username, "password": t.password}
        if t.kind == "sentinel":
            sentinel = self._sentinel = Sentinel(
                t.hosts,
                sentinel_kwargs={"password": t.sentinel_password, **_TIMEOUTS},
                **_TIMEOUTS,
            )
            return sentinel.master_for(
                t.service, db=t.db, health_check_interval=30, **auth, **t.options
            )
        if t.kind == "cluster":
            if not hasattr(RedisCluster, "pubsub"):  # async cluster pub/sub: redis-py 8
                needs = "pip install 'redis>=8'"
                raise SpecError(f"redis+cluster:// needs redis-py 8 or later: {needs}")
            nodes = [ClusterNode(host, port) for host, port in t.hosts]
            return RedisCluster(startup_nodes=nodes, **auth, **_TIMEOUTS, **t.options)
        given: dict[str, Any] = {"password": t.password} if t.password is not None else {}
        return aioredis.Redis.from_url(t.url, health_check_interval=30, **_TIMEOUTS, **given)

    async def open(self) -> None:
        self._redis = self._connect()
        r = self._redis
        self._insert = r.register_script(_INDEX + _INSERT)
        self._lease = r.register_script(_INDEX + _LEASE)
        self._extend = r.register_script(_INDEX + _EXTEND)
        self._update = r.register_script(_INDEX + _UPDATE)
        self._purge = r.register_script(_INDEX + _PURGE)
        self._cache_put = r.register_script(_CACHE_PUT)
        self._claim = r.register_script(_CLAIM)
        self._spend = r.register_script(_INDEX + _SPEND)
        self._add_logs = r.register_script(_ADD_LOGS)
        await self.ping()
        await self._load_scripts()

    async def _load_scripts(self) -> None:
        """Load every script (on every primary of a cluster), for pipelines' EVALSHA."""
        scripts = (self._insert, self._lease, self._extend, self._update, self._purge)
        async with self._errors():
            for script in (*scripts, self._cache_put, self._claim, self._spend):
                await self.redis.script_load(script.script)

    async def _pipeline(self, fill: Callable[[Any], None]) -> list[Any]:
        """Fill a pipeline and run it. Its scripts go as bare EVALSHA: redis-py would
        otherwise ask SCRIPT EXISTS first, a round trip more on every submit and result.
        After NOSCRIPT (a restarted Redis, a promoted replica) load the scripts and run
        once more every command but the scripts that did run: on a cluster the pipeline
        spans primaries, and a script that ran on one must not run twice."""
        commands = _Commands()
        fill(commands)
        answers: list[Any] = [None] * len(commands.calls)
        todo = list(range(len(commands.calls)))
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    name, args, kwargs = commands.calls[i]
                    getattr(pipe, name)(*args, **kwargs)
                replies = await pipe.execute(raise_on_error=False)
            for i, reply in zip(todo, replies, strict=True):
                answers[i] = reply
            missing = [a for a in answers if isinstance(a, NoScriptError)]
            if not missing or attempt == 2:
                break
            todo = [
                i
                for i, a in enumerate(answers)
                if commands.calls[i][0] != "evalsha" or isinstance(a, NoScriptError)
            ]
            await self._load_scripts()
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def _evalsha(self, pipe: Any, script: Any, args: Sequence[Any]) -> None:
        """Queue a script whose first argument is the prefix of the slot it works in."""
        pipe.evalsha(script.sha, 1, *self._on(args[0]), *args)

    async def _check_memory(self) -> None:
        """Refuse new jobs while Redis holds more than ``max_bytes`` (sampled each second)."""
        limit = self.target.max_bytes
        if limit is None:
            return
        now = time.monotonic()
        if now - self._memory_checked >= 1.0:
            if self.cluster:  # the fullest primary (a deployment spreads over them all)
                used = []
                for node in self.redis.get_primaries():
                    info = await self.redis.info("memory", target_nodes=node)
                    used.append(int(info["used_memory"]))
                self._memory_used = max(used)
            else:
                self._memory_used = int((await self.redis.info("memory"))["used_memory"])
            self._memory_checked = now
        if self._memory_used > limit:
            raise Unavailable(
                f"the redis store holds {self._memory_used} bytes, over its bound of {limit}"
                " (--max-store-bytes); retry when workers have drained the queue",
                retry_after=5,
            )

    async def close(self) -> None:
        """Close every connection, also those a command in flight opens meanwhile: a
        command that loses its connection to the first disconnect reconnects (redis-py
        retries), and a connection left open outlives the event loop (a ResourceWarning)."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for task in list(self._background):
            task.cancel()
        client, self._redis = self._redis, None  # commands from now on are refused
        if client is None:
            return
        sentinel, self._sentinel = self._sentinel, None
        await _disconnect(client, sentinel)  # the commands in flight fail now...
        if self._commands:
            self._drained = asyncio.get_running_loop().create_future()
            try:  # ...and return
                await asyncio.wait_for(asyncio.shield(self._drained), CLOSE_GRACE)
            except TimeoutError:
                # One whose connection was closed mid-handshake was seen waiting in redis-py's
                # handshake for a reply that never came, on a healthy socket: up to the
                # socket timeout (10 s), which a stopping server must not wait out.
                for flying in self._commands:
                    if flying is not None:
                        flying.cancel()
                await self._drained
        await _disconnect(client, sentinel)

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        # redis-py can swallow a cancellation that lands mid-command (redis/redis-py#2028):
        # the task would go on as if never cancelled, so a server stopping at that moment
        # waited a whole long poll per worker. A cancellation that arrived is raised here.
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        commands = self._commands
        commands[task] = commands.get(task, 0) + 1
        try:
            yield
        except (RedisError, OSError) as e:
            if task is not None and task.cancelling() > cancels:
                raise asyncio.CancelledError from e
            if isinstance(e, ResponseError) and "> 'maxmemory'" in str(e):
                # Redis refuses a script's first write, so a refused job was not written.
                raise Unavailable(
                    f"redis store {self._safe_url()} is out of memory (its maxmemory);"
                    " nothing was written; retry when workers have drained the queue",
                    retry_after=5,
                ) from e
            raise Unavailable(f"redis store {self._safe_url()}: {e}", retry_after=1) from e
        finally:
            left = commands[task] - 1
            if left:
                commands[task] = left
            else:
                del commands[task]
                if not commands and self._drained is not None and not self._drained.done():
                    self._drained.set_result(None)
        if task is not None and task.cancelling() > cancels:
            raise asyncio.CancelledError

    async def ping(self) -> None:
        async with self._errors():
            await self.redis.ping()

    async def insert(self, job: JobRecord, limit: int | None = None) -> JobRecord:
        # Inserts that arrive in the same event-loop turn share one round trip.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[JobRecord] = loop.create_future()
        self._pending.append((job, limit, done))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_soon)
        return await done

    def _flush_soon(self) -> None:
        pending, self._pending = self._pending, []
        task = asyncio.ensure_future(self._flush_inserts(pending))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _flush_inserts(
        self, pending: list[tuple[JobRecord, int | None, asyncio.Future[JobRecord]]]
    ) -> None:
        rows: list[tuple[JobRecord, list[Any], asyncio.Future[JobRecord]]] = []
        limits: dict[str, int] = {}
        for job, limit, done in pending:
            try:
                slot = self._slot(job.endpoint)
                if self._home(job.id) != slot:
                    raise ValueError(
                        f"job id {job.id!r} does not name the shard of endpoint"
                        f" {job.endpoint!r}: make it with new_job_id(endpoint)"
                    )
                args: list[Any] = [
                    slot,
                    job.id,
                    job.endpoint,
                    job.idempotency_key or "",
                    "" if limit is None else limit,
                ]
                for name in _FIELDS:
                    value = getattr(job, name)
                    if value is not None and name != "seq":
                        args += [name, _encode(name, value)]
            except TypeError as e:  # one unstorable input must not fail its neighbours
                done.set_exception(ValueError(f"input cannot be stored as JSON: {e}"))
                continue
            except ValueError as e:
                done.set_exception(e)
                continue
            rows.append((job, args, done))
            if limit is not None:
                limits[job.id] = limit
        if not rows:
            return
        replicas = self.target.wait_replicas
        now = time.monotonic()
        stale = self._stale({job.endpoint for job, _, _ in rows}, now)

        def fill(pipe: Any) -> None:
            if stale:
                pipe.sadd(self._key("endpoints"), *sorted(stale))
            for _, args, _ in rows:
                self._evalsha(pipe, self._insert, args)
            if replicas:
                pipe.execute_command("WAIT", replicas, self.target.wait_timeout)

        try:
            async with self._errors():
                await self._check_memory()
                answers = await self._pipeline(fill)
                if stale:
                    answers.pop(0)
                    self._indexed.update(dict.fromkeys(stale, now))
                if replicas:
                    acked = int(answers.pop())
                    if acked < replicas and any(int(a[0]) > 0 for a in answers):
                        raise Unavailable(
                            f"redis store {self._safe_url()}: {acked} of {replicas} replicas"
                            f" confirmed the new jobs within {self.target.wait_timeout} ms"
                            " (a failover may be under way); retry with the same"
                            " Idempotency-Key",
                            retry_after=1,
                        )
                existing = [a[1].decode() for a in answers if int(a[0]) == 0]
                found = {}
                if existing:
                    for other in await self._get_many(existing):
                        if other is not None:
                            found[other.id] = other
        except Exception as e:
            for _, _, done in rows:
                if not done.done():
                    done.set_exception(e)
            return
        for (job, _, done), (seq, job_id) in zip(rows, answers, strict=True):
            if done.done():
                continue
            if int(seq) < 0:
                queued = int(job_id)
                done.set_exception(Overloaded(full_queue(job.endpoint, queued, limits[job.id])))
            elif int(seq) == 0:
                other = found.get(job_id.decode())
                if other is None:
                    done.set_exception(Unavailable("an idempotent job vanished; retry"))
                else:
                    done.set_result(other)
            else:
                job.seq = int(seq)
                done.set_result(job)

    async def _get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        if not job_ids:
            return []
        async with self._errors(), self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self._jkey("job", job_id))
            raws = await pipe.execute()
        return [_decode(raw) if raw else None for raw in raws]

    async def get(self, job_id: str) -> JobRecord | None:
        async with self._errors():
            raw = await self.redis.hgetall(self._jkey("job", job_id))
        return _decode(raw) if raw else None

    async def _jobs(self, job_ids: Any) -> list[JobRecord]:
        ids = [_text(i) for i in job_ids]
        return [j for j in await self._get_many(ids) if j is not None]

    async def lease(
        self,
        endpoint: str,
        worker_id: str,
        limit: int,
        now: float,
        lease_until: float,
        revision: int | None = None,
    ) -> list[JobRecord]:
        self._indexed.setdefault(endpoint, -math.inf)  # see _stale
        slot = self._slot(endpoint)
        args: list[Any] = [slot, endpoint, worker_id, limit, repr(now), repr(lease_until)]
        if revision is not None:
            args.append(str(revision))
        async with self._errors():
            ids = await self._lease(keys=self._on(slot), args=args)
        return await self._jobs(ids)

    async def extend(self, worker_id: str, job_ids: Sequence[str], lease_until: float) -> list[str]:
        if not job_ids:
            return []
        homes: dict[str, list[str]] = {}
        for job_id in job_ids:  # one script per slot: each slot's leases change at once
            homes.setdefault(self._home(job_id), []).append(job_id)

        def fill(pipe: Any) -> None:
            for home, ids in homes.items():
                self._evalsha(pipe, self._extend, [home, worker_id, repr(lease_until), *ids])

        async with self._errors():
            answers = await self._pipeline(fill)
        held = {_text(h) for batch in answers for h in batch}
        return [i for i in job_ids if i in held]

    async def update(self, updates: Sequence[Update]) -> list[JobRecord | None]:
        if not updates:
            return []
        calls: list[list[Any]] = []
        for u in updates:
            unknown = set(u.changes) - CHANGEABLE
            if unknown:
                raise ValueError(f"cannot change {sorted(unknown)}")
            sets: list[Any] = []
            deletes: list[str] = []
            for name, value in u.changes.items():
                if value is None:
                    deletes.append(name)
                else:
                    sets += [name, _encode(name, value)]
            calls.append(
                [
                    self._home(u.job_id),
                    u.job_id,
                    ",".join(s.value for s in u.expect),
                    u.worker_id or "",
                    "" if u.attempt is None else u.attempt,
                    len(sets) // 2,
                    *sets,
                    *deletes,
                ]
            )

        def fill(pipe: Any) -> None:
            for args in calls:
                self._evalsha(pipe, self._update, args)
                pipe.hgetall(self._jkey("job", args[1]))

        async with self._errors():
            answers = await self._pipeline(fill)
        out: list[JobRecord | None] = []
        for matched, raw in zip(answers[::2], answers[1::2], strict=True):
            out.append(_decode(raw) if int(matched) and raw else None)
        return out

    def _stale(self, endpoints: set[str], now: float) -> set[str]:
        """Which of these endpoints (and of the others this process knows) to write into
        ``Pendpoints`` now. That index of endpoints (for the expiry scan, depths, purge)
        is in another slot than their queues on a cluster, so no script can keep it: a
        submit writes its endpoint before its job, and every process writes again every
        few seconds the endpoints it submits to or leases from, so an index lost (a Redis
        restarted empty, a failover that lost the write) is soon whole again."""
        for ep in endpoints:
            self._indexed.setdefault(ep, -math.inf)
        return {ep for ep, at in self._indexed.items() if now - at >= _REINDEX}

    async def _endpoints(self) -> list[str]:
        now = time.monotonic()
        stale = self._stale(set(), now)
        async with self._errors(), self.redis.pipeline(transaction=False) as pipe:
            if stale:
                pipe.sadd(self._key("endpoints"), *sorted(stale))
            pipe.smembers(self._key("endpoints"))
            *_, names = await pipe.execute()
        self._indexed.update(dict.fromkeys(stale, now))
        return sorted(_text(n) for n in names)

    async def expired(self, now: float, limit: int) -> list[JobRecord]:
        endpoints = await self._endpoints()
        async with self._errors(), self.redis.pipeline(transaction=False) as pipe:
            for ep in endpoints:
                pipe.zrange(
                    self._ekey("r", ep),
                    "-inf",
                    f"({now!r}",
                    byscore=True,
                    offset=0,
                    num=limit,
                    withscores=True,
                )
            found = await pipe.execute()
        ids = sorted((score, i) for batch in found for i, score in batch)[:limit]
        jobs = await self._jobs([i for _, i in ids])
        return [j for j in jobs if j.status is JobStatus.RUNNING]

    async def running(self, worker_id: str | None = None) -> list[JobRecord]:
        endpoints = await self._endpoints()
        async with self._errors(), self.redis.pipeline(transaction=False) as pipe:
            for ep in endpoints:
                pipe.zrange(self._ekey("r", ep), 0, -1)
            found = await pipe.execute()
        jobs = await self._jobs([i for batch in found for i in batch])
        return [
            j
            for j in jobs
            if j.status is JobStatus.RUNNING and (worker_id is None or j.worker_id == worker_id)
        ]

    async def position(self, job: JobRecord) -> int:
        async with self._errors():
            n = await self.redis.zcount(self._ekey("q", job.endpoint), "-inf", f"({job.seq}")
        return int(n)

    async def queue_depths(self) -> dict[str, dict[str, int]]:
        endpoints = await self._endpoints()
        async with self._errors(), self.redis.pipeline(transaction=False) as pipe:
            for ep in endpoints:
                pipe.zcard(self._ekey("q", ep))
                pipe.zcard(self._ekey("r", ep))
            counts = await pipe.execute()
        depths: dict[str, dict[str, int]] = {}
        for ep, queued, running in zip(endpoints, counts[::2], counts[1::2], strict=True):
            if queued or running:
                depths[ep] = {"queued": int(queued), "running": int(running)}
        return depths

    async def queued_job_bytes(self) -> dict[str, float]:
        # MEMORY USAGE of the 16 oldest queued jobs of each endpoint: what Redis really
        # spends on one (hash overhead included), at a bounded cost per scrape.
        endpoints = await self._endpoints()
        async with self._errors():
            sizes: dict[str, float] = {}
            for ep in endpoints:
                ids = await self.redis.zrange(self._ekey("q", ep), 0, 15)
                if not ids:
                    continue
                async with self.redis.pipeline(transaction=False) as pipe:
                    for i in ids:
                        pipe.memory_usage(self._jkey("job", _text(i)), samples=0)
                    used = [int(n) for n in await pipe.execute() if n is not None]
                if used:
                    sizes[ep] = sum(used) / len(used)
        return sizes

    async def oldest_queued(self, endpoint: str, limit: int) -> list[JobRecord]:
        async with self._errors():
            ids = await self.redis.zrange(self._ekey("q", endpoint), 0, limit - 1)
        return await self._jobs(ids)

    async def purge(self, completed_before: float, limit: int, endpoint: str | None = None) -> int:
        endpoints = [endpoint] if endpoint is not None else await self._endpoints()
        if not endpoints or limit <= 0:
            return 0
        deleted = 0
        async with self._errors():
            for slot, names in self._slots(endpoints).items():  # a script per slot
                if deleted >= limit:
                    break
                args = [slot, repr(completed_before), limit - deleted, *names]
                deleted += int(await self._purge(keys=self._on(slot), args=args))
        return deleted

    async def add_events(
        self,
        events: Sequence[Event],
        *,
        holder: str | None = None,
        lease_until: float = 0.0,
        renew_below: float | None = None,
    ) -> list[Event]:
        if holder is not None:
            ids = list(dict.fromkeys(e.job_id for e in events))
            held = set(await self.extend(holder, ids, lease_until))
            events = [e for e in events if e.job_id in held]
        if not events:
            return []
        async with self._errors(), self.redis.pipeline(transaction=False) as pipe:
            for e in events:
                pipe.rpush(self._jkey("ev", e.job_id), orjson.dumps([e.type, e.data, e.time]))
            lengths = await pipe.execute()
        return [
            Event(e.job_id, e.type, e.data, int(n), e.time)
            for e, n in zip(events, lengths, strict=True)
        ]

    async def events(self, job_id: str, after: int = 0, limit: int = 10_000) -> list[Event]:
        if limit <= 0 or after >= _MAX_INDEX:
            return []
        stop = min(after + limit - 1, _MAX_INDEX)  # Redis list indexes are 64-bit signed
        async with self._errors():
            raws = await self.redis.lrange(self._jkey("ev", job_id), after, stop)
        out = []
        for n, raw in enumerate(raws, start=after + 1):
            kind, data, at = orjson.loads(raw)
            out.append(Event(job_id, kind, data, n, at))
        return out

    async def put_worker(self, worker: dict[str, Any], ttl: float) -> None:
        wid = worker["id"]
        async with self._errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("w", wid), orjson.dumps(worker), px=max(1, int(ttl * 1000)))
            pipe.zadd(self._key("workers"), {wid: time.time() + ttl})
            await pipe.execute()

    async def put_blob(
        self, job_id: str, name: str, mime: str, data: bytes, ttl: float | None
    ) -> None:
        # purge's script does not know blobs: they expire on their own, after the job would
        key = self._jkey("blob", job_id, name)
        async with self._errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"mime": mime, "data": data})
            if ttl is not None:
                pipe.expire(key, max(1, math.ceil(ttl)))
            await pipe.execute()

    async def get_blob(self, job_id: str, name: str) -> tuple[str, bytes] | None:
        async with self._errors():
            found = await self.redis.hmget(self._jkey("blob", job_id, name), ["mime", "data"])
        if found[0] is None or found[1] is None:
            return None
        mime, data = found
        mime = mime.decode() if isinstance(mime, bytes) else str(mime)
        return mime, data if isinstance(data, bytes) else str(data).encode()

    async def get_worker(self, worker_id: str) -> dict[str, Any] | None:
        async with self._errors():
            raw = await self.redis.get(self._key("w", worker_id))
        return None if raw is None else dict(orjson.loads(raw))

    async def list_workers(self) -> list[dict[str, Any]]:
        key = self._key("workers")
        async with self._errors():
            await self.redis.zremrangebyscore(key, "-inf", f"({time.time()!r}")
            ids = await self.redis.zrange(key, 0, -1)
            if not ids:
                return []
            raws = await self.redis.mget([self._key("w", _text(i)) for i in ids])
        workers = [dict(orjson.loads(r)) for r in raws if r is not None]
        return sorted(workers, key=lambda w: str(w["id"]))

    async def delete_worker(self, worker_id: str) -> None:
        async with self._errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("w", worker_id))
            pipe.zrem(self._key("workers"), worker_id)
            await pipe.execute()

    async def put_spec(self, spec: dict[str, Any], *, replace: bool = False) -> dict[str, Any]:
        key, name, data = self._key("specs"), spec["name"], orjson.dumps(spec)
        async with self._errors():
            if replace:
                await self.redis.hset(key, name, data)
                return dict(spec)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, name, data)
                pipe.hget(key, name)
                _, stored = await pipe.execute()
        return dict(orjson.loads(stored))

    async def specs(self) -> list[dict[str, Any]]:
        async with self._errors():
            stored = await self.redis.hgetall(self._key("specs"))
        return [dict(orjson.loads(stored[name])) for name in sorted(stored)]

    async def cache_get(self, key: str) -> Any | None:
        async with self._errors():
            raw = await self.redis.get(self._key("c", key))
        return None if raw is None else orjson.loads(raw)

    async def _cache_store(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None, only_new: bool
    ) -> Any | None:
        args: list[Any] = [
            self.prefix,
            key,
            group,
            orjson.dumps(value),
            max(1, int(ttl * 1000)),
            "" if max_entries is None else max_entries,
            "1" if only_new else "0",
            repr(time.time()),
        ]
        async with self._errors():
            present = await self._cache_put(keys=self._anchor, args=args)
        return None if present is None else orjson.loads(present)

    async def cache_add(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> Any | None:
        return await self._cache_store(key, value, ttl, group, max_entries, True)

    async def cache_put(
        self, key: str, value: Any, ttl: float, group: str, max_entries: int | None = None
    ) -> None:
        await self._cache_store(key, value, ttl, group, max_entries, False)

    async def cache_delete(self, key: str, group: str) -> None:
        async with self._errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("c", key))
            pipe.zrem(self._key("cg", group), key)
            await pipe.execute()

    async def put_delivery(self, delivery: dict[str, Any]) -> None:
        did, due = delivery["id"], delivery["due"]
        async with self._errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("dl", did), orjson.dumps(delivery))
            pipe.zadd(self._key("dl-job", delivery["job_id"]), {did: time.time()}, nx=True)
            if due is None:
                pipe.zrem(self._key("dl-due"), did)
            else:
                pipe.zadd(self._key("dl-due"), {did: due})
            await pipe.execute()

    async def claim_deliveries(
        self, now: float, limit: int, hold_until: float
    ) -> list[dict[str, Any]]:
        async with self._errors():
            raws = await self._claim(
                keys=self._anchor, args=[self.prefix, repr(now), limit, repr(hold_until)]
            )
        return [{**orjson.loads(raw), "due": hold_until} for raw in raws]

    async def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        async with self._errors():
            ids = await self.redis.zrange(self._key("dl-job", job_id), 0, -1)
            if not ids:
                return []
            names = [_text(i) for i in ids]
            raws = await self.redis.mget([self._key("dl", i) for i in names])
            dues = await self.redis.zmscore(self._key("dl-due"), names)
        return [
            {**orjson.loads(raw), "due": due}
            for raw, due in zip(raws, dues, strict=True)
            if raw is not None
        ]

    async def put_key(self, key: dict[str, Any]) -> None:
        async with self._errors():
            old = await self.redis.hget(self._key("keys"), key["id"])
            async with self.redis.pipeline(transaction=True) as pipe:
                if old is not None:
                    pipe.hdel(self._key("keyhash"), orjson.loads(old)["hash"])
                pipe.hset(self._key("keys"), key["id"], orjson.dumps(key))
                pipe.hset(self._key("keyhash"), key["hash"], key["id"])
                await pipe.execute()

    async def get_key(self, key_id: str) -> dict[str, Any] | None:
        async with self._errors():
            raw = await self.redis.hget(self._key("keys"), key_id)
        return None if raw is None else (await self._used([dict(orjson.loads(raw))]))[0]

    async def find_key(self, key_hash: str) -> dict[str, Any] | None:
        async with self._errors():
            key_id = await self.redis.hget(self._key("keyhash"), key_hash)
            if key_id is None:
                return None
            raw = await self.redis.hget(self._key("keys"), key_id)
        if raw is None:
            return None
        key = dict(orjson.loads(raw))
        return (await self._used([key]))[0] if key["hash"] == key_hash else None

    async def list_keys(self) -> list[dict[str, Any]]:
        async with self._errors():
            raws = await self.redis.hvals(self._key("keys"))
        keys = [dict(orjson.loads(r)) for r in raws]
        return await self._used(sorted(keys, key=lambda k: (k["created_at"], k["id"])))

    async def delete_key(self, key_id: str) -> bool:
        async with self._errors():
            raw = await self.redis.hget(self._key("keys"), key_id)
            if raw is None:
                return False
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hdel(self._key("keys"), key_id)
                pipe.hdel(self._key("keyhash"), orjson.loads(raw)["hash"])
                pipe.hdel(self._key("keyused"), key_id)
                pipe.delete(self._key("b", key_id))
                await pipe.execute()
        return True

    async def touch_key(self, key_id: str, at: float) -> None:
        # Kept beside the key, not in it: a rewrite of the key could bring back a key
        # revoked meanwhile; a stray time for a revoked id is never read.
        async with self._errors():
            await self.redis.hset(self._key("keyused"), key_id, repr(at))

    async def _used(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if keys:
            async with self._errors():
                times = await self.redis.hmget(self._key("keyused"), [k["id"] for k in keys])
            for key, at in zip(keys, times, strict=True):
                if at is not None:
                    key["last_used"] = float(at)
        return keys

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
        args: list[str | int] = [
            self.prefix,
            bucket,
            repr(now),
            "" if rate is None else repr(rate),
            burst,
            "" if quota is None else quota,
            window,
            repr(window_end),
            int(2 * DAY * 1000),
        ]
        async with self._errors():
            allowed, retry, tokens, used = await self._spend(keys=self._anchor, args=args)
        return Allowance(bool(int(allowed)), float(retry), float(tokens), int(used))

    async def queued_by(self, owner: str) -> int:
        # each slot holds the owner's queued jobs of its endpoints
        slots = list(self._slots(await self._endpoints())) if self._spread else [self.prefix]
        async with self._errors(), self.redis.pipeline(transaction=False) as pipe:
            for slot in slots:
                pipe.scard(f"{slot}oq:{owner}")
            return sum(int(n) for n in await pipe.execute())

    async def add_logs(
        self, endpoint: str, entries: Sequence[dict[str, Any]], bounds: LogBounds, now: float
    ) -> None:
        slot = self._slot(endpoint)
        args: list[Any] = [
            slot,
            endpoint,
            bounds.max_entries,
            bounds.max_bytes,
            repr(now - bounds.max_age),
        ]
        for entry in entries:
            args += [repr(float(entry["time"])), log_size(entry), orjson.dumps(entry)]
        async with self._errors():
            await self._add_logs(keys=self._on(slot), args=args)

    async def logs(
        self,
        endpoint: str,
        *,
        since: float | None = None,
        job_id: str | None = None,
        level: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        async with self._errors():
            raw = await self.redis.lrange(self._ekey("log", endpoint), 0, -1)
        found = []
        for line in raw:
            log_id, _, _, data = _text(line).split("\t", 3)
            entry = {**orjson.loads(data), "id": int(log_id)}
            if log_matches(entry, since, job_id, level):
                found.append(entry)
        return found[-limit:] if limit else []

    async def delete_logs(self, endpoint: str) -> int:
        list_key = self._ekey("log", endpoint)
        async with self._errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.llen(list_key)
            pipe.delete(list_key)
            pipe.hset(self._ekey("logn", endpoint), "bytes", 0)
            n, _, _ = await pipe.execute()
        return int(n)

    async def publish(self, topic: str) -> None:
        async with self._errors():
            if self.cluster:  # sharded: only the node of the channel's slot carries it
                await self.redis.spublish(self._key("changes"), topic)
            else:
                await self.redis.publish(self._key("changes"), topic)

    def subscribe(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="modelport-redis-listener")

    async def _listen(self) -> None:
        """Deliver announcements; after a lost connection, resubscribe with backoff and
        announce ``all`` (what anyone waited for may have happened meanwhile)."""
        delay = 0.1
        channel = self._key("changes")
        lost = False
        while True:
            try:
                async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    if self.cluster:
                        await pubsub.ssubscribe(channel)
                    else:
                        await pubsub.subscribe(channel)
                    delay = 0.1
                    if lost:
                        lost = False
                        for callback in self._callbacks:
                            callback("all")
                    while True:
                        # A bounded read (None when quiet), whatever the socket timeout.
                        if self.cluster:
                            message = await pubsub.get_sharded_message(timeout=5.0)
                        else:
                            message = await pubsub.get_message(timeout=5.0)
                        if message is None or message.get("type") not in _MESSAGES:
                            continue
                        data = message["data"]
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        for callback in self._callbacks:
                            callback(text)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("redis announcements lost (%s); resubscribing in %.1fs", e, delay)
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
