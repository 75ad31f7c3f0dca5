"""What both adapters share: a :class:`~modelport.model.Model` whose spec is given, not read
from a signature."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from modelport.model import Model
from modelport.spec import EndpointSpec

_F = TypeVar("_F", bound=Callable[..., Any])


def called_as_is(func: _F) -> _F:
    """Mark an adapter's ``predict`` as taking the validated input as it comes: no defaults
    to fill in or objects to build (see ``Model.__init_subclass__``)."""
    func.__modelport_call__ = True  # type: ignore[attr-defined]
    return func


class Adapter(Model):
    """An endpoint served by calling something else; built per spec by :func:`subclass`."""

    adapter_spec: ClassVar[EndpointSpec]
    jobs_in_flight: ClassVar[int] = 1
    """How many jobs the runner keeps running at once (see ``Runner.width``)."""

    @classmethod
    def spec(cls) -> EndpointSpec:
        return cls.adapter_spec

    def info(self) -> dict[str, Any]:
        return {"adapter": self.adapter_spec.kind}


_A = TypeVar("_A", bound=Adapter)


def subclass(base: type[_A], spec: EndpointSpec, **attributes: Any) -> type[_A]:
    """``base`` serving ``spec``: one runner (one worker) with as many jobs in flight as
    ``concurrency`` or ``processes`` says, each a task on its event loop when served (on a
    thread of its own for ``modelport run`` and ``pipe``)."""
    return type(
        f"{base.__name__}[{spec.name}]",
        (base,),
        {
            "adapter_spec": spec,
            "name": spec.name,
            "version": spec.version,
            "jobs_in_flight": spec.adapter.lanes,
            "__module__": base.__module__,
            **attributes,
        },
    )
