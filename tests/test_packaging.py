"""The package as PyPI and pip see it: its license, its metadata, and a build without warnings."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from trove_classifiers import classifiers as known_classifiers

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    for section in (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "2. Grant of Copyright License.",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
    ):
        assert section in text
    assert PYPROJECT["project"]["license"] == "Apache-2.0"


def test_classifiers_are_known_to_pypi_and_name_no_license() -> None:
    given = PYPROJECT["project"]["classifiers"]
    assert given and set(given) <= known_classifiers
    # PEP 639: with a license expression, a license classifier is an error.
    assert not [c for c in given if c.startswith("License ::")]


def test_metadata_builds_without_warnings(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "modelport", source / "modelport", ignore=shutil.ignore_patterns("*.pyc")
    )
    out = tmp_path / "out"
    out.mkdir()
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta as b; "
            "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))",
            str(out),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert "warning" not in built.stderr.lower(), built.stderr
    dist_info = out / built.stdout.strip().splitlines()[-1]
    metadata = email.parser.Parser().parsestr((dist_info / "METADATA").read_text())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert (dist_info / "licenses" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert set(urls) >= {"Homepage", "Repository", "Issues"}
    assert "model serving" in metadata["Keywords"]
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
