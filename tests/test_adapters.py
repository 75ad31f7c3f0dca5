"""HTTP and subprocess models (adapters): real upstream services on loopback and real
programs, served by the in-process server's runner, the same one workers use."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelport.errors import SpecError
from modelport.loader import adapter_from_toml, load_models
from modelport.model import Model
from modelport.modes.local import LocalModel
from modelport.spec import spec_from_toml
from modelport.wire import Event
from tests.conftest import AppFactory, InProcessApp, eventually
from tests.upstreams import Upstream

PROGRAMS = Path(__file__).resolve().parent / "programs"


_LANES = [1]
"""The ``concurrency`` of the HTTP models that do not set one. Served, each request runs on
the event loop (``predict_async``) either way; ``modelport run`` and ``pipe`` call
``predict`` on their thread (see ``test_an_http_model_runs_on_a_model_thread_without_a_server``)."""


@pytest.fixture(params=[1, 3], ids=["one-lane", "three-lanes"])
def upstream(request: pytest.FixtureRequest) -> Iterator[Upstream]:
    _LANES[0] = request.param
    service = Upstream().start()
    yield service
    service.stop()
    _LANES[0] = 1


def adapter(tmp_path: Path, name: str, endpoint: str, rest: str = "") -> type[Model]:
    """The model of an adapter declared in ``tmp_path/name.toml``."""
    path = tmp_path / f"{name}.toml"
    if 'kind = "http"' in endpoint and "concurrency" not in endpoint:
        endpoint += f"\nconcurrency = {_LANES[0]}"
    path.write_text(f"[endpoint]\nname = {name!r}\n{endpoint}\n{rest}")
    return adapter_from_toml(str(path))


def lines_program(tmp_path: Path, name: str, settings: str = "") -> type[Model]:
    command = orjson.dumps([sys.executable, "lines.py"]).decode()
    return adapter(
        tmp_path,
        name,
        f'kind = "subprocess"\ncommand = {command}\ncwd = "{PROGRAMS}"\n{settings}',
        "[inputs]\n"
        'text = { type = "string", default = "" }\n'
        'mode = { type = "string", default = "echo" }\n',
    )


async def run(app: InProcessApp, endpoint: str, **given: Any) -> dict[str, Any]:
    """Submit a job and wait for it to finish."""
    r = await app.http.post(
        f"/endpoints/{endpoint}/jobs", json={"input": given}, headers={"prefer": "wait=20"}
    )
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


async def events(app: InProcessApp, job_id: str) -> list[dict[str, Any]]:
    r = await app.http.get(f"/jobs/{job_id}/events", headers={"accept": "application/jsonl"})
    return [orjson.loads(line) for line in r.text.splitlines() if line]


async def online(app: InProcessApp, endpoint: str) -> int:
    r = await app.http.get(f"/endpoints/{endpoint}")
    return int(r.json()["workers_online"])


HTTP_IO = '[inputs]\ntext = { type = "string", required = true }\n'
OUTPUTS = '[outputs]\nlabel = { type = "string" }\nlength = { type = "integer" }\n'
LABELLED = HTTP_IO + OUTPUTS


async def test_http_model_forwards_input_with_headers_from_the_environment(
    app_factory: AppFactory,
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPSTREAM_TOKEN", "s3cret")
    model = adapter(
        tmp_path,
        "sentiment",
        f'kind = "http"\nurl = "{upstream.url}/predict"\nmethod = "PUT"\n'
        'headers = { Authorization = "Bearer ${UPSTREAM_TOKEN}", X-Team = "ml" }',
        LABELLED,
    )
    wrong = adapter(tmp_path, "wrong", f'kind = "http"\nurl = "{upstream.url}/wrong"', LABELLED)
    app = await app_factory([model, wrong])
    job = await run(app, "sentiment", text="good day")
    assert job["status"] == "succeeded"
    assert job["output"] == {"label": "GOOD DAY", "length": 8}
    assert upstream.headers[-1]["authorization"] == "Bearer s3cret"
    assert upstream.headers[-1]["x-team"] == "ml"
    assert "s3cret" not in orjson.dumps(job).decode()
    r = await app.http.post("/endpoints/sentiment/jobs", json={"input": {"text": 5}})
    assert r.status_code == 422  # validated before the upstream is asked
    assert upstream.calls["predict"] == 1
    job = await run(app, "wrong", text="x")
    assert job["status"] == "failed"
    assert "does not match the endpoint's outputs: label" in job["error"]


async def test_http_failure_names_the_status_and_quotes_the_body(
    app_factory: AppFactory, upstream: Upstream, tmp_path: Path
) -> None:
    model = adapter(tmp_path, "failing", f'kind = "http"\nurl = "{upstream.url}/fail"', HTTP_IO)
    app = await app_factory([model])
    job = await run(app, "failing", text="x")
    assert job["status"] == "failed"
    assert job["attempts"] == 1  # a 500 is the upstream's answer: not retried
    error = job["error"]
    assert error.startswith("UpstreamError: the upstream answered 500 Internal Server Error:")
    assert "model exploded: CUDA out of memory" in error
    assert len(error) < 300  # an excerpt, not the whole body


async def test_http_flaky_upstream_is_retried_with_backoff(
    app_factory: AppFactory, upstream: Upstream, tmp_path: Path
) -> None:
    model = adapter(
        tmp_path,
        "flaky",
        f'kind = "http"\nurl = "{upstream.url}/flaky"\nretries = 3\nretry_backoff = 0.01',
        LABELLED,
    )
    app = await app_factory([model])
    job = await run(app, "flaky", text="x")
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1
    assert upstream.calls["flaky"] == 3  # two 503s, then the answer
    logs = [e["data"] for e in await events(app, job["id"]) if e["event"] == "log"]
    assert [entry["message"].split(":")[0] for entry in logs] == ["try 1 of 4", "try 2 of 4"]
    assert all(entry["level"] == "warning" and "503" in entry["message"] for entry in logs)

    upstream.calls["flaky"], upstream.flaky_failures = 0, 100
    job = await run(app, "flaky", text="x")  # 503 through every retry and attempt
    assert job["status"] == "failed"
    assert job["attempts"] == 3  # max_attempts: requeued as transient
    assert (
        "the upstream answered 503 Service Unavailable: warming up (tried 4 times)"
        in (job["error"])
    )


async def test_slow_upstream_gets_concurrency_requests_at_once_and_a_timeout(
    app_factory: AppFactory, upstream: Upstream, tmp_path: Path
) -> None:
    slow_io = HTTP_IO + 'seconds = { type = "float", default = 0.3 }\n' + OUTPUTS
    wide = adapter(
        tmp_path,
        "wide",
        f'kind = "http"\nurl = "{upstream.url}/slow"\nconcurrency = 4\ntimeout = 5',
        slow_io,
    )
    short = adapter(
        tmp_path, "short", f'kind = "http"\nurl = "{upstream.url}/slow"\ntimeout = 0.2', slow_io
    )
    app = await app_factory([wide, short])
    jobs = await asyncio.gather(*(run(app, "wide", text="x") for _ in range(8)))
    assert [j["status"] for j in jobs] == ["succeeded"] * 8
    assert upstream.most_in_flight == 4
    job = await run(app, "short", text="x", seconds=2.0)
    assert job["status"] == "failed"
    assert job["error"] == "UpstreamError: the upstream did not answer within 0.2 s (timeout)"


async def test_streaming_upstreams_become_output_chunks(
    app_factory: AppFactory, upstream: Upstream, tmp_path: Path
) -> None:
    sse = adapter(
        tmp_path,
        "sse",
        f'kind = "http"\nurl = "{upstream.url}/sse"\nstream = true',
        HTTP_IO + '[output]\ntype = "string"\n',
    )
    jsonl = adapter(
        tmp_path, "jsonl", f'kind = "http"\nurl = "{upstream.url}/jsonl"\nstream = true', HTTP_IO
    )
    text = adapter(
        tmp_path,
        "text",
        f'kind = "http"\nurl = "{upstream.url}/text"',
        HTTP_IO + '[output]\ntype = "string"\n',
    )
    app = await app_factory([sse, jsonl, text])
    job = await run(app, "sse", text="one two three")
    assert job["status"] == "succeeded"
    assert job["output"] == "one two three "
    chunks = [e["data"] for e in await events(app, job["id"]) if e["event"] == "output"]
    assert chunks == ["one ", "two ", "three "]
    job = await run(app, "jsonl", text="a b")
    assert job["output"] == [{"index": 0, "word": "a"}, {"index": 1, "word": "b"}]
    chunks = [e["data"] for e in await events(app, job["id"]) if e["event"] == "output"]
    assert chunks == job["output"]
    job = await run(app, "text", text="abc")
    assert job["output"] == "cba"


@pytest.mark.parametrize("lanes", [1, 3])
async def test_an_upstream_that_dies_fails_its_jobs_after_the_retries(
    app_factory: AppFactory, tmp_path: Path, lanes: int
) -> None:
    doomed = Upstream().start()
    model = adapter(
        tmp_path,
        "doomed",
        f'kind = "http"\nurl = "{doomed.url}/predict"\nretries = 1\nretry_backoff = 0.01\n'
        f"max_attempts = 2\nconcurrency = {lanes}",
        LABELLED,
    )
    app = await app_factory([model])
    assert (await run(app, "doomed", text="a"))["status"] == "succeeded"
    await asyncio.to_thread(doomed.stop)
    job = await run(app, "doomed", text="b")
    assert job["status"] == "failed"
    assert job["attempts"] == 2
    assert job["error"].startswith("UpstreamUnavailable: cannot reach the upstream:")
    assert job["error"].endswith("(tried 2 times)")


async def test_a_health_url_decides_whether_the_workers_are_online(
    app_factory: AppFactory, upstream: Upstream, tmp_path: Path
) -> None:
    upstream.healthy = False
    model = adapter(
        tmp_path,
        "checked",
        f'kind = "http"\nurl = "{upstream.url}/predict"\nconcurrency = 2\n'
        f'health_url = "{upstream.url}/health"\nhealth_interval = 0.05',
        LABELLED,
    )
    app = await app_factory([model])
    await eventually(lambda: _asked(upstream), 10, "a health check")
    assert await online(app, "checked") == 0
    r = await app.http.post(
        "/endpoints/checked/jobs", json={"input": {"text": "queued"}}, headers={"prefer": "wait=0"}
    )
    assert r.status_code == 202  # it waits in the queue
    job_id = r.json()["id"]
    upstream.healthy = True

    async def done() -> bool:
        return bool((await app.http.get(f"/jobs/{job_id}")).json()["status"] == "succeeded")

    await eventually(done, 10, "the queued job to be served once the upstream is healthy")
    assert await online(app, "checked") == 1
    upstream.healthy = False

    async def offline() -> bool:
        return await online(app, "checked") == 0

    await eventually(offline, 10, "the workers to leave while the upstream is unhealthy")
    assert "predict" in upstream.calls and upstream.calls["predict"] == 1


async def _asked(upstream: Upstream) -> bool:
    return bool(upstream.calls.get("health", 0) > 0)


async def test_subprocess_model_streams_reports_progress_and_logs_stderr(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    app = await app_factory([lines_program(tmp_path, "lines", "processes = 2")])
    job = await run(app, "lines", text="hello")
    assert job["status"] == "succeeded"
    assert job["output"]["text"] == "hello"
    job = await run(app, "lines", text="a b c", mode="stream")
    assert job["output"]["text"] == "a b c"
    stream = await events(app, job["id"])
    assert [e["data"] for e in stream if e["event"] == "output"] == ["a", "b", "c"]
    progress = [e["data"] for e in stream if e["event"] == "progress"]
    assert progress  # coalesced: the latest at most every progress_interval
    assert all(p["message"] == f"word {round(p['fraction'] * 3)}" for p in progress)
    job = await run(app, "lines", text="x", mode="log")
    logs = [e["data"] for e in await events(app, job["id"]) if e["event"] == "log"]
    assert [(entry["level"], entry["message"], entry["stream"]) for entry in logs] == [
        ("info", "info: working on x", "stderr"),
        ("warning", "warning: this is a warning", "stderr"),
    ]
    assert all(isinstance(entry["time"], float) for entry in logs)
    jobs = await asyncio.gather(*(run(app, "lines", text=str(i)) for i in range(6)))
    assert len({j["output"]["pid"] for j in jobs}) <= 2
    job = await run(app, "lines", text="it", mode="error")
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert job["error"] == "ProgramError: cannot do 'it'"


async def test_subprocess_lines_that_are_not_the_protocol_are_skipped_and_logged(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    app = await app_factory([lines_program(tmp_path, "noisy")])
    job = await run(app, "noisy", text="fine", mode="garbage")
    assert job["status"] == "succeeded"
    assert job["output"]["text"] == "fine"
    logs = [e["data"]["message"] for e in await events(app, job["id"]) if e["event"] == "log"]
    assert logs == [
        "skipped a line that is not a JSON object: this is not json",
        "skipped a line that is not a JSON object: [1, 2, 3]",
        'skipped a line for another id: {"id": "someone-else", "output": {"text": "wrong"}}',
    ]


async def test_a_crashed_program_is_restarted_and_its_job_retried(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    mark = tmp_path / "crashed"
    model = lines_program(
        tmp_path, "crashy", f'max_attempts = 2\nenv = {{ CRASH_MARK = "{mark}" }}'
    )
    app = await app_factory([model])
    first = (await run(app, "crashy", text="before"))["output"]["pid"]
    job = await run(app, "crashy", text="again", mode="crash_once")
    assert job["status"] == "succeeded"
    assert job["attempts"] == 2
    assert job["output"]["pid"] != first  # a new process
    logs = [e["data"] for e in await events(app, job["id"]) if e["event"] == "log"]
    assert {"level": "critical", "message": "fatal: crashing now"}.items() <= logs[0].items()
    job = await run(app, "crashy", text="always", mode="crash")
    assert job["status"] == "failed"
    assert job["attempts"] == 2
    assert job["error"] == (
        "ProgramFailed: the program exited with code 3 during the job; it is started again"
    )
    assert (await run(app, "crashy", text="after"))["status"] == "succeeded"


async def test_a_hung_program_is_killed_after_the_timeout(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    app = await app_factory([lines_program(tmp_path, "hangs", "timeout = 0.5\nmax_attempts = 1")])
    before = (await run(app, "hangs", text="x"))["output"]["pid"]
    job = await run(app, "hangs", text="x", mode="hang")
    assert job["status"] == "failed"
    assert job["error"] == (
        "ProgramFailed: the program did not answer within 0.5 s (timeout); it was stopped"
        " and is started again"
    )
    after = await run(app, "hangs", text="y")
    assert after["status"] == "succeeded"
    assert after["output"]["pid"] != before


def test_a_program_runs_on_a_model_thread_without_a_server(tmp_path: Path) -> None:
    """``modelport run``/``pipe`` call ``predict`` on their own thread: the program's lines
    are read by a thread there, with the same protocol as served."""
    local = LocalModel(lines_program(tmp_path, "direct", "timeout = 0.5"))
    local.setup()
    try:
        seen: list[Event] = []
        [out] = local.call([local.validate({"text": "a b", "mode": "stream"})], seen.append)
        assert out.error is None and out.output["text"] == "a b"
        assert [e.data for e in seen if e.type == "output"] == ["a", "b"]
        [out] = local.call([local.validate({"text": "x", "mode": "error"})])
        assert out.error == "ProgramError: cannot do 'x'"
        [out] = local.call([local.validate({"text": "x", "mode": "hang"})])
        assert out.error is not None and "did not answer within 0.5 s" in out.error
        [out] = local.call([local.validate({"text": "after"})])
        assert out.error is None and out.output["text"] == "after"
    finally:
        local.model.close()  # type: ignore[attr-defined]
        local.close()


def test_an_http_model_runs_on_a_model_thread_without_a_server(tmp_path: Path) -> None:
    """``modelport run``/``pipe`` call ``predict`` on their own thread: it asks the upstream
    through httpx's client there, with the same retries, errors and chunks as served."""
    upstream = Upstream().start()
    url = upstream.url
    models = {
        name: LocalModel(adapter(tmp_path, name, f'kind = "http"\nurl = "{url}/{route}"{more}', io))
        for name, route, more, io in [
            ("label", "predict", '\nheaders = { X-Team = "ml" }', LABELLED),
            ("flaky", "flaky", "\nretry_backoff = 0.01", LABELLED),
            ("failing", "fail", "", HTTP_IO),
            ("words", "jsonl", "\nstream = true", HTTP_IO),
        ]
    }
    try:
        for local in models.values():
            local.setup()
        [out] = models["label"].call([models["label"].validate({"text": "ok"})])
        assert out.error is None and out.output == {"label": "OK", "length": 2}
        assert upstream.headers[-1]["x-team"] == "ml"
        [out] = models["flaky"].call([models["flaky"].validate({"text": "x"})])
        assert out.error is None and upstream.calls["flaky"] == 3  # two 503s, then the answer
        [out] = models["failing"].call([models["failing"].validate({"text": "x"})])
        assert out.error is not None
        assert out.error.startswith("UpstreamError: the upstream answered 500 Internal")
        seen: list[Event] = []
        [out] = models["words"].call([models["words"].validate({"text": "a b"})], seen.append)
        assert out.error is None
        assert [e.data for e in seen if e.type == "output"] == [
            {"index": 0, "word": "a"},
            {"index": 1, "word": "b"},
        ]
    finally:
        for local in models.values():
            asyncio.run(local.model.aclose())  # type: ignore[attr-defined]
            local.close()
        upstream.stop()


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
async def test_a_program_in_another_language(app_factory: AppFactory, tmp_path: Path) -> None:
    shutil.copy(PROGRAMS / "reverse.js", tmp_path / "reverse.js")
    model = adapter(
        tmp_path,
        "reverse",
        'kind = "subprocess"\ncommand = ["node", "reverse.js"]\nprocesses = 2',
        HTTP_IO + '[outputs]\ntext = { type = "string" }\n',
    )
    app = await app_factory([model])
    job = await run(app, "reverse", text="héllo wörld")
    assert job["status"] == "succeeded"
    assert job["output"] == {"text": "dlröw olléh"}
    logs = [e["data"]["message"] for e in await events(app, job["id"]) if e["event"] == "log"]
    assert logs == ["reversing 11 characters"]


