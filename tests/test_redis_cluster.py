"""Redis Cluster: a deployment spreads over the primaries by endpoint (each endpoint's keys
in a hash slot of their own, the deployment's in another, so every Lua script stays in one
slot), announcements go over sharded pub/sub, and a server runs on it unchanged. The store
contract suite runs on the cluster too (``redis-cluster`` in test_stores.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from modelport import Client
from modelport.errors import Unavailable
from modelport.stores import store_from_url
from modelport.stores.base import Update
from modelport.wire import Event, JobRecord, JobStatus, endpoint_shard, job_shard, new_job_id
from tests.conftest import Serve, Workers, online, wait_for, worker_args
from tests.test_capacity import DOC, SLEEPY
from tests.test_scale_e2e import api_servers, submit_all, wait_all
from tests.test_stores import announcements_reach_the_other


def _job(endpoint: str = "echo") -> JobRecord:
    return JobRecord(id=new_job_id(endpoint), endpoint=endpoint, created_at=1.0, input={"x": 1})


def _keys_by_node(url: str, prefix: str) -> dict[int, dict[str, int]]:
    """Every key of a deployment on each node (by port), with its hash slot."""
    hosts = url.removeprefix("redis+cluster://").partition("?")[0].split(",")
    found: dict[int, dict[str, int]] = {}
    for host in hosts:
        port = int(host.rpartition(":")[2])
        with redis.Redis(host="127.0.0.1", port=port) as node:
            keys = [k.decode() for k in node.scan_iter(match=f"{prefix}*", count=1000)]
            found[port] = {k: int(node.cluster("KEYSLOT", k)) for k in keys}
    return found


async def _serve(store: Any, endpoint: str) -> str:
    """One job of ``endpoint`` through the store's job path: insert, event, lease, result."""
    job = await store.insert(_job(endpoint))
    await store.add_events([Event(job.id, "log", {"line": "hi"}, 0, 1.0)])
    (held,) = await store.lease(endpoint, "w1", 1, 2.0, 60.0)
    assert held.id == job.id
    assert await store.extend("w1", [job.id], 90.0) == [job.id]
    done = {"status": JobStatus.SUCCEEDED, "output": {"ok": endpoint}, "completed_at": 3.0}
    running = frozenset({JobStatus.RUNNING})
    (updated,) = await store.update([Update(job.id, running, done, worker_id="w1")])
    assert updated is not None and updated.output == {"ok": endpoint}
    assert [e.data for e in await store.events(job.id)] == [{"line": "hi"}]
    return str(job.id)


def _apart(store: Any) -> tuple[str, str]:
    """Two endpoint names whose slots are on different primaries."""
    nodes: dict[str, str] = {}  # a node's name -> an endpoint whose slot it holds
    for i in range(64):  # bounded: 64 names over 3 primaries
        endpoint = f"ep{i}"
        nodes.setdefault(
            store.redis.get_node_from_key(store._slot(endpoint) + "seq").name, endpoint
        )
        if len(nodes) == 2:
            break
    first, second = nodes.values()
    return first, second


async def test_endpoints_spread_over_the_primaries(redis_cluster_url: str) -> None:
    """Each endpoint's queue, jobs and events share a hash slot of its own; two endpoints
    on different primaries both serve jobs, and the deployment's own keys keep theirs."""
    store = store_from_url(redis_cluster_url)
    await store.open()
    try:
        first, second = _apart(store)
        served = [await _serve(store, ep) for ep in (first, second)]
        assert await store.queue_depths() == {}
        assert await store.purge(10.0, 10) == 2  # a script per slot
        assert [await store.get(job_id) for job_id in served] == [None, None]
        ids = {ep: await _serve(store, ep) for ep in (first, second)}
        prefix = store.prefix  # type: ignore[attr-defined]
    finally:
        await store.close()
    found = _keys_by_node(redis_cluster_url, prefix[:-1])
    holder = {ep: [p for p, keys in found.items() if any(ids[ep] in k for k in keys)] for ep in ids}
    assert len(holder[first]) == len(holder[second]) == 1, holder
    assert holder[first] != holder[second]
    slots = set()
    for ep, job_id in ids.items():
        (port,) = holder[ep]
        mine = {k: slot for k, slot in found[port].items() if job_id in k or k.endswith(f":{ep}")}
        assert {k.partition("}")[2].split(":")[0] for k in mine} == {"job", "ev", "d"}, mine
        assert len(set(mine.values())) == 1, mine
        slots |= set(mine.values())
    shared = {slot for keys in found.values() for k, slot in keys.items() if k.startswith(prefix)}
    assert len(shared) == 1 and shared.isdisjoint(slots), (shared, slots)


