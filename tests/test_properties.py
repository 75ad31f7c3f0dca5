"""Property-based tests (hypothesis) over the parsers that face the network: resume ids,
``Accept`` negotiation, endpoint specs, and the worker routes' bodies. Each property is
what a client or worker can rely on for any input, not only the ones a person thought of."""

from __future__ import annotations

import itertools
import json
import math
import re
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from modelport.errors import BadRequest, SpecError
from modelport.server.app import Server, Settings
from modelport.server.streaming import MAX_EVENT_ID, negotiate, parse_event_id
from modelport.spec import SERVING_KEYS, spec_from_dict
from modelport.wire import storable
from tests.models.basic import Add

BOUNDED = settings(max_examples=200, deadline=None)
"""Enough examples to find the edges these tests were written for, few enough to stay fast."""

EDGES = [0, -1, 1, 2**63 - 1, 2**63, 2**64, 2**70, -(2**63) - 1, 1e308, -1e308, 1e-300]
edge_numbers = st.sampled_from([*EDGES, math.nan, math.inf, -math.inf, -0.0, 0.5, 2.0])
wild_numbers = st.one_of(edge_numbers, st.integers(), st.floats())
json_scalars = st.one_of(st.none(), st.booleans(), wild_numbers, st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def mostly(valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually ``valid``, sometimes ``wild``: a request must get past validation to reach
    the code behind it."""
    return st.sampled_from([False, True, True, True]).flatmap(lambda ok: valid if ok else wild)


# Resume ids


@BOUNDED
@given(st.text())
def test_any_text_is_an_event_id_or_a_400(raw: str) -> None:
    try:
        value = parse_event_id(raw, "?after=")
    except BadRequest as e:
        assert e.message.startswith("?after= must be an event id")
        assert len(e.message) < 100 + len(repr(raw[:43]))  # a long value is not echoed whole
        return
    assert re.fullmatch(r"[0-9]+", raw, flags=re.ASCII)
    assert 0 <= value <= MAX_EVENT_ID and value == int(raw)


@BOUNDED
@given(st.integers(min_value=-(2**70), max_value=2**70), st.integers(0, 3))
def test_integers_parse_exactly_within_64_bits(n: int, zeros: int) -> None:
    raw = "0" * zeros + str(n) if n >= 0 else str(n)
    if 0 <= n <= MAX_EVENT_ID:
        assert parse_event_id(raw) == n
    else:
        with pytest.raises(BadRequest):
            parse_event_id(raw)


# Accept


media = st.sampled_from(
    [
        "text/event-stream",
        "application/jsonl",
        "application/x-ndjson",
        "application/json",
        "text/*",
        "application/*",
        "*/*",
        "text/html",
    ]
)
STREAMS = {
    "text/event-stream": "sse",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
}
qualities = st.sampled_from([None, "0", "0.1", "0.5", "0.9", "1", "1.0"])


@BOUNDED
@given(st.lists(st.tuples(media, qualities), max_size=5))
def test_a_stream_is_chosen_only_when_named_and_preferred(
    ranges: list[tuple[str, str | None]],
) -> None:
    header = ", ".join(m if q is None else f"{m};q={q}" for m, q in ranges)
    got = negotiate(header)

    named = {"sse": 0.0, "jsonl": 0.0}
    for m, quality in ranges:
        fmt = STREAMS.get(m)
        if fmt is not None:
            named[fmt] = max(named[fmt], 1.0 if quality is None else float(quality))
    if got is None:
        assert max(named.values()) == 0 or any(
            m in ("application/json", "application/*", "*/*") for m, _ in ranges
        ), header
    else:
        assert named[got] > 0 and named[got] == max(named.values()), header


@BOUNDED
@given(st.text(alphabet=string.printable + "²é;=,/*", max_size=60))
def test_any_accept_header_is_negotiated_without_error(header: str) -> None:
    assert negotiate(header) in (None, "sse", "jsonl")


# Endpoint specs


def valid_field() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(
            lambda lo, span: {"type": "integer", "min": lo, "max": lo + span, "default": lo},
            st.integers(-9, 9),
            st.integers(0, 9),
        ),
        st.builds(lambda lo: {"type": "float", "ge": lo, "default": float(lo)}, st.integers(-9, 9)),
        st.builds(
            lambda n: {"type": "string", "max_length": n, "required": True}, st.integers(0, 9)
        ),
        st.just({"type": "boolean", "default": False}),
        st.builds(
            lambda choices: {"type": "selection", "choices": choices},
            st.lists(st.text(max_size=3) | st.integers(), min_size=1, max_size=3, unique=True),
        ),
        st.just({"type": "json"}),
        st.builds(
            lambda t: {"type": "list", "items": {"type": t}},
            st.sampled_from(["string", "integer", "float", "boolean", "json"]),
        ),
    )


FIELD_KEYS = [
    "type", "description", "required", "default", "ge", "le", "min", "max",
    "min_length", "max_length", "choices", "pattern", "items",
]  # fmt: skip
TOP_KEYS = ["name", "kind", "version", "title", "description", "inputs", "outputs", "progress"]


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    inputs = draw(st.dictionaries(st.sampled_from(["x", "y", "text"]), valid_field(), max_size=3))
    spec: dict[str, Any] = {"name": "e", "inputs": inputs}
    for key in draw(st.lists(st.sampled_from(SERVING_KEYS), max_size=4, unique=True)):
        spec[key] = draw(st.booleans() if key == "retry_failed_batches" else st.integers(1, 60))
    if draw(st.booleans()):
        outputs = st.dictionaries(st.sampled_from(["a", "b"]), valid_field(), max_size=2)
        spec["outputs"] = draw(outputs)
    return spec


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid spec with up to three keys set to something wild, or any JSON object."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.dictionaries(st.sampled_from([*TOP_KEYS, *SERVING_KEYS]), json_values))
    spec = draw(valid_specs())
    inputs = spec["inputs"]
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        where = draw(st.sampled_from(["serving", "serving", "field", "field", "top"]))
        wild = draw(
            st.sampled_from([edge_numbers, wild_numbers, json_values, valid_field()]).flatmap(
                lambda values: values
            )
        )
        if where == "serving":
            spec[draw(st.sampled_from(SERVING_KEYS))] = wild
        elif where == "field" and inputs:
            name = draw(st.sampled_from(sorted(inputs)))
            inputs[name] = {**inputs[name], draw(st.sampled_from(FIELD_KEYS)): wild}
        else:
            spec[draw(st.sampled_from(TOP_KEYS))] = wild
    return spec


@settings(max_examples=200, deadline=None)
@given(specs())
def test_a_spec_is_refused_with_a_spec_error_or_works_everywhere(data: dict[str, Any]) -> None:
    try:
        spec = spec_from_dict(data)
    except SpecError as e:
        assert e.message
        return
    stored = spec.to_dict()
    storable(stored)  # what the stores and the JSON encoder can keep
    assert spec_from_dict(orjson.loads(orjson.dumps(stored))) == spec
    spec.input_schema(), spec.output_schema(), spec.progress_schema()
    for key in ("max_batch_wait", "lease_duration", "max_queue_time", "timeout", "result_ttl"):
        value = getattr(spec, key)
        assert value is None or (math.isfinite(value) and value >= 0), key
    assert 1 <= spec.max_batch_size <= 1024


# The worker routes


TOKEN = "wt"
NAMES = itertools.count()
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


@dataclass
class Fuzz:
    http: httpx.AsyncClient
    worker_id: str
    job_ids: list[str]


@pytest.fixture
async def fuzz() -> AsyncIterator[Fuzz]:
    server = Server([], [Add.spec()], store="memory://", settings=Settings(worker_token=TOKEN))
    async with server.lifespan(None):  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=server.app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            r = await http.post(
                "/workers", json={"name": "w", "endpoints": [Add.spec().to_dict()]}, headers=AUTH
            )
            worker_id = r.json()["worker_id"]
            jobs = []
            for a in range(4):
                r = await http.post(
                    "/endpoints/add/jobs",
                    json={"input": {"a": a}},
                    headers={"Prefer": "respond-async"},
                )
                jobs.append(r.json()["id"])
            await http.post(
                f"/workers/{worker_id}/lease", json={"max_jobs": 2, "wait": 0}, headers=AUTH
            )
            yield Fuzz(http, worker_id, jobs)
            # Whatever the examples registered is documented: its schemas build from its spec.
            assert (await http.get("/openapi.json")).status_code == 200


def lease_waits() -> st.SearchStrategy[Any]:
    # A wait a long poll would really sit out is left out: it proves nothing and takes time.
    return json_values.filter(
        lambda w: not (isinstance(w, int | float) and not isinstance(w, bool) and 0 < w <= 60)
    )


@st.composite
def worker_calls(draw: st.DrawFn) -> tuple[str, str]:
    """A worker route and a JSON body: any JSON, or the route's own shape with wild values.

    ``{worker}`` and ``{job}`` stand for the registered worker and one of its jobs."""
    job_id = mostly(st.just("{job}"), st.sampled_from(["nope", ""]) | json_values)
    event = st.fixed_dictionaries(
        {
            "job_id": job_id,
            "type": mostly(
                st.sampled_from(["heartbeat", "progress", "output", "log"]), json_values
            ),
        },
        optional={"data": json_values},
    )
    result = st.fixed_dictionaries(
        {
            "job_id": job_id,
            "endpoint": mostly(st.just("add"), st.just("other") | json_values),
            "attempt": mostly(st.integers(0, 3), wild_numbers | json_values),
        },
        optional={
            "output": mostly(st.builds(lambda x: {"sum": x}, wild_numbers), json_values),
            "error": mostly(st.none() | st.text(max_size=5), json_values),
            "retry": mostly(st.booleans(), json_values),
        },
    )
    events = mostly(st.lists(event, max_size=3), json_values)
    results = mostly(st.lists(result, max_size=3), json_values)
    shapes: dict[str, st.SearchStrategy[Any]] = {
        "register": st.fixed_dictionaries(
            {
                "name": mostly(st.just("w2"), json_values),
                "endpoints": mostly(
                    st.lists(mostly(valid_specs(), specs()), min_size=1, max_size=2), json_values
                ),
            },
            optional={
                "max_batch_size": mostly(st.integers(1, 8), wild_numbers | json_values),
                "metadata": mostly(st.dictionaries(st.text(max_size=4), json_values), json_values),
                "worker_id": mostly(st.just("{worker}"), st.just("0123456789abcdef") | json_values),
            },
        ),
        "lease": st.fixed_dictionaries(
            {},
            optional={
                "max_jobs": mostly(st.integers(1, 4), wild_numbers | json_values),
                "wait": mostly(st.just(0), lease_waits()),
                "results": results,
            },
        ),
        "events": st.fixed_dictionaries({"events": events}),
        "results": st.fixed_dictionaries({"results": results}),
    }
    verb = draw(st.sampled_from(sorted(shapes)))
    body = draw(mostly(shapes[verb], json_values))
    if verb == "lease" and isinstance(body, dict):  # without one, a long poll waits 20 s
        body["wait"] = draw(mostly(st.just(0), lease_waits()))
    worker = draw(mostly(st.just("{worker}"), st.sampled_from(["nope", "0" * 16, "%20"])))
    route = "/workers" if verb == "register" else f"/workers/{worker}/{verb}"
    return route, json.dumps(body)  # NaN, Infinity and big integers as JSON text has them


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(call=worker_calls(), pick=st.integers(0, 3))
async def test_the_worker_routes_never_answer_5xx(
    fuzz: Fuzz, call: tuple[str, str], pick: int
) -> None:
    route, body = call
    real = {"{worker}": fuzz.worker_id, "{job}": fuzz.job_ids[pick]}
    for placeholder, value in real.items():
        route, body = route.replace(placeholder, value), body.replace(placeholder, value)
    r = await fuzz.http.post(route, content=body.encode(), headers=AUTH)
    assert r.status_code < 500, (route, body, r.text)
    event(route.rsplit("/", 1)[-1] + " " + str(r.status_code))
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["detail"]
    # The server still answers everything about its endpoints and jobs.
    for path in ("/endpoints", "/endpoints/add", f"/jobs/{fuzz.job_ids[pick]}"):
        assert (await fuzz.http.get(path)).status_code == 200, path


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=specs(), fresh=st.sampled_from([True, True, True, False]))
async def test_a_registration_is_taken_whole_or_changes_nothing(
    fuzz: Fuzz, spec: dict[str, Any], fresh: bool
) -> None:
    async def endpoints() -> tuple[set[str], Any]:
        """The endpoints' names, and the spec of the one this registration names (if any)."""
        listed = await fuzz.http.get("/endpoints")
        assert listed.status_code == 200, listed.text
        names = {e["name"] for e in listed.json()}
        name = spec.get("name")
        if not isinstance(name, str) or name not in names:
            return names, None
        detail = await fuzz.http.get(f"/endpoints/{name}")
        assert detail.status_code == 200, detail.text
        return names, detail.json()["spec"]

    if spec.get("name") == "e" and fresh:
        # A spec that differs from a known endpoint's is refused (409) before its values are
        # looked at, so most registrations bring an endpoint of a new name.
        spec = {**spec, "name": f"e{next(NAMES)}"}
    before = await endpoints()
    body = json.dumps({"name": "w", "endpoints": [spec]})
    r = await fuzz.http.post("/workers", content=body.encode(), headers=AUTH)
    assert r.status_code in (201, 409, 422), (body, r.text)
    after = await endpoints()
    if r.status_code == 201:
        (name,) = r.json()["endpoints"]
        assert after == (before[0] | {name}, r.json()["endpoints"][name])

    else:
        assert after == before, body
