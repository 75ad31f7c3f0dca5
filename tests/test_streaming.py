"""Streaming over a real server: SSE and JSON-lines framing, timing, resume, hang-up cancels."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

import modelport
from modelport import AsyncClient, Client
from modelport.server.streaming import KEEPALIVE
from tests.conftest import Serve, ServerProcess, wait_for

pytestmark = pytest.mark.e2e

TICKER = "tests/models/stream.py:Ticker"
CHATTER = "tests/models/stream.py:Chatter"


@pytest.fixture
def server(serve: Serve, tmp_path: Path) -> Iterator[ServerProcess]:
    trace = tmp_path / "trace.txt"
    os.environ["MODELPORT_TEST_TRACE"] = str(trace)
    try:
        yield (
            serve([TICKER, CHATTER, "--store", f"sqlite:///{tmp_path}/s.db"]).start().wait_ready()
        )
    finally:
        os.environ.pop("MODELPORT_TEST_TRACE", None)


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """A plain SSE parser per the WHATWG rules: fields until a blank line, comments skipped."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in event:
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            event[name] = (
                event.get(name, "") + ("\n" if name == "data" and name in event else "") + value
            )


def test_sse_framing_and_chunks_arrive_before_the_end(server: ServerProcess) -> None:
    arrivals: list[tuple[float, dict[str, Any]]] = []
    with httpx.stream(
        "POST",
        f"{server.url}/endpoints/ticker/jobs",
        json={"input": {"n": 5, "every": 0.2}},
        headers={"accept": "text/event-stream"},
        timeout=30,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["x-accel-buffering"] == "no"
        assert r.headers["cache-control"] == "no-cache"
        for event in parse_sse(r.iter_lines()):
            arrivals.append((time.time(), event))
    kinds = [e["event"] for _, e in arrivals]
    assert kinds == [
        "queued",
        "started",
        "output",
        "output",
        "output",
        "output",
        "output",
        "succeeded",
    ]
    chunks = [orjson.loads(e["data"]) for _, e in arrivals if e["event"] == "output"]
    assert chunks == ["w0 ", "w1 ", "w2 ", "w3 ", "w4 "]
    # Only stored events carry an id, 1, 2, ...; the state events read from the job carry
    # none, so an EventSource's lastEventId is always that of the last stored event.
    assert [(e["event"], e.get("id")) for _, e in arrivals] == [
        ("queued", None),
        ("started", None),
        *[("output", str(i)) for i in range(1, 6)],
        ("succeeded", None),
    ]
    final = orjson.loads(arrivals[-1][1]["data"])
    assert final["output"] == "w0 w1 w2 w3 w4 "
    first_chunk_at = next(t for t, e in arrivals if e["event"] == "output")
    # The first chunk was made about 0.8 s before the job completed; it must not wait for the end.
    assert first_chunk_at < final["completed_at"] - 0.5


def test_jsonl_framing(server: ServerProcess) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/endpoints/ticker/jobs",
        json={"input": {"n": 3, "every": 0}},
        headers={"accept": "application/jsonl"},
        timeout=30,
    ) as r:
        assert r.headers["content-type"] == "application/jsonl"
        assert r.headers["location"].startswith("/jobs/")
        items = [orjson.loads(line) for line in r.iter_lines() if line]
    assert [i["event"] for i in items] == [
        "queued",
        "started",
        "output",
        "output",
        "output",
        "succeeded",
    ]
    assert items[-1]["data"]["output"] == "w0 w1 w2 "
    assert [i["id"] for i in items] == [None, None, 1, 2, 3, None]


def test_an_event_source_resumes_after_the_last_event_it_saw(server: ServerProcess) -> None:
    with Client(server.url) as c:
        job = c.submit("ticker", n=4, every=0)
        job.wait(timeout=10)
    with httpx.stream(
        "GET", f"{server.url}/jobs/{job.id}/events", headers={"accept": "text/event-stream"}
    ) as r:
        seen = list(parse_sse(r.iter_lines()))
    last_event_id = ""  # what a browser's EventSource keeps: the last id field it read
    for event in seen[:4]:  # queued, started, output 1, output 2: then the connection drops
        last_event_id = event.get("id", last_event_id)
    assert last_event_id == "2"
    with httpx.stream(
        "GET",
        f"{server.url}/jobs/{job.id}/events",
        headers={"accept": "text/event-stream", "last-event-id": last_event_id},
    ) as r:
        rest = list(parse_sse(r.iter_lines()))
    assert [(e["event"], e.get("id")) for e in rest] == [
        ("output", "3"),
        ("output", "4"),
        ("succeeded", None),
    ]


def test_resume_with_last_event_id_and_late_subscriber(server: ServerProcess) -> None:
    with Client(server.url) as c:
        job = c.submit("ticker", n=6, every=0)
        job.wait(timeout=10)
        late = list(job.events())
        assert [e.type for e in late] == ["queued", "started", *["output"] * 6, "succeeded"]
        assert [e.event for e in late] == [e.type for e in late]  # the wire's name for it
        assert [e.id for e in late] == [0, 0, 1, 2, 3, 4, 5, 6, 0]
        resumed = list(job.events(after=4))
        assert [(e.type, e.data) for e in resumed[:2]] == [("output", "w4 "), ("output", "w5 ")]
        assert resumed[-1].type == "succeeded"
        r = httpx.get(f"{server.url}/jobs/{job.id}/events", headers={"last-event-id": "x"})
        assert r.status_code == 400
        assert httpx.get(f"{server.url}/jobs/nope/events").status_code == 404


