"""Targets as the command line names them: files, and modules found from the current
directory as ``uvicorn main:app`` finds them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelport.errors import SpecError
from modelport.loader import load_models

MODEL = textwrap.dedent(
    '''
    import modelport


    class Doubler(modelport.Model):
        """Doubles a number."""

        def predict(self, x: int) -> int:
            return 2 * x
    '''
)


def test_a_module_target_is_found_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "doubling.py").write_text(MODEL)
    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "maths.py").write_text(MODEL)
    code = (
        "import sys; from modelport.loader import load_models;"
        " print([c.__name__ for t in sys.argv[1:] for c in load_models(t)])"
    )
    # A script run by path, as the console script is: sys.path[0] is its directory, not the cwd.
    runner = tmp_path / "bin"
    runner.mkdir()
    (runner / "run.py").write_text(code)
    ran = subprocess.run(
        [sys.executable, str(runner / "run.py"), "doubling:Doubler", "models.maths"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "['Doubler', 'Doubler']"


def test_a_missing_module_says_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match=rf"nowhere_to_be_found: cannot import: .*{tmp_path}"):
        load_models("nowhere_to_be_found:Model")