def test_mistakes_in_an_adapter_spec_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[endpoint]\nname = "bad"\nkind = "http"\nmethod = "TRACE"\nconcurrency = 0\n'
        'command = ["x"]\nurl_ = "x"\n'
    )
    with pytest.raises(SpecError) as e:
        spec_from_toml(path)
    fields = {err["field"]: err["message"] for err in e.value.errors}
    assert fields["endpoint.url"] == 'required for kind = "http"'
    assert fields["endpoint.method"] == "use one of POST, PUT, PATCH"
    assert fields["endpoint.concurrency"] == "must be an integer from 1 to 1024, got 0"
    assert fields["endpoint.command"] == 'only for kind = "subprocess", not "http"'
    assert "endpoint.url_" in fields
    path.write_text('[endpoint]\nname = "bad"\nprocesses = 2\n')
    with pytest.raises(SpecError, match=r'endpoint\.processes: only for kind = "subprocess"'):
        spec_from_toml(path)
    path.write_text('[endpoint]\nname = "bad"\nkind = "subprocess"\ncommand = []\n')
    with pytest.raises(SpecError, match=r"endpoint\.command: expected a list of strings"):
        spec_from_toml(path)
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path.write_text(
        '[endpoint]\nname = "bad"\nkind = "http"\nurl = "http://127.0.0.1:9/x"\n'
        'headers = { X-Key = "${NOT_SET_ANYWHERE}" }\n'
    )
    with pytest.raises(SpecError, match="X-Key: the environment variable NOT_SET_ANYWHERE"):
        load_models(str(path))
    path.write_text('[endpoint]\nname = "plain"\n')
    with pytest.raises(SpecError, match="names no model to run"):
        load_models(str(path))


