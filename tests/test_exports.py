"""The public namespace is exactly what __all__ says, sorted."""

from __future__ import annotations

import subprocess
import sys

import modelport


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
