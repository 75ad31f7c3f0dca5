"""Adapters: endpoints whose model is not Python code in this process but an HTTP service
(``kind = "http"``) or a program speaking JSON lines over stdin/stdout
(``kind = "subprocess"``), declared in TOML.

An adapter is a :class:`~modelport.model.Model` built from the spec, served by the same
runner as any other (embedded in ``modelport serve``, or by ``modelport worker``), so
queueing, leases, retries, progress and streaming behave the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelport.adapters.config import KINDS

if TYPE_CHECKING:
    from modelport.model import Model
    from modelport.spec import EndpointSpec

__all__ = ["KINDS", "model_class"]


def model_class(spec: EndpointSpec, where: str = "") -> type[Model]:
    """The model class serving an adapter spec (``spec.kind`` in :data:`KINDS`).

    Raises :class:`~modelport.errors.SpecError` for what cannot run here, such as a header
    naming an environment variable that is not set; ``where`` prefixes the message.
    """
    from modelport.errors import SpecError

    if spec.kind not in KINDS or spec.adapter is None:
        raise SpecError(f"{where}{spec.name}: not an adapter (kind = {spec.kind!r})")
    if spec.kind == "http":
        from modelport.adapters.http import http_model

        return http_model(spec, where)
    from modelport.adapters.program import program_model

    return program_model(spec)