def test_adapter_settings_stay_out_of_the_published_spec(tmp_path: Path) -> None:
    path = tmp_path / "up.toml"
    path.write_text(
        '[endpoint]\nname = "up"\nkind = "http"\nurl = "http://internal:9000/p"\ntimeout = 3\n'
    )
    spec = spec_from_toml(path)
    published = spec.to_dict()
    assert published["kind"] == "http"
    assert "url" not in orjson.dumps(published).decode()
    assert published["timeout"] is None  # the adapter's own limit: a hang is retried, not failed
    assert spec.adapter.timeout == 3.0


async def test_cancelling_a_running_subprocess_job_stops_its_program(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    app = await app_factory([lines_program(tmp_path, "stoppable")])
    before = (await run(app, "stoppable", text="x"))["output"]["pid"]
    r = await app.http.post(
        "/endpoints/stoppable/jobs",
        json={"input": {"mode": "hang"}},
        headers={"prefer": "respond-async"},
    )
    job_id = r.json()["id"]

    async def status() -> str:
        return str((await app.http.get(f"/jobs/{job_id}")).json()["status"])

    async def running() -> bool:
        return await status() == "running"

    await eventually(running, 10, "the job to start")
    assert (await app.http.post(f"/jobs/{job_id}/cancel")).status_code == 200
    after = await run(app, "stoppable", text="y")  # served once the program was stopped
    assert after["status"] == "succeeded"
    assert after["output"]["pid"] != before
    assert await status() == "cancelled"


async def test_a_program_that_cannot_start_leaves_its_endpoint_refusing_jobs(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    model = adapter(
        tmp_path,
        "missing",
        'kind = "subprocess"\ncommand = ["no-such-program-here", "x"]',
        '[inputs]\ntext = { type = "string", required = true }\n',
    )
    app = await app_factory([model], ready=False)

    async def failed() -> bool:
        r = await app.http.get("/endpoints/missing")
        return bool(r.json()["state"] == "setup-failed")

    await eventually(failed, 10, "the setup failure")
    reason = (await app.http.get("/endpoints/missing")).json()["reason"]
    assert "cannot start 'no-such-program-here': No such file or directory" in reason
    r = await app.http.post("/endpoints/missing/jobs", json={"input": {"text": "x"}})
    assert r.status_code == 503
    assert "cannot start 'no-such-program-here'" in r.json()["detail"]
