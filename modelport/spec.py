"""Endpoint specs: the contract of one endpoint, from a Python signature or a TOML file.

Both sources produce the same :class:`EndpointSpec`, and validation and JSON Schema
are derived from the spec alone, so they cannot drift apart.
"""

from __future__ import annotations

import inspect
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pydantic
import pydantic_core
from pydantic import ConfigDict, Field, create_model

from modelport.errors import SpecError

FieldType = Literal["string", "integer", "float", "boolean", "selection", "json", "list"]
FIELD_TYPES: tuple[str, ...] = typing.get_args(FieldType)
SCALAR_TYPES = ("string", "integer", "float", "boolean", "selection", "json")
KINDS = ("predict", "chat", "embedding")

_MISSING: Any = ...


@dataclass
class FieldSpec:
    """One typed input, output or progress field."""

    type: FieldType
    description: str = ""
    required: bool = False
    default: Any = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    choices: list[Any] | None = None
    pattern: str | None = None
    items: FieldSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is None or (value == f.default and type(value) is type(f.default)):
                continue
            out[f.name] = value.to_dict() if isinstance(value, FieldSpec) else value
        return out


class InputInfo:
    """Metadata for one ``predict`` parameter: what :func:`Input` makes."""

    def __init__(
        self,
        default: Any = _MISSING,
        *,
        description: str = "",
        ge: float | None = None,
        le: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        choices: list[Any] | None = None,
        pattern: str | None = None,
    ) -> None:
        self.default = default
        self.description = description
        self.ge = ge
        self.le = le
        self.min_length = min_length
        self.max_length = max_length
        self.choices = list(choices) if choices is not None else None
        self.pattern = pattern


def Input(
    default: Any = _MISSING,
    *,
    description: str = "",
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    choices: list[Any] | None = None,
    pattern: str | None = None,
) -> Any:
    """Metadata for one ``predict`` parameter, used as its default value (or in
    ``Annotated[...]``):

    ``def predict(self, steps: int = Input(default=30, ge=1, le=100, description="..."))``

    Typed ``Any``, so a type checker takes it as a default of the parameter's own type.
    """
    return InputInfo(
        default,
        description=description,
        ge=ge,
        le=le,
        min_length=min_length,
        max_length=max_length,
        choices=choices,
        pattern=pattern,
    )


