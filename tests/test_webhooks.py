"""Webhooks: signed deliveries from a queue in the store, retried, throttled, never SSRF."""

from __future__ import annotations

import base64
import datetime
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from modelport.core.webhooks import signature
from modelport.errors import ModelportError
from modelport.keys import new_key
from modelport.server.app import Server
from modelport.settings import Settings
from tests.conftest import AppFactory, Serve, eventually, free_port
from tests.models.basic import Add, Fails
from tests.models.stream import Ticker

SECRET = "whsec_" + base64.b64encode(b"a secret of 32 bytes, for tests!").decode()


class Receiver:
    """A webhook receiver on 127.0.0.1 that records what it is sent; it answers ``status``
    (or is not listening at all until started)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self._server: http.server.ThreadingHTTPServer | None = None
        self.arrived = threading.Condition()

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.arrived:
                    receiver.received.append(
                        ({k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    receiver.arrived.notify_all()
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self) -> list[str]:
        return [h["modelport-event"] for h, _ in self.received]

    def bodies(self, event: str) -> list[dict[str, Any]]:
        return [orjson.loads(b) for h, b in self.received if h["modelport-event"] == event]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def settings(receiver: Receiver, allow: tuple[str, ...] | None = None) -> Settings:
    return Settings(
        webhook_allow=allow if allow is not None else (f"127.0.0.1:{receiver.port}",),
        webhook_secret=SECRET,
    )


async def until(what: str, check: Any, timeout: float = 20) -> None:
    async def holds() -> bool:
        return bool(check())

    await eventually(holds, timeout, what)


async def test_deliveries_are_signed_the_standard_webhooks_way(
    app_factory: AppFactory, receiver: Receiver
) -> None:
    app = await app_factory([Add], settings=settings(receiver))
    r = await app.http.post(
        "/endpoints/add/jobs", json={"input": {"a": 2}, "webhook": receiver.url}
    )
    assert r.status_code == 200
    job_id = r.json()["id"]
    await until(
        "started and completed", lambda: sorted(receiver.events()) == ["completed", "started"]
    )
    verifier = Webhook(SECRET)
    for headers, body in receiver.received:
        verified = verifier.verify(body, headers)  # raises if the signature is wrong
        assert verified["id"] == job_id
        assert headers["webhook-id"].startswith("msg_")
        stamp = int(headers["webhook-timestamp"])
        assert abs(stamp - time.time()) < 60
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        assert headers["webhook-signature"] == signature(key, headers["webhook-id"], stamp, body)
        assert (
            verifier.sign(
                headers["webhook-id"],
                datetime.datetime.fromtimestamp(stamp, tz=datetime.UTC),
                body.decode(),
            )
            == headers["webhook-signature"]
        )
    (completed,) = receiver.bodies("completed")
    shown = (await app.http.get(f"/jobs/{job_id}")).json()
    assert completed == {k: v for k, v in shown.items() if k != "webhook"}
    assert completed["status"] == "succeeded" and completed["output"] == {"sum": 3.0}

    async def recorded() -> bool:
        hook = (await app.http.get(f"/jobs/{job_id}")).json()["webhook"]
        return [d["state"] for d in hook["deliveries"]] == ["delivered", "delivered"]

    await eventually(recorded, 10, "the deliveries to show as delivered")
    hook = (await app.http.get(f"/jobs/{job_id}")).json()["webhook"]
    assert hook["url"] == receiver.url
    assert hook["events"] == ["started", "progress", "output", "log", "completed"]
    assert all(d["attempts"][0]["status"] == 200 for d in hook["deliveries"])
    assert SECRET not in (await app.http.get(f"/jobs/{job_id}")).text


async def test_events_are_filtered_and_intermediate_ones_throttled(
    app_factory: AppFactory, receiver: Receiver
) -> None:
    app = await app_factory([Ticker], settings=settings(receiver))
    started = time.monotonic()
    r = await app.http.post(
        "/endpoints/ticker/jobs",
        json={
            "input": {"n": 30, "every": 0.04},
            "webhook": receiver.url,
            "webhook_events": ["output", "completed"],
        },
    )
    took = time.monotonic() - started
    assert r.json()["status"] == "succeeded"
    await until("the completed delivery", lambda: "completed" in receiver.events())
    events = receiver.events()
    assert set(events) == {"output", "completed"}
    outputs = events.count("output")
    assert 1 <= outputs <= took / 0.5 + 2, (outputs, took)  # at most one per 500 ms
    (completed,) = receiver.bodies("completed")
    assert completed["output"] == "".join(f"w{i} " for i in range(30))


async def test_a_failed_job_is_delivered_too(app_factory: AppFactory, receiver: Receiver) -> None:
    app = await app_factory([Fails], settings=settings(receiver))
    body = {"input": {"x": -1}, "webhook": receiver.url, "webhook_events": ["completed"]}
    r = await app.http.post("/endpoints/fails/jobs", json=body)
    assert r.json()["status"] == "failed"
    await until("the completed delivery", lambda: receiver.events() == ["completed"])
    assert receiver.bodies("completed")[0]["error"].startswith("ValueError")


async def test_retries_while_the_receiver_is_down(app_factory: AppFactory) -> None:
    receiver = Receiver()  # not listening yet
    app = await app_factory([Add], settings=settings(receiver))
    body = {"input": {"a": 1}, "webhook": receiver.url, "webhook_events": ["completed"]}
    job_id = (await app.http.post("/endpoints/add/jobs", json=body)).json()["id"]

    async def attempts() -> list[dict[str, Any]]:
        hook = (await app.http.get(f"/jobs/{job_id}")).json()["webhook"]
        return list(hook["deliveries"][0]["attempts"]) if hook["deliveries"] else []

    async def failed_twice() -> bool:
        return len(await attempts()) >= 2

    await eventually(failed_twice, 20, "two failed attempts")
    assert all("ConnectError" in a["error"] for a in await attempts())
    hook = (await app.http.get(f"/jobs/{job_id}")).json()["webhook"]
    assert hook["deliveries"][0]["state"] == "pending"
    assert hook["deliveries"][0]["next_attempt_at"] > time.time() - 1
    receiver.start()
    try:
        await until("the delivery", lambda: receiver.events() == ["completed"], timeout=30)

        async def delivered() -> bool:
            hook = (await app.http.get(f"/jobs/{job_id}")).json()["webhook"]
            return bool(hook["deliveries"][0]["state"] == "delivered")

        await eventually(delivered, 10, "the delivery to be recorded")
        assert receiver.bodies("completed")[0]["status"] == "succeeded"
    finally:
        receiver.stop()


async def test_an_error_answer_is_retried(app_factory: AppFactory, receiver: Receiver) -> None:
    receiver.status = 500
    app = await app_factory([Add], settings=settings(receiver))
    body = {"input": {"a": 1}, "webhook": receiver.url, "webhook_events": ["completed"]}
    job_id = (await app.http.post("/endpoints/add/jobs", json=body)).json()["id"]
    await until("a first attempt", lambda: len(receiver.received) >= 1)
    receiver.status = 204
    await until("a second attempt", lambda: len(receiver.received) >= 2)

    async def delivered() -> bool:
        hook = (await app.http.get(f"/jobs/{job_id}")).json()["webhook"]
        return bool(hook["deliveries"][0]["state"] == "delivered")

    await eventually(delivered, 10, "the delivery to be recorded")
    hook = (await app.http.get(f"/jobs/{job_id}")).json()["webhook"]
    statuses = [a["status"] for a in hook["deliveries"][0]["attempts"]]
    assert statuses[0] == 500 and statuses[-1] == 204
    ids = {h["webhook-id"] for h, _ in receiver.received}
    assert len(ids) == 1  # a retry is the same message


@pytest.mark.parametrize(
    ("allow", "webhook", "message"),
    [
        ((), "http://127.0.0.1:9/x", "sends no webhooks"),
        (("127.0.0.1:{port}",), "http://127.0.0.1:9/x", "may not go to 127.0.0.1:9"),
        (("*",), "http://127.0.0.1:{port}/x", "non-public address (127.0.0.1)"),
        (("*",), "http://localhost:{port}/x", "non-public address"),
        (("*",), "http://10.1.2.3/x", "non-public address (10.1.2.3)"),
        (("*",), "http://[::1]:{port}/x", "non-public address (::1)"),
        (("*",), "http://169.254.169.254/latest/meta-data", "non-public address"),
        (("*",), "ftp://example.com/x", "http:// or https://"),
        (("*",), "http://user:pw@example.com/x", "must not carry credentials"),
        (("*",), "not a url", "http:// or https://"),
    ],
)
async def test_webhook_targets_are_refused_without_ssrf(
    app_factory: AppFactory, receiver: Receiver, allow: tuple[str, ...], webhook: str, message: str
) -> None:
    allow = tuple(a.format(port=receiver.port) for a in allow)
    the_settings = Settings(webhook_allow=allow, webhook_secret=SECRET if allow else None)
    app = await app_factory([Add], settings=the_settings)
    body = {"input": {"a": 1}, "webhook": webhook.format(port=receiver.port)}
    r = await app.http.post("/endpoints/add/jobs", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "webhook"
    assert message in r.json()["errors"][0]["message"]
    assert (await app.http.get("/endpoints/add")).json()["queue_depth"] == 0
    assert receiver.received == []


async def test_bad_webhook_fields_are_422(app_factory: AppFactory, receiver: Receiver) -> None:
    app = await app_factory([Add], settings=settings(receiver))
    r = await app.http.post(
        "/endpoints/add/jobs", json={"input": {"a": 1}, "webhook_events": ["completed"]}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "webhook_events"
    r = await app.http.post(
        "/endpoints/add/jobs",
        json={"input": {"a": 1}, "webhook": receiver.url, "webhook_events": ["finished"]},
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"].startswith("webhook_events")


def test_webhooks_need_a_secret() -> None:
    with pytest.raises(ModelportError, match="webhooks need a signing secret"):
        Server([Add], settings=Settings(webhook_allow=("example.com",)))


def test_delivery_after_a_server_restart(serve: Serve, tmp_path: Path) -> None:
    receiver = Receiver()  # down while the first server runs
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    args = [
        "tests/models/basic.py:Add",
        "--store",
        f"sqlite:///{tmp_path}/jobs.db",
        "--webhook-allow",
        f"127.0.0.1:{receiver.port}",
        "--webhook-secret-file",
        str(secret),
    ]
    first = serve(args).start().wait_ready()
    body = {"input": {"a": 5}, "webhook": receiver.url, "webhook_events": ["completed"]}
    job_id = httpx.post(f"{first.url}/endpoints/add/jobs", json=body).json()["id"]
    deadline = time.monotonic() + 30
    while not httpx.get(f"{first.url}/jobs/{job_id}").json()["webhook"]["deliveries"][0][
        "attempts"
    ]:
        assert time.monotonic() < deadline, "no delivery was attempted"
        time.sleep(0.05)
    first.kill()
    receiver.start()
    try:
        serve(args, port=first.port).start().wait_ready()
        with receiver.arrived:
            assert receiver.arrived.wait_for(lambda: receiver.received, timeout=30), (
                "never delivered"
            )
        headers, delivered = receiver.received[0]
        Webhook(SECRET).verify(delivered, headers)
        assert orjson.loads(delivered)["output"] == {"sum": 6.0}
    finally:
        receiver.stop()


async def test_a_job_run_through_another_server_on_redis_is_delivered_once(
    app_factory: AppFactory, receiver: Receiver, redis_url: str
) -> None:
    front = await app_factory([], [Add.spec()], store=redis_url, settings=settings(receiver))
    await app_factory([Add], store=redis_url, settings=settings(receiver))  # runs the jobs
    bodies = [{"input": {"a": i}, "webhook": receiver.url} for i in range(5)]
    for body in bodies:
        r = await front.http.post("/endpoints/add/jobs", json=body)
        assert r.json()["status"] == "succeeded"
    await until("every completed delivery", lambda: receiver.events().count("completed") == 5)
    await until("every started delivery", lambda: receiver.events().count("started") == 5)
    completed = receiver.bodies("completed")
    assert sorted(b["output"]["sum"] for b in completed) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len({b["id"] for b in completed}) == 5
    for body in completed:
        hook = (await front.http.get(f"/jobs/{body['id']}")).json()["webhook"]
        assert sorted(d["event"] for d in hook["deliveries"]) == ["completed", "started"]


KEY_SECRET = "whsec_" + base64.b64encode(b"the secret of one key, 32 bytes!").decode()


async def test_a_key_with_its_own_webhook_secret_signs_its_jobs_webhooks(
    app_factory: AppFactory, receiver: Receiver
) -> None:
    app = await app_factory([Add], settings=replace(settings(receiver), auth="keys"))
    store = app.server.broker.store
    admin, admin_secret = new_key("admin", name="ops")
    await store.put_key(admin.to_dict())
    as_admin = {"Authorization": f"Bearer {admin_secret}"}
    made = await app.http.post(
        "/keys",
        json={"scope": "client", "name": "own-hooks", "webhook_secret": KEY_SECRET},
        headers=as_admin,
    )
    assert made.status_code == 201, made.text
    plain = await app.http.post("/keys", json={"scope": "client"}, headers=as_admin)
    listed = await app.http.get("/keys", headers=as_admin)
    for r in (made, plain, listed):
        assert KEY_SECRET not in r.text and "webhook_secret" not in r.text
    for sent, why in (
        ({"scope": "worker", "webhook_secret": KEY_SECRET}, "a worker key submits no jobs"),
        ({"scope": "client", "webhook_secret": "whsec_c2hvcnQ="}, "webhook_secret"),
        ({"scope": "client", "webhook_secret": "not base64"}, "webhook_secret"),
    ):
        refused = await app.http.post("/keys", json=sent, headers=as_admin)
        assert refused.status_code == 422, refused.text
        assert why in refused.text and refused.json()["errors"][0]["field"] == "webhook_secret"

    ids = {}
    for name, created in (("own", made), ("plain", plain)):
        r = await app.http.post(
            "/endpoints/add/jobs",
            json={"input": {"a": 2}, "webhook": receiver.url, "webhook_events": ["completed"]},
            headers={"Authorization": f"Bearer {created.json()['key']}"},
        )
        assert r.status_code == 200, r.text
        ids[r.json()["id"]] = name
    await until("both jobs' webhooks", lambda: len(receiver.received) == 2)
    signers = {"own": Webhook(KEY_SECRET), "plain": Webhook(SECRET)}
    for headers, body in receiver.received:
        job_id = orjson.loads(body)["id"]
        mine, other = ids[job_id], {"own": "plain", "plain": "own"}[ids[job_id]]
        assert signers[mine].verify(body, headers)["id"] == job_id
        with pytest.raises(WebhookVerificationError):
            signers[other].verify(body, headers)
    assert sorted(ids.values()) == ["own", "plain"]
