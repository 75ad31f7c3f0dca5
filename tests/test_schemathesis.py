"""schemathesis against the live OpenAPI document of a real server with ``--auth keys`` and
several endpoints, bounded in examples: no 5xx, answers match the documented schemas and
statuses. Run here on the security routes (``/keys``, ``/sessions``, ``/workers``) and the
client routes with an admin key; see the README's Security section."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from modelport.keys import new_key
from modelport.stores import store_from_url
from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e


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
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    folder = tmp_path_factory.mktemp("schemathesis")
    store = f"sqlite:///{folder / 'jobs.db'}"
    secret = asyncio.run(_admin_key(store))
    server = ServerProcess(
        [
            "tests/models/basic.py:Add",
            "tests/models/basic.py:Shapes",
            "--store",
            store,
            "--auth",
            "keys",
            "--worker-token",
            "schemathesis-worker-token",
        ],
        Path(folder / "server.log"),
    )
    server.start().wait_ready()
    try:
        yield schemathesis.openapi.from_url(server.url + "/openapi.json"), secret
    finally:
        server.stop()


SECURITY_ROUTES = re.compile(r"^/(keys|sessions|workers|endpoints$|endpoints/add$)")


def test_the_security_routes_answer_as_documented(live: tuple[Any, str]) -> None:
    schema, secret = live
    headers = {"Authorization": f"Bearer {secret}"}
    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if not SECURITY_ROUTES.match(operation.path):
            continue

        @given(operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, timeout=10)

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /keys", "GET /keys", "DELETE /keys/{id}", "POST /sessions"} <= set(tested)


RUNTIME_ROUTES = re.compile(r"^/endpoints/\{name\}(/disable|/enable|/logs)?$|^/jobs/\{id\}/logs$")


def test_the_run_time_endpoint_routes_answer_as_documented(live: tuple[Any, str]) -> None:
    """Last in the module: it may delete or replace the server's endpoints. A spec's rules
    (a default within its bounds, known types) go beyond a JSON Schema, so a spec that
    breaks them may be refused (422) though the document's schema allows it."""
    schema, secret = live
    headers = {"Authorization": f"Bearer {secret}"}
    tested = []
    for result in schema.get_all_operations():
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
