"""Redis Cluster: one deployment's keys share one hash slot (so every Lua script is
legal there), announcements go over sharded pub/sub, and a server runs on it unchanged.
The store contract suite runs on the cluster too (``redis-cluster`` in test_stores.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import redis

from modelport import Client
from modelport.errors import Unavailable
from modelport.stores import store_from_url
from modelport.wire import Event, JobRecord, new_job_id
from tests.conftest import Serve, Workers, online, wait_for, worker_args
from tests.test_scale_e2e import api_servers


def _job(endpoint: str = "echo") -> JobRecord:
    return JobRecord(id=new_job_id(), endpoint=endpoint, created_at=1.0, input={"x": 1})


async def test_a_deployment_keeps_its_keys_in_one_slot(redis_cluster_url: str) -> None:
    store = store_from_url(redis_cluster_url)
    await store.open()
    try:
        for endpoint in ("a", "b"):
            job = await store.insert(_job(endpoint))
            await store.add_events([Event(job.id, "log", {"line": "hi"}, 0, 1.0)])
            await store.lease(endpoint, "w1", 1, 2.0, 60.0)
            assert (await store.get(job.id)) is not None
        prefix = store.prefix  # type: ignore[attr-defined]
        assert prefix.startswith("{") and prefix.endswith("}")
    finally:
        await store.close()
    hosts = redis_cluster_url.removeprefix("redis+cluster://").partition("?")[0].split(",")
    slots: set[int] = set()
    holders = 0
    for host in hosts:
        with redis.Redis(host="127.0.0.1", port=int(host.rpartition(":")[2])) as node:
            keys = list(node.scan_iter(match=f"{prefix}*"))
            holders += bool(keys)
            slots |= {int(node.cluster("KEYSLOT", k)) for k in keys}
    assert len(slots) == 1 and holders == 1, (slots, holders)


async def test_announcements_reach_other_servers_over_sharded_pubsub(
    redis_cluster_url: str,
) -> None:
    first, second = store_from_url(redis_cluster_url), store_from_url(redis_cluster_url)
    await first.open()
    await second.open()
    try:
        heard: asyncio.Queue[str] = asyncio.Queue()
        second.subscribe(heard.put_nowait)
        async with asyncio.timeout(10):  # subscribed in the background: publish until heard
            while heard.empty():
                await first.publish("q:echo")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await heard.get()
                        break
        await first.publish("j:abc")
        async with asyncio.timeout(5):
            while (topic := await heard.get()) != "j:abc":
                assert topic == "q:echo"
    finally:
        await first.close()
        await second.close()


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
