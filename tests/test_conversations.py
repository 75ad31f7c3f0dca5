"""``/conversations``: the chat page's conversations, kept in the store for the caller's key
(a browser session shares its key's), on every backend and across servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from modelport.keys import new_key
from modelport.server.conversations import MAX_BYTES, MAX_MESSAGES
from modelport.settings import Settings
from modelport.stores import JobStore, store_from_url
from tests.conftest import AppFactory
from tests.models.basic import Add
from tests.models.stream import Chatter
from tests.test_stores import BACKENDS


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    yield store_from_url(BACKENDS[request.param](request, tmp_path))


async def _key(store: JobStore, **fields: Any) -> dict[str, str]:
    key, secret = new_key("client", **fields)
    await store.put_key(key.to_dict())
    return {"Authorization": f"Bearer {secret}"}


async def test_a_conversation_is_kept_for_its_key_and_its_session(
    app_factory: AppFactory, store: JobStore
) -> None:
    app = await app_factory([Chatter, Add], store=store, settings=Settings(auth="keys"))
    http = app.http
    owner = await _key(store, name="owner", endpoints=["chatter", "add"])
    stranger = await _key(store, name="stranger")
    adder = await _key(store, name="adder", endpoints=["add"])
    made = await http.post("/sessions", json={"endpoints": ["chatter"]}, headers=owner)
    browser = {"Authorization": f"Bearer {made.json()['token']}"}

    r = await http.post("/conversations", json={"endpoint": "chatter"}, headers=browser)
    assert r.status_code == 201, r.text
    conversation = r.json()
    cid = conversation["id"]
    assert r.headers["location"] == f"/conversations/{cid}"
    assert conversation["messages"] == [] and conversation["title"] == "New chat"
    turns = [
        {"role": "user", "content": "  tell me <b>about</b>\nfiles  "},
        {
            "role": "assistant",
            "content": "w0 w1 ",
            "job_id": "j1",
            "status": "succeeded",
            "stats": {"ttft_ms": 12.5, "tokens": 2, "tokens_per_second": 80.0},
        },
    ]
    r = await http.post(f"/conversations/{cid}/messages", json={"messages": turns}, headers=browser)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "tell me <b>about</b> files"
    # The key sees what its session wrote; the list is newest first, without messages.
    r = await http.get(f"/conversations/{cid}", headers=owner)
    assert r.status_code == 200 and r.json()["messages"] == turns
    second = await http.post(
        "/conversations",
        json={"endpoint": "chatter", "title": "second", "messages": turns[:1]},
        headers=owner,
    )
    listed = (await http.get("/conversations", headers=browser)).json()
    assert [c["id"] for c in listed] == [second.json()["id"], cid]
    assert listed[1]["message_count"] == 2 and "messages" not in listed[1]
    assert (await http.get("/conversations?endpoint=add", headers=owner)).json() == []

    # Another key, or one without the endpoint, finds nothing, as if it did not exist.
    assert (await http.get(f"/conversations/{cid}", headers=stranger)).status_code == 404
    assert (await http.get("/conversations", headers=stranger)).json() == []
    assert (await http.delete(f"/conversations/{cid}", headers=stranger)).status_code == 404
    r = await http.post(
        f"/conversations/{cid}/messages", json={"messages": turns}, headers=stranger
    )
    assert r.status_code == 404
    r = await http.post("/conversations", json={"endpoint": "chatter"}, headers=adder)
    assert r.status_code == 403 and "chatter" in r.json()["detail"]
    assert (await http.get("/conversations")).status_code == 401

    assert (await http.delete(f"/conversations/{cid}", headers=browser)).status_code == 204
    assert (await http.get(f"/conversations/{cid}", headers=owner)).status_code == 404
    listed = (await http.get("/conversations", headers=owner)).json()
    assert [c["id"] for c in listed] == [second.json()["id"]]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"endpoint": "add"}, 422, "endpoint"),
        ({"endpoint": "nope"}, 404, None),
        ({"endpoint": "chatter", "messages": [{"role": "robot", "content": "x"}]}, 422, None),
        ({"endpoint": "chatter", "extra": 1}, 422, "extra"),
        ({}, 422, "endpoint"),
    ],
)
async def test_a_bad_conversation_is_refused_naming_the_problem(
    app_factory: AppFactory, body: dict[str, Any], status: int, field: str | None
) -> None:
    app = await app_factory([Chatter, Add])
    r = await app.http.post("/conversations", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    if field is not None:
        assert field in [e["field"] for e in r.json()["errors"]]
    r = await app.http.post("/conversations", content=b"{nope", headers=_JSON)
    assert r.status_code == 400


_JSON = {"content-type": "application/json"}


async def test_a_conversation_holds_a_bounded_number_of_messages(app_factory: AppFactory) -> None:
    app = await app_factory([Chatter])
    turn = {"role": "user", "content": "x"}
    r = await app.http.post(
        "/conversations", json={"endpoint": "chatter", "messages": [turn] * MAX_MESSAGES}
    )
    assert r.status_code == 201
    more = await app.http.post(
        f"/conversations/{r.json()['id']}/messages", json={"messages": [turn]}
    )
    assert more.status_code == 422 and f"at most {MAX_MESSAGES}" in more.json()["detail"]
    # Nor more than MAX_BYTES in all: a body under the limit that would pass it is refused.
    made = await app.http.post("/conversations", json={"endpoint": "chatter"})
    big = {"role": "user", "content": "x" * 100_000}
    path = f"/conversations/{made.json()['id']}/messages"
    for _ in range(MAX_BYTES // 100_000 - 1):
        assert (await app.http.post(path, json={"messages": [big]})).status_code == 200
    refused = await app.http.post(path, json={"messages": [big, big]})
    assert refused.status_code == 422 and "start a new one" in refused.json()["detail"]
    kept = (await app.http.get(path.removesuffix("/messages"))).json()
    assert len(kept["messages"]) == MAX_BYTES // 100_000 - 1
    assert (await app.http.get("/conversations/nope")).status_code == 404


async def test_every_server_sharing_a_store_sees_the_conversation(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    one = await app_factory([Chatter], store=url)
    two = await app_factory([Chatter], store=url)
    made = await one.http.post("/conversations", json={"endpoint": "chatter"})
    cid = made.json()["id"]
    turn = {"role": "user", "content": "hello"}
    r = await two.http.post(f"/conversations/{cid}/messages", json={"messages": [turn]})
    assert r.status_code == 200, r.text
    got = await one.http.get(f"/conversations/{cid}")
    assert got.json()["messages"] == [turn] and got.json()["title"] == "hello"
