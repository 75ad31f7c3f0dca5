"""``modelport serve`` as its users run it: one server per SQLite file, the log it writes,
and ``--reload``."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, Serve, ServerProcess, wait_for

pytestmark = pytest.mark.e2e

SERVE = [sys.executable, "-m", "modelport", "serve"]
ECHO = "examples/echo/model.py"
CHATTY = "tests/models/ops.py:Chatty"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")


def _stop_with_ctrl_c(server: ServerProcess) -> int:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGINT)
    return int(server.proc.wait(timeout=30))


def test_a_second_server_on_the_same_sqlite_file_is_refused(serve: Serve, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    first: ServerProcess = serve([ECHO, "--store", f"sqlite:///{db}"]).start().wait_ready()
    assert first.proc is not None
    second = subprocess.run(
        [*SERVE, ECHO, "--store", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1, second.stderr
    message = second.stderr
    assert message.startswith(f"modelport: error: the store {db} is in use by another")
    assert f"pid {first.proc.pid} on host {socket.gethostname()}" in message
    assert f"serving http://127.0.0.1:{first.port}" in message
    # The first one goes on serving, alone.
    answer = httpx.post(f"{first.url}/endpoints/echo/jobs", json={"input": {"text": "hi"}})
    assert answer.json()["output"] == {"text": "hi"}


def test_a_relative_store_path_is_the_same_file_from_another_spelling(
    serve: Serve, tmp_path: Path
) -> None:
    (tmp_path / "sub").mkdir()
    first = serve([ECHO, "--store", f"sqlite:///{tmp_path}/jobs.db"]).start().wait_ready()
    assert first.proc is not None
    second = subprocess.run(
        [*SERVE, str(ROOT / ECHO), "--store", "sqlite:///sub/../jobs.db"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert second.returncode == 2
    assert f"pid {first.proc.pid}" in second.stderr


def test_a_lock_left_by_kill_9_does_not_block_a_restart(serve: Serve, tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    first: ServerProcess = serve([ECHO, "--store", f"sqlite:///{db}"]).start().wait_ready()
    assert first.proc is not None
    first.kill()
    stale = json.loads((tmp_path / "jobs.db.lock").read_text())
    assert stale["pid"] == first.proc.pid  # the file stays; the kernel dropped the lock
    second: ServerProcess = serve([ECHO, "--store", f"sqlite:///{db}"]).start().wait_ready()
    assert second.proc is not None
    assert json.loads((tmp_path / "jobs.db.lock").read_text())["pid"] == second.proc.pid


def test_the_log_a_newcomer_sees(serve: Serve, tmp_path: Path) -> None:
    """Banner, setup timings, an access log with durations, uvicorn's lines under its own
    name, printed lines whole, and a quiet Ctrl+C."""
    db = tmp_path / "jobs.db"
    server: ServerProcess = serve([ECHO, CHATTY, "--store", f"sqlite:///{db}"]).start()
    server.wait_ready()
    url = server.url
    httpx.post(f"{url}/endpoints/echo/jobs", json={"input": {"text": "hi"}}).raise_for_status()
    httpx.get(f"{url}/jobs/nope?x=1")
    wait_for(lambda: "/jobs/nope" in server.logs(), 10, "the access log line")
    assert _stop_with_ctrl_c(server) == 0
    logs = server.logs()
    lines = logs.splitlines()

    assert "uvicorn.error" not in logs
    assert "INFO uvicorn: Uvicorn running on" in logs
    for expected in (
        f"INFO modelport: modelport 0.1.0 serving {url} (docs: {url}/docs)",
        f"INFO modelport: store: sqlite:///{db}",
        f"INFO modelport: endpoint echo: POST {url}/endpoints/echo/jobs (model in this process)",
        "INFO modelport.server: setting up echo…",
        "INFO modelport.server: setting up chatty…",
    ):
        assert any(expected in line for line in lines), (expected, logs)
    assert re.search(r"INFO modelport\.server: chatty ready in \d+ ms", logs)
    access = r'INFO modelport\.access: 127\.0\.0\.1:\d+ - "{} HTTP/1\.1" {} \d+\.\d ms'
    assert re.search(access.format("POST /endpoints/echo/jobs", "200 OK"), logs), logs
    assert re.search(access.format(r"GET /jobs/nope\?x=1", "404 Not Found"), logs), logs
    # What setup() printed is one line of its own, not cut by the record logged meanwhile.
    assert "loading weights ... done" in lines
    assert all(TIMESTAMP.match(line) or line == "loading weights ... done" for line in lines), logs
    assert "Traceback" not in logs and "KeyboardInterrupt" not in logs


def test_no_access_log_and_json_access_fields(serve: Serve, tmp_path: Path) -> None:
    quiet: ServerProcess = serve(
        [ECHO, "--store", f"sqlite:///{tmp_path}/a.db", "--no-access-log"]
    ).start()
    quiet.wait_ready()
    httpx.post(f"{quiet.url}/endpoints/echo/jobs", json={"input": {"text": "hi"}})
    assert _stop_with_ctrl_c(quiet) == 0
    assert "Application shutdown complete" in quiet.logs()
    assert "modelport.access" not in quiet.logs()

    structured: ServerProcess = serve(
        [ECHO, "--store", f"sqlite:///{tmp_path}/b.db", "--log-format", "json"]
    ).start()
    structured.wait_ready()
    httpx.post(f"{structured.url}/endpoints/echo/jobs", json={"input": {"text": "hi"}})

    def submits() -> list[dict[str, Any]]:
        entries = [json.loads(line) for line in structured.logs().splitlines()]
        return [e for e in entries if e.get("path") == "/endpoints/echo/jobs"]

    wait_for(lambda: bool(submits()), 10, "the access log line")
    (access,) = submits()
    assert access["logger"] == "modelport.access"
    assert access["method"] == "POST" and access["client"].startswith("127.0.0.1:")
    assert access["status"] == 200 and access["duration_ms"] > 0
    assert access["request_id"]


MODEL = """
import modelport


