"""A plain typed function served as a model: ``modelport serve my_model.py:classify`` (and
``run``, ``pipe``, ``test``, ``worker``). The spec comes from its signature exactly as for
``Model.predict``; :func:`endpoint` adds the endpoint's settings and a setup function.

    @modelport.endpoint(name="classify", max_batch_size=8, setup=load_weights)
    def classify(text: str = Input(max_length=1000)) -> dict[str, float]:
        ...
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from modelport.errors import SpecError
from modelport.model import Model
from modelport.spec import SERVING_KEYS

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__modelport_endpoint__"
_KEYS = frozenset(SERVING_KEYS) | {"name", "title", "version", "kind", "config", "concurrency"}


def endpoint(*, setup: Callable[[], Any] | None = None, **settings: Any) -> Callable[[F], F]:
    """Endpoint settings for a plain function served as a model: any class setting of
    :class:`~modelport.Model` (``name``, ``max_batch_size``, ``timeout``, ...), and
    ``setup``, a function called once per process before the first input. The function
    itself is returned unchanged, so it can still be called directly."""
    unknown = sorted(set(settings) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise SpecError(f"modelport.endpoint: unknown setting {unknown[0]!r}; use {known}")

    def mark(func: F) -> F:
        setattr(func, _MARK, {"setup": setup, **settings})
        return func

    return mark


def is_endpoint(obj: Any) -> bool:
    """A function marked with :func:`endpoint`."""
    return inspect.isfunction(obj) and hasattr(obj, _MARK)


def model_from_function(func: Callable[..., Any]) -> type[Model]:
    """A :class:`Model` subclass whose ``predict`` calls ``func``; named like the function,
    so ``file.py:function`` finds it again in a worker's child process."""
    made: type[Model] | None = getattr(func, "__modelport_model__", None)
    if made is not None:
        return made
    options: dict[str, Any] = dict(getattr(func, _MARK, {}))
    setup = options.pop("setup", None)
    name = getattr(func, "__name__", "model")

    @functools.wraps(func)
    def predict(self: Model, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    signature = inspect.signature(func)
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    predict.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[self_param, *signature.parameters.values()]
    )

    def run_setup(self: Model) -> None:
        if setup is not None:
            setup()

    namespace: dict[str, Any] = {
        "__doc__": func.__doc__,
        "__module__": func.__module__,
        "__qualname__": name,
        "predict": predict,
        "setup": run_setup,
        **options,
    }
    if "name" not in options:
        namespace["name"] = name.lower()
    made = type(name, (Model,), namespace)
    func.__modelport_model__ = made  # type: ignore[attr-defined]
    return made
