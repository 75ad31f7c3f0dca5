"""The public namespace is exactly what __all__ says, sorted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import modelport

ECHO = Path(__file__).resolve().parent.parent / "examples" / "echo" / "model.py"


def test_all_is_sorted_and_exported() -> None:
    assert modelport.__all__ == sorted(modelport.__all__)
    for name in modelport.__all__:
        assert hasattr(modelport, name), name


def test_nothing_public_outside_all() -> None:
    public = {
        name
        for name, value in vars(modelport).items()
        if not name.startswith("_") and not isinstance(value, type(modelport))
    }
    assert public == set(modelport.__all__) - {"__version__"}


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


SERVER_SIDE = ("modelport.server", "modelport.core", "modelport.stores", "starlette", "uvicorn")


def test_the_client_loads_only_the_client_errors_and_wire() -> None:
    loaded = {m for m in _loaded_after("from modelport import Client") if m.startswith("modelport")}
    assert loaded == {
        "modelport",
        "modelport._version",
        "modelport.client",
        "modelport.errors",
        "modelport.wire",
    }
    assert not {"pydantic", "prometheus_client", "redis"} & _loaded_after("import modelport")


def test_the_worker_sdk_never_imports_server_code() -> None:
    loaded = _loaded_after(
        "import modelport.worker.supervisor, modelport.worker.http, modelport.worker.runner"
    )
    assert not {m for m in loaded if m.startswith(SERVER_SIDE)}


def test_pipe_loads_only_what_running_a_model_needs() -> None:
    """`modelport pipe` starts in the time a stream of light inputs is measured against:
    none of the server's, the worker's serving loops, the other commands' modules or
    asyncio."""
    loaded = _loaded_after(
        "import io\n"
        'sys.stdin = io.TextIOWrapper(io.BytesIO(b\'{"text": "hi"}\\n\'))\n'
        "sys.stdout = io.TextIOWrapper(io.BytesIO())\n"
        "from modelport.cli import main\n"
        f"assert main(['pipe', {str(ECHO)!r}]) == 0\n"
        "sys.stdout = sys.__stdout__"
    )
    assert "modelport.modes.pipe" in loaded
    unneeded = (
        *SERVER_SIDE,
        "modelport.batch",
        "modelport.cli_security",
        "modelport.media.prepare",
        "modelport.worker.runner",
        "asyncio",
    )
    assert not {m for m in loaded if m.startswith(unneeded)}