@dataclass
class EndpointSpec:
    """The contract of one endpoint: inputs, outputs, progress, and serving limits."""

    name: str
    description: str = ""
    version: str = "1"
    title: str = ""
    kind: str = "predict"
    inputs: dict[str, FieldSpec] = field(default_factory=dict)
    outputs: dict[str, FieldSpec] | None = None
    progress: dict[str, FieldSpec] = field(default_factory=dict)
    max_batch_size: int = 1
    max_batch_wait: float = 0.0
    lease_duration: float = 60.0
    max_attempts: int = 3
    max_queue_length: int | None = None
    retry_failed_batches: bool = False
    max_queue_time: float | None = None
    timeout: float | None = None
    result_ttl: float | None = None

    def __post_init__(self) -> None:
        check_spec(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form that :func:`spec_from_dict` turns back into an equal spec."""
        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "title": self.title,
            "kind": self.kind,
            "inputs": {k: v.to_dict() for k, v in self.inputs.items()},
            "outputs": None
            if self.outputs is None
            else {k: v.to_dict() for k, v in self.outputs.items()},
            "progress": {k: v.to_dict() for k, v in self.progress.items()},
            **{k: getattr(self, k) for k in SERVING_KEYS},
        }

    @cached_property
    def request_model(self) -> type[pydantic.BaseModel]:
        """Validates a whole submit body: ``{"input": {...}}``."""
        inputs = _model_for(self.name + "_input", self.inputs)
        return create_model(
            _identifier(self.name) + "_request",
            __config__=ConfigDict(extra="forbid"),
            input=(inputs, Field(default_factory=inputs)),
        )

    @cached_property
    def output_adapter(self) -> pydantic.TypeAdapter[Any] | None:
        if self.outputs is None:
            return None
        return pydantic.TypeAdapter(_model_for(self.name + "_output", self.outputs))

    def input_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = self.request_model.model_fields[
            "input"
        ].annotation.model_json_schema()  # type: ignore[union-attr]
        return schema

    def output_schema(self) -> dict[str, Any]:
        return {} if self.output_adapter is None else self.output_adapter.json_schema()

    @cached_property
    def progress_model(self) -> type[pydantic.BaseModel]:
        return _model_for(self.name + "_progress", self.progress)

    def progress_schema(self) -> dict[str, Any]:
        return self.progress_model.model_json_schema()


SERVING_KEYS = (
    "max_batch_size",
    "max_batch_wait",
    "lease_duration",
    "max_attempts",
    "max_queue_length",
    "retry_failed_batches",
    "max_queue_time",
    "timeout",
    "result_ttl",
)
_OPTIONAL_KEYS = ("max_queue_length", "max_queue_time", "timeout", "result_ttl")
MAX_BATCH_SIZE = 1024
"""The largest batch one lease hands out."""
_DAY = 86_400.0
_SERVING_BOUNDS: dict[str, tuple[type, float, float]] = {
    "max_batch_size": (int, 1, MAX_BATCH_SIZE),
    "max_batch_wait": (float, 0, 60),
    "lease_duration": (float, 0, _DAY),
    "max_attempts": (int, 1, 1000),
    "max_queue_length": (int, 1, 1_000_000_000),
    "max_queue_time": (float, 0, 366 * _DAY),
    "timeout": (float, 0, 366 * _DAY),
    "result_ttl": (float, 0, 10 * 366 * _DAY),
}
"""Each numeric serving key's type and bounds: finite, and far beyond any sane setting, so a
typo (or NaN, or 1e308) is refused at start instead of misbehaving later."""
_POSITIVE = frozenset({"lease_duration", "max_queue_time", "timeout", "result_ttl"})
"""Keys whose lower bound is excluded: zero seconds would mean at once, never useful."""
_ENDPOINT_KEYS = {f.name for f in fields(EndpointSpec)} - {"inputs", "outputs", "progress"}
_FIELD_KEYS = {f.name for f in fields(FieldSpec)} | {"min", "max"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def check_spec(spec: EndpointSpec) -> None:
    """Refuse a spec that cannot work, naming the key and the reason."""
    if not _NAME.match(spec.name):
        raise SpecError(
            f"endpoint name {spec.name!r}: use 1-64 lower-case letters, digits, '_', '-' or '.'"
        )
    if spec.kind not in KINDS:
        raise SpecError(f"endpoint.kind: {spec.kind!r} is not one of {', '.join(KINDS)}")
    if spec.kind == "chat" and "messages" not in spec.inputs:
        raise SpecError(f"endpoint {spec.name!r}: a chat endpoint needs a 'messages' input")
    if spec.kind == "embedding" and not any(f.type == "string" for f in spec.inputs.values()):
        raise SpecError(f"endpoint {spec.name!r}: an embedding endpoint needs a string input")
    for key, (kind, low, high) in _SERVING_BOUNDS.items():
        value = getattr(spec, key)
        if value is None and key in _OPTIONAL_KEYS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(f"endpoint.{key}: expected a number, got {value!r}")
        unit = "an integer" if kind is int else "a number of seconds"
        span = f"from {low} to {high:.0f}" if key not in _POSITIVE else f"above 0, up to {high:.0f}"
        if (
            (kind is int and not isinstance(value, int))
            or not math.isfinite(value)
            or not (low < value if key in _POSITIVE else low <= value)
            or value > high
        ):
            raise SpecError(f"endpoint.{key}: must be {unit} {span}, got {value!r}")
    if not isinstance(spec.retry_failed_batches, bool):
        got = spec.retry_failed_batches
        raise SpecError(f"endpoint.retry_failed_batches: expected true or false, got {got!r}")
    for section, group in (
        ("inputs", spec.inputs),
        ("outputs", spec.outputs or {}),
        ("progress", spec.progress),
    ):
        for key, f in group.items():
            if not key.isidentifier() or key.startswith("_"):
                raise SpecError(f"{section}.{key}: not a valid field name")
            _check_field(f"{section}.{key}", f)
    try:
        storable(spec.to_dict())
    except ValueError as e:  # a last net: what the stores cannot keep never gets registered
        raise SpecError(f"endpoint {spec.name!r}: {e}") from None


def _check_field(where: str, f: FieldSpec) -> None:
    if f.type not in FIELD_TYPES:
        raise SpecError(f"{where}: unknown type {f.type!r} (use one of {', '.join(FIELD_TYPES)})")
    if f.type == "list":
        if f.items is None:
            raise SpecError(f"{where}: a list needs 'items'")
        if f.items.type == "list":
            raise SpecError(f"{where}: lists of lists are not supported; use 'json'")
        _check_field(where + ".items", f.items)
    elif f.items is not None:
        raise SpecError(f"{where}: 'items' only applies to type 'list'")
    if f.type == "selection" and not f.choices:
        raise SpecError(f"{where}: a selection needs a non-empty 'choices' list")
    for choice in f.choices or ():
        if not isinstance(choice, str | int | float) or not _fits(choice):
            raise SpecError(f"{where}: choices must be strings or numbers, got {choice!r}")
    if f.choices is not None and f.type != "selection":
        raise SpecError(f"{where}: 'choices' only applies to type 'selection'")
    numeric = f.type in ("integer", "float")
    if (f.ge is not None or f.le is not None) and not numeric:
        raise SpecError(f"{where}: min/max only apply to integer and float")
    sized = f.type in ("string", "list")
    if (f.min_length is not None or f.max_length is not None) and not sized:
        raise SpecError(f"{where}: min_length/max_length only apply to string and list")
    if f.pattern is not None:
        if f.type != "string":
            raise SpecError(f"{where}: 'pattern' only applies to string")
        try:
            re.compile(f.pattern)
        except re.error as e:
            raise SpecError(f"{where}: pattern is not a valid regular expression: {e}") from e
    if f.ge is not None and f.le is not None and f.ge > f.le:
        raise SpecError(f"{where}: min ({f.ge}) is greater than max ({f.le})")
    if f.min_length is not None and f.max_length is not None and f.min_length > f.max_length:
        raise SpecError(
            f"{where}: min_length ({f.min_length}) is greater than max_length ({f.max_length})"
        )
    for key in ("ge", "le"):
        if not _fits(getattr(f, key)):
            raise SpecError(f"{where}.{key}: must be a finite number within 64 bits")
    for key in ("min_length", "max_length"):
        size = getattr(f, key)
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _INT_MAX
        ):
            raise SpecError(f"{where}.{key}: must be a non-negative integer within 64 bits")
    if f.required and f.default is not None:
        raise SpecError(f"{where}: a required field cannot have a default")
    try:
        pydantic.TypeAdapter(_annotation(f)).json_schema()
    except (pydantic.PydanticUserError, pydantic_core.SchemaError, TypeError, ValueError) as e:
        raise SpecError(f"{where}: cannot be validated: {str(e).splitlines()[0]}") from None
    if f.default is not None:
        if f.type == "integer" and isinstance(
            f.default, float
        ):  # a request may say 2.0; a spec says 2
            raise SpecError(f"{where}: default {f.default!r} is invalid: write it as an integer")
        try:
            pydantic.TypeAdapter(_annotation(f)).validate_python(f.default, strict=True)
        except pydantic.ValidationError as e:
            reason = e.errors()[0]["msg"]
            raise SpecError(f"{where}: default {f.default!r} is invalid: {reason}") from None


def _annotation(f: FieldSpec) -> Any:
    """The pydantic type for one field, constraints included."""
    base: Any
    if f.type == "string":
        base = typing.Annotated[
            str,
            Field(strict=True, min_length=f.min_length, max_length=f.max_length, pattern=f.pattern),
        ]
    elif f.type == "integer":
        base = typing.Annotated[
            int,
            Field(strict=True, ge=f.ge, le=f.le),
            pydantic.BeforeValidator(_whole),
            pydantic.AfterValidator(_storable),
        ]
    elif f.type == "float":
        base = typing.Annotated[float, Field(strict=True, ge=f.ge, le=f.le, allow_inf_nan=False)]
    elif f.type == "boolean":
        base = typing.Annotated[bool, Field(strict=True)]
    elif f.type == "selection":
        choices = tuple(f.choices or ())
        base = typing.Annotated[Literal[choices], pydantic.BeforeValidator(_exact_choice(choices))]
    elif f.type == "json":
        base = typing.Annotated[pydantic.JsonValue, pydantic.AfterValidator(_storable)]
    else:
        assert f.items is not None
        base = typing.Annotated[
            list[_annotation(f.items)],  # type: ignore[misc]
            Field(strict=True, min_length=f.min_length, max_length=f.max_length),
        ]
    return base


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _whole(value: Any) -> Any:
    """``2.0`` is the integer 2, as JSON Schema (and so the OpenAPI document) has it."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _exact_choice(choices: tuple[Any, ...]) -> Callable[[Any], Any]:
    """Literal matching says True == 1; a selection wants the JSON value itself (where JSON
    Schema has 2.0 equal to 2, so does this)."""

    def check(value: Any) -> Any:
        for choice in choices:
            if value == choice and (
                type(value) is type(choice)
                or (type(choice) is float and type(value) is int)
                or (type(choice) is int and type(value) is float)
            ):
                return choice
        expected = " or ".join(repr(c) for c in choices)
        raise pydantic_core.PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )

    return check