def test_client_stream_yields_chunks_then_final(server: ServerProcess) -> None:
    with Client(server.url) as c:
        events = list(c.stream("ticker", n=3, every=0.01))
        assert [e.data for e in events if e.type == "output"] == ["w0 ", "w1 ", "w2 "]
        assert events[-1].type == "succeeded"
        with pytest.raises(modelport.InvalidInput):
            list(c.stream("ticker", n=-1))


async def test_async_client_stream(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as c:
        chunks = [e.data async for e in c.stream("ticker", n=4, every=0) if e.type == "output"]
        assert chunks == ["w0 ", "w1 ", "w2 ", "w3 "]
        job = await c.submit("ticker", n=2, every=0)
        kinds = [e.type async for e in job.events()]
        assert kinds[-1] == "succeeded"
        assert job.status == "succeeded"


def test_hangup_cancels_the_job_and_stops_the_generator(
    server: ServerProcess, tmp_path: Path
) -> None:
    with httpx.Client(timeout=30) as http:
        with http.stream(
            "POST",
            f"{server.url}/endpoints/ticker/jobs",
            json={"input": {"n": 100_000, "every": 0.01}},
            headers={"accept": "application/jsonl"},
        ) as r:
            job_id = r.headers["x-job-id"]
            for line in r.iter_lines():
                if line and orjson.loads(line)["event"] == "output":
                    break  # leaving the block closes the connection
        wait_for(
            lambda: http.get(f"{server.url}/jobs/{job_id}").json()["status"] == "cancelled",
            10,
            "the job to be cancelled",
        )
        # One model thread serves the endpoint, so a new job can only finish (within the
        # default 30 s wait) if the 1,000 s generator was stopped.
        r2 = http.post(f"{server.url}/endpoints/ticker/jobs", json={"input": {"n": 1, "every": 0}})
        assert r2.json()["status"] == "succeeded"


def status(http: httpx.Client, server: ServerProcess, job_id: str) -> str:
    value: str = http.get(f"{server.url}/jobs/{job_id}").json()["status"]
    return value


def occupy(http: httpx.Client, server: ServerProcess, endpoint: str, inputs: Any) -> str:
    """Start a job that keeps the endpoint's one model thread busy for minutes."""
    r = http.post(
        f"{server.url}/endpoints/{endpoint}/jobs",
        json={"input": inputs},
        headers={"Prefer": "respond-async"},
    )
    job_id: str = r.json()["id"]
    wait_for(lambda: status(http, server, job_id) == "running", 30, f"{endpoint} to be busy")
    return job_id


# A queued job's stream sends nothing after its first event until the keep-alive, so within
# KEEPALIVE only listening for the hang-up can notice it.
NOTICED_WITHIN = KEEPALIVE - 5


def test_hangup_of_a_quiet_stream_cancels_its_queued_job(server: ServerProcess) -> None:
    with httpx.Client(timeout=30) as http:
        busy = occupy(http, server, "ticker", {"n": 100_000, "every": 0.01})
        with http.stream(
            "POST",
            f"{server.url}/endpoints/ticker/jobs",
            json={"input": {"n": 1, "every": 0}},
            headers={"accept": "text/event-stream"},
        ) as r:
            job_id = r.headers["x-job-id"]
            assert next(parse_sse(r.iter_lines()))["event"] == "queued"
        wait_for(
            lambda: status(http, server, job_id) == "cancelled",
            NOTICED_WITHIN,
            "the quiet stream's job to be cancelled",
        )
        assert http.post(f"{server.url}/jobs/{busy}/cancel").json()["status"] == "cancelled"


def test_hangup_of_a_quiet_chat_stream_cancels_its_job(server: ServerProcess) -> None:
    hello = [{"role": "user", "content": "hello"}]
    with httpx.Client(timeout=30) as http:
        busy = occupy(http, server, "chatter", {"messages": hello, "max_tokens": 100_000})
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
            stream = c.chat.completions.create(
                model="chatter", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            first = next(iter(stream))
            assert first.choices[0].delta.role == "assistant"
            stream.close()
        job_id = first.id.removeprefix("chatcmpl-")
        wait_for(
            lambda: status(http, server, job_id) == "cancelled",
            NOTICED_WITHIN,
            "the quiet chat stream's job to be cancelled",
        )
        assert http.post(f"{server.url}/jobs/{busy}/cancel").json()["status"] == "cancelled"


async def test_many_concurrent_streams(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as c:

        async def one(i: int) -> str:
            text = ""
            async for e in c.stream("ticker", n=3, every=0):
                if e.type == "output":
                    text += e.data
            return text

        results = await asyncio.gather(*(one(i) for i in range(20)))
        assert results == ["w0 w1 w2 "] * 20
