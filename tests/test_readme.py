"""Every block of the README, run as written: shell blocks against real servers that the
blocks themselves start (each on a free port, in a directory of its own), Python blocks
executed as scripts, the TOML block loaded.

The only changes made to a block before it runs are the ones a reader makes on their own
machine: the port (8000, 8001 and Redis's 6379 become free ones) and, for a ``modelport
serve`` line without ``--port``, a ``--port``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.loader import load_models
from modelport.spec import spec_from_toml
from tests.conftest import AppFactory, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent
"""Where the ``modelport`` command and ``python3`` of this environment are."""


@dataclass(frozen=True)
class Block:
    lang: str
    text: str

    @property
    def first(self) -> str:
        return self.text.splitlines()[0]


BLOCKS = [Block(lang, text) for lang, text in re.findall(r"```(\w*)\n(.*?)```", README, re.S)]


def block(lang: str, first_line: str) -> Block:
    """The one block of ``lang`` whose first line starts with ``first_line``."""
    (found,) = [b for b in BLOCKS if b.lang == lang and b.first.startswith(first_line)]
    CLAIMED.add(found)
    return found


CLAIMED: set[Block] = set()
NOT_RUN = {
    ("sh", "make run"): "make run builds the venv the suite runs in; make test is the suite",
    ("text", " clients"): "a diagram",
}


def make_run_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(line for line in makefile.splitlines() if "modelport serve" in line)
    return line.split("modelport serve", 1)[1].split("--port")[0].split()


def local(text: str, ports: dict[int, int]) -> str:
    """The block as it runs here: the given ports replaced, every server given a port."""
    for written, used in ports.items():
        text = re.sub(rf"(?<=[:\s]){written}\b", str(used), text)
    default = ports.get(8000)
    lines = []
    for line in text.splitlines():
        if default is not None and "modelport serve" in line and "--port" not in line:
            command, hash_, comment = line.partition("#")
            command, amp, _ = command.rstrip().partition(" &")
            line = f"{command} --port {default}{' &' if amp else ''}"
            line += f"  #{comment}" if hash_ else ""
        lines.append(line)
    return "\n".join(lines) + "\n"


def environment(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class Shell:
    """A block run by bash in its own process group, stopped (all of it) on close."""

    def __init__(self, text: str, cwd: Path, env: dict[str, str]) -> None:
        self.log = cwd / f"shell-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["bash", "-c", text],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, port: int, timeout: float = 90.0) -> None:
        url = f"http://127.0.0.1:{port}/health/ready"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                try:
                    if http.get(url).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"the block ended ({self.proc.returncode}):\n{self.output()}"
                    )
                time.sleep(0.05)
        raise AssertionError(f"no server ready on port {port}:\n{self.output()}")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the group is left
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def shell(text: str, cwd: Path, **env: str) -> Iterator[Shell]:
    running = Shell(text, cwd, environment(**env))
    try:
        yield running
    finally:
        running.close()


def run(text: str, cwd: Path, timeout: float = 60.0) -> str:
    """Run a block to its end; its output (it must succeed)."""
    ran = subprocess.run(
        ["bash", "-c", text],
        cwd=cwd,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert ran.returncode == 0, f"{text}\n{ran.stdout}\n{ran.stderr}"
    return ran.stdout


def workspace(path: Path) -> Path:
    """A directory of one's own, as a reader has: the repository's examples, and the README's
    ``my_model.py``."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "examples").symlink_to(ROOT / "examples")
    (path / "my_model.py").write_text(block("python", "# my_model.py").text)
    return path


def online(port: int, endpoint: str) -> int:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/endpoints/{endpoint}", timeout=5)
    except httpx.TransportError:
        return 0
    return int(r.json()["workers_online"]) if r.status_code == 200 else 0