def _fits(value: Any) -> bool:
    """True for None, strings, and numbers that JSON and the stores can keep."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return _INT_MIN <= value <= _INT_MAX
    return True


def storable(value: Any) -> Any:
    """Refuse JSON the stores cannot keep: NaN, Infinity, integers beyond 64 bits."""
    return _storable(value)


def _storable(value: Any) -> Any:
    """JSON the store can keep: no NaN or Infinity, integers within 64 bits."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
        raise ValueError("integers must fit in 64 bits")
    if isinstance(value, dict):
        for item in value.values():
            _storable(item)
    elif isinstance(value, list):
        for item in value:
            _storable(item)
    return value


def _identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _model_for(name: str, group: dict[str, FieldSpec]) -> type[pydantic.BaseModel]:
    definitions: dict[str, Any] = {}
    for key, f in group.items():
        info = Field(description=f.description or None)
        if f.required:
            definitions[key] = (_annotation(f), info)
        elif f.default is None:
            definitions[key] = (_annotation(f) | None, Field(None, description=info.description))
        else:
            definitions[key] = (_annotation(f), Field(f.default, description=info.description))
    return create_model(_identifier(name), __config__=ConfigDict(extra="forbid"), **definitions)


# ---- from TOML


def spec_from_toml(path: str | Path, *, name: str | None = None) -> EndpointSpec:
    """Read an endpoint spec from a TOML file; mistakes name the file, the key and the reason."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    try:
        return spec_from_dict(_flatten_toml(data), name=name)
    except SpecError as e:
        raise SpecError(f"{path}: {e.message}") from None


def _flatten_toml(data: dict[str, Any]) -> dict[str, Any]:
    unknown = set(data) - {"endpoint", "inputs", "outputs", "progress"}
    if unknown:
        raise SpecError(
            f"unknown section [{sorted(unknown)[0]}] (use endpoint, inputs, outputs, progress)"
        )
    endpoint = data.get("endpoint", {})
    if not isinstance(endpoint, dict):
        raise SpecError("[endpoint] must be a table")
    return {**endpoint, **{k: data[k] for k in ("inputs", "outputs", "progress") if k in data}}


def spec_from_dict(data: dict[str, Any], *, name: str | None = None) -> EndpointSpec:
    """Build a spec from its dict form (TOML tables, or :meth:`EndpointSpec.to_dict`)."""
    data = dict(data)
    unknown = set(data) - _ENDPOINT_KEYS - {"inputs", "outputs", "progress"}
    if unknown:
        raise SpecError(f"endpoint.{sorted(unknown)[0]}: unknown key")
    if name is not None and not data.get("name"):
        data["name"] = name
    if not data.get("name"):
        raise SpecError("endpoint.name: required")
    groups: dict[str, dict[str, FieldSpec] | None] = {}
    for section in ("inputs", "outputs", "progress"):
        raw = data.pop(section, None)
        if raw is None:
            groups[section] = None
            continue
        if not isinstance(raw, dict):
            raise SpecError(f"[{section}] must be a table")
        groups[section] = {k: _field_from_dict(f"{section}.{k}", v) for k, v in raw.items()}
    for key in ("max_batch_wait", "lease_duration", "max_queue_time", "timeout", "result_ttl"):
        if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
            data[key] = float(data[key])
    for key, value in data.items():
        expected = {
            "name": str,
            "description": str,
            "version": str,
            "title": str,
            "kind": str,
            "max_batch_size": int,
            "max_batch_wait": float,
            "lease_duration": float,
            "max_attempts": int,
            "max_queue_length": int,
            "retry_failed_batches": bool,
            "max_queue_time": float,
            "timeout": float,
            "result_ttl": float,
        }[key]
        if value is None and key in _OPTIONAL_KEYS:
            continue
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise SpecError(f"endpoint.{key}: expected {expected.__name__}, got {value!r}")
    return EndpointSpec(
        **data,
        inputs=groups["inputs"] or {},
        outputs=groups["outputs"],
        progress=groups["progress"] or {},
    )


def _field_from_dict(where: str, raw: Any) -> FieldSpec:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        raise SpecError(f'{where}: expected a table like {{ type = "string" }}')
    raw = dict(raw)
    unknown = set(raw) - _FIELD_KEYS
    if unknown:
        raise SpecError(f"{where}.{sorted(unknown)[0]}: unknown key")
    if "type" not in raw:
        raise SpecError(f"{where}: 'type' is required")
    for alias, canonical in (("min", "ge"), ("max", "le")):
        if alias in raw:
            if canonical in raw:
                raise SpecError(f"{where}: give '{alias}' or '{canonical}', not both")
            raw[canonical] = raw.pop(alias)
    for key in ("ge", "le"):
        if key in raw and (not isinstance(raw[key], int | float) or isinstance(raw[key], bool)):
            raise SpecError(f"{where}.{key}: expected a number, got {raw[key]!r}")
    for key in ("min_length", "max_length"):
        if key in raw and (
            not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 0
        ):
            raise SpecError(f"{where}.{key}: expected a non-negative integer, got {raw[key]!r}")
    if "required" in raw and not isinstance(raw["required"], bool):
        raise SpecError(f"{where}.required: expected true or false")
    for key in ("description", "pattern", "type"):
        if key in raw and not isinstance(raw[key], str):
            raise SpecError(f"{where}.{key}: expected a string, got {raw[key]!r}")
    if "choices" in raw and not isinstance(raw["choices"], list):
        raise SpecError(f"{where}.choices: expected a list")
    if raw["type"] not in FIELD_TYPES:
        raise SpecError(
            f"{where}: unknown type {raw['type']!r} (use one of {', '.join(FIELD_TYPES)})"
        )
    if "items" in raw:
        raw["items"] = _field_from_dict(where + ".items", raw["items"])
    if (
        isinstance(raw.get("default"), int)
        and raw["type"] == "float"
        and not isinstance(raw["default"], bool)
    ):
        raw["default"] = float(raw["default"])
    return FieldSpec(**raw)


# ---- from a Python signature


def spec_from_signature(
    func: Any, *, name: str, description: str = "", **settings: Any
) -> EndpointSpec:
    """Build a spec from ``predict``'s parameters (type hints plus :func:`Input` defaults)."""
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as e:  # a NameError in a string annotation, for example
        raise SpecError(f"{name}: cannot read the type hints of predict: {e}") from None
    inputs: dict[str, FieldSpec] = {}
    for pname, param in inspect.signature(func).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        where = f"{name}.predict({pname})"
        if pname not in hints:
            raise SpecError(
                f"{where}: add a type hint (str, int, float, bool, Literal[...], list[...])"
            )
        inputs[pname] = _field_from_hint(where, hints[pname], param.default)
    outputs = _outputs_from_hint(name, hints.get("return"))
    return EndpointSpec(
        name=name, description=description, inputs=inputs, outputs=outputs, **settings
    )