async def test_a_primary_without_the_scripts_runs_none_twice(redis_cluster_url: str) -> None:
    """A pipeline spans primaries: when one has lost the scripts (a restart, a promoted
    replica), only its commands run again, so each submit and result happens once."""
    store = store_from_url(redis_cluster_url)
    await store.open()
    try:
        first, second = _apart(store)
        port = store.redis.get_node_from_key(store._slot(second) + "seq").port  # type: ignore[attr-defined]
        with redis.Redis(host="127.0.0.1", port=port) as node:
            node.script_flush()
            a, b = await asyncio.gather(store.insert(_job(first)), store.insert(_job(second)))
            assert (a.seq, b.seq) == (1, 1)  # each slot's first job, inserted once
            for job in (a, b):
                assert (await store.get(job.id)).seq == 1  # type: ignore[union-attr]
            leased = [(await store.lease(ep, "w1", 5, 2.0, 60.0))[0] for ep in (first, second)]
            assert [j.id for j in leased] == [a.id, b.id]
            node.script_flush()
            running = frozenset({JobStatus.RUNNING})
            done = {"status": JobStatus.SUCCEEDED, "output": 1, "completed_at": 3.0}
            updates = [Update(j.id, running, done, worker_id="w1", attempt=1) for j in leased]
            results = await store.update(updates)  # a second run would not match: None
            assert [r.status if r else None for r in results] == [JobStatus.SUCCEEDED] * 2
    finally:
        await store.close()


async def test_a_tagged_prefix_keeps_a_deployment_in_one_slot(redis_cluster_url: str) -> None:
    """A prefix with its own hash tag pins every key of the deployment to its slot."""
    base, _, name = redis_cluster_url.partition("?prefix=")
    url = f"{base}?prefix={{{name.removesuffix(':')}}}:"
    store = store_from_url(url)
    await store.open()
    try:
        for endpoint in ("a", "b", "c"):
            await _serve(store, endpoint)
        prefix = store.prefix  # type: ignore[attr-defined]
    finally:
        await store.close()
    found = _keys_by_node(url, prefix)
    slots = {slot for keys in found.values() for slot in keys.values()}
    assert len(slots) == 1 and sum(bool(keys) for keys in found.values()) == 1, found


async def test_announcements_reach_other_servers_over_sharded_pubsub(
    redis_cluster_url: str,
) -> None:
    first, second = store_from_url(redis_cluster_url), store_from_url(redis_cluster_url)
    await first.open()
    await second.open()
    await announcements_reach_the_other(first, second)


@pytest.mark.e2e
def test_a_server_and_a_worker_run_on_the_cluster(
    redis_cluster_url: str, serve: Serve, workers: Workers
) -> None:
    a, b = api_servers(serve, redis_cluster_url, 2)
    workers(worker_args(a, "tests/models/remote.py:Sleepy")).start()
    wait_for(lambda: online(b, "sleepy") == 1, 60, "the worker, seen from the other server")
    with Client(b.url) as c:
        assert [c.predict("sleepy", n=n, seconds=0)["n"] for n in range(5)] == list(range(5))


async def test_max_bytes_is_checked_on_the_primary_of_the_slot(redis_cluster_url: str) -> None:
    store = store_from_url(redis_cluster_url + "&max_bytes=1000")
    await store.open()
    try:
        with pytest.raises(Unavailable, match="over its bound of 1000"):
            await store.insert(_job())
        assert await store.queue_depths() == {}
    finally:
        await store.close()


def test_cluster_urls_parse() -> None:
    store = store_from_url("redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001?prefix=app:")
    target = store.target  # type: ignore[attr-defined]
    assert target.hosts == [("127.0.0.1", 7000), ("127.0.0.1", 7001)]
    assert (target.username, target.password, target.prefix) == ("u", "p", "{app:}")
    assert "p@" not in repr(store)
    tagged = store_from_url("redis+cluster://127.0.0.1:7000?prefix={app}:")
    assert tagged.prefix == "{app}:"  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="one database"):
        store_from_url("redis+cluster://127.0.0.1:7000/3")
    with pytest.raises(Exception, match="wait_replicas"):
        store_from_url("redis+cluster://127.0.0.1:7000?wait_replicas=1")


