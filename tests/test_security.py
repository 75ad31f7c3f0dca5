"""API keys, scopes, job and worker ownership, sessions and rate limits, in-process on every
store: every route against every credential."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.errors import InvalidInput, PayloadTooLarge
from modelport.keys import digest, new_key
from modelport.server.auth import Principal
from modelport.server.limits import check_shape
from modelport.settings import Settings
from modelport.stores import JobStore, store_from_url
from tests.conftest import ROOT, AppFactory, InProcessApp
from tests.models.basic import Add, Fails, Shapes, Slow
from tests.models.stream import Chatter
from tests.test_stores import BACKENDS

WORKER_TOKEN = "shared-worker-token-for-tests"
ASYNC = {"Prefer": "respond-async"}


@dataclass
class Deployment:
    app: InProcessApp
    store: JobStore
    secrets: dict[str, str]
    """Credential name -> the secret presented."""
    ids: dict[str, str]
    """Credential name -> key id."""

    @property
    def http(self) -> httpx.AsyncClient:
        return self.app.http

    async def key(self, scope: str, name: str, **fields: Any) -> str:
        key, secret = new_key(scope, name=name, **fields)
        await self.store.put_key(key.to_dict())
        self.secrets[name], self.ids[name] = secret, key.id
        return secret

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[name]}"} if name in self.secrets else {}


@pytest.fixture(params=list(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    # The server opens and closes it; the test only hands it over.
    yield store_from_url(BACKENDS[request.param](request, tmp_path))


async def deploy(app_factory: AppFactory, store: JobStore, **settings: Any) -> Deployment:
    settings.setdefault("auth", "keys")
    app = await app_factory(
        [Add, Fails],
        [Slow.spec()],
        store=store,
        settings=Settings(worker_token=WORKER_TOKEN, **settings),
    )
    return Deployment(app, app.server.broker.store, {}, {})


@pytest.fixture
async def keyed(app_factory: AppFactory, store: JobStore) -> Deployment:
    d = await deploy(app_factory, store)
    await d.key("client", "owner", endpoints=["add", "slow"])
    await d.key("client", "stranger")
    await d.key("client", "fails-only", endpoints=["fails"])
    await d.key("worker", "worker")
    await d.key("admin", "admin")
    await d.key("client", "expired", expires_at=time.time() - 1)
    await d.key("client", "revoked")
    await d.store.delete_key(d.ids["revoked"])
    d.secrets["bad"] = "mp_" + "x" * 43
    d.secrets["worker-token"] = WORKER_TOKEN
    return d


ANONYMOUS = ("none", "bad", "expired", "revoked")
CLIENT_ROUTES = ("owner", "stranger", "fails-only", "admin")


ADMIN_ENDPOINT_ROUTES = (
    "put_endpoint",
    "disable_endpoint",
    "enable_endpoint",
    "delete_endpoint",
    "endpoint_logs",
    "delete_logs",
)
"""Endpoints at run time: an admin key's routes (run in this order: added, then deleted)."""


def expected(route: str, who: str) -> int:
    """The status each credential gets on each route: the table of the security model."""
    open_routes = {"live": 200, "ready": 200, "metrics": 200, "openapi": 200, "docs": 200}
    if route in open_routes:
        return open_routes[route]
    if who in ANONYMOUS:
        return 401
    if route == "register":
        return 422 if who in ("worker", "worker-token") else 403  # {} is not a registration
    if who in ("worker", "worker-token"):
        return 403
    if route in ("create_key", "list_keys", "delete_key"):
        return (
            {"create_key": 201, "list_keys": 200, "delete_key": 404}[route]
            if (who == "admin")
            else 403
        )
    if route in ADMIN_ENDPOINT_ROUTES:
        return (201 if route == "put_endpoint" else 200) if who == "admin" else 403
    if route == "session":
        return 201
    if route in ("endpoint", "submit", "metadata") and who == "fails-only":
        return 403
    if route in ("job", "events", "cancel", "job_logs"):
        if who in ("stranger", "fails-only"):
            return 404  # another key's job does not exist for it
        return 409 if route == "cancel" else 200  # the job already succeeded
    return {
        "endpoints": 200,
        "endpoint": 200,
        "metadata": 200,
        "submit": 200,
        "models": 200,
        "chat": 404,  # no chat endpoint: the model is not found
    }[route]


