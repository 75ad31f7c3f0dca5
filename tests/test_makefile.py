"""The Makefile's plans (``make -n`` on a venv that does not exist yet): ``make run`` installs
only what the demo serves, ``make run-embeddings`` adds torch, ``make test`` everything."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def plan(target: str, tmp_path: Path) -> list[str]:
    # A clean environment for make: under a parent make (CI runs `make test`), MAKEFLAGS and
    # MAKELEVEL would make this one a sub-make that prints "Entering/Leaving directory"; a
    # TEST_JOBS of the caller's would change the test command's plan.
    left_out = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "TEST_JOBS"}
    env = {k: v for k, v in os.environ.items() if k not in left_out}
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={tmp_path}/venv"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.replace("\\\n", " ").splitlines()


def installed(commands: list[str]) -> list[str]:
    return [c.split("--quiet", 1)[1].strip() for c in commands if "/pip install " in c]


def served(commands: list[str]) -> list[str]:
    (line,) = [c for c in commands if "modelport serve" in c]
    return line.split("modelport serve", 1)[1].split("--port")[0].split()


def test_make_run_installs_only_the_demo(tmp_path: Path) -> None:
    commands = plan("run", tmp_path)
    assert installed(commands) == ["--upgrade pip", "-e '.[server,examples,media]'"]
    assert served(commands) == [
        "examples/iris/model.py",
        "examples/echo/model.py",
        "examples/txt2img/model.py",
        "examples/textgen/model.py",
        "examples/digits/model.py",
        "examples/painter/model.py",
        "examples/audio/model.py",
    ]


def test_make_run_embeddings_serves_the_torch_example(tmp_path: Path) -> None:
    commands = plan("run-embeddings", tmp_path)
    assert installed(commands) == [
        "--upgrade pip",
        "torch==2.13.0",
        "-e '.[server,examples,embeddings]'",
    ]
    assert served(commands) == ["examples/embeddings/model.py"]


def test_make_test_still_installs_everything(tmp_path: Path) -> None:
    commands = plan("test", tmp_path)
    everything = installed(commands)[-1]
    assert set(re.findall(r"\[(.*)\]", everything)[0].split(",")) == set(EXTRAS) - {"all"}
    assert commands[-1].endswith("/bin/pytest -n 2 --dist loadfile")


def test_the_demo_runs_without_the_extras_make_run_leaves_out(tmp_path: Path) -> None:
    """Every model ``make run`` serves loads and sets up with the other extras' packages
    unimportable, as in the venv ``make run`` builds."""
    targets = served(plan("run", tmp_path))
    left_out = sorted(
        {
            re.split(r"[<>=\[ ]", req)[0]
            for name in ("redis", "embeddings", "bench", "dev", "video")
            for req in EXTRAS[name]
            if not req.startswith("modelport")  # an extra of extras: video is media + av
        }
    )
    script = f"""
import importlib.abc, importlib.metadata, re, sys

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

left_out = {{norm(n) for n in {left_out!r}}}
blocked = {{
    module for module, dists in importlib.metadata.packages_distributions().items()
    if any(norm(d) in left_out for d in dists)
}}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"{{name}} is not installed by make run")
        return None

sys.meta_path.insert(0, Block())
from modelport.loader import load_models
for target in {targets!r}:
    for cls in load_models(target):
        cls().setup()
        print("ready", cls.spec().name)
print("blocked", sorted(blocked))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:4] == ["ready iris", "ready echo", "ready txt2img", "ready textgen"]
    # The block did block something of each extra left out.
    assert all(name in lines[-1] for name in ("'redis'", "'torch'", "'litserve'", "'pytest'"))


def test_make_bench_runs_every_benchmark(tmp_path: Path) -> None:
    """Each script in bench/ (not the _helpers) is a step of ``make bench``, pipe.py too."""
    ran = {c.split("bench/", 1)[1].split()[0] for c in plan("bench", tmp_path) if " bench/" in c}
    scripts = {p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")}
    assert "pipe.py" in ran
    assert ran == scripts
