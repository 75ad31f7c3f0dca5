"""The worker SDK's serving loops: the runner and its transports.

Depends on the wire, errors, spec and model modules only, never on server code. The runner
and the transports are imported on first use of their names: ``modelport run`` and ``pipe``
use the invoker alone.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from modelport.worker.runner import Runner
    from modelport.worker.transport import Transport

_LAZY = {"Runner": "modelport.worker.runner", "Transport": "modelport.worker.transport"}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelport.worker' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["Runner", "Transport"]