SPLIT_JOBS = 100
_NOT_JOBS = frozenset({"info", "cluster", "command", "hello"})


def _commands(port: int) -> Counter[str]:
    """Every command a node has run, but the probes' own (INFO), the clients' cluster
    topology reads (CLUSTER, COMMAND) and connection handshakes (HELLO): no job's."""
    with redis.Redis(host="127.0.0.1", port=port) as node:
        stats = node.info("commandstats")
    return Counter(
        {
            name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in stats.items()
            if name.removeprefix("cmdstat_").partition("|")[0] not in _NOT_JOBS
        }
    )


def documented_split() -> dict[str, tuple[float, float]]:
    """Commands per short job on each slot, from docs/capacity.md's cluster table: a figure
    (within 20% of it) or a range (``LOW to HIGH``)."""
    found = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in ("endpoint's slot", "deployment's slot"):
            low, dash, high = cells[1].partition(" to ")
            found[cells[0]] = (
                (float(low), float(high)) if dash else (0.8 * float(low), 1.2 * float(low))
            )
    assert len(found) == 2, f"{DOC} lacks the cluster table"
    return found


@pytest.mark.e2e
def test_a_short_job_runs_on_its_endpoints_slot(
    redis_cluster: str, serve: Serve, workers: Workers
) -> None:
    """Measured on a real server and worker: what a short job (submit, run, read) costs the
    endpoint's primary and the deployment's, as docs/capacity.md says (within 20% of a
    figure, or in a range)."""
    hosts = redis_cluster.removeprefix("redis+cluster://").split(",")
    host, _, port = hosts[0].rpartition(":")
    with RedisCluster(host=host, port=int(port)) as cluster:
        for i in range(64):  # bounded: a prefix whose two slots are on different primaries
            name = f"split-{uuid.uuid4().hex[:8]}-{i}:"
            home = cluster.get_node_from_key(f"{{{name}}}seq").port
            queue = cluster.get_node_from_key(f"{{{name}/{endpoint_shard('sleepy')}}}seq").port
            if home != queue:
                break
    assert home != queue
    (server,) = api_servers(serve, f"{redis_cluster}?prefix={name}", 1)
    first = workers(worker_args(server, SLEEPY)).start()  # defines the endpoint, and leaves
    wait_for(lambda: online(server, "sleepy") == 1, 60, "the worker")
    first.stop()
    wait_for(lambda: online(server, "sleepy") == 0, 60, "the worker gone")

    before = {p: _commands(p) for p in (home, queue)}
    inputs = [{"n": n, "seconds": 0} for n in range(SPLIT_JOBS)]
    answers = asyncio.run(submit_all([server.url], "sleepy", inputs, concurrency=16))
    assert Counter(r.status_code for r in answers) == {202: SPLIT_JOBS}
    workers(worker_args(server, SLEEPY)).start()
    ids = [r.json()["id"] for r in answers]
    finals = asyncio.run(wait_all([server.url], ids, 60))
    assert Counter(f["status"] for f in finals) == {"succeeded": SPLIT_JOBS}
    per_job = {
        slot: sum((_commands(p) - before[p]).values()) / SPLIT_JOBS
        for slot, p in (("endpoint's slot", queue), ("deployment's slot", home))
    }
    print(per_job)
    for slot, (low, high) in documented_split().items():
        assert low <= per_job[slot] <= high, (slot, per_job, (low, high))


def test_job_ids_name_their_endpoints_shard() -> None:
    """The store finds a job's slot from its id: the id ends with its endpoint's shard,
    keeps its length and its order by time; ids it did not make name no shard."""
    ids = [new_job_id(ep) for ep in ("echo", "echo", "other")]
    assert [len(i) for i in ids] == [28, 28, 28] and ids[0] != ids[1]
    assert [job_shard(i) for i in ids] == [endpoint_shard(e) for e in ("echo", "echo", "other")]
    assert endpoint_shard("echo") != endpoint_shard("other")
    assert ids[0][:12] <= ids[2][:12]
    assert [job_shard(i) for i in ("nope", ids[0].upper(), ids[0] + "0")] == [None] * 3
    store = store_from_url("redis+cluster://127.0.0.1:7000?prefix=app:")
    home = store._home(ids[0])  # type: ignore[attr-defined]
    assert home == store._slot("echo") == f"{{app:/{endpoint_shard('echo')}}}"  # type: ignore[attr-defined]
    assert store._home("nope") == "{app:}"  # type: ignore[attr-defined]
