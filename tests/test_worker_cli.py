"""``modelport worker`` as its users run it: refusals end it, a server that is down is waited
for, Ctrl+C is quick when nothing is in flight, and both sides say who joined and left."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from modelport import Client
from modelport.worker.http import env_proxy
from tests.conftest import (
    ROOT,
    WORKER_TOKEN,
    Serve,
    ServerProcess,
    WorkerProcess,
    Workers,
    free_port,
    online,
    wait_for,
    worker_args,
)

pytestmark = pytest.mark.e2e

SLEEPY = "tests/models/remote.py:Sleepy"


def api_server(serve: Serve, tmp_path: Path, *args: str) -> ServerProcess:
    server: ServerProcess = serve(
        ["--worker-token", WORKER_TOKEN, "--store", f"sqlite:///{tmp_path}/jobs.db", *args]
    )
    return server.start().wait_ready()


RETRY = re.compile(r"^\S+ \S+ WARNING modelport\.worker: .*; retrying in \d+\.\d s$")


def refusal(stderr: str) -> str:
    """The one line a refused worker writes; before it, at most the warnings of retries a
    busy server asked for (a 503, a timeout), never a traceback or another error."""
    *before, last = stderr.splitlines()
    assert all(RETRY.match(line) for line in before), stderr
    assert last.startswith("modelport: error: "), stderr
    return last


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport", "worker", *args, "--log-level", "warning"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_a_wrong_token_ends_the_worker_with_one_line(serve: Serve, tmp_path: Path) -> None:
    server = api_server(serve, tmp_path)
    done = run_worker(SLEEPY, "--server", server.url, "--token", "wrong", "--processes", "2")
    assert done.returncode == 2
    assert refusal(done.stderr) == (
        f"modelport: error: the server at {server.url} refused this worker (401): a worker "
        "key or the worker token is required (Authorization: Bearer ...); check --token (or "
        "$MODELPORT_WORKER_TOKEN)"
    )
    assert done.stdout == ""


def test_a_server_without_remote_workers_says_so(serve: Serve, tmp_path: Path) -> None:
    server: ServerProcess = serve(["examples/echo/model.py", "--store", "memory://"])
    server.start().wait_ready()
    done = run_worker(SLEEPY, "--server", server.url, "--token", "any")
    assert done.returncode == 2
    assert refusal(done.stderr).endswith(
        "refused this worker (401): this server has no worker token and was given no worker "
        "key: start it with --worker-token, or give workers a worker key (modelport keys "
        "create --scope worker)"
    )


def test_a_spec_that_differs_ends_the_worker_with_one_line(serve: Serve, tmp_path: Path) -> None:
    toml = tmp_path / "sleepy.toml"
    toml.write_text('[endpoint]\nname = "sleepy"\n[inputs]\nn = { type = "string" }\n')
    server = api_server(serve, tmp_path, "--config", str(toml))
    done = run_worker(*worker_args(server, SLEEPY))
    assert done.returncode == 2
    line = refusal(done.stderr)
    assert line.startswith(f"modelport: error: the server at {server.url} refused this worker")
    assert "(409): worker" in line and "with a spec that differs from the server's" in line
    assert "Traceback" not in done.stderr


def test_a_server_that_is_down_is_retried_and_ctrl_c_is_quick(workers: Workers) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    worker: WorkerProcess = workers([SLEEPY, "--server", url, "--token", WORKER_TOKEN]).start()
    wait_for(lambda: worker.logs().count("cannot reach") >= 3, 30, "three attempts")
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGINT)
    # Nothing in flight: no grace period to wait out (it is 30 s).
    assert worker.proc.wait(timeout=10) == 0
    logs = worker.logs()
    assert "Traceback" not in logs
    attempts = [line for line in logs.splitlines() if "cannot reach" in line]
    assert all(
        re.search(
            rf"WARNING modelport.worker: cannot reach the server at {url} \(POST /workers: "
            r".+\); retrying in \d+\.\d s$",
            line,
        )
        for line in attempts
    ), attempts
    delays = [float(re.findall(r"retrying in (\S+) s", line)[0]) for line in attempts]
    assert delays == sorted(delays) and delays[-1] > delays[0]


def test_a_worker_goes_out_through_the_proxy_the_environment_names(
    workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU box behind a firewall may reach the server only through a proxy: the worker
    sends through the one ``http_proxy`` names (unless ``no_proxy`` lists the server)."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here: only the proxy is reached
    with socket.create_server(("127.0.0.1", 0)) as proxy:
        for name in ("HTTP_PROXY", "NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        workers([SLEEPY, "--server", url, "--token", WORKER_TOKEN]).start()
        proxy.settimeout(30)
        conn, _ = proxy.accept()
        with conn:
            conn.settimeout(30)
            head = conn.recv(65536)
    # A proxy is asked for the absolute URL.
    assert head.startswith(f"POST {url}/workers HTTP/1.1\r\n".encode()), head


@pytest.mark.parametrize(
    ("environ", "url", "proxy"),
    [
        ({"https_proxy": "proxy.corp:3128"}, "https://gpu.example", "http://proxy.corp:3128"),
        ({"all_proxy": "http://all:8080"}, "http://gpu.example", "http://all:8080"),
        ({"http_proxy": "http://p:1", "no_proxy": "gpu.example"}, "http://gpu.example:8000", None),
        ({"http_proxy": "http://p:1"}, "https://gpu.example", None),
    ],
    ids=["no-scheme", "all-proxy", "no-proxy", "other-scheme"],
)
def test_the_proxy_for_the_server_is_read_as_curl_reads_it(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], url: str, proxy: str | None
) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert env_proxy(url) == proxy


def test_sigterm_during_a_long_setup_exits_at_once(workers: Workers, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    release = tmp_path / "never"
    args = ["tests/models/ops.py:SlowSetup", "--server", url, "--token", WORKER_TOKEN]
    worker: WorkerProcess = workers(args)
    os.environ["MODELPORT_TEST_RELEASE"] = str(release)
    try:
        worker.start()
    finally:
        del os.environ["MODELPORT_TEST_RELEASE"]
    wait_for(lambda: "setting up slow-setup…" in worker.logs(), 30, "setup to start")
    worker.terminate()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=10) == 0
    assert "Traceback" not in worker.logs()


def test_both_sides_log_who_joined_and_left(serve: Serve, workers: Workers, tmp_path: Path) -> None:
    server = api_server(serve, tmp_path)
    worker: WorkerProcess = workers(worker_args(server, SLEEPY)).start()
    wait_for(lambda: "connected to" in worker.logs(), 60, "the worker to connect")
    (worker_id,) = re.findall(
        rf"INFO modelport.worker: connected to {server.url} as (\w+), serving sleepy$",
        worker.logs(),
        flags=re.MULTILINE,
    )
    with Client(server.url) as c:
        assert c.predict("sleepy", n=1)["n"] == 1
    worker.terminate()
    assert worker.proc is not None and worker.proc.wait(timeout=30) == 0
    logs = server.logs()
    assert re.search(
        rf"INFO modelport.server: worker {worker_id} \(\S+/0, pid \d+\) joined, serving sleepy",
        logs,
    ), logs
    assert re.search(rf"INFO modelport.server: worker {worker_id} \(\S+/0\) left", logs), logs
    assert "HTTP Request:" not in worker.logs()  # httpx's own lines stay quiet


def test_a_second_ctrl_c_stops_at_once_and_requeues(
    serve: Serve, workers: Workers, tmp_path: Path, trace: Path
) -> None:
    server = api_server(serve, tmp_path)
    worker: WorkerProcess = workers(worker_args(server, SLEEPY)).start()
    wait_for(lambda: online(server, "sleepy") == 1, 60, "the worker online")
    assert worker.proc is not None
    with Client(server.url) as c:
        job = c.submit("sleepy", n=7, seconds=25)
        wait_for(lambda: "start 7" in trace.read_text(), 30, "the job to start")
        worker.proc.send_signal(signal.SIGINT)
        wait_for(lambda: "draining 1 worker process" in worker.logs(), 10, "draining")
        worker.proc.send_signal(signal.SIGINT)
        assert worker.proc.wait(timeout=10) == 0
        assert "stopping worker 0 now; its jobs go back to the queue" in worker.logs()
        assert job.refresh().status == "queued"
