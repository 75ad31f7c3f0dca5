"""Two real servers on one Redis agree on keys: one rate limit and quota across both, and a
key revoked on one stops working on the other within a second."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from modelport.keys import new_key
from modelport.stores import store_from_url
from tests.conftest import Serve, ServerProcess


async def put_keys(url: str, **keys: dict[str, object]) -> dict[str, tuple[str, str]]:
    store = store_from_url(url)
    await store.open()
    made = {}
    try:
        for name, fields in keys.items():
            scope = str(fields.pop("scope", "client"))
            key, secret = new_key(scope, name=name, **fields)  # type: ignore[arg-type]
            await store.put_key(key.to_dict())
            made[name] = (secret, key.id)
    finally:
        await store.close()
    return made


def two_servers(serve: Serve, redis_url: str) -> tuple[ServerProcess, ServerProcess]:
    args = ["tests/models/basic.py:Add", "--store", redis_url, "--auth", "keys"]
    a, b = serve(args).start(), serve(args).start()
    return a.wait_ready(), b.wait_ready()


@pytest.mark.timeout(120)
def test_limits_hold_across_two_servers_and_revocation_reaches_both(
    serve: Serve, redis_url: str
) -> None:
    keys = asyncio.run(
        put_keys(
            redis_url,
            limited={"rate": "1/h", "burst": 3},
            daily={"quota": 4},
            admin={"scope": "admin"},
            doomed={},
        )
    )
    a, b = two_servers(serve, redis_url)

    def submit(server: ServerProcess, name: str) -> httpx.Response:
        return httpx.post(
            f"{server.url}/endpoints/add/jobs",
            json={"input": {"a": 1}},
            headers={"Authorization": f"Bearer {keys[name][0]}"},
            timeout=30,
        )

    statuses = [submit(s, "limited").status_code for s in (a, b, a, b, a)]
    assert statuses == [200, 200, 200, 429, 429]
    statuses = [submit(s, "daily").status_code for s in (b, a, b, a, b)]
    assert statuses == [200, 200, 200, 200, 429]

    assert submit(b, "doomed").status_code == 200  # b has the key cached now
    revoked = httpx.delete(
        f"{a.url}/keys/{keys['doomed'][1]}",
        headers={"Authorization": f"Bearer {keys['admin'][0]}"},
        timeout=10,
    )
    assert revoked.status_code == 204
    since = time.monotonic()
    assert submit(a, "doomed").status_code == 401
    while submit(b, "doomed").status_code != 401:
        assert time.monotonic() - since < 5, "the revoked key still works on the other server"
    assert time.monotonic() - since < 1.0