def wait_for_workers(port: int, endpoint: str, count: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while online(port, endpoint) < count:
        assert time.monotonic() < deadline, f"{count} workers for {endpoint} never joined"
        time.sleep(0.05)


def sentiment(port: int) -> Any:
    r = httpx.post(
        f"http://127.0.0.1:{port}/endpoints/sentiment/jobs",
        json={"input": {"text": "good good bad", "scale": 2}},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["output"]


# ---- the demo `make run` serves, and the blocks that call it


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``make run``'s server (its targets, from the Makefile) on a free port."""
    port = free_port()
    here = workspace(tmp_path_factory.mktemp("demo"))
    with shell(f"modelport serve {' '.join(make_run_targets())} --port {port}", here) as server:
        server.wait_ready(port, timeout=120)
        yield port


def test_the_two_commands_are_make_targets() -> None:
    commands = block("sh", "make run").text
    assert "make run" in commands and "make test" in commands
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


@pytest.mark.e2e
def test_quickstart_curl(demo: int, tmp_path: Path) -> None:
    out = run(local(block("sh", "curl localhost:8000/endpoints/iris").text, {8000: demo}), tmp_path)
    assert httpx.Response(200, content=out).json()["output"]["label"] == "setosa"


@pytest.mark.e2e
def test_quickstart_python_client(demo: int, tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(local(block("python", "from modelport import Client").text, {8000: demo}))
    lines = run(f"python3 {script}", tmp_path).strip().splitlines()
    assert "'label': 'setosa'" in lines[0]
    assert lines[1] == "succeeded virginica"


@pytest.mark.e2e
def test_streaming_curl_blocks(demo: int, tmp_path: Path) -> None:
    out = run(
        local(block("sh", "curl -N -H 'Accept: text/event-stream'").text, {8000: demo}), tmp_path
    )
    sse, jsonl = out.split("event: succeeded", 1)
    assert sse.count("event: output") >= 2, out
    lines = [line for line in jsonl.splitlines() if line.startswith("{")]
    events = [httpx.Response(200, content=line).json()["event"] for line in lines]
    assert events[0] == "queued" and events[-1] == "succeeded" and "output" in events, out


@pytest.mark.e2e
def test_openai_sdk_block(demo: int, tmp_path: Path) -> None:
    script = tmp_path / "chat.py"
    script.write_text(local(block("python", "from openai import OpenAI").text, {8000: demo}))
    out = run(f"python3 {script}", tmp_path)
    first, streamed = out.split("\n", 1)
    assert 8 <= len(first.split()) <= 9, out  # max_tokens=8: 8 chunks, the first of 2 words
    assert len(streamed.split()) >= 8, out


# ---- writing a model


async def test_write_a_model_example(tmp_path: Path, app_factory: AppFactory) -> None:
    path = tmp_path / "my_model.py"
    path.write_text(block("python", "# my_model.py").text)
    http = (await app_factory(load_models(str(path)))).http
    r = await http.post(
        "/endpoints/sentiment/jobs", json={"input": {"text": "good good bad", "scale": 2}}
    )
    assert r.json()["output"] == {"score": 2.0}
    bad = await http.post("/endpoints/sentiment/jobs", json={"input": {"scale": 11}})
    assert {e["field"] for e in bad.json()["errors"]} == {"text", "scale"}


@pytest.mark.e2e
def test_each_way_to_name_a_model_serves_it(tmp_path: Path) -> None:
    here = workspace(tmp_path / "w")
    lines = block("sh", "modelport serve my_model.py  ").text.splitlines()
    assert len(lines) == 3  # a file, a class in it, a module found from the current directory
    for line in lines:
        port = free_port()
        with shell(local(line, {8000: port}), here) as server:
            server.wait_ready(port)
            assert sentiment(port) == {"score": 2.0}, line


@pytest.mark.e2e
def test_the_model_test_block_passes_under_pytest(tmp_path: Path) -> None:
    here = workspace(tmp_path / "w")
    (here / "test_my_model.py").write_text(block("python", "# test_my_model.py").text)
    out = run("python3 -m pytest -q -p no:cacheprovider test_my_model.py", here, timeout=120)
    assert "2 passed" in out, out


@pytest.mark.e2e
def test_the_run_without_a_server_block(tmp_path: Path) -> None:
    out = run(block("sh", "modelport run examples/iris").text, workspace(tmp_path / "w"), 120)
    lines = out.splitlines()
    assert '"label":"setosa"' in lines[0], out
    assert lines[1] == '{"text":"hi"}', out
    assert lines[-1].startswith("9 cases, 0 failed"), out


def test_the_toml_block_is_a_valid_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "txt2img.toml"
    path.write_text(block("toml", "[endpoint]").text)
    spec = spec_from_toml(path)
    example = spec_from_toml(ROOT / "examples/txt2img/txt2img.toml")
    assert spec.name == example.name
    for name, field in spec.inputs.items():
        assert example.inputs[name].type == field.type, name


@pytest.mark.e2e
def test_serving_a_toml_file_with_no_local_model(tmp_path: Path) -> None:
    here = workspace(tmp_path / "w")
    port = free_port()
    with shell(local(block("sh", "modelport serve --config").text, {8000: port}), here) as server:
        server.wait_ready(port)
        r = httpx.post(
            f"http://127.0.0.1:{port}/endpoints/txt2img/jobs",
            json={"input": {"prompt": "a cat"}},
            headers={"Prefer": "respond-async"},
        )
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text


# ---- remote workers and Redis


@pytest.mark.e2e
def test_remote_workers_block(tmp_path: Path) -> None:
    here = workspace(tmp_path / "w")
    port = free_port()
    with shell(local(block("sh", "export WT=").text, {8000: port}), here) as blk:
        blk.wait_ready(port)
        wait_for_workers(port, "sentiment", 2)  # --processes 2
        assert sentiment(port) == {"score": 2.0}


@pytest.mark.e2e
def test_several_servers_on_one_redis(tmp_path: Path, own_redis: RedisServer) -> None:
    here = workspace(tmp_path / "w")
    ports = {8000: free_port(), 8001: free_port(), 6379: own_redis.port}
    text = local(block("sh", "modelport serve --store redis://").text, ports)
    with shell(text, here, WT="a-token-from-the-block-above") as blk:
        blk.wait_ready(ports[8000])
        blk.wait_ready(ports[8001])
        # The worker joined through the first server; the second knows it and its endpoint.
        wait_for_workers(ports[8001], "sentiment", 1)
        assert sentiment(ports[8001]) == {"score": 2.0}


@pytest.mark.e2e
def test_several_processes_on_one_host(tmp_path: Path, own_redis: RedisServer) -> None:
    here = workspace(tmp_path / "w")
    ports = {8000: free_port(), 6379: own_redis.port}
    text = local(block("sh", "modelport serve my_model.py --store redis://").text, ports)
    with shell(text, here) as blk:
        blk.wait_ready(ports[8000])
        wait_for_workers(ports[8000], "sentiment", 4)  # one embedded worker per process
        assert sentiment(ports[8000]) == {"score": 2.0}


def test_every_block_is_run_by_a_test() -> None:
    # Runs last in this file: the tests above claimed the blocks they ran.
    for b in BLOCKS:
        if any(b.lang == lang and b.first.startswith(first) for lang, first in NOT_RUN):
            continue
        assert b in CLAIMED, f"no test runs this README block:\n```{b.lang}\n{b.text}```"
