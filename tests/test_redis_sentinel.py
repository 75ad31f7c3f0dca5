"""Redis Sentinel end to end: the primary is killed under load, the sentinels promote the
replica, and every job the server acknowledged reaches exactly one outcome."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelport.errors import Unavailable
from modelport.stores import store_from_url
from modelport.wire import JobRecord, new_job_id
from tests.conftest import RedisSentinels, Serve, Workers, online, wait_for, worker_args
from tests.test_scale_e2e import api_servers, wait_all

pytestmark = pytest.mark.e2e

SLEEPY = "tests/models/remote.py:Sleepy"
FINAL = {"succeeded", "failed", "cancelled", "expired"}


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


def _outcomes(url: str, job_id: str) -> list[str]:
    """The final events in a job's event stream (exactly one for a job with one outcome)."""
    with httpx.Client(timeout=30) as http:
        r = http.get(f"{url}/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
    assert r.status_code == 200, r.text
    kinds = [line.removeprefix("event: ") for line in r.text.splitlines()]
    return [k for k in kinds if k in FINAL]


def test_a_killed_primary_loses_no_acknowledged_job(
    own_sentinels: RedisSentinels, serve: Serve, workers: Workers
) -> None:
    # (Redis first: it is then stopped last, after the servers and workers.)
    a, b = api_servers(serve, own_sentinels.url, 2)
    workers(worker_args(a, SLEEPY)).start()
    workers(worker_args(b, SLEEPY)).start()
    wait_for(lambda: online(a, "sleepy") == 2, 60, "2 workers")
    acked: list[tuple[int, str]] = []
    refused: Counter[int] = Counter()

    async def load() -> None:
        stop = asyncio.Event()
        async with httpx.AsyncClient(timeout=30) as http:

            async def submitter(k: int, url: str) -> None:
                n = k
                while not stop.is_set():
                    r = await http.post(
                        f"{url}/endpoints/sleepy/jobs",
                        json={"input": {"n": n, "seconds": 0.01}},
                        headers={"Prefer": "respond-async"},
                    )
                    if r.status_code == 202:
                        acked.append((n, r.json()["id"]))
                    else:  # only while the store is switching, and always with a reason
                        assert r.status_code == 503, r.text
                        assert r.headers["retry-after"]
                        assert "redis" in r.json()["detail"]
                        refused[r.status_code] += 1
                        await asyncio.sleep(0.05)  # a client's backoff, not a wait for state
                    n += 4

            tasks = [asyncio.create_task(submitter(k, (a.url, b.url)[k % 2])) for k in range(4)]
            try:
                await _until(lambda: len(acked) >= 40, 60, "40 acknowledged jobs")
                old = own_sentinels.primary_port()
                own_sentinels.primary.kill()  # SIGKILL, under load
                await _until(
                    lambda: own_sentinels.primary_port() != old, 60, "the sentinels' failover"
                )
                # The old primary comes back (empty) as the new primary's replica, so
                # acknowledged submits (WAIT for 1 replica) are possible again.
                new = str(own_sentinels.primary_port())
                own_sentinels.primary.extra = ["--replicaof", "127.0.0.1", new]
                own_sentinels.primary.start()
                after = len(acked)
                await _until(lambda: len(acked) >= after + 40, 60, "40 more acknowledged jobs")
            finally:
                stop.set()
                await asyncio.gather(*tasks)

    asyncio.run(load())
    assert refused[503] > 0, "the failover went unnoticed: was the primary really killed?"
    finals = asyncio.run(wait_all([a.url, b.url], [i for _, i in acked], 120))
    assert Counter(f["status"] for f in finals) == {"succeeded": len(acked)}
    assert [f["output"]["n"] for f in finals] == [n for n, _ in acked]
    assert len({i for _, i in acked}) == len(acked)
    for _, job_id in acked[:: max(1, len(acked) // 20)]:  # a sample of the event streams
        assert _outcomes(b.url, job_id) == ["succeeded"]


async def test_a_submit_no_replica_confirms_is_refused(redis_sentinel_url: str) -> None:
    one = store_from_url(redis_sentinel_url)  # WAIT for 1 replica: there is one
    two = store_from_url(redis_sentinel_url + "&wait_replicas=2&wait_timeout=200")
    await one.open()
    await two.open()
    try:
        job = JobRecord(id=new_job_id("echo"), endpoint="echo", created_at=1.0, input={"x": 1})
        assert (await one.insert(job)).seq > 0
        late = JobRecord(id=new_job_id("echo"), endpoint="echo", created_at=1.0, input={"x": 2})
        with pytest.raises(Unavailable, match="1 of 2 replicas confirmed"):
            await two.insert(late)
    finally:
        await one.close()
        await two.close()


def test_sentinel_urls_parse_and_never_show_a_password(tmp_path: Any) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text("s3cret\n")
    store = store_from_url(
        "redis+sentinel://app@127.0.0.1:26379,[::1]:26380/mymaster/2"
        f"?password_file={secret}&sentinel_password_file={secret}&wait_replicas=2&prefix=p:"
    )
    target = store.target  # type: ignore[attr-defined]
    assert target.hosts == [("127.0.0.1", 26379), ("::1", 26380)]
    assert (target.service, target.db, target.username) == ("mymaster", 2, "app")
    assert (target.password, target.wait_replicas, target.prefix) == ("s3cret", 2, "p:")
    assert target.sentinel_password == "s3cret"
    assert "s3cret" not in repr(store) and "s3cret" not in repr(target)
    with pytest.raises(Exception, match="name the monitored primary"):
        store_from_url("redis+sentinel://127.0.0.1:26379")
    with pytest.raises(Exception, match="HOST:PORT"):
        store_from_url("redis+sentinel://127.0.0.1/mymaster")
    with pytest.raises(Exception, match="wait_replicas"):
        store_from_url("redis+sentinel://127.0.0.1:1/m?wait_replicas=many")
