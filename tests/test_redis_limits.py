"""Back-pressure at the Redis store: its own bound (--max-store-bytes) and Redis's
maxmemory refuse new jobs with 503, a reason and Retry-After, and write nothing of them;
/metrics reports the bytes one queued job takes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import redis

from modelport.errors import Unavailable
from modelport.stores import store_from_url, store_options
from modelport.wire import JobRecord, new_job_id
from tests.conftest import RedisServer, Serve
from tests.test_scale_e2e import api_servers

TEXT = "x" * 8_000


def _used(server: RedisServer) -> int:
    with redis.Redis(port=server.port) as r:
        return int(r.info("memory")["used_memory"])


async def test_redis_out_of_memory_refuses_a_job_and_writes_none_of_it(
    own_redis: RedisServer,
) -> None:
    with redis.Redis(port=own_redis.port) as r:
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", _used(own_redis) + 400_000)
    store = store_from_url(own_redis.url)
    await store.open()
    try:
        accepted: list[str] = []
        refused = None
        for _ in range(500):  # ~4 MB at most: far past the 400 kB allowed
            job = JobRecord(
                id=new_job_id("echo"), endpoint="echo", created_at=1.0, input={"t": TEXT}
            )
            try:
                accepted.append((await store.insert(job)).id)
            except Unavailable as e:
                refused = (job.id, e)
                break
        assert refused is not None, "Redis never ran out of memory"
        job_id, error = refused
        assert "out of memory" in str(error) and error.retry_after
        assert await store.get(job_id) is None  # nothing half-written
        assert await store.events(job_id) == []
        assert (await store.queue_depths())["echo"]["queued"] == len(accepted)
        assert len(accepted) > 10
    finally:
        await store.close()


def test_max_store_bytes_refuses_submits_with_a_reason(
    own_redis: RedisServer, serve: Serve, tmp_path: Path
) -> None:
    config = tmp_path / "echo.toml"
    config.write_text(
        '[endpoint]\nname = "echo"\n[inputs]\ntext = { type = "string" }\n'
        '[outputs]\ntext = { type = "string" }\n'
    )
    bound = _used(own_redis) + 600_000
    (server,) = api_servers(
        serve, own_redis.url, 1, "--config", str(config), "--max-store-bytes", str(bound)
    )
    accepted = 0
    with httpx.Client(timeout=30) as http:
        # No worker drains the queue. The store samples Redis's memory once a second, so the
        # bound is seen only after a second of submits: on a fast machine 1,000 fit in less.
        for _ in range(5000):  # 40 MB at most
            r = http.post(
                f"{server.url}/endpoints/echo/jobs",
                json={"input": {"text": TEXT}},
                headers={"Prefer": "respond-async"},
            )
            if r.status_code != 202:
                break
            accepted += 1
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "--max-store-bytes" in r.json()["detail"] and r.headers["retry-after"]
        assert accepted > 10
        assert http.get(f"{server.url}/endpoints/echo").json()["queue_depth"] == accepted
        metrics = http.get(f"{server.url}/metrics").text
    found = re.search(r'modelport_queued_job_bytes\{endpoint="echo"\} (\S+)', metrics)
    assert found is not None, metrics
    assert len(TEXT) < float(found.group(1)) < 4 * len(TEXT)


def test_store_options_are_for_redis_only() -> None:
    assert store_options("redis://h/0", max_bytes=5) == "redis://h/0?max_bytes=5"
    assert store_options("redis://h/0?prefix=a:", password_file=None) == "redis://h/0?prefix=a:"
    with pytest.raises(Exception, match="--max-store-bytes: only for a redis store"):
        store_options("sqlite:///jobs.db", max_bytes=5)
