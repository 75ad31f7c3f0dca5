"""Realistic example inputs for the docs, from a spec alone.

An input's own ``example`` comes first, then its default; otherwise one is derived from
its bounds, choices and length limits. An example that the endpoint would refuse is
never shown: what cannot be derived validly is left out.
"""

from __future__ import annotations

from typing import Any

import orjson
import pydantic

from modelport.spec import EndpointSpec, FieldSpec

_TEXT = "The quick brown fox jumps over the lazy dog."
_CHAT = [{"role": "user", "content": "Tell me about the standard library."}]
_NONE: Any = object()


def input_example(spec: EndpointSpec) -> dict[str, Any] | None:
    """A valid ``input`` object for ``spec``: its required fields, and the optional ones
    that have an example or a default. None if no valid one can be derived."""
    example: dict[str, Any] = {}
    optional: list[str] = []
    for name, f in spec.inputs.items():
        if not f.required and f.default is None and f.example is None:
            continue  # optional with nothing to show: leaving it out is the honest example
        value = field_example(f, chat_messages=spec.kind == "chat" and name == "messages")
        if value is _NONE:
            continue
        example[name] = value
        if not f.required:
            optional.append(name)
    while True:
        bad = _invalid(spec, example)
        if not bad:
            return example
        dropped = [n for n in bad if n in optional]
        if len(dropped) < len(bad):
            return None
        for name in dropped:
            del example[name]
            optional.remove(name)


def field_example(f: FieldSpec, *, chat_messages: bool = False) -> Any:
    """One field's example (not yet checked against the field's rules)."""
    if f.example is not None:
        return f.example
    if f.default is not None:
        return f.default
    if chat_messages:
        return [dict(m) for m in _CHAT]
    if f.type == "selection":
        return (f.choices or [_NONE])[0]
    if f.type == "integer":
        return round(_number(f.ge, f.le, 1))
    if f.type == "float":
        return float(_number(f.ge, f.le, 1.0))
    if f.type == "boolean":
        return False
    if f.type == "string":
        return _sized(_TEXT, f.min_length, f.max_length)
    if f.type == "json":
        return {}
    if f.type == "image":
        return _PIXEL
    if f.type in ("audio", "video", "bytes", "object", "union"):
        return _NONE
    assert f.items is not None
    item = field_example(f.items)
    if item is _NONE:
        return _NONE
    count = max(1, f.min_length or 0)
    if f.max_length is not None:
        count = min(count, f.max_length)
    return [item] * count


_PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC"
)
"""A one-pixel white PNG: an image example that any image input converts."""


def _number(ge: float | None, le: float | None, fallback: float) -> float:
    if ge is not None and le is not None:
        middle = (ge + le) / 2
        return middle if abs(middle) < 10 else round(middle)
    if ge is not None:
        return max(ge, fallback)
    if le is not None:
        return min(le, fallback)
    return fallback


def _sized(text: str, least: int | None, most: int | None) -> str:
    while least is not None and len(text) < least:
        text += " " + _TEXT
    if most is not None:
        text = text[:most].rstrip() or text[:most]
    return text


def _invalid(spec: EndpointSpec, example: dict[str, Any]) -> list[str]:
    """The inputs of ``example`` that the endpoint refuses (``["*"]`` for a whole-body error)."""
    try:
        spec.request_model.model_validate_json(orjson.dumps({"input": example}))
    except pydantic.ValidationError as e:
        names = {str(err["loc"][1]) if len(err["loc"]) > 1 else "*" for err in e.errors()}
        return sorted(names)
    return []
