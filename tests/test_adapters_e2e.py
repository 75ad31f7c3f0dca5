"""Adapters as users run them: ``modelport serve --config`` and ``modelport worker --config``
in their own processes, in front of a real upstream service and real programs."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import Serve, Workers, online, wait_for
from tests.upstreams import Upstream

pytestmark = pytest.mark.e2e

PROGRAMS = Path(__file__).resolve().parent / "programs"
TOKEN = "adapter-worker-token"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    service = Upstream().start()
    yield service
    service.stop()


def submit(url: str, endpoint: str, **given: object) -> dict[str, object]:
    r = httpx.post(
        f"{url}/endpoints/{endpoint}/jobs",
        json={"input": given},
        headers={"prefer": "wait=20"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    job: dict[str, object] = r.json()
    return job


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_serve_runs_http_and_subprocess_models_from_toml(
    serve: Serve, upstream: Upstream, tmp_path: Path
) -> None:
    (tmp_path / "upstream.toml").write_text(
        "[endpoint]\n"
        'name = "sentiment"\n'
        'kind = "http"\n'
        f'url = "{upstream.url}/predict"\n'
        "timeout = 10\n"
        "concurrency = 8\n"
        "[inputs]\n"
        'text = { type = "string", required = true }\n'
        "[outputs]\n"
        'label = { type = "string" }\n'
        'length = { type = "integer" }\n'
    )
    shutil.copy(PROGRAMS / "reverse.js", tmp_path / "reverse.js")
    (tmp_path / "tts.toml").write_text(
        "[endpoint]\n"
        'name = "reverse"\n'
        'kind = "subprocess"\n'
        'command = ["node", "reverse.js"]\n'
        "processes = 2\n"
        "[inputs]\n"
        'text = { type = "string", required = true }\n'
    )
    server = serve(
        [
            *("--config", str(tmp_path / "upstream.toml")),
            *("--config", str(tmp_path / "tts.toml")),
            *("--store", f"sqlite:///{tmp_path}/s.db"),
        ]
    ).start()
    server.wait_ready()
    wait_for(lambda: online(server, "reverse") == 1, 20, "the reverse programs")
    assert online(server, "sentiment") == 1
    assert submit(server.url, "sentiment", text="hi")["output"] == {"label": "HI", "length": 2}
    job = submit(server.url, "reverse", text="stressed")
    assert job["output"] == {"text": "desserts"}
    described = httpx.get(f"{server.url}/endpoints/reverse", timeout=5).json()
    assert described["kind"] == "subprocess"
    assert "reverse.js" not in orjson.dumps(described).decode()


def test_worker_runs_adapters_for_a_remote_server(
    serve: Serve, workers: Workers, upstream: Upstream, tmp_path: Path
) -> None:
    http = tmp_path / "upstream.toml"
    http.write_text(
        "[endpoint]\n"
        'name = "sentiment"\n'
        'kind = "http"\n'
        f'url = "{upstream.url}/predict"\n'
        "concurrency = 2\n"
        "[inputs]\n"
        'text = { type = "string", required = true }\n'
    )
    command = orjson.dumps([sys.executable, "lines.py"]).decode()
    spec = tmp_path / "lines.toml"
    spec.write_text(
        "[endpoint]\n"
        'name = "lines"\n'
        'kind = "subprocess"\n'
        f"command = {command}\n"
        f'cwd = "{PROGRAMS}"\n'
        "processes = 2\n"
        "[inputs]\n"
        'text = { type = "string", required = true }\n'
        'mode = { type = "string", default = "echo" }\n'
    )
    server = serve(["--worker-token", TOKEN, "--store", f"sqlite:///{tmp_path}/s.db"]).start()
    server.wait_ready()
    worker = workers(
        ["--config", str(spec), "--config", str(http), "--server", server.url, "--token", TOKEN]
    ).start()
    wait_for(
        lambda: online(server, "lines") == online(server, "sentiment") == 1,
        30,
        f"the worker\n{worker.logs()}",
    )
    answer = submit(server.url, "sentiment", text="far")["output"]
    assert answer == {"label": "FAR", "length": 3}
    pids = {submit(server.url, "lines", text=str(i))["output"]["pid"] for i in range(4)}  # type: ignore[index]
    assert 1 <= len(pids) <= 2
    job = submit(server.url, "lines", text="from afar", mode="log")
    assert job["status"] == "succeeded"
    assert job["output"]["text"] == "from afar"  # type: ignore[index]
    r = httpx.get(
        f"{server.url}/jobs/{job['id']}/events", headers={"accept": "application/jsonl"}, timeout=5
    )
    logs = [
        e["data"]["message"] for e in map(orjson.loads, r.text.splitlines()) if e["event"] == "log"
    ]
    assert logs == ["info: working on from afar", "warning: this is a warning"]
    worker.stop()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.logs()


def test_worker_refuses_a_toml_file_without_an_adapter(workers: Workers, tmp_path: Path) -> None:
    spec = tmp_path / "plain.toml"
    spec.write_text('[endpoint]\nname = "plain"\n[inputs]\nx = { type = "integer" }\n')
    worker = workers(["--config", str(spec), "--server", "http://127.0.0.1:9", "--token", TOKEN])
    worker.start()
    assert worker.proc is not None
    assert worker.proc.wait(timeout=30) == 2
    assert "names no model to run" in worker.logs()
