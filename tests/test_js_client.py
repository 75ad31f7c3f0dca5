"""The JavaScript client (``clients/js``, the npm package ``modelport``): its ``node --test``
suite against a real ``modelport serve --auth keys``, its package as ``npm pack`` makes it,
and the copy of it the Python package ships for the pages."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServerProcess

pytestmark = pytest.mark.e2e

PACKAGE = ROOT / "clients" / "js"
SOURCE = PACKAGE / "src" / "index.js"
SHIPPED = ROOT / "modelport" / "server" / "static" / "modelport.js"
SERVED = [
    "examples/echo/model.py",
    "tests/models/stream.py",
    "tests/models/basic.py",
    "tests/models/media.py",
    "tests/models/chat.py:Oneshot",
    "tests/models/chatty.py",
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {name} is not installed")
        pytest.skip(f"{name} is not installed (Node.js 18 or later runs the JavaScript client)")
    return path


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
    )
    shown = f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, shown
    return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    root = tmp_path_factory.mktemp("js")
    store = f"sqlite:///{root}/jobs.db"
    admin = _run(
        [sys.executable, "-m", "modelport", "keys", "create", "--scope", "admin", "--store", store],
        ROOT,
    ).strip()
    process = ServerProcess([*SERVED, "--auth", "keys", "--store", store], root / "server.log")
    try:
        yield process.start().wait_ready(), admin
    finally:
        process.stop()


def test_node_suite_passes_against_a_real_server(server: tuple[ServerProcess, str]) -> None:
    """predict, submit/wait, stream, resume (given and after a cut connection), cancel,
    typed errors, media in and out, keys and sessions, endpoints put, disabled, enabled and
    drained, logs and metadata: clients/js/test/*.test.js."""
    node = _tool("node")
    process, admin = server
    done = subprocess.run(
        [node, "--test", "--test-reporter=spec", "test/"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=100,
        env={**os.environ, "MODELPORT_URL": process.url, "MODELPORT_ADMIN_KEY": admin},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"node --test failed:\n{output}\n--- server log:\n{process.logs()}"
    counts = dict(re.findall(r"^\S+ (tests|pass|fail) (\d+)$", output, re.M))
    assert int(counts["tests"]) >= 15 and counts["tests"] == counts["pass"], output
    assert admin not in output


def test_npm_pack_makes_a_package_that_installs_offline_and_imports(tmp_path: Path) -> None:
    npm = _tool("npm")
    node = _tool("node")
    cache = {"npm_config_cache": str(tmp_path / "cache"), "npm_config_update_notifier": "false"}
    packed = json.loads(
        _run([npm, "pack", "--json", "--pack-destination", str(tmp_path)], PACKAGE, cache)
    )
    files = sorted(f["path"] for f in packed[0]["files"])
    assert files == ["README.md", "package.json", "src/index.d.ts", "src/index.js"]
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "private": true, "type": "module"}')
    tarball = tmp_path / packed[0]["filename"]
    _run([npm, "install", "--offline", "--no-audit", "--no-fund", str(tarball)], app, cache)
    script = (
        "import { Client, JobFailed, ModelportError } from 'modelport';"
        "import D from 'modelport';"
        "const c = new Client('http://127.0.0.1:9/', { apiKey: 'k' });"
        "console.log(JSON.stringify([c.baseUrl, D === Client,"
        " new JobFailed('x') instanceof ModelportError]));"
    )
    assert json.loads(_run([node, "--input-type=module", "-e", script], app)) == [
        "http://127.0.0.1:9",
        True,
        True,
    ]
    installed = json.loads((app / "node_modules" / "modelport" / "package.json").read_text())
    assert installed["types"] == "./src/index.d.ts"


def _exported(text: str, declarations: bool) -> set[str]:
    kinds = "class|function" if declarations else "class|function|const"
    return set(re.findall(rf"^export (?:async )?(?:{kinds})\*? (\w+)", text, re.M))


def test_typescript_declarations_name_every_export_and_the_versions_agree() -> None:
    from modelport import __version__

    js = _exported(SOURCE.read_text(), declarations=False)
    ts = _exported((PACKAGE / "src" / "index.d.ts").read_text(), declarations=True)
    assert js == ts
    assert {"Client", "Job", "Stream", "InvalidInput", "Unreachable", "fromProblem"} <= js
    assert "readEvents" in js  # an async generator function
    assert json.loads((PACKAGE / "package.json").read_text())["version"] == __version__


def test_the_python_package_ships_the_same_client_for_the_pages(tmp_path: Path) -> None:
    """The pages load modelport/server/static/modelport.js; it must be clients/js's module,
    byte for byte (copy it over after changing the client), and be in the wheel."""
    assert SHIPPED.read_bytes() == SOURCE.read_bytes(), (
        "modelport/server/static/modelport.js differs from clients/js/src/index.js:"
        " cp clients/js/src/index.js modelport/server/static/modelport.js"
    )
    source = tmp_path / "src"  # built from a copy: nothing is written into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    skip = shutil.ignore_patterns("*.pyc", "__pycache__")
    shutil.copytree(ROOT / "modelport", source / "modelport", ignore=skip)
    build = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    wheel = _run([sys.executable, "-c", build, str(tmp_path)], source).strip().splitlines()[-1]
    with zipfile.ZipFile(tmp_path / wheel) as zipped:
        assert zipped.read("modelport/server/static/modelport.js") == SOURCE.read_bytes()
