"""schemathesis against the live OpenAPI document of a real server with ``--auth keys`` and
several endpoints, bounded in examples and time: every documented operation (the client
routes, job events, cancel, files, the OpenAI routes, the worker and admin routes, health
and metrics) answers without a 5xx, with a documented status and a body of the documented
schema. Each operation is called with the credential its security scheme names; job ids are
sometimes those of real jobs, so the routes of a job are exercised past their 404."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from modelport.keys import new_key
from modelport.stores import store_from_url
from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e

WORKER_TOKEN = "schemathesis-worker-token"
EXAMPLES = 10
"""Examples per operation: enough to reach each schema's branches, few enough to keep the
whole run well under a minute."""


@dataclass
class Live:
    schema: Any
    admin: str
    jobs: list[str]
    """Ids of finished jobs (their event streams end at once, so a call is bounded)."""


async def _admin_key(url: str) -> str:
    store = store_from_url(url)
    await store.open()
    try:
        key, secret = new_key("admin", name="schemathesis")
        await store.put_key(key.to_dict())
    finally:
        await store.close()
    return secret


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("schemathesis")
    store = f"sqlite:///{folder / 'jobs.db'}"
    secret = asyncio.run(_admin_key(store))
    server = ServerProcess(
        [
            "tests/models/basic.py:Add",
            "tests/models/basic.py:Shapes",
            "examples/echo/model.py",
            "--store",
            store,
            "--auth",
            "keys",
            "--worker-token",
            WORKER_TOKEN,
        ],
        Path(folder / "server.log"),
    )
    server.start().wait_ready()
    try:
        headers = {"Authorization": f"Bearer {secret}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as http:
            done = http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
            assert done.status_code == 200, done.text
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        yield Live(schema, secret, [done.json()["id"]])
    finally:
        server.stop()


_SERIAL = itertools.count()


LOOSE = {"POST /workers"}
"""Operations whose body holds an endpoint spec, documented as an object (the spec format is
the README's, checked by the server with messages naming the rule), not as a JSON Schema
precise enough for every schema-valid body to be a valid spec: refusing one (422) is right."""

RUNTIME_ROUTES = re.compile(r"^/endpoints/\{name\}(/disable|/enable|/logs)?$|^/jobs/\{id\}/logs$")
"""The run-time endpoint routes: those that change endpoints (PUT, POST, DELETE) may delete
or replace the server's, so they run last, in a test of their own."""

ENDLESS = {"GET /admin/events"}
"""Streams that never end by themselves (a dashboard's live feed): each call would run to the
client's timeout. tests/test_pages.py reads that stream and checks its events."""


def _checker(operation: Any, headers: dict[str, str], job_ids: list[str]) -> Any:
    """A hypothesis test of one operation; with ``job_ids``, some cases name a real job."""
    label = f"{operation.method.upper()} {operation.path}"
    excluded = [positive_data_acceptance] if label in LOOSE else []

    @given(case=operation.as_strategy(), job_id=st.sampled_from([None, *job_ids]))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def check(case: Any, job_id: str | None) -> None:
        if job_id is not None:
            case.path_parameters = {**(case.path_parameters or {}), "id": job_id}
        if case.headers and "Idempotency-Key" in case.headers:
            # A key reused with another input is rightly refused (422, as the IETF draft
            # says); generated cases repeat keys, so each gets a key of its own.
            key = f"{next(_SERIAL)}-{case.headers['Idempotency-Key']}"
            case.headers = {**case.headers, "Idempotency-Key": key[:255]}
        case.call_and_validate(headers=headers, timeout=10, excluded_checks=excluded)

    return check


def test_every_operation_answers_as_documented(live: Live) -> None:
    started = time.monotonic()
    credentials = {
        "apiKey": {"Authorization": f"Bearer {live.admin}"},
        "workerToken": {"Authorization": f"Bearer {WORKER_TOKEN}"},
    }
    tested, failures = [], []
    for result in live.schema.get_all_operations():
        operation = result.ok()
        changes = operation.method.upper() != "GET" and RUNTIME_ROUTES.match(operation.path)
        if changes or f"{operation.method.upper()} {operation.path}" in ENDLESS:
            continue
        security = operation.definition.raw.get("security") or [{}]
        headers = next((credentials[name] for name in security[0] if name in credentials), {})
        of_a_job = operation.path.startswith("/jobs/{id}")
        check = _checker(operation, headers, live.jobs if of_a_job else [])
        label = f"{operation.method.upper()} {operation.path}"
        try:
            check()
        except Exception as e:  # every operation is tried; all that fail are reported
            failures.append(f"{label}: {e}")
        tested.append(label)
    assert not failures, "\n\n".join(failures)
    expected = {
        "POST /endpoints/add/jobs",
        "POST /endpoints/shapes/jobs",
        "POST /endpoints/echo/jobs",
        "GET /endpoints",
        "GET /endpoints/{name}",
        "GET /jobs/{id}",
        "GET /jobs/{id}/events",
        "GET /jobs/{id}/files/{name}",
        "POST /jobs/{id}/cancel",
        "GET /v1/models",
        "POST /v1/chat/completions",
        "POST /v1/embeddings",
        "POST /workers",
        "POST /workers/{id}/lease",
        "POST /workers/{id}/events",
        "POST /workers/{id}/results",
        "DELETE /workers/{id}",
        "POST /keys",
        "GET /keys",
        "DELETE /keys/{id}",
        "POST /sessions",
        "GET /health/live",
        "GET /health/ready",
        "GET /metrics",
        "POST /conversations",
        "GET /conversations",
        "GET /conversations/{id}",
        "DELETE /conversations/{id}",
        "POST /conversations/{id}/messages",
    }
    assert expected <= set(tested), expected - set(tested)
    assert time.monotonic() - started < 60, "the run is over its time bound"


def test_the_run_time_endpoint_routes_answer_as_documented(live: Live) -> None:
    """Last in the module: it may delete or replace the server's endpoints. A spec's rules
    (a default within its bounds, known types) go beyond a JSON Schema, so a spec that
    breaks them may be refused (422) though the document's schema allows it."""
    headers = {"Authorization": f"Bearer {live.admin}"}
    tested = []
    for result in live.schema.get_all_operations():
        operation = result.ok()
        if not RUNTIME_ROUTES.match(operation.path):
            continue

        @given(operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(
                headers=headers, timeout=10, excluded_checks=[positive_data_acceptance]
            )

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert {
        "PUT /endpoints/{name}",
        "DELETE /endpoints/{name}",
        "POST /endpoints/{name}/disable",
        "POST /endpoints/{name}/enable",
        "GET /endpoints/{name}/logs",
        "DELETE /endpoints/{name}/logs",
        "GET /jobs/{id}/logs",
    } <= set(tested)