async def test_every_route_against_every_credential(keyed: Deployment) -> None:
    d = keyed
    submitted = await d.http.post(
        "/endpoints/add/jobs", json={"input": {"a": 1}}, headers=d.auth("owner")
    )
    assert submitted.status_code == 200, submitted.text
    job_id = submitted.json()["id"]
    routes: dict[str, tuple[str, str, Any, dict[str, str]]] = {
        "endpoints": ("GET", "/endpoints", None, {}),
        "endpoint": ("GET", "/endpoints/add", None, {}),
        "metadata": ("GET", "/endpoints/add/metadata", None, {}),
        "submit": ("POST", "/endpoints/add/jobs", {"input": {"a": 2}}, {}),
        "job": ("GET", f"/jobs/{job_id}", None, {}),
        "events": ("GET", f"/jobs/{job_id}/events", None, {"accept": "application/jsonl"}),
        "cancel": ("POST", f"/jobs/{job_id}/cancel", None, {}),
        "models": ("GET", "/v1/models", None, {}),
        "chat": (
            "POST",
            "/v1/chat/completions",
            {"model": "add", "messages": [{"role": "user", "content": "hi"}]},
            {},
        ),
        "put_endpoint": ("PUT", "/endpoints/extra", {"inputs": {"x": {"type": "integer"}}}, {}),
        "disable_endpoint": ("POST", "/endpoints/extra/disable", {"reason": "test"}, {}),
        "enable_endpoint": ("POST", "/endpoints/extra/enable", None, {}),
        "delete_endpoint": ("DELETE", "/endpoints/extra?drain=false", None, {}),
        "job_logs": ("GET", f"/jobs/{job_id}/logs", None, {}),
        "endpoint_logs": ("GET", "/endpoints/add/logs", None, {}),
        "delete_logs": ("DELETE", "/endpoints/add/logs", None, {}),
        "create_key": ("POST", "/keys", {"scope": "client", "name": "made"}, {}),
        "list_keys": ("GET", "/keys", None, {}),
        "delete_key": ("DELETE", "/keys/key_0000000000000000", None, {}),
        "session": ("POST", "/sessions", {}, {}),
        "register": ("POST", "/workers", {}, {}),
        "live": ("GET", "/health/live", None, {}),
        "ready": ("GET", "/health/ready", None, {}),
        "metrics": ("GET", "/metrics", None, {}),
        "openapi": ("GET", "/openapi.json", None, {}),
        "docs": ("GET", "/docs", None, {}),
    }
    credentials = [*ANONYMOUS, *CLIENT_ROUTES, "worker", "worker-token"]
    wrong = []
    for who in credentials:
        for route, (method, path, body, headers) in routes.items():
            r = await d.http.request(method, path, json=body, headers={**headers, **d.auth(who)})
            want = expected(route, who)
            if r.status_code != want:
                wrong.append(f"{who} {route}: {r.status_code} (want {want}) {r.text[:200]}")
            elif want == 401:
                assert r.headers["www-authenticate"] == "Bearer"
    assert not wrong, "\n".join(wrong)
    # The owner's job is there still, as it was: nobody else could touch it.
    job = await d.http.get(f"/jobs/{job_id}", headers=d.auth("owner"))
    assert job.json()["status"] == "succeeded"