def _field_from_hint(where: str, hint: Any, default: Any) -> FieldSpec:
    info = default if isinstance(default, InputInfo) else None
    if typing.get_origin(hint) is typing.Annotated:
        hint, *meta = typing.get_args(hint)
        info = next((m for m in meta if isinstance(m, InputInfo)), info)
    value = info.default if info is not None else _MISSING
    if value is _MISSING:  # ``x: Annotated[int, Input(ge=1)] = 3``: the parameter's default
        value = default.default if isinstance(default, InputInfo) else default
    if value is inspect.Parameter.empty:
        value = _MISSING
    ftype, items, choices = _type_of(where, hint)
    if info is not None and info.choices is not None:
        if ftype not in ("string", "integer", "float"):
            raise SpecError(f"{where}: choices only apply to str, int or float")
        ftype, choices = "selection", info.choices
    spec = FieldSpec(
        type=ftype,  # type: ignore[arg-type]
        items=items,
        choices=choices,
        required=value is _MISSING,
        default=None if value is _MISSING else value,
    )
    if info is not None:
        spec.description = info.description
        spec.ge, spec.le = info.ge, info.le
        spec.min_length, spec.max_length = info.min_length, info.max_length
        spec.pattern = info.pattern
    if (
        isinstance(spec.default, int)
        and spec.type == "float"
        and not isinstance(spec.default, bool)
    ):
        spec.default = float(spec.default)
    return spec


