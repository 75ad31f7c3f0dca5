"""The README's quickstart and model example, run as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelport.loader import load_models
from tests.conftest import AppFactory, Serve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def make_run_targets() -> list[str]:
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(line for line in makefile.splitlines() if "modelport serve" in line)
    return line.split("modelport serve", 1)[1].split("--port")[0].split()


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README


@pytest.mark.e2e
def test_quickstart_curl_and_python_client(serve: Serve, tmp_path: Path) -> None:
    server = (
        serve([*make_run_targets(), "--store", f"sqlite:///{tmp_path}/q.db"]).start().wait_ready()
    )
    port = str(server.port)

    curl = next(b for b in blocks("") if b.startswith("curl localhost:8000"))
    assert shutil.which("curl"), "curl is needed to run the README's curl example"
    out = subprocess.run(
        ["bash", "-c", curl.replace("localhost:8000", f"127.0.0.1:{port}")],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert httpx.Response(200, content=out.stdout).json()["output"]["label"] == "setosa"

    (python,) = [b for b in blocks("python") if "Client(" in b]
    script = tmp_path / "quickstart.py"
    script.write_text(python.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))
    ran = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.strip().splitlines()
    assert "'label': 'setosa'" in lines[0]
    assert lines[1] == "succeeded virginica"


async def test_write_a_model_example(tmp_path: Path, app_factory: AppFactory) -> None:
    (code,) = [b for b in blocks("python") if b.startswith("# my_model.py")]
    path = tmp_path / "my_model.py"
    path.write_text(code)
    http = (await app_factory(load_models(str(path)))).http
    r = await http.post(
        "/endpoints/sentiment/jobs", json={"input": {"text": "good good bad", "scale": 2}}
    )
    assert r.json()["output"] == {"score": 2.0}
    bad = await http.post("/endpoints/sentiment/jobs", json={"input": {"scale": 11}})
    assert {e["field"] for e in bad.json()["errors"]} == {"text", "scale"}
