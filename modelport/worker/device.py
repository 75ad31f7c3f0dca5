"""What a worker says about where it computes: the device torch sees, and the model."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from modelport.loader import target_of
from modelport.model import Model
from modelport.worker.invoke import jsonable

log = logging.getLogger("modelport.worker")


def device() -> str:
    """The accelerator this process computes on, as torch sees it when the model loaded torch
    (``cuda:0 NVIDIA A10G``, ``mps``), else ``cpu``. Never imports torch itself."""
    torch: Any = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                index = torch.cuda.current_device()
                return f"cuda:{index} {torch.cuda.get_device_name(index)}"
            mps = getattr(torch.backends, "mps", None)
            if mps is not None and mps.is_available():
                return "mps"
        except Exception:  # a broken driver is a CPU worker, not a crash
            log.debug("could not ask torch for its device", exc_info=True)
    return "cpu"


def describe_model(model: Model, version: str) -> dict[str, Any]:
    """The device and the model for the worker registry: ``file.py:Class``, the version and
    whatever :meth:`Model.info` returns (an ``info()`` that raises is logged and left out)."""
    cls = type(model)
    about: dict[str, Any] = {"class": target_of(cls), "version": version}
    try:
        about.update(jsonable(model.info()))
    except Exception as e:
        log.warning("%s.info() failed, so the registry shows less: %s", cls.__qualname__, e)
    out: dict[str, Any] = {"device": device(), "model": about}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        out["cuda_visible_devices"] = visible
    return out
