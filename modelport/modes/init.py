"""``modelport init NAME``: a small typed model, the TOML twin of its endpoint, and a test
that runs ``modelport test`` on it; the files pass ruff and ``mypy --strict``."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from modelport.modes import console

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

MODEL = '''"""{title}: a modelport model. Serve it with `modelport serve {name}.py`, run it with
`modelport run {name}.py --text "good day"`, check it with `modelport test {name}.py`."""

from __future__ import annotations

import modelport
from modelport import Input


class {cls}(modelport.Model):
    """Scores a text by its words: replace the body with your own model."""

    name = "{endpoint}"

    def setup(self) -> None:
        # Load weights here: this runs once per process, before the first input.
        self.weights = {{"good": 1.0, "great": 2.0, "bad": -1.0}}

    def predict(
        self,
        text: str = Input(description="The text to score", min_length=1, max_length=10_000),
        scale: float = Input(default=1.0, ge=0, le=10, description="Multiplies the score"),
    ) -> dict[str, float]:
        words = text.lower().split()
        return {{"score": scale * sum(self.weights.get(w, 0.0) for w in words)}}
'''

TOML = """# The endpoint of {name}.py, declared in TOML: `modelport serve --config {name}.toml`
# serves it for remote workers with no local model; test_{name}.py checks both agree.
[endpoint]
name = "{endpoint}"
description = "Scores a text by its words: replace the body with your own model."

[inputs.text]
type = "string"
required = true
min_length = 1
max_length = 10000
description = "The text to score"

[inputs.scale]
type = "float"
default = 1.0
min = 0
max = 10
description = "Multiplies the score"

[output]
type = "object"
values = "float"
"""

TEST = '''"""Tests of {name}.py: a direct call, the TOML twin, and `modelport test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from modelport.spec import spec_differences, spec_from_toml

from {name} import {cls}

HERE = Path(__file__).resolve().parent


def test_predict() -> None:
    model = {cls}()
    model.setup()
    assert model.predict(text="good great") == {{"score": 3.0}}


def test_the_toml_twin_declares_the_same_endpoint() -> None:
    ours, theirs = {cls}.spec(), spec_from_toml(HERE / "{name}.toml")
    assert spec_differences(ours, theirs) == []


def test_modelport_test_passes() -> None:
    command = [sys.executable, "-m", "modelport", "test", str(HERE / "{name}.py")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=HERE)
    assert done.returncode == 0, done.stdout + done.stderr
'''


def main(argv: Sequence[str]) -> int:
    """Write a new model: NAME.py, its TOML twin NAME.toml and test_NAME.py."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="modelport init", description=main.__doc__
    )
    parser.add_argument("name", metavar="NAME", help="a Python module name: my_model")
    parser.add_argument("--dir", default=".", help="where to write (default: here)")
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    args = parser.parse_args(list(argv))
    name: str = args.name
    if not _NAME.match(name):
        parser.error(f"NAME must be a lower-case Python module name (a-z, 0-9, _), got {name!r}")
    where = Path(args.dir)
    cls = "".join(part.capitalize() for part in name.split("_") if part) or "Model"
    fields = {
        "name": name,
        "cls": cls,
        "endpoint": name.replace("_", "-"),
        "title": name.replace("_", " ").capitalize(),
    }
    files = {
        where / f"{name}.py": MODEL,
        where / f"{name}.toml": TOML,
        where / f"test_{name}.py": TEST,
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not args.force:
        console.error(f"{', '.join(existing)} already exist; --force overwrites")
        return 2
    where.mkdir(parents=True, exist_ok=True)
    for path, template in files.items():
        path.write_text(template.format(**fields))
        print(f"wrote {path}")
    print(f"next: modelport run {where / name}.py --text 'good day'")
    return 0
