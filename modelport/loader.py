"""Find models from command-line targets: ``file.py[:Class]``, ``package.module[:Class]``, or
an adapter's ``spec.toml``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType

from modelport.errors import SpecError
from modelport.model import Model


def load_models(target: str) -> list[type[Model]]:
    """The Model classes a target names: one class or function, or every Model (and every
    function marked with ``@modelport.endpoint``) defined in the module."""
    from modelport.function import is_endpoint, model_from_function

    if target.endswith(".toml"):
        return [adapter_from_toml(target)]
    module_ref, _, attr = target.partition(":")
    module = _import(module_ref)
    if attr:
        obj = getattr(module, attr, None)
        if inspect.isfunction(obj):
            return [model_from_function(obj)]
        if not (inspect.isclass(obj) and issubclass(obj, Model)):
            raise SpecError(
                f"{target}: {attr!r} is not a modelport.Model subclass or a function in"
                f" {module_ref}"
            )
        return [obj]
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Model)
        and obj is not Model
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
    found += [
        model_from_function(obj)
        for obj in vars(module).values()
        if is_endpoint(obj) and obj.__module__ == module.__name__
    ]
    if not found:
        raise SpecError(f"{target}: defines no modelport.Model subclass")
    return found


def adapter_from_toml(path: str) -> type[Model]:
    """The model of a TOML-declared adapter (``kind = "http"`` or ``"subprocess"``)."""
    from modelport import adapters
    from modelport.spec import spec_from_toml

    spec = spec_from_toml(path)
    if spec.kind not in adapters.KINDS:
        raise SpecError(
            f"{path}: kind = {spec.kind!r} names no model to run; a TOML file runs as an"
            ' adapter with kind = "http" or "subprocess" (give a model file, or serve the'
            " spec with modelport serve --config for remote workers)"
        )
    return adapters.model_class(spec, where=f"{path}: ")


_FILE_MODULE = "modelport_user_"
"""The prefix of the names under which model files are imported."""


def target_of(cls: type) -> str:
    """How ``modelport serve`` / ``worker`` name a class: ``file.py:Class`` for one loaded from
    a file (the file's name only), else ``package.module:Class``."""
    module = sys.modules.get(cls.__module__)
    origin = getattr(module, "__file__", None)
    if cls.__module__.startswith(_FILE_MODULE) and origin:
        return f"{Path(origin).name}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _import(ref: str) -> ModuleType:
    path = Path(ref)
    if ref.endswith(".py") or path.is_file():
        if not path.is_file():
            raise SpecError(f"{ref}: no such file")
        resolved = path.resolve()
        digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
        name = f"{_FILE_MODULE}{resolved.stem}_{digest}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, resolved)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(resolved.parent))
        try:
            spec.loader.exec_module(module)
        except Exception:
            del sys.modules[name]
            raise
        finally:
            sys.path.remove(str(resolved.parent))
        return module
    # As for ``uvicorn main:app``, a module is looked for in the current directory first:
    # the ``modelport`` script put its own directory on the path, not the one it runs in.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as e:
        where = f"(looked in {cwd} and the installed packages)" if e.name == ref else ""
        raise SpecError(f"{ref}: cannot import: {e} {where}".rstrip()) from None
