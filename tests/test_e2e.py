"""End-to-end: `modelport serve` as a real uvicorn process, driven by the Python client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import modelport
from modelport import Client
from tests.conftest import Serve

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e

SLOW = "tests/models/basic.py:Slow"


def test_client_against_real_server(serve: Serve, tmp_path: Path) -> None:
    server = (
        serve(
            [
                "examples/iris/model.py",
                "examples/echo/model.py",
                "--store",
                f"sqlite:///{tmp_path}/jobs.db",
            ]
        )
        .start()
        .wait_ready()
    )
    with Client(server.url) as c:
        out = c.predict(
            "iris", sepal_length=5.1, sepal_width=3.5, petal_length=1.4, petal_width=0.2
        )
        assert out["label"] == "setosa"
        assert set(out["probabilities"]) == {"setosa", "versicolor", "virginica"}
        virginica = c.predict(
            "iris", sepal_length=7.7, sepal_width=3.0, petal_length=6.1, petal_width=2.3
        )
        assert virginica["label"] == "virginica"
        job = c.submit("echo", text="hi")
        job.wait(timeout=10)
        assert job.status == "succeeded" and job.output == {"text": "hi"}
        assert c.job(job.id).output == {"text": "hi"}
        with pytest.raises(modelport.InvalidInput) as info:
            c.predict("iris", sepal_length=50, sepal_width=3.5, petal_length=1.4, petal_width=0.2)
        assert info.value.errors == [
            {"field": "sepal_length", "message": "Input should be less than or equal to 10"}
        ]
        with pytest.raises(modelport.Conflict):
            job.cancel()
        assert {e["name"] for e in c.endpoints()} == {"iris", "echo"}
        assert c.endpoint("iris")["workers"][0]["state"] == "online"


def test_kill_9_with_queued_jobs_loses_nothing(serve: Serve, tmp_path: Path) -> None:
    """kill -9 while one job runs and others wait; a restart on the same file finishes them all."""
    db = f"sqlite:///{tmp_path}/jobs.db"
    trace = tmp_path / "trace.txt"
    os.environ["MODELPORT_TEST_TRACE"] = str(trace)
    try:
        first = serve([SLOW, "--store", db]).start().wait_ready()
        with Client(first.url) as c:
            jobs = [c.submit("slow", n=n, seconds=0.2) for n in range(8)]
            deadline = time.monotonic() + 20
            # Running in the store and started in the model: a leased job reaches the model
            # thread a moment after its status says running.
            while c.job(jobs[2].id).status != "running" or "2" not in _started(trace):
                assert time.monotonic() < deadline, "job 2 never started"
                time.sleep(0.02)
        first.kill()
        statuses_at_kill = Counter(_started(trace))

        second = serve([SLOW, "--store", db], port=first.port).start().wait_ready()
        with Client(second.url) as c:
            finals = [c.job(j.id).wait(timeout=30) for j in jobs]
        assert [j.status for j in finals] == ["succeeded"] * 8
        assert [j.output for j in finals] == [{"n": n} for n in range(8)]
        runs = Counter(int(n) for n in _started(trace))
        assert set(runs) == set(range(8))
        # Only the job that was running at the kill may have run twice.
        assert [n for n, count in runs.items() if count > 1] == [2]
        assert statuses_at_kill["2"] == 1
        assert finals[2].data["attempts"] == 2
        assert all(j.data["attempts"] == 1 for i, j in enumerate(finals) if i != 2)
    finally:
        os.environ.pop("MODELPORT_TEST_TRACE", None)


def _started(trace: Path) -> list[str]:
    """The inputs the Slow model has started on, as its trace file lists them."""
    return trace.read_text().split() if trace.exists() else []


def test_cli_version_and_help() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "modelport", "--version"], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == f"modelport {modelport.__version__}"
    helped = subprocess.run(
        [sys.executable, "-m", "modelport", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--host", "--port", "--store", "--log-level", "--config"):
        assert option in helped.stdout
    assert "127.0.0.1" in helped.stdout


def test_bad_toml_is_refused_at_start_naming_file_key_and_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[endpoint]\nname = "x"\n[inputs]\nn = { type = "integer", min = 5, max = 1 }\n')
    run = subprocess.run(
        [sys.executable, "-m", "modelport", "serve", "--config", str(bad), "--port", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert run.returncode == 2
    assert str(bad) in run.stderr
    assert "inputs.n" in run.stderr
    assert "min (5) is greater than max (1)" in run.stderr


def test_serve_toml_only_endpoint_queues_for_remote_workers(serve: Serve, tmp_path: Path) -> None:
    server = (
        serve(
            ["--config", "examples/txt2img/txt2img.toml", "--store", f"sqlite:///{tmp_path}/j.db"]
        )
        .start()
        .wait_ready()
    )
    with Client(server.url) as c:
        job = c.submit("txt2img", prompt="a red fox")
        assert job.status == "queued"
        assert job.data["queue_position"] == 0
        assert c.endpoints()[0]["workers_online"] == 0
        job.cancel()
        assert job.status == "cancelled"


def test_json_logs_carry_request_and_job_ids(serve: Serve, tmp_path: Path) -> None:
    server = (
        serve(["tests/models/basic.py:Fails", "--store", "memory://", "--log-format", "json"])
        .start()
        .wait_ready()
    )
    with Client(server.url) as c:
        job = c.submit("fails", x=-1).wait(timeout=10)
    server.stop()
    entries = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    assert entries, server.logs()
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    failure = next(e for e in entries if e["level"] == "error")
    assert failure["job_id"] == job.id
    assert "ValueError: x must not be negative" in failure["exc"]