class Versioned(modelport.Model):
    name = "versioned"

    def predict(self, x: int) -> dict[str, int]:
        return {"version": VERSION, "x": x}
"""


def test_reload_restarts_when_the_model_file_changes(serve: Serve, tmp_path: Path) -> None:
    model = tmp_path / "versioned.py"
    model.write_text("VERSION = 1\n" + MODEL)
    server: ServerProcess = serve(
        [str(model), "--reload", "--store", f"sqlite:///{tmp_path}/jobs.db"]
    ).start()
    server.wait_ready()

    def version() -> int | None:
        try:
            r = httpx.post(f"{server.url}/endpoints/versioned/jobs", json={"input": {"x": 3}})
        except httpx.TransportError:
            return None
        return r.json()["output"]["version"] if r.status_code == 200 else None

    assert version() == 1
    model.write_text("VERSION = 2\n" + MODEL)
    wait_for(lambda: version() == 2, 60, "the new model to answer")
    assert f"restarting on changes to *.py and *.toml in {tmp_path}" in server.logs()
    server.stop()
    assert server.proc is not None and server.proc.returncode == 0


def test_a_crash_ends_an_embedded_models_server_and_run(serve: Serve) -> None:
    """What the README says (Remote workers): an embedded model runs in the API server's
    process, so its crash (here os._exit, as a segfault) ends the server; ``run`` ends too.
    ``modelport worker`` restarts a crashed model process (tests/test_remote_e2e.py)."""
    exits = "tests/models/modes.py:Exits"
    ran = subprocess.run(
        [sys.executable, "-m", "modelport", "run", exits, "--text", "crash"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert ran.returncode == 3 and ran.stdout == b""
    server = serve([exits, "--store", "memory://"]).start().wait_ready()
    assert server.proc is not None
    with httpx.Client(base_url=server.url, timeout=30) as http:
        fine = http.post("/endpoints/exits/jobs", json={"input": {"text": "fine"}})
        assert fine.json()["output"] == "fine"
        with pytest.raises(httpx.TransportError):
            http.post("/endpoints/exits/jobs", json={"input": {"text": "crash"}})
    assert server.proc.wait(timeout=30) == 3
