"""Every block of the README, run as written: shell blocks against real servers that the
blocks themselves start (each on a free port, in a directory of its own), Python blocks
executed as scripts, the TOML block loaded.

The only changes made to a block before it runs are the ones a reader makes on their own
machine: the port (8000, 8001 and Redis's 6379 become free ones) and, for a ``modelport
serve`` line without ``--port``, a ``--port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import ssl
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


# The demo `make run` serves, and the blocks that call it


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
def test_the_javascript_client_block(demo: int, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Node.js 18 or later runs the JavaScript client)")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "modelport").symlink_to(ROOT / "clients" / "js")
    script = tmp_path / "readme.mjs"
    script.write_text(local(block("js", "import { Client, InvalidInput").text, {8000: demo}))
    out = run(f"{node} {script}", tmp_path).splitlines()
    fractions = [float(line.split()[0]) for line in out if re.match(r"^[0-9.]+ ", line)]
    assert fractions and all(0 < f <= 1 for f in fractions)  # the painter's previews
    assert any(re.fullmatch(r"image/png \d+", line) for line in out), out
    assert out[-1].strip(), "the streamed text is missing"


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


# Writing a model


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


# Remote workers and Redis


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


@pytest.mark.e2e
def test_batch_then_serve_precomputed_block(tmp_path: Path) -> None:
    here = workspace(tmp_path / "w")
    flower = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    rows = [flower, {**flower, "petal_length": 6.1, "petal_width": 2.3}]
    (here / "inputs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    port = free_port()
    text = local(block("sh", "modelport batch examples/iris").text, {8000: port})
    with shell(text, here) as blk:
        blk.wait_ready(port, timeout=120)
        assert "2 rows: 2 predicted, 0 failed" in blk.output()
        r = httpx.post(f"http://127.0.0.1:{port}/endpoints/iris/jobs", json={"input": flower})
        assert r.headers["x-cache"] == "precomputed", r.text
        assert r.json()["output"]["label"] == "setosa"


def test_the_security_block_serves_https_with_keys(tmp_path: Path) -> None:
    from modelport import Client, Unauthorized
    from tests.test_tls_e2e import make_certificates

    here = workspace(tmp_path / "w")
    ca, _, _ = make_certificates(here)
    port = free_port()
    # Bound to loopback here, as every test is; the README's 0.0.0.0 is what a reader types.
    text = local(block("sh", "modelport keys create --scope admin").text, {8000: port})
    with shell(text.replace("--host 0.0.0.0", "--host 127.0.0.1"), here) as blk:
        url = f"https://127.0.0.1:{port}"
        trust = ssl.create_default_context(cafile=str(ca))
        deadline = time.monotonic() + 90
        while online_https(url, trust, here / "app1.key") < 1:
            assert time.monotonic() < deadline, f"no worker joined over HTTPS:\n{blk.output()}"
            time.sleep(0.05)
        key = (here / "app1.key").read_text().strip()
        with Client(url, api_key=key, ca_file=str(ca)) as client:
            assert client.predict("sentiment", text="good good bad", scale=2) == {"score": 2.0}
        with Client(url, ca_file=str(ca)) as anonymous, pytest.raises(Unauthorized):
            anonymous.predict("sentiment", text="good")


def online_https(url: str, trust: ssl.SSLContext, key_file: Path) -> int:
    """Workers online for ``sentiment``, asked with the key in ``key_file`` once it is there."""
    key = key_file.read_text().strip() if key_file.exists() else ""
    if not key:
        return 0
    try:
        r = httpx.get(
            f"{url}/endpoints/sentiment",
            headers={"Authorization": f"Bearer {key}"},
            verify=trust,
            timeout=5,
        )
    except (httpx.TransportError, OSError):
        return 0
    return int(r.json()["workers_online"]) if r.status_code == 200 else 0


async def test_the_media_model_block(tmp_path: Path, app_factory: AppFactory) -> None:
    from PIL import Image

    path = tmp_path / "negative.py"
    path.write_text(block("python", "from typing import Annotated").text)
    http = (await app_factory(load_models(str(path)))).http
    white = io.BytesIO()
    Image.new("RGB", (100, 50), "white").save(white, "PNG")
    r = await http.post(
        "/endpoints/negative/jobs",
        files={"image": ("w.png", white.getvalue(), "image/png")},
        headers={"accept": "image/jpeg"},
    )
    assert r.headers["content-type"] == "image/jpeg"
    negative = Image.open(io.BytesIO(r.content))
    assert negative.size == (64, 64) and negative.convert("L").getpixel((32, 32)) == 0


def test_the_media_toml_block(tmp_path: Path) -> None:
    path = tmp_path / "media.toml"
    path.write_text(block("toml", "[inputs]").text)
    spec = spec_from_toml(path, name="classify")
    image, voice = spec.inputs["image"], spec.inputs["voice"]
    assert (image.type, image.resize, image.align, voice.sample_rate) == (
        "image",
        "crop",
        64,
        16000,
    )
    assert spec.outputs is not None and spec.outputs["images"].items is not None
    assert spec.outputs["images"].items.format == ["JPEG"]


@pytest.mark.e2e
def test_the_media_curl_block(demo: int, tmp_path: Path) -> None:
    import numpy as np
    import soundfile
    from PIL import Image

    seven = np.zeros((8, 8), np.uint8)
    seven[1, 1:7] = 255
    seven[2:7, 5] = 255
    Image.fromarray(seven).resize((64, 64), Image.Resampling.NEAREST).save(tmp_path / "seven.png")
    t = np.arange(16000, dtype=np.float32) / 16000
    soundfile.write(tmp_path / "voice.wav", 0.5 * np.sin(2 * np.pi * 220 * t), 16000)
    out = run(local(block("sh", "curl -F image=@seven.png").text, {8000: demo}), tmp_path)
    decoder = json.JSONDecoder()  # curl writes the two answers back to back
    digits, end = decoder.raw_decode(out)
    loudness, _ = decoder.raw_decode(out, end)
    assert digits["status"] == "succeeded" and len(digits["output"]["guesses"]) == 3
    assert abs(loudness["output"]["pitch_hz"] - 220) < 2
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_the_adapter_blocks_serve_an_upstream_and_a_program(
    app_factory: AppFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelport.loader import adapter_from_toml
    from tests.upstreams import Upstream

    upstream = Upstream().start()
    try:
        monkeypatch.setenv("SENTIMENT_TOKEN", "t0ken")
        http = tmp_path / "upstream.toml"
        http.write_text(block("toml", "# upstream.toml").text.replace("9000", str(upstream.port)))
        (tmp_path / "reverse.toml").write_text(block("toml", "# reverse.toml").text)
        (tmp_path / "reverse.py").write_text(block("python", "# reverse.py").text)
        models = [adapter_from_toml(str(http)), adapter_from_toml(str(tmp_path / "reverse.toml"))]
        app = await app_factory(models)
        for endpoint, given, output in (
            ("sentiment", {"text": "good"}, {"label": "GOOD"}),  # its declared outputs
            ("reverse", {"text": "abc"}, {"text": "cba"}),
        ):
            r = await app.http.post(
                f"/endpoints/{endpoint}/jobs", json={"input": given}, headers={"prefer": "wait=20"}
            )
            assert r.json()["output"] == output, r.text
        assert upstream.headers[0]["authorization"] == "Bearer t0ken"
    finally:
        await asyncio.to_thread(upstream.stop)


def test_every_block_is_run_by_a_test() -> None:
    # Runs last in this file: the tests above claimed the blocks they ran.
    for b in BLOCKS:
        if any(b.lang == lang and b.first.startswith(first) for lang, first in NOT_RUN):
            continue
        assert b in CLAIMED, f"no test runs this README block:\n```{b.lang}\n{b.text}```"
