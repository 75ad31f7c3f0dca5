"""The command line for a running server (``endpoints``, ``predict``, ``submit``, ``jobs``)
as its users run it: subprocesses against a real ``modelport serve``."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from modelport import Client
from tests.conftest import ROOT, Serve, ServerProcess
from tests.test_modes_cli import MODELPORT, modelport

pytestmark = pytest.mark.e2e

MODELS = [
    "examples/echo/model.py",
    *(f"tests/models/modes.py:{m}" for m in ("Flaky", "Words", "Fails")),
]


@pytest.fixture
def server(serve: Serve) -> ServerProcess:
    return serve([*MODELS, "--store", "memory://"]).start().wait_ready()


def test_endpoints_predict_submit_and_jobs(server: ServerProcess) -> None:
    env = {"MODELPORT_URL": server.url}
    listed = modelport("endpoints", env=env)
    assert listed.returncode == 0, listed.err
    rows = [line.split() for line in listed.out.splitlines()]
    assert rows[0] == ["NAME", "STATE", "WORKERS", "QUEUED", "DESCRIPTION"]
    assert {r[0] for r in rows[1:]} == {"echo", "flaky", "words", "fails"}
    as_json = modelport("endpoints", "--server", server.url, "--json")
    assert {e["name"] for e in json.loads(as_json.out)} == {"echo", "flaky", "words", "fails"}

    done = modelport("predict", "flaky", "--text", "hi", env=env)
    assert done.returncode == 0, done.err
    assert json.loads(done.out) == {"text": "HI"}
    helped = modelport("predict", "echo", "--help", env=env)
    assert "--text TEXT Text to echo back; string, at most 100000 characters; required" in " ".join(
        helped.out.split()
    )
    bad = modelport("predict", "echo", "--server", server.url)
    assert bad.returncode == 2
    assert bad.err == "modelport: error: text: Field required\n"
    failed = modelport("predict", "fails", "--text", "q", env=env)
    assert failed.returncode == 1
    assert failed.err.endswith("failed: ValueError: cannot read 'q'\n")
    missing = modelport("predict", "nope", env=env)
    assert missing.returncode == 2
    assert "no endpoint named 'nope'" in missing.err

    submitted = modelport("submit", "echo", "--json", "-", stdin='{"text": "queued"}', env=env)
    assert submitted.returncode == 0, submitted.err
    job_id = submitted.out.strip()
    watched = modelport("jobs", "watch", job_id, env=env)
    assert watched.returncode == 0, watched.err
    assert json.loads(watched.out) == {"text": "queued"}
    got = modelport("jobs", "--server", server.url, "get", job_id)
    job = json.loads(got.out)
    assert job["id"] == job_id and job["status"] == "succeeded"
    gone = modelport("jobs", "get", "nope", env=env)
    assert gone.returncode == 1
    assert gone.err == "modelport: error: no job with id 'nope'\n"
    unreachable = modelport("endpoints", "--server", "http://127.0.0.1:9")
    assert unreachable.returncode == 1
    assert unreachable.err.startswith("modelport: error: cannot reach http://127.0.0.1:9")


def test_jobs_watch_streams_and_cancel_stops(server: ServerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "MODELPORT_URL": server.url}
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    submitted = modelport("submit", "words", "--n", "3", "--gate", str(gate), env=env)
    job_id = submitted.out.strip()
    with subprocess.Popen(
        [*MODELPORT, "jobs", "watch", job_id], stdout=subprocess.PIPE, cwd=ROOT, env=env
    ) as proc:
        assert proc.stdout is not None
        seen = b""
        while seen != b"w0 w1 ":  # streamed while the model waits for the gate
            chunk = os.read(proc.stdout.fileno(), 100)
            assert chunk, seen
            seen += chunk
        with open(gate, "w") as fifo:
            fifo.write("go")
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 0
    assert seen + rest == b"w0 w1 w2 \n"

    os.unlink(gate)
    os.mkfifo(gate)
    blocked = modelport("submit", "words", "--n", "1", "--gate", str(gate), env=env).out.strip()
    with Client(server.url) as client:  # started, so the model will open the gate below
        next(e for e in client.job(blocked).events() if e.type == "started")
    cancelled = modelport("jobs", "cancel", blocked, env=env)
    assert cancelled.returncode == 0, cancelled.err
    assert json.loads(cancelled.out)["status"] == "cancelled"
    watch = modelport("jobs", "watch", blocked, env=env)
    assert watch.returncode == 1
    assert (
        watch.err
        == f"modelport: error: job {blocked} cancelled: {json.loads(cancelled.out)['error']}\n"
    )
    with open(gate, "w") as fifo:  # let the model's thread go on
        fifo.write("go")


def test_api_key_flag_file_and_environment(serve: Serve, tmp_path: Path) -> None:
    """The key by ``--api-key``, ``$MODELPORT_API_KEY``, and off the command line by
    ``--api-key-file`` or ``$MODELPORT_API_KEY_FILE`` (``jobs`` and ``batch --server`` too);
    a missing file is named."""
    store = f"sqlite:///{tmp_path}/keys.db"
    made = modelport("keys", "create", "--scope", "client", "--name", "cli", "--store", store)
    assert made.returncode == 0, made.err
    secret = made.out.strip()
    key_file = tmp_path / "app.key"
    key_file.write_text(made.out)  # as `modelport keys create > app.key` leaves it
    server = serve(["examples/echo/model.py", "--store", store, "--auth", "keys"])
    server.start().wait_ready()
    env = {"MODELPORT_URL": server.url, "MODELPORT_API_KEY": "", "MODELPORT_API_KEY_FILE": ""}
    refused = modelport("predict", "echo", "--text", "x", env=env)
    assert refused.returncode == 1, refused.err
    assert refused.err == "modelport: error: an API key is required (Authorization: Bearer <key>)\n"
    flagged = modelport("predict", "echo", "--text", "x", "--api-key", secret, env=env)
    assert (flagged.returncode, flagged.out) == (0, '{"text":"x"}\n'), flagged.err
    from_env = modelport("endpoints", env={**env, "MODELPORT_API_KEY": secret})
    assert from_env.returncode == 0 and from_env.out.split()[5] == "echo", from_env.out
    job = modelport(
        "submit", "echo", "--text", "y", env={**env, "MODELPORT_API_KEY_FILE": str(key_file)}
    )
    assert job.returncode == 0, job.err
    got = modelport("jobs", "get", job.out.strip(), "--api-key-file", str(key_file), env=env)
    assert json.loads(got.out)["status"] in ("queued", "running", "succeeded")
    missing = modelport("endpoints", "--api-key-file", str(tmp_path / "nope"), env=env)
    assert missing.returncode == 1
    assert f"--api-key-file {tmp_path / 'nope'}: No such file" in missing.err
    (tmp_path / "inputs.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    out = tmp_path / "out.jsonl"
    batch = modelport(
        "batch",
        *("--server", server.url, "--endpoint", "echo", str(tmp_path / "inputs.jsonl")),
        *("--out", str(out), "--no-progress", "--api-key-file", str(key_file)),
        env=env,
    )
    assert batch.returncode == 0, batch.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["output"]["text"] for r in rows) == ["a", "b"]


def test_predict_sends_media_files(serve: Serve, tmp_path: Path) -> None:
    """``--image`` takes a path or ``-`` (stdin), as ``run`` does; the server converts the
    file (any size to the digits model's 8x8 greyscale) and refuses what is not an image."""
    from tests.test_modes_media import seven_png

    server = serve(["examples/digits/model.py", "--store", "memory://"]).start().wait_ready()
    seven = seven_png(tmp_path)
    env = {"MODELPORT_URL": server.url}
    by_path = modelport("predict", "digits", "--image", str(seven), "--top-k", "1", env=env)
    assert by_path.returncode == 0, by_path.err
    assert json.loads(by_path.out) == {"digit": 7, "guesses": [{"digit": 7, "probability": 1.0}]}
    on_stdin = modelport("predict", "digits", "--image", "-", stdin=seven.read_bytes(), env=env)
    assert on_stdin.returncode == 0, on_stdin.err
    assert json.loads(on_stdin.out)["digit"] == 7
    refused = modelport("predict", "digits", "--image", "-", stdin=b"GIF89a no", env=env)
    assert refused.returncode == 2
    assert refused.err == "modelport: error: image: not a JPEG, PNG, WEBP, GIF, BMP or TIFF file\n"
