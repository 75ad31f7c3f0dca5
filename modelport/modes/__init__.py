"""Integration modes: the ways of running a model (``serve``, ``worker``, ``run``, ``pipe``,
...), each a ``modelport`` subcommand.

A mode is a callable taking the arguments after its name and returning the exit code,
registered under the ``modelport.modes`` entry point group; the first line of its docstring
is its one-line help in ``modelport modes``. The built-in modes are registered the same way,
in modelport's own ``pyproject.toml``::

    [project.entry-points."modelport.modes"]
    lint = "my_package.lint:main"

A mode that runs a model locally loads it with :func:`modelport.modes.local.load_target`
and calls it with :class:`modelport.modes.local.LocalModel`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

GROUP = "modelport.modes"

ModeMain = Callable[[Sequence[str]], int]

BUILTIN: dict[str, str] = {
    "serve": "modelport.cli:serve_mode",
    "worker": "modelport.cli:worker_mode",
    "run": "modelport.modes.run:main",
    "pipe": "modelport.modes.pipe:main",
    "test": "modelport.modes.selftest:main",
    "endpoints": "modelport.modes.remote:endpoints",
    "predict": "modelport.modes.remote:predict",
    "submit": "modelport.modes.remote:submit",
    "jobs": "modelport.modes.remote:jobs",
    "init": "modelport.modes.init:main",
    "modes": "modelport.modes:list_modes",
}
"""The built-in modes, as pyproject.toml declares them: also found without modelport's
package metadata (a source checkout on PYTHONPATH)."""


@dataclass(frozen=True)
class Mode:
    name: str
    value: str
    """``module:function``."""
    dist: str
    """The distribution that declared it."""

    def load(self) -> ModeMain:
        module, _, attr = self.value.partition(":")
        func: ModeMain = getattr(importlib.import_module(module), attr)
        return func

    def help(self) -> str:
        try:
            doc = self.load().__doc__ or ""
        except Exception as e:  # a broken plugin is listed, not fatal
            return f"(cannot load: {type(e).__name__}: {e})"
        return doc.strip().splitlines()[0] if doc.strip() else ""


def installed() -> dict[str, Mode]:
    """Every mode by name: the built-ins, then the plugins. A plugin cannot replace a
    built-in mode; among plugins, the first found wins."""
    from importlib.metadata import entry_points  # slow to import: only when listing plugins

    modes = {name: Mode(name, value, "modelport") for name, value in BUILTIN.items()}
    for ep in entry_points(group=GROUP):
        if ep.name in modes:
            continue
        dist = ep.dist.name if ep.dist is not None else "?"
        modes[ep.name] = Mode(ep.name, ep.value, dist)
    return modes


def list_modes(argv: Sequence[str]) -> int:
    """List the integration modes installed, built-in and plugins."""
    if argv:
        print("usage: modelport modes\n\nList the integration modes installed.")
        return 0 if argv[0] in ("-h", "--help") else 2
    modes = installed()
    width = max(len(n) for n in modes)
    for mode in modes.values():
        origin = "" if mode.dist == "modelport" else f"  [{mode.dist}]"
        print(f"{mode.name:<{width}}  {mode.help()}{origin}")
    return 0