_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "float", bool: "boolean"}


def _type_of(where: str, hint: Any) -> tuple[str, FieldSpec | None, list[Any] | None]:
    origin = typing.get_origin(hint)
    if hint in _SCALARS:
        return _SCALARS[hint], None, None
    if origin is Literal:
        return "selection", None, list(typing.get_args(hint))
    if hint is Any or hint is dict or origin is dict or hint is pydantic.JsonValue:
        return "json", None, None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        itype, _, ichoices = _type_of(where, item)
        if itype == "list":
            return "json", None, None
        return "list", FieldSpec(type=itype, choices=ichoices), None  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        raise SpecError(
            f"{where}: optional and union types are not supported; give a default instead"
        )
    raise SpecError(
        f"{where}: unsupported type {hint!r}"
        " (use str, int, float, bool, Literal[...], list[...], dict)"
    )


def _outputs_from_hint(name: str, hint: Any) -> dict[str, FieldSpec] | None:
    if hint is None or not typing.is_typeddict(hint):
        return None
    out: dict[str, FieldSpec] = {}
    required = hint.__required_keys__
    for key, sub in typing.get_type_hints(hint).items():
        ftype, items, choices = _type_of(f"{name} output {key}", sub)
        out[key] = FieldSpec(
            type=ftype,  # type: ignore[arg-type]
            items=items,
            choices=choices,
            required=key in required,
        )
    return out


def spec_differences(ours: EndpointSpec, theirs: EndpointSpec) -> list[str]:
    """What differs between two specs, one ``key: ours vs theirs`` line each."""
    return _diff("", ours.to_dict(), theirs.to_dict())


def _diff(prefix: str, a: Any, b: Any) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in a:
                out.append(f"{where}: only in the worker's spec")
            elif key not in b:
                out.append(f"{where}: missing from the worker's spec")
            else:
                out += _diff(where, a[key], b[key])
        return out
    return [] if a == b else [f"{prefix}: server has {a!r}, worker has {b!r}"]