async def test_401_and_403_say_why(keyed: Deployment) -> None:
    d = keyed
    cases = [
        ("none", 401, "an API key is required"),
        ("bad", 401, "not valid"),
        ("expired", 401, "expired"),
        ("revoked", 401, "not valid"),
        ("fails-only", 403, "may not use the endpoint 'add'"),
        ("worker", 403, "worker keys are not accepted on client routes"),
        ("worker-token", 403, "the worker token is not accepted on client routes"),
    ]
    for who, status, words in cases:
        r = await d.http.post("/endpoints/add/jobs", json={"input": {"a": 1}}, headers=d.auth(who))
        assert r.status_code == status, (who, r.text)
        assert words in r.json()["detail"], (who, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    assert await d.store.queue_depths() == {}  # no refused submit stored anything


async def test_a_key_lists_only_its_endpoints(keyed: Deployment) -> None:
    d = keyed
    names = [e["name"] for e in (await d.http.get("/endpoints", headers=d.auth("owner"))).json()]
    assert sorted(names) == ["add", "slow"]
    listing = (await d.http.get("/endpoints", headers=d.auth("admin"))).json()
    assert sorted(e["name"] for e in listing) == ["add", "fails", "slow"]


async def test_jobs_belong_to_their_key_and_admins_see_all(keyed: Deployment) -> None:
    d = keyed
    submit = {"input": {"n": 1}}
    r = await d.http.post("/endpoints/slow/jobs", json=submit, headers={**ASYNC, **d.auth("owner")})
    assert r.status_code == 202
    job_id = r.json()["id"]
    stored = await d.store.get(job_id)
    assert stored is not None and stored.owner == d.ids["owner"]
    missing = await d.http.get("/jobs/0000000000000000000000000000", headers=d.auth("stranger"))
    theirs = await d.http.get(f"/jobs/{job_id}", headers=d.auth("stranger"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["detail"] == f"no job with id {job_id!r}"
    assert (
        await d.http.post(f"/jobs/{job_id}/cancel", headers=d.auth("stranger"))
    ).status_code == 404
    assert (await d.store.get(job_id)).status == "queued"  # type: ignore[union-attr]
    seen = await d.http.get(f"/jobs/{job_id}", headers=d.auth("admin"))
    assert seen.status_code == 200
    cancelled = await d.http.post(f"/jobs/{job_id}/cancel", headers=d.auth("owner"))
    assert cancelled.json()["status"] == "cancelled"


async def test_idempotency_keys_are_per_api_key(keyed: Deployment) -> None:
    d = keyed
    headers = {"Idempotency-Key": "same", **ASYNC}
    a = await d.http.post(
        "/endpoints/slow/jobs", json={"input": {"n": 1}}, headers={**headers, **d.auth("owner")}
    )
    b = await d.http.post(
        "/endpoints/slow/jobs", json={"input": {"n": 2}}, headers={**headers, **d.auth("stranger")}
    )
    again = await d.http.post(
        "/endpoints/slow/jobs", json={"input": {"n": 1}}, headers={**headers, **d.auth("owner")}
    )
    assert a.json()["id"] != b.json()["id"]
    assert again.json()["id"] == a.json()["id"]


async def test_admin_routes_make_list_and_revoke_keys(keyed: Deployment) -> None:
    d = keyed
    admin = d.auth("admin")
    made = await d.http.post(
        "/keys",
        json={
            "scope": "client",
            "name": "app1",
            "endpoints": ["add"],
            "rate": "20/s",
            "quota": "10000/day",
            "expires_in": "1d",
        },
        headers=admin,
    )
    assert made.status_code == 201, made.text
    body = made.json()
    secret, key_id = body["key"], body["id"]
    assert secret.startswith("mp_") and len(secret) >= 46
    assert made.headers["location"] == f"/keys/{key_id}"
    assert body["rate"] == 20.0 and body["quota"] == 10_000 and body["endpoints"] == ["add"]
    assert "hash" not in body
    listed = (await d.http.get("/keys", headers=admin)).json()
    assert key_id in [k["id"] for k in listed]
    assert not any("hash" in k or "key" in k for k in listed)
    assert secret not in (await d.http.get("/keys", headers=admin)).text
    use = {"Authorization": f"Bearer {secret}"}
    assert (
        await d.http.post("/endpoints/add/jobs", json={"input": {"a": 1}}, headers=use)
    ).status_code == 200
    assert (await d.http.delete(f"/keys/{key_id}", headers=admin)).status_code == 204
    # Revoked here: refused at once on this server, whatever it had cached.
    r = await d.http.post("/endpoints/add/jobs", json={"input": {"a": 1}}, headers=use)
    assert r.status_code == 401
    assert (await d.http.delete(f"/keys/{key_id}", headers=admin)).status_code == 404


async def test_bad_key_requests_name_the_field(keyed: Deployment) -> None:
    d = keyed
    cases = [
        ({"scope": "root"}, "scope"),
        ({"scope": "client", "rate": "fast"}, "rate"),
        ({"scope": "client", "quota": "-1/day"}, "quota"),
        ({"scope": "client", "expires_in": "soon"}, "expires_in"),
        ({"scope": "client", "burst": 5}, "burst"),
        ({"scope": "admin", "endpoints": ["add"]}, "endpoints"),
        ({"scope": "client", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        r = await d.http.post("/keys", json=body, headers=d.auth("admin"))
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["detail"], (body, r.text)
    assert len(await d.store.list_keys()) == 6


async def test_worker_ids_belong_to_the_credential_that_registered_them(
    keyed: Deployment,
) -> None:
    d = keyed
    spec = Slow.spec().to_dict()
    reg = await d.http.post(
        "/workers", json={"name": "gpu", "endpoints": [spec]}, headers=d.auth("worker")
    )
    assert reg.status_code == 201, reg.text
    worker_id = reg.json()["worker_id"]
    calls = [
        ("POST", f"/workers/{worker_id}/lease", {"max_jobs": 1, "wait": 0}),
        ("POST", f"/workers/{worker_id}/events", {"events": []}),
        ("POST", f"/workers/{worker_id}/results", {"results": []}),
        ("DELETE", f"/workers/{worker_id}", None),
    ]
    for method, path, body in calls:
        r = await d.http.request(method, path, json=body, headers=d.auth("worker-token"))
        assert r.status_code == 404, (path, r.text)
    taken = await d.http.post(
        "/workers",
        json={"name": "thief", "endpoints": [spec], "worker_id": worker_id},
        headers=d.auth("worker-token"),
    )
    assert taken.status_code == 404
    for method, path, body in calls:
        r = await d.http.request(method, path, json=body, headers=d.auth("worker"))
        assert r.status_code in (200, 204), (path, r.text)


async def test_a_worker_key_serves_only_its_endpoints(keyed: Deployment) -> None:
    d = keyed
    await d.key("worker", "team-a", endpoints=["team-a-model"])
    spec = Slow.spec().to_dict()
    r = await d.http.post(
        "/workers", json={"name": "gpu", "endpoints": [spec]}, headers=d.auth("team-a")
    )
    assert r.status_code == 403
    assert "'slow'" in r.json()["detail"]


async def test_auth_none_keeps_todays_behaviour_and_honours_keys(
    app_factory: AppFactory, store: JobStore
) -> None:
    d = await deploy(app_factory, store, auth="none")
    await d.key("client", "owner")
    anon = await d.http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
    assert anon.status_code == 200
    mine = await d.http.post(
        "/endpoints/add/jobs", json={"input": {"a": 1}}, headers=d.auth("owner")
    )
    # An anonymous caller sees every job (as before keys); a key sees only its own.
    assert (await d.http.get(f"/jobs/{mine.json()['id']}")).status_code == 200
    theirs = await d.http.get(f"/jobs/{anon.json()['id']}", headers=d.auth("owner"))
    assert theirs.status_code == 404
    bad = await d.http.get("/endpoints", headers={"Authorization": "Bearer whatever"})
    assert bad.status_code == 200
    assert (await d.http.get("/keys")).status_code == 401


async def test_metrics_auth_needs_an_admin_key(app_factory: AppFactory, store: JobStore) -> None:
    d = await deploy(app_factory, store, metrics_auth=True)
    await d.key("admin", "admin")
    await d.key("client", "client")
    assert (await d.http.get("/metrics")).status_code == 401
    assert (await d.http.get("/metrics", headers=d.auth("client"))).status_code == 403
    assert (await d.http.get("/metrics", headers=d.auth("admin"))).status_code == 200


async def test_the_openai_routes_use_keys_with_openai_errors(keyed: Deployment) -> None:
    d = keyed
    r = await d.http.get("/v1/models")
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    r = await d.http.get("/v1/models", headers=d.auth("worker"))
    assert r.json()["error"]["type"] == "permission_error"


def modelport_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


async def _stored_key(url: str, key_id: str) -> dict[str, Any]:
    store = store_from_url(url)
    await store.open()
    try:
        key = await store.get_key(key_id)
    finally:
        await store.close()
    assert key is not None
    return key


def test_keys_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    hook_secret = "whsec_" + base64.b64encode(b"a key's own webhook secret, 32 B").decode()
    hook_file = tmp_path / "hook.secret"
    hook_file.write_text(hook_secret + "\n")
    made = modelport_cli(
        "keys",
        "create",
        "--scope",
        "client",
        "--endpoints",
        "iris,textgen",
        "--rate",
        "20/s",
        "--quota",
        "10000/day",
        "--name",
        "app1",
        "--webhook-secret-file",
        str(hook_file),
        "--store",
        url,
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("mp_") and "\n" not in secret
    assert "shown only once" in made.stderr
    assert hook_secret not in made.stdout + made.stderr
    listed = modelport_cli("keys", "list", "--store", url)
    assert listed.returncode == 0
    assert "app1" in listed.stdout and "iris,textgen" in listed.stdout
    assert "20/s" in listed.stdout and "10000/day" in listed.stdout
    assert secret not in listed.stdout + listed.stderr
    as_json = modelport_cli("keys", "list", "--json", "--store", url).stdout
    (key,) = json.loads(as_json)
    assert key["name"] == "app1" and "hash" not in key
    assert hook_secret not in as_json + listed.stdout and "webhook_secret" not in key
    stored = asyncio.run(_stored_key(url, key["id"]))
    assert stored["webhook_secret"] == hook_secret  # kept to sign with, never shown
    hook_file.write_text("whsec_dG9vIHNob3J0")
    weak = modelport_cli(
        "keys",
        "create",
        "--scope",
        "client",
        "--webhook-secret-file",
        str(hook_file),
        "--store",
        url,
    )
    assert weak.returncode == 2 and "webhook_secret: give a Standard Webhooks" in weak.stderr
    gone = modelport_cli("keys", "revoke", key["id"], "--store", url)
    assert gone.returncode == 0, gone.stderr
    again = modelport_cli("keys", "revoke", key["id"], "--store", url)
    assert again.returncode == 2 and "no key with id" in again.stderr
    bad = modelport_cli("keys", "create", "--scope", "client", "--rate", "lots", "--store", url)
    assert bad.returncode == 2 and "rate 'lots'" in bad.stderr


def test_serve_refuses_an_open_network_bind_without_auth(tmp_path: Path) -> None:
    target = str(ROOT / "tests/models/basic.py:Add")
    refused = modelport_cli("serve", target, "--host", "0.0.0.0", "--store", "memory://")
    assert refused.returncode == 2
    assert "--auth none" in refused.stderr and "--insecure" in refused.stderr
    token = tmp_path / "token"
    token.write_text("")
    empty = modelport_cli("serve", target, "--worker-token-file", str(token))
    assert empty.returncode == 2 and "is empty" in empty.stderr
    keyed = modelport_cli("serve", target, "--auth", "keys", "--anonymous-rate", "5/s")
    assert keyed.returncode == 2 and "--anonymous-rate" in keyed.stderr
    assert "--auth none" in keyed.stderr
    bad = modelport_cli("serve", target, "--anonymous-rate", "lots")
    assert bad.returncode == 2 and "--anonymous-rate 'lots'" in bad.stderr
    anyone = modelport_cli("serve", "--allow-runtime-adapters", "--host", "0.0.0.0", "--insecure")
    assert anyone.returncode == 2 and "--allow-runtime-adapters" in anyone.stderr
    assert "--auth keys" in anyone.stderr


async def test_a_rate_with_a_burst_answers_429_with_ratelimit_headers(
    app_factory: AppFactory, store: JobStore
) -> None:
    d = await deploy(app_factory, store)
    await d.key("client", "app", rate="1/min", burst=2)
    submit = {"input": {"n": 1}}
    headers = {**ASYNC, **d.auth("app")}
    first = await d.http.post("/endpoints/slow/jobs", json=submit, headers=headers)
    assert first.status_code == 202
    assert first.headers["ratelimit-policy"] == '"burst";q=2;w=120'
    assert first.headers["ratelimit"].startswith('"burst";r=1;t=')
    assert (
        await d.http.post("/endpoints/slow/jobs", json=submit, headers=headers)
    ).status_code == 202
    refused = await d.http.post("/endpoints/slow/jobs", json=submit, headers=headers)
    assert refused.status_code == 429
    body = refused.json()
    assert body["type"] == "urn:modelport:problem:rate-limited"
    assert "over its rate" in body["detail"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit"].startswith('"burst";r=0;t=')
    assert (await d.store.queue_depths())["slow"]["queued"] == 2  # the refused one: nothing


async def test_a_daily_quota_and_a_cap_on_queued_jobs(
    app_factory: AppFactory, store: JobStore
) -> None:
    d = await deploy(app_factory, store)
    await d.key("client", "quota", quota="3/day")
    await d.key("client", "capped", max_queued=2)
    for _ in range(3):
        r = await d.http.post(
            "/endpoints/add/jobs", json={"input": {"a": 1}}, headers=d.auth("quota")
        )
        assert r.status_code == 200
    assert r.headers["ratelimit"].startswith('"daily";r=0;t=')
    over = await d.http.post(
        "/endpoints/add/jobs", json={"input": {"a": 1}}, headers=d.auth("quota")
    )
    assert over.status_code == 429 and "daily quota" in over.json()["detail"]
    assert over.headers["ratelimit-policy"] == '"daily";q=3;w=86400'
    capped = {**ASYNC, **d.auth("capped")}
    for n in range(2):
        r = await d.http.post("/endpoints/slow/jobs", json={"input": {"n": n}}, headers=capped)
        assert r.status_code == 202
    full = await d.http.post("/endpoints/slow/jobs", json={"input": {"n": 3}}, headers=capped)
    assert full.status_code == 429 and "2 queued jobs (limit 2)" in full.json()["detail"]
    # Others are not held back by one key's full share.
    other = await d.http.post(
        "/endpoints/slow/jobs", json={"input": {"n": 4}}, headers={**ASYNC, **d.auth("quota")}
    )
    assert other.status_code == 429  # (its quota is spent)
    await d.key("client", "fresh")
    fresh = await d.http.post(
        "/endpoints/slow/jobs", json={"input": {"n": 4}}, headers={**ASYNC, **d.auth("fresh")}
    )
    assert fresh.status_code == 202
    assert (await d.store.queue_depths())["slow"]["queued"] == 3


async def test_openai_routes_count_against_the_key(
    app_factory: AppFactory, store: JobStore
) -> None:
    app = await app_factory([Chatter], store=store, settings=Settings(auth="keys"))
    d = Deployment(app, app.server.broker.store, {}, {})
    await d.key("client", "app", quota="1/day")
    await d.key("client", "other", endpoints=["add"])
    chat = {"model": "chatter", "messages": [{"role": "user", "content": "hi there"}]}
    models = (await d.http.get("/v1/models", headers=d.auth("other"))).json()["data"]
    assert models == []
    r = await d.http.post("/v1/chat/completions", json=chat, headers=d.auth("other"))
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    ok = await d.http.post("/v1/chat/completions", json=chat, headers=d.auth("app"))
    assert ok.status_code == 200, ok.text
    job_id = ok.json()["id"].removeprefix("chatcmpl-")
    stored = await d.store.get(job_id)
    assert stored is not None and stored.owner == d.ids["app"]
    over = await d.http.post("/v1/chat/completions", json=chat, headers=d.auth("app"))
    assert over.status_code == 429
    assert over.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in over.headers and "ratelimit" in over.headers


async def test_sessions_are_short_lived_and_limited_to_some_endpoints(keyed: Deployment) -> None:
    d = keyed
    made = await d.http.post(
        "/sessions", json={"endpoints": ["add"], "ttl": 60}, headers=d.auth("owner")
    )
    assert made.status_code == 201, made.text
    session = made.json()
    assert session["endpoints"] == ["add"] and session["key_id"] == d.ids["owner"]
    assert time.time() + 55 < session["expires_at"] <= time.time() + 60
    browser = {"Authorization": f"Bearer {session['token']}"}
    r = await d.http.post("/endpoints/add/jobs", json={"input": {"a": 1}}, headers=browser)
    assert r.status_code == 200
    job_id = r.json()["id"]
    # The session's jobs are the key's: the key sees them, another key does not.
    assert (await d.http.get(f"/jobs/{job_id}", headers=d.auth("owner"))).status_code == 200
    assert (await d.http.get(f"/jobs/{job_id}", headers=d.auth("stranger"))).status_code == 404
    assert (await d.http.get("/endpoints/slow", headers=browser)).status_code == 403
    assert (await d.http.post("/sessions", json={}, headers=browser)).status_code == 403
    assert (await d.http.get("/keys", headers=browser)).status_code == 403
    wider = await d.http.post("/sessions", json={"endpoints": ["fails"]}, headers=d.auth("owner"))
    assert wider.status_code == 403
    forged = session["token"][:-3] + ("aaa" if not session["token"].endswith("aaa") else "bbb")
    r = await d.http.get("/endpoints", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    await d.store.delete_key(d.ids["owner"])
    d.app.server.auth.forget(d.ids["owner"])
    r = await d.http.get("/endpoints", headers=browser)
    assert r.status_code == 401  # revoking the key ends its sessions


async def test_an_expired_session_is_refused(keyed: Deployment) -> None:
    d = keyed
    auth = d.app.server.auth
    key = await auth.lookup(digest(d.secrets["owner"]))
    assert key is not None
    token, _ = auth.session_token(Principal("client", key.id, key=key), None, -1.0)
    r = await d.http.get("/endpoints", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


async def test_the_openapi_document_says_where_keys_are_needed(keyed: Deployment) -> None:
    doc = (await keyed.http.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for path in ("/endpoints", "/endpoints/add/jobs", "/jobs/{id}", "/v1/models", "/keys"):
        for operation in doc["paths"][path].values():
            assert operation["security"] == [{"apiKey": []}], path
            assert {"401", "403"} <= set(operation["responses"]), path
    for path in ("/health/live", "/openapi.json", "/metrics"):
        assert all("security" not in op for op in doc["paths"][path].values()), path
    assert doc["paths"]["/workers"]["post"]["security"] == [{"workerToken": []}]


async def test_cors_is_off_by_default_and_allows_the_listed_origins(
    app_factory: AppFactory, store: JobStore
) -> None:
    closed = await deploy(app_factory, store_from_url("memory://"), auth="none")
    r = await closed.http.get("/endpoints", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in r.headers
    d = await deploy(app_factory, store, cors_origins=("https://app.example",))
    await d.key("client", "page")
    preflight = await d.http.options(
        "/endpoints/add/jobs",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    other = await d.http.options(
        "/endpoints/add/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    r = await d.http.post(
        "/endpoints/add/jobs",
        json={"input": {"a": 1}},
        headers={"Origin": "https://app.example", **d.auth("page")},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-job-status" in r.headers["access-control-expose-headers"].lower()


async def test_input_shapes_have_bounds_that_name_the_field(app_factory: AppFactory) -> None:
    app = await app_factory(
        [Shapes],
        settings=Settings(
            max_json_depth=4, max_string_length=10, max_list_length=3, max_object_keys=8
        ),
    )

    async def submit(extra: Any) -> httpx.Response:
        return await app.http.post(
            "/endpoints/shapes/jobs", json={"input": {"extra": extra}}, headers=ASYNC
        )

    assert (await submit({"a": [[1]]})).status_code == 202
    cases = [
        ({"a": [[[1]]]}, 422, "extra.a.0.0", "nested deeper than 4 levels"),
        ({"a": "x" * 11}, 413, "extra.a", "a string of 11 characters"),
        ({"a": [1, 2, 3, 4]}, 413, "extra.a", "a list of 4 items"),
        ({f"k{i}": i for i in range(9)}, 413, "extra", "an object of 9 keys"),
        ({"k" * 11: 1}, 413, "extra." + "k" * 11, "a key that long"),
    ]
    for extra, status, field, words in cases:
        r = await submit(extra)
        assert r.status_code == status, (extra, r.text)
        (error,) = r.json()["errors"]
        assert error["field"] == field and words in error["message"], r.text
    deep = '{"input": {"extra": {"a": ' + "[" * 10_000 + "]" * 10_000 + "}}}"
    r = await app.http.post("/endpoints/shapes/jobs", content=deep, headers=ASYNC)
    assert r.status_code == 422 and "nested too deeply" in r.json()["detail"]
    metrics = (await app.http.get("/metrics")).text
    assert 'modelport_jobs_submitted_total{endpoint="shapes"} 1.0' in metrics  # the first only


def test_flat_inputs_are_held_to_the_same_bounds() -> None:
    """An object of numbers and strings (checked without a walk) meets the same bounds."""
    limits = Settings(max_json_depth=4, max_string_length=10, max_list_length=3, max_object_keys=3)
    check_shape({"a": "x" * 10, "b": 1.5, "c": None}, limits)
    for value, error, words in [
        ({"a": "x" * 11}, PayloadTooLarge, "a: a string of 11 characters"),
        ({"k" * 11: 1}, PayloadTooLarge, "a key that long"),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, PayloadTooLarge, "an object of 4 keys"),
        ({"a": True, "b": [1, 2, 3, 4]}, PayloadTooLarge, "b: a list of 4 items"),
    ]:
        with pytest.raises(error, match=words):
            check_shape(value, limits)
    with pytest.raises(InvalidInput, match="nested deeper than 0 levels"):
        check_shape({"a": 1}, Settings(max_json_depth=0))


async def test_metrics_count_submits_per_key_id_never_the_secret(keyed: Deployment) -> None:
    d = keyed
    await d.key("client", "metered", quota="1/day")
    for _ in range(2):
        await d.http.post(
            "/endpoints/add/jobs", json={"input": {"a": 1}}, headers=d.auth("metered")
        )
    text = (await d.http.get("/metrics")).text
    key_id = d.ids["metered"]
    assert f'modelport_key_requests_total{{key="{key_id}",outcome="accepted"}} 1.0' in text
    assert f'modelport_key_requests_total{{key="{key_id}",outcome="quota"}} 1.0' in text
    for secret in d.secrets.values():
        assert secret not in text


async def test_a_wrong_method_on_keys_lists_both_allowed(keyed: Deployment) -> None:
    r = await keyed.http.put("/keys", headers=keyed.auth("admin"))
    assert r.status_code == 405
    assert sorted(m.strip() for m in r.headers["allow"].split(",")) == ["GET", "HEAD", "POST"]
