"""Server-wide bounds on the shape of JSON inputs, so that no payload within the body limit
can exhaust memory or the stack: nesting depth, string length, list length, object keys.

Checked once a body has parsed, before a job is stored; a refusal names the field.
"""

from __future__ import annotations

from typing import Any

from modelport.errors import InvalidInput, PayloadTooLarge
from modelport.settings import Limits

_FLAT = frozenset({int, float, bool, type(None)})


def _where(path: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in path) or "input"


def check_shape(value: Any, limits: Limits) -> None:
    """Refuse ``value`` (a submit's inputs) if it breaks a bound: 422 for nesting deeper
    than ``max_json_depth``, 413 for a string, list or object over its size limit."""
    longest = limits.max_string_length
    if (
        type(value) is dict
        and len(value) <= limits.max_object_keys
        and limits.max_json_depth > 0
        and all(
            len(k) <= longest and (type(v) in _FLAT or (type(v) is str and len(v) <= longest))
            for k, v in value.items()
        )
    ):
        return  # an object of numbers and short strings, as most inputs are: nothing to walk
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    depth_limit = limits.max_json_depth
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if len(item) > limits.max_string_length:
                _too_large(path, f"a string of {len(item)} characters", limits.max_string_length)
            continue
        if not isinstance(item, dict | list):
            continue
        if len(path) >= depth_limit:
            field = _where(path)
            raise InvalidInput(
                f"{field}: nested deeper than {depth_limit} levels",
                errors=[{"field": field, "message": f"nested deeper than {depth_limit} levels"}],
            )
        if isinstance(item, dict):
            if len(item) > limits.max_object_keys:
                _too_large(path, f"an object of {len(item)} keys", limits.max_object_keys)
            for key, sub in item.items():
                if len(key) > limits.max_string_length:
                    _too_large((*path, key[:40]), "a key that long", limits.max_string_length)
                stack.append((sub, (*path, key)))
        else:
            if len(item) > limits.max_list_length:
                _too_large(path, f"a list of {len(item)} items", limits.max_list_length)
            stack.extend((sub, (*path, i)) for i, sub in enumerate(item))


def _too_large(path: tuple[str | int, ...], what: str, limit: int) -> None:
    field = _where(path)
    message = f"{what} is over the server's limit of {limit}"
    raise PayloadTooLarge(f"{field}: {message}", errors=[{"field": field, "message": message}])


def nested_too_deep(limits: Limits) -> InvalidInput:
    """The answer to JSON the parser itself refused as too deeply nested."""
    message = f"the JSON is nested too deeply (the limit is {limits.max_json_depth} levels)"
    return InvalidInput(message, errors=[{"field": "body", "message": message}])
