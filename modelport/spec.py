"""Endpoint specs: the contract of one endpoint, from a Python signature or a TOML file.

Both sources produce the same :class:`EndpointSpec`, and validation and JSON Schema
are derived from the spec alone, so they cannot drift apart. A spec is plain data
(:meth:`EndpointSpec.to_dict`): nested types (pydantic models, dataclasses, TypedDicts,
unions) become ``object`` and ``union`` fields, so a remote worker can send its spec to
the server as JSON and the server validates exactly as the worker's signature says.

Mistakes are reported all at once, each as ``where: what``, with ``where`` in one
vocabulary for both sources: ``endpoint.max_batch_size``, ``inputs.prompt``,
``inputs.point.x``, ``inputs.tags.items``, ``outputs.label``, ``output``.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import enum
import inspect
import math
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import annotated_types
import orjson
import pydantic
import pydantic_core
import typing_extensions
from pydantic import ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from modelport.adapters import config as adapters
from modelport.errors import SpecError, first_error
from modelport.media import options as media_options
from modelport.wire import INT_MAX as _INT_MAX
from modelport.wire import INT_MIN as _INT_MIN
from modelport.wire import MAX_JOBS
from modelport.wire import storable as _storable

FieldType = Literal[
    "string",
    "integer",
    "float",
    "boolean",
    "selection",
    "json",
    "list",
    "object",
    "union",
    "image",
    "audio",
    "video",
    "bytes",
]
FIELD_TYPES: tuple[str, ...] = typing.get_args(FieldType)
SCALAR_TYPES = ("string", "integer", "float", "boolean", "selection", "json")
KINDS = ("predict", "chat", "embedding", "http", "subprocess")
"""``http`` and ``subprocess`` endpoints are adapters: see :mod:`modelport.adapters`."""
WebhookEvent = Literal["started", "progress", "output", "log", "completed"]
WEBHOOK_EVENTS: tuple[str, ...] = typing.get_args(WebhookEvent)

_MISSING: Any = ...

Problem = tuple[str, str]
"""One mistake in a spec: where (``inputs.x``) and what."""


@dataclass
class FieldSpec:
    """One typed input, output or progress field.

    ``list`` fields give ``items``; ``object`` fields give ``properties`` (named fields,
    nothing else allowed) or ``values`` (any keys, values of that type; neither: any
    object); ``union`` fields give ``variants``. ``nullable`` also accepts ``null``.
    """

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
    nullable: bool = False
    properties: dict[str, FieldSpec] | None = None
    values: FieldSpec | None = None
    variants: list[FieldSpec] | None = None
    example: Any = None
    """A realistic value, shown in the docs (JSON Schema ``examples``); it must be valid."""
    format: list[str] | None = None
    """Media: the file formats accepted (inputs) or the one written (outputs, progress)."""
    mode: str | None = None
    size: list[int] | None = None
    min_size: list[int] | None = None
    max_size: list[int] | None = None
    align: int | None = None
    resize: str | None = None
    quality: int | None = None
    max_pixels: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    min_duration: float | None = None
    max_duration: float | None = None
    fps: float | None = None
    max_frames: int | None = None
    max_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value is None or (value == f.default and type(value) is type(f.default)):
                continue
            if isinstance(value, FieldSpec):
                value = value.to_dict()
            elif f.name == "properties":
                value = {k: v.to_dict() for k, v in value.items()}
            elif f.name == "variants":
                value = [v.to_dict() for v in value]
            out[f.name] = value
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
        example: Any = None,
        **media: Any,
    ) -> None:
        self.default = default
        self.description = description
        self.ge = ge
        self.le = le
        self.min_length = min_length
        self.max_length = max_length
        self.choices = list(choices) if choices is not None else None
        self.pattern = pattern
        self.example = example
        self.media = _media_options(media)
        """Media options (``size``, ``mode``, ``sample_rate``, ...) for an image or audio input."""

    def __repr__(self) -> str:
        default = "" if self.default is _MISSING else repr(self.default)
        return f"Input({default})"


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
    example: Any = None,
    format: str | Sequence[str] | None = None,
    mode: str | None = None,
    size: tuple[int, int] | None = None,
    min_size: tuple[int, int] | None = None,
    max_size: tuple[int, int] | None = None,
    align: int | None = None,
    resize: str | None = None,
    max_pixels: int | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    max_bytes: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
) -> Any:
    """Metadata for one ``predict`` parameter, used as its default value (or in
    ``Annotated[...]``):

    ``def predict(self, steps: int = Input(default=30, ge=1, le=100, description="..."))``

    ``example`` is a realistic value for the docs; without one the docs derive it from
    the default, the bounds or the choices.

    An image input (``modelport.Image``) may declare the formats it accepts, a ``mode``,
    an exact ``size`` or ``min_size``/``max_size`` bounds, ``align`` and how to ``resize``
    to meet them (``crop``, ``pad``, ``fit``, ``stretch``; without it, an image that does
    not meet them is refused), ``max_pixels`` and ``max_bytes``; an audio input
    (``modelport.Audio``) its formats, ``sample_rate``, ``channels``, ``min_duration``,
    ``max_duration`` and ``max_bytes``; a video input (``modelport.Video``) its formats,
    ``size``/``max_size`` and ``resize``, ``fps``, durations and ``max_frames``. The
    server converts every upload to that before the job is queued.

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
        example=example,
        format=format,
        mode=mode,
        size=size,
        min_size=min_size,
        max_size=max_size,
        align=align,
        resize=resize,
        max_pixels=max_pixels,
        sample_rate=sample_rate,
        channels=channels,
        min_duration=min_duration,
        max_duration=max_duration,
        max_bytes=max_bytes,
        fps=fps,
        max_frames=max_frames,
    )


class MediaInfo:
    """Media options inside ``Annotated[...]``: what :func:`Media` makes."""

    def __init__(self, **options: Any) -> None:
        self.options = _media_options(options)

    def __repr__(self) -> str:
        return f"Media({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"


def Media(
    *,
    format: str | Sequence[str] | None = None,
    quality: int | None = None,
    mode: str | None = None,
    max_size: tuple[int, int] | None = None,
    sample_rate: int | None = None,
    channels: int | None = None,
) -> Any:
    """How a media output (or progress preview) is written:
    ``-> Annotated[modelport.Image, Media(format="JPEG", quality=90)]``; in a list, it
    applies to each item."""
    return MediaInfo(
        format=format,
        quality=quality,
        mode=mode,
        max_size=max_size,
        sample_rate=sample_rate,
        channels=channels,
    )


def _media_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as a FieldSpec keeps them: lists for pairs and formats, names canonical."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key == "format":
            names = [value] if isinstance(value, str) else list(value)
            value = [media_options.canonical_format(n) if isinstance(n, str) else n for n in names]
        elif key in ("size", "min_size", "max_size") and isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def chat_message() -> FieldSpec:
    """One item of a chat endpoint's ``messages``: ``{"role": "user", "content": "..."}``."""
    return FieldSpec(
        type="object",
        description="A chat message",
        properties={
            "role": FieldSpec(type="string", required=True, min_length=1),
            "content": FieldSpec(type="string", required=True),
        },
    )


@dataclass
class EndpointSpec:
    """The contract of one endpoint: inputs, outputs, progress, and serving limits.

    The output is described by ``outputs`` (the named fields of an output object: TOML's
    ``[outputs]``, a TypedDict, pydantic model or dataclass return type) or by ``output``
    (any other type, such as ``dict[str, float]``, ``str`` or ``list[float]``), or by
    neither (anything JSON).
    """

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
    cache_ttl: float | None = None
    cache_max_entries: int | None = None
    precomputed: str | None = None
    fallback: bool = True
    output: FieldSpec | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the model declares about itself (TOML ``[metadata]``, ``Model.metadata``):
    ``training_args``, ``metrics``, ``labels`` and any other JSON; shown by
    ``GET /endpoints/{name}/metadata`` and in the OpenAPI description."""
    adapter: Any = field(default=None, compare=False, repr=False)
    """For ``kind = "http"`` or ``"subprocess"``: how to call it (an
    :data:`modelport.adapters.config.AdapterConfig`). Not part of the contract: it stays
    where the adapter runs, out of :meth:`to_dict`."""

    def __post_init__(self) -> None:
        out = self.output
        if (
            out is not None
            and out.type == "object"
            and out.properties is not None
            and self.outputs is None
            and not out.nullable
        ):  # one form for one contract: an object with named fields is ``outputs``
            self.outputs, self.output = out.properties, None
        if self.kind == "chat":
            self.inputs = _typed_messages(self.inputs)
        check_spec(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form that :func:`spec_from_dict` turns back into an equal spec."""
        body = {
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
        if self.output is not None:  # only when set, so specs without one read as before
            body["output"] = self.output.to_dict()
        if self.metadata:  # the same
            body["metadata"] = self.metadata
        return body

    @cached_property
    def request_model(self) -> type[pydantic.BaseModel]:
        """Validates a whole submit body: ``{"input": {...}}``, with an optional ``webhook``
        URL and the ``webhook_events`` it is told of."""
        inputs = _model_for(self.name + "_input", self.inputs)
        return create_model(
            _identifier(self.name) + "_request",
            __config__=ConfigDict(extra="forbid"),
            input=(inputs, Field(default_factory=inputs)),
            webhook=(
                str | None,
                Field(None, max_length=2048, description="A URL told of the job's events."),
            ),
            webhook_events=(
                list[WebhookEvent] | None,
                Field(None, description="The events the webhook is told of (default: all)."),
            ),
        )

    @cached_property
    def output_adapter(self) -> pydantic.TypeAdapter[Any] | None:
        if self.outputs is not None:
            return pydantic.TypeAdapter(_model_for(self.name + "_output", self.outputs))
        if self.output is not None:
            return pydantic.TypeAdapter(_nullable(self.output, self.name + "_output"))
        return None

    def output_error(self, output: Any) -> str | None:
        """Why ``output`` does not match the declared outputs, or ``None`` when it does."""
        adapter = self.output_adapter
        if adapter is None:
            return None
        try:
            adapter.validator.validate_python(output)  # without the adapter's checks of options
        except pydantic.ValidationError as e:
            where = first_error(e.errors())
            if not e.errors()[0]["loc"]:
                where = f"output: {where}"
            return f"the model's output does not match the endpoint's outputs: {where}"
        return None

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

    @cached_property
    def media_inputs(self) -> dict[str, FieldSpec]:
        """The inputs that are media (or lists of media): the server converts these."""
        return {k: f for k, f in self.inputs.items() if media_field(f) is not None}

    @cached_property
    def media_outputs(self) -> bool:
        """Whether any output or progress field is media, to be encoded on the worker."""
        fields = [*(self.outputs or {}).values(), *self.progress.values()]
        fields += [self.output] if self.output is not None else []
        return any(_has_media(f) for f in fields)


def _has_media(f: FieldSpec) -> bool:
    subs = [f.items, f.values, *(f.properties or {}).values(), *(f.variants or ())]
    return f.type in media_options.MEDIA_TYPES or any(_has_media(s) for s in subs if s)


def media_field(f: FieldSpec) -> FieldSpec | None:
    """The media field ``f`` is (itself, or its items for a list of media), else None."""
    if f.type in media_options.MEDIA_TYPES:
        return f
    if f.type == "list" and f.items is not None and f.items.type in media_options.MEDIA_TYPES:
        return f.items
    return None


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
    "cache_ttl",
    "cache_max_entries",
    "precomputed",
    "fallback",
)
_OPTIONAL_KEYS = (
    "max_queue_length",
    "max_queue_time",
    "timeout",
    "result_ttl",
    "cache_ttl",
    "cache_max_entries",
    "precomputed",
)
MAX_BATCH_SIZE = MAX_JOBS
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
    "cache_ttl": (float, 0, 10 * 366 * _DAY),
    "cache_max_entries": (int, 1, 1_000_000_000),
}
"""Each numeric serving key's type and bounds: finite, and far beyond any sane setting, so a
typo (or NaN, or 1e308) is refused at start instead of misbehaving later."""
_POSITIVE = frozenset({"lease_duration", "max_queue_time", "timeout", "result_ttl", "cache_ttl"})
"""Keys whose lower bound is excluded: zero seconds would mean at once, never useful."""
_SECTIONS = ("inputs", "outputs", "output", "progress", "metadata")
_ENDPOINT_KEYS = {f.name for f in fields(EndpointSpec)} - set(_SECTIONS) - {"adapter"}
_FIELD_KEYS = {f.name for f in fields(FieldSpec)} | {"min", "max"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_TYPE_SYNONYMS = {
    "str": "string",
    "text": "string",
    "int": "integer",
    "number": "float",
    "double": "float",
    "bool": "boolean",
    "enum": "selection",
    "choice": "selection",
    "any": "json",
    "array": "list",
    "dict": "object",
    "map": "object",
}


def _unknown(what: str, key: str, allowed: Iterable[str]) -> str:
    """``unknown key (did you mean 'max_length'?)``, or the keys there are."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    if what == "type" and key.lower() in _TYPE_SYNONYMS:
        close = [_TYPE_SYNONYMS[key.lower()]]
    hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(allowed)}"
    return f"unknown {what} {key!r} ({hint})" if what == "type" else f"unknown {what} ({hint})"


def spec_error(problems: list[Problem], prefix: str = "") -> SpecError:
    """One error reporting every problem: its message lists them, its ``errors`` carry them."""
    lines = [f"{where}: {what}" if where else what for where, what in problems]
    message = lines[0] if len(lines) == 1 else f"{len(lines)} problems:\n  " + "\n  ".join(lines)
    return SpecError(
        f"{prefix}: {message}" if prefix else message,
        errors=[{"field": where, "message": what} for where, what in problems],
    )


def _problems_of(e: SpecError) -> list[Problem]:
    return [(err["field"], err["message"]) for err in e.errors] or [("", e.message)]


def check_spec(spec: EndpointSpec) -> None:
    """Refuse a spec that cannot work, naming every key at fault and the reason."""
    problems = spec_problems(spec)
    if problems:
        raise spec_error(problems)


def spec_problems(spec: EndpointSpec) -> list[Problem]:
    """Every reason a spec cannot work, as ``(where, what)`` pairs."""
    out: list[Problem] = []
    if not _NAME.match(spec.name):
        out.append(
            (
                "endpoint.name",
                f"{spec.name!r}: use 1-64 lower-case letters, digits, '_', '-' or '.'",
            )
        )
    if spec.kind not in KINDS:
        out.append(("endpoint.kind", _unknown("kind", spec.kind, KINDS)))
    if spec.kind == "chat":
        _check_messages(spec.inputs.get("messages"), out)
    if spec.kind == "embedding" and not any(f.type == "string" for f in spec.inputs.values()):
        out.append(("inputs", "an embedding endpoint needs a string input"))
    _check_serving(spec, out)
    if spec.cache_max_entries is not None and spec.cache_ttl is None:
        out.append(("endpoint.cache_max_entries", "needs cache_ttl (the cache is off without it)"))
    if spec.precomputed is not None and not isinstance(spec.precomputed, str):
        out.append(("endpoint.precomputed", f"expected a file name, got {spec.precomputed!r}"))
    if not isinstance(spec.fallback, bool):
        out.append(("endpoint.fallback", f"expected true or false, got {spec.fallback!r}"))
    if spec.outputs is not None and spec.output is not None:
        out.append(("output", "give [outputs] (named fields) or [output] (one type), not both"))
    if spec.output is not None:
        _check_field("output", spec.output, out)
    for section, group in (
        ("inputs", spec.inputs),
        ("outputs", spec.outputs or {}),
        ("progress", spec.progress),
    ):
        for key, f in group.items():
            if not key.isidentifier() or key.startswith("_"):
                out.append((f"{section}.{key}", "not a valid field name"))
                continue
            _check_field(f"{section}.{key}", f, out)
    if not out:
        try:
            _storable(spec.to_dict())
        except ValueError as e:  # a last net: what the stores cannot keep is never registered
            out.append((f"endpoint {spec.name!r}", str(e)))
    return out


def _check_serving(spec: EndpointSpec, out: list[Problem]) -> None:
    for key, (kind, low, high) in _SERVING_BOUNDS.items():
        value = getattr(spec, key)
        if value is None and key in _OPTIONAL_KEYS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            out.append((f"endpoint.{key}", f"expected a number, got {value!r}"))
            continue
        unit = "an integer" if kind is int else "a number of seconds"
        span = f"from {low} to {high:.0f}" if key not in _POSITIVE else f"above 0, up to {high:.0f}"
        if (
            (kind is int and not isinstance(value, int))
            or not math.isfinite(value)
            or not (low < value if key in _POSITIVE else low <= value)
            or value > high
        ):
            out.append((f"endpoint.{key}", f"must be {unit} {span}, got {value!r}"))
    if not isinstance(spec.retry_failed_batches, bool):
        got = spec.retry_failed_batches
        out.append(("endpoint.retry_failed_batches", f"expected true or false, got {got!r}"))


def _typed_messages(inputs: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
    """A chat endpoint's untyped ``messages`` (``list[dict]``, a TOML list of json) become
    a list of ``{role, content}`` objects, so ``["hello"]`` is refused at submit."""
    messages = inputs.get("messages")
    if messages is None or messages.type != "list" or messages.items is None:
        return inputs
    items = messages.items
    generic = items.type == "json" or (
        items.type == "object" and items.properties is None and items.values in (None, _JSON)
    )
    if not generic:
        return inputs
    typed = dataclasses.replace(messages, items=chat_message())
    return {**inputs, "messages": typed}


_JSON = FieldSpec(type="json")


def _check_messages(messages: FieldSpec | None, out: list[Problem]) -> None:
    if messages is None:
        out.append(("inputs.messages", "a chat endpoint needs a 'messages' input"))
        return
    items = messages.items
    props = items.properties if items is not None else None
    if messages.type != "list" or props is None or not {"role", "content"} <= set(props):
        out.append(
            (
                "inputs.messages",
                "a chat endpoint's messages must be a list of {role, content} objects"
                " (list[dict] or a list of a TypedDict/pydantic model with role and content)",
            )
        )


def _check_field(where: str, f: FieldSpec, out: list[Problem]) -> None:
    before = len(out)
    if f.type not in FIELD_TYPES:
        out.append((where, _unknown("type", str(f.type), FIELD_TYPES)))
        return
    written = where.split(".", 1)[0] in ("outputs", "output", "progress")
    out += media_options.media_problems(where, f, output=written)
    if f.type == "list":
        if f.items is None:
            out.append((where, "a list needs 'items'"))
        else:
            _check_field(where + ".items", f.items, out)
    elif f.items is not None:
        out.append((where, "'items' only applies to type 'list'"))
    if f.type == "object":
        if f.properties is not None and f.values is not None:
            out.append((where, "give 'properties' (named fields) or 'values' (any keys), not both"))
        for key, sub in (f.properties or {}).items():
            if not key.isidentifier() or key.startswith("_"):
                out.append((f"{where}.{key}", "not a valid field name"))
            else:
                _check_field(f"{where}.{key}", sub, out)
        if f.values is not None:
            _check_field(where + ".values", f.values, out)
    elif f.properties is not None or f.values is not None:
        out.append((where, "'properties' and 'values' only apply to type 'object'"))
    if f.type == "union":
        if not f.variants or len(f.variants) < 2:
            out.append((where, "a union needs a 'variants' list of at least two types"))
        for i, sub in enumerate(f.variants or ()):
            if sub.type == "union":
                out.append((f"{where}.variants.{i}", "a union inside a union: list its variants"))
            elif sub.required or sub.default is not None or sub.nullable:
                out.append(
                    (
                        f"{where}.variants.{i}",
                        "a variant takes no required, default or nullable (set them on the union)",
                    )
                )
            else:
                _check_field(f"{where}.variants.{i}", sub, out)
    elif f.variants is not None:
        out.append((where, "'variants' only applies to type 'union'"))
    if f.type == "selection" and not f.choices:
        out.append((where, "a selection needs a non-empty 'choices' list"))
    for choice in f.choices or ():
        if not isinstance(choice, str | int | float) or not _fits(choice):
            out.append((where, f"choices must be strings or numbers, got {choice!r}"))
            break
    if f.choices is not None and f.type != "selection":
        out.append((where, "'choices' only applies to type 'selection'"))
    numeric = f.type in ("integer", "float")
    if (f.ge is not None or f.le is not None) and not numeric:
        out.append((where, "min/max only apply to integer and float"))
    sized = f.type in ("string", "list")
    if (f.min_length is not None or f.max_length is not None) and not sized:
        out.append((where, "min_length/max_length only apply to string and list"))
    if f.pattern is not None:
        if f.type != "string":
            out.append((where, "'pattern' only applies to string"))
        try:
            re.compile(f.pattern)
        except re.error as e:
            out.append((where, f"pattern is not a valid regular expression: {e}"))
    if f.ge is not None and f.le is not None and f.ge > f.le:
        out.append((where, f"min ({f.ge}) is greater than max ({f.le})"))
    if f.min_length is not None and f.max_length is not None and f.min_length > f.max_length:
        out.append(
            (where, f"min_length ({f.min_length}) is greater than max_length ({f.max_length})")
        )
    for key in ("ge", "le"):
        if not _fits(getattr(f, key)):
            out.append((f"{where}.{key}", "must be a finite number within 64 bits"))
    for key in ("min_length", "max_length"):
        size = getattr(f, key)
        if size is not None and (
            isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _INT_MAX
        ):
            out.append((f"{where}.{key}", "must be a non-negative integer within 64 bits"))
    if f.required and f.default is not None:
        out.append((where, "a required field cannot have a default"))
    if len(out) > before:
        return
    try:
        adapter = pydantic.TypeAdapter(_annotation(f, "check"))
        adapter.json_schema()
    except (pydantic.PydanticUserError, pydantic_core.SchemaError, TypeError, ValueError) as e:
        out.append((where, f"cannot be validated: {str(e).splitlines()[0]}"))
        return
    for key in ("default", "example"):
        value = getattr(f, key)
        if value is None:
            continue
        if f.type == "integer" and isinstance(value, float):  # a request may say 2.0, not a spec
            out.append((where, f"{key} {value!r} is invalid: write it as an integer"))
            continue
        try:
            raw = pydantic_core.to_json(value)
        except pydantic_core.PydanticSerializationError:
            out.append((where, f"{key} {value!r} is not a JSON value"))
            continue
        try:
            adapter.validate_json(raw, strict=True)
        except pydantic.ValidationError as e:
            out.append((where, f"{key} {value!r} is invalid: {first_error(e.errors())}"))


def _annotation(f: FieldSpec, title: str) -> Any:
    """The pydantic type for one field, constraints included (``null`` is up to the caller)."""
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
        base = typing.Annotated[
            pydantic.JsonValue, pydantic.AfterValidator(_storable), _STORABLE_SCHEMA
        ]
    elif f.type == "list":
        assert f.items is not None
        base = typing.Annotated[
            list[_nullable(f.items, title + "_item")],  # type: ignore[misc]
            Field(strict=True, min_length=f.min_length, max_length=f.max_length),
        ]
    elif f.type == "object":
        if f.properties is not None:
            base = _model_for(title, f.properties)
        elif f.values is None or f.values == _JSON:  # any object: schema {"type": "object"}
            base = typing.Annotated[
                dict[str, Any],
                Field(strict=True),
                pydantic.AfterValidator(_storable),
                _STORABLE_OBJECT_SCHEMA,
            ]
        else:
            values = _nullable(f.values, title + "_value")
            base = typing.Annotated[dict[str, values], Field(strict=True)]  # type: ignore[valid-type]
    elif f.type in media_options.MEDIA_TYPES:
        base = typing.Annotated[
            Any,
            pydantic.PlainValidator(_media_value(f.type)),
            pydantic.WithJsonSchema(media_schema(f)),
        ]
    else:
        variants = f.variants or []
        members = tuple(_annotation(v, f"{title}_{i}") for i, v in enumerate(variants))
        base = typing.Annotated[
            typing.Union[members],  # noqa: UP007
            pydantic.WrapValidator(_one_of(variants)),
        ]
    return base


StorableJson = typing_extensions.TypeAliasType(
    "StorableJson",
    "bool | typing.Annotated[int, Field(ge=_INT_MIN, le=_INT_MAX)] | float | str"
    " | list[StorableJson] | dict[str, StorableJson] | None",
)
"""The JSON the stores can keep, as a JSON Schema says it: integers within 64 bits."""


@dataclass(frozen=True)
class _SchemaOf:
    """``Annotated`` metadata: document a value with the JSON Schema of another type (its
    validation is left as it is)."""

    annotation: Any

    def __get_pydantic_json_schema__(
        self, core: Any, handler: pydantic.GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return handler(pydantic.TypeAdapter(self.annotation).core_schema)


_STORABLE_SCHEMA = _SchemaOf(StorableJson)
_STORABLE_OBJECT_SCHEMA = _SchemaOf(dict[str, StorableJson])


def media_schema(f: FieldSpec) -> dict[str, Any]:
    """A media field in JSON: a data URL (or bare base64) string."""
    if f.type == "bytes":
        return {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": "A file as a data URL (data:...;base64,...) or bare base64; or a"
            " file in a multipart/form-data upload",
        }
    formats = f.format or list(media_options.FORMATS[f.type])
    mimes = [media_options.MIME_TYPES[n] for n in formats if n in media_options.MIME_TYPES]
    return {
        "type": "string",
        "contentMediaType": mimes[0] if len(mimes) == 1 else f"{f.type}/*",
        "description": f"{_WORDS[f.type].capitalize()} ({', '.join(formats)}) as a data URL"
        " (data:...;base64,...) or bare base64; or a file in a multipart/form-data upload",
    }


def _media_value(kind: str) -> Callable[[Any], Any]:
    """A media field takes a string (data URL, base64, a file URL in an output) or, from a
    form upload, the file's bytes; the media module decodes and converts it."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise pydantic_core.PydanticCustomError(
            "media_type",
            "Input should be {expected} as a data URL or base64 string",
            {"expected": _WORDS[kind]},
        )

    return check


def _nullable(f: FieldSpec, title: str) -> Any:
    annotation = _annotation(f, title)
    return annotation | None if f.nullable else annotation


_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "float": "a number",
    "boolean": "true or false",
    "json": "any JSON value",
    "list": "a list",
    "object": "an object",
    "image": "an image",
    "audio": "audio",
    "video": "a video",
    "bytes": "a file",
}


def _describe(f: FieldSpec) -> str:
    if f.type == "selection":
        return "one of " + ", ".join(repr(c) for c in f.choices or ())
    if f.type == "object" and f.properties is not None:
        return "an object {" + ", ".join(f.properties) + "}"
    return _WORDS.get(f.type, f.type)


def _one_of(variants: list[FieldSpec]) -> Callable[[Any, Any], Any]:
    """A union's error: one message naming what was expected, not one per variant."""
    expected = " or ".join(_describe(v) for v in variants)

    def check(value: Any, handler: pydantic.ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except pydantic.ValidationError:
            raise pydantic_core.PydanticCustomError(
                "union_type", "Input should be {expected}", {"expected": expected}
            ) from None

    return check


def _whole(value: Any) -> Any:
    """``2.0`` is the integer 2, as JSON Schema (and so the OpenAPI document) has it."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


WHOLE = pydantic.BeforeValidator(_whole)
"""``Annotated`` metadata of an ``int`` with its bounds in one ``Field``: ``2.0`` is 2, as
JSON Schema has it."""


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


def _identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _model_for(name: str, group: dict[str, FieldSpec]) -> type[pydantic.BaseModel]:
    definitions: dict[str, Any] = {}
    for key, f in group.items():
        annotation = _annotation(f, f"{name}_{key}")
        doc: dict[str, Any] = {
            "description": f.description or None,
            "examples": None if f.example is None else [f.example],
        }
        if f.required:
            definitions[key] = (annotation | None if f.nullable else annotation, Field(**doc))
        elif f.default is None:
            definitions[key] = (annotation | None, Field(None, **doc))
        else:
            definitions[key] = (
                annotation | None if f.nullable else annotation,
                Field(f.default, **doc),
            )
    return create_model(_identifier(name), __config__=ConfigDict(extra="forbid"), **definitions)


def _build(prefix: str, problems: list[Problem], make: Callable[[], EndpointSpec]) -> EndpointSpec:
    """Make the spec from what parsed, and raise every problem: the parser's and the
    checker's (less those about a part the parser already refused)."""
    try:
        spec = make()
    except SpecError as e:
        refused = [where for where, _ in problems]
        for where, what in _problems_of(e):
            related = any(
                where == r or where.startswith(r + ".") or r.startswith(where + ".")
                for r in refused
            )
            if not related:
                problems.append((where, what))
        raise spec_error(problems, prefix) from None
    if problems:
        raise spec_error(problems, prefix)
    return spec


def spec_from_toml(path: str | Path, *, name: str | None = None) -> EndpointSpec:
    """Read an endpoint spec from a TOML file; mistakes name the file, the key and the reason."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SpecError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    problems: list[Problem] = []
    flat = _flatten_toml(data, problems)
    try:
        spec = spec_from_dict(flat, name=name, runnable=True)
    except SpecError as e:
        problems += _problems_of(e)
    if problems:
        raise spec_error(problems, str(path))
    if spec.precomputed is not None and not Path(spec.precomputed).is_absolute():
        spec = dataclasses.replace(spec, precomputed=str(path.parent / spec.precomputed))
    if spec.kind == "subprocess" and spec.adapter is not None:
        # The program runs where its file is: ``command = ["node", "reverse.js"]`` beside it.
        cwd = path.parent / (spec.adapter.cwd or ".")
        spec.adapter = dataclasses.replace(spec.adapter, cwd=str(cwd))
    return spec


def spec_from_document(text: str, *, toml: bool, name: str, runnable: bool = False) -> EndpointSpec:
    """A spec sent to the server (``PUT /endpoints/{name}``): a TOML file's text, or JSON in
    the same shape (``{"endpoint": {...}, "inputs": {...}}``) or flat (``to_dict()``'s).
    Its name, if it has one, must be ``name``; mistakes are all reported at once.
    ``runnable`` as :func:`spec_from_dict` takes it."""
    problems: list[Problem] = []
    data: Any
    try:
        data = tomllib.loads(text) if toml else orjson.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise SpecError(f"not valid {'TOML' if toml else 'JSON'}: {e}") from None
    if not isinstance(data, dict):
        raise SpecError("the spec must be a table (a JSON object)")
    if toml or isinstance(data.get("endpoint"), dict):
        data = _flatten_toml(data, problems)
    given = data.get("name")
    if given is not None and given != name:
        problems.append(("endpoint.name", f"{given!r} differs from the URL's {name!r}"))
    if data.get("precomputed") is not None:
        problems.append(("endpoint.precomputed", "a table is given at start, not at run time"))
        del data["precomputed"]
    try:
        spec = spec_from_dict({**data, "name": name}, runnable=runnable)
    except SpecError as e:
        problems += _problems_of(e)
    if problems:
        raise spec_error(problems)
    return spec


def _flatten_toml(data: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    sections = ("endpoint", *_SECTIONS)
    for key in data:
        if key not in sections:
            close = difflib.get_close_matches(key, sections, n=1)
            hint = f"did you mean [{close[0]}]?" if close else f"use {', '.join(sections)}"
            problems.append((f"[{key}]", f"unknown section ({hint})"))
    endpoint = data.get("endpoint", {})
    if not isinstance(endpoint, dict):
        problems.append(("[endpoint]", "must be a table"))
        endpoint = {}
    return {**endpoint, **{k: data[k] for k in _SECTIONS if k in data}}


_ENDPOINT_TYPES: dict[str, type] = {
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
    "cache_ttl": float,
    "cache_max_entries": int,
    "precomputed": str,
    "fallback": bool,
}


def spec_from_dict(
    data: dict[str, Any], *, name: str | None = None, runnable: bool = False
) -> EndpointSpec:
    """Build a spec from its dict form (TOML tables, or :meth:`EndpointSpec.to_dict`);
    every mistake is reported at once. ``runnable``: an adapter's spec must say how to call
    it (``url``, ``command``), as in a file to run, not only the contract a worker publishes."""
    problems: list[Problem] = []
    data = dict(data)
    kind = data.get("kind")
    adapter = None
    if kind in adapters.KINDS:
        adapter = adapters.parse(kind, data, problems, required=runnable)
    for key in sorted(set(data) - _ENDPOINT_KEYS - set(_SECTIONS), key=str):
        owner = next((k for k, keys in adapters.KEYS.items() if key in keys), None)
        if owner is not None:
            problems.append((f"endpoint.{key}", f'only for kind = "{owner}"'))
        else:
            problems.append((f"endpoint.{key}", _unknown("key", str(key), _ENDPOINT_KEYS)))
        del data[key]
    if name is not None and not data.get("name"):
        data["name"] = name
    if not data.get("name"):
        problems.append(("endpoint.name", "required"))
        data["name"] = "unnamed"
    groups: dict[str, dict[str, FieldSpec] | None] = {}
    for section in ("inputs", "outputs", "progress"):
        raw = data.pop(section, None)
        if raw is None:
            groups[section] = None
            continue
        if not isinstance(raw, dict):
            problems.append((f"[{section}]", "must be a table"))
            groups[section] = None
            continue
        group = {}
        for key, value in raw.items():
            parsed = _field_from_dict(f"{section}.{key}", value, problems)
            if parsed is not None:
                group[str(key)] = parsed
        groups[section] = group
    metadata = data.pop("metadata", None) or {}
    if not isinstance(metadata, dict):
        problems.append(("[metadata]", "must be a table"))
        metadata = {}
    try:
        _storable(metadata)
        orjson.dumps(metadata)
    except (TypeError, ValueError) as e:
        problems.append(("[metadata]", f"must be JSON: {e}"))
        metadata = {}
    output = None
    if data.get("output") is not None:
        output = _field_from_dict("output", data.pop("output"), problems)
    data.pop("output", None)
    for key in (
        "max_batch_wait",
        "lease_duration",
        "max_queue_time",
        "timeout",
        "result_ttl",
        "cache_ttl",
    ):
        if isinstance(data.get(key), int) and not isinstance(data.get(key), bool):
            data[key] = float(data[key])
    for key, value in list(data.items()):
        expected = _ENDPOINT_TYPES[key]
        if value is None and key in _OPTIONAL_KEYS:
            continue
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            problems.append((f"endpoint.{key}", f"expected {expected.__name__}, got {value!r}"))
            del data[key]
    data.setdefault("name", "unnamed")  # refused above; the rest is still checked
    return _build(
        "",
        problems,
        lambda: EndpointSpec(
            **data,
            inputs=groups["inputs"] or {},
            outputs=groups["outputs"],
            progress=groups["progress"] or {},
            output=output,
            metadata=metadata,
            adapter=adapter,
        ),
    )


def _field_from_dict(where: str, raw: Any, problems: list[Problem]) -> FieldSpec | None:
    """One field from its table; its mistakes go to ``problems`` (None if it has no type)."""
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        problems.append((where, 'expected a table like { type = "string" }'))
        return None
    raw = dict(raw)
    for key in sorted(set(raw) - _FIELD_KEYS, key=str):
        problems.append((f"{where}.{key}", _unknown("key", str(key), _FIELD_KEYS)))
        del raw[key]
    if "type" not in raw:
        problems.append((where, "'type' is required"))
        return None
    if not isinstance(raw["type"], str):
        problems.append((f"{where}.type", f"expected a string, got {raw['type']!r}"))
        return None

    def refuse(key: str, message: str) -> None:
        problems.append((f"{where}.{key}", message))
        del raw[key]

    if raw["type"].endswith("_list") and raw["type"][:-5] in media_options.MEDIA_TYPES:
        # ``image_list``: a list of images, the media options applying to each
        item = {k: raw.pop(k) for k in list(raw) if k in media_options.ALL_MEDIA_KEYS}
        raw["items"] = {"type": raw["type"][:-5], **item}
        raw["type"] = "list"
    if "format" in raw:
        value = raw["format"]
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raw["format"] = _media_options({"format": value})["format"]
        else:
            refuse("format", "expected a format name or a list of them")
    if raw["type"] not in FIELD_TYPES:
        problems.append((where, _unknown("type", raw["type"], FIELD_TYPES)))
        return None

    for alias, canonical in (("min", "ge"), ("max", "le")):
        if alias in raw:
            if canonical in raw:
                problems.append((where, f"give '{alias}' or '{canonical}', not both"))
                del raw[canonical]
            raw[canonical] = raw.pop(alias)
    for key in ("ge", "le"):
        if key in raw and (not isinstance(raw[key], int | float) or isinstance(raw[key], bool)):
            refuse(key, f"expected a number, got {raw[key]!r}")
    for key in ("min_length", "max_length"):
        if key in raw and (
            not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < 0
        ):
            refuse(key, f"expected a non-negative integer, got {raw[key]!r}")
    for key in ("required", "nullable"):
        if key in raw and not isinstance(raw[key], bool):
            refuse(key, "expected true or false")
    for key in ("description", "pattern"):
        if key in raw and not isinstance(raw[key], str):
            refuse(key, f"expected a string, got {raw[key]!r}")
    for key in ("choices", "variants"):
        if key in raw and not isinstance(raw[key], list):
            refuse(key, "expected a list")
    if "properties" in raw and not isinstance(raw["properties"], dict):
        refuse("properties", 'expected a table of fields, like { x = "float" }')
    for key in ("items", "values"):
        if key in raw:
            raw[key] = _field_from_dict(f"{where}.{key}", raw[key], problems)
    if "properties" in raw:
        properties = {}
        for key, value in raw["properties"].items():
            sub = _field_from_dict(f"{where}.{key}", value, problems)
            if sub is not None:
                properties[str(key)] = sub
        raw["properties"] = properties
    if "variants" in raw:
        variants = [
            _field_from_dict(f"{where}.variants.{i}", v, problems)
            for i, v in enumerate(raw["variants"])
        ]
        raw["variants"] = [v for v in variants if v is not None]
    for key in ("default", "example"):
        if (
            isinstance(raw.get(key), int)
            and raw["type"] == "float"
            and not isinstance(raw[key], bool)
        ):
            raw[key] = float(raw[key])
    return FieldSpec(**raw)


def spec_from_signature(
    func: Any, *, name: str, description: str = "", where: str | None = None, **settings: Any
) -> EndpointSpec:
    """Build a spec from ``predict``'s parameters (type hints plus :func:`Input` defaults) and
    its return annotation; ``where`` names the model in error messages (``Sentiment``)."""
    func = inspect.unwrap(func)
    prefix = where or _owner(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as e:  # a NameError in a string annotation, for example
        raise SpecError(f"{prefix}: cannot read the type hints of predict: {e}") from None
    problems: list[Problem] = []
    inputs: dict[str, FieldSpec] = {}
    for pname, param in inspect.signature(func).parameters.items():
        if pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        at = f"inputs.{pname}"
        if pname not in hints:
            problems.append((at, f"add a type hint ({_SUPPORTED})"))
            continue
        parsed = _param_field(at, hints[pname], param.default, problems)
        if parsed is not None:
            inputs[pname] = parsed
    output = _output_from_hint(hints.get("return"), problems)
    return _build(
        prefix,
        problems,
        lambda: EndpointSpec(
            name=name, description=description, inputs=inputs, output=output, **settings
        ),
    )


_SUPPORTED = (
    "str, int, float, bool, Literal[...], an Enum, list[...], dict[str, ...], X | None,"
    " unions, pydantic models, dataclasses, TypedDicts, modelport.Image, modelport.Audio,"
    " modelport.Video"
)


def _owner(func: Any) -> str:
    """``Sentiment.predict`` for a method, wherever its class was defined."""
    qualname = getattr(func, "__qualname__", repr(func))
    return str(qualname).rsplit("<locals>.", 1)[-1]


def _split(hint: Any) -> tuple[Any, list[Any]]:
    """A hint without ``Annotated`` (and TypedDict's ``Required``), and its metadata."""
    meta: list[Any] = []
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint, *extra = typing.get_args(hint)
            meta += extra
        elif origin in (typing.Required, typing.NotRequired):
            (hint,) = typing.get_args(hint)
        else:
            return hint, meta


def declared_default(hint: Any, default: Any) -> Any:
    """A parameter's default as declared: ``Input(default=...)`` (as its default, or inside
    ``Annotated[...]``) or a plain default; ``...`` when it has none (it is required)."""
    info = default if isinstance(default, InputInfo) else None
    _, meta = _split(hint)
    info = next((m for m in meta if isinstance(m, InputInfo)), info)
    value = info.default if info is not None else _MISSING
    if value is _MISSING:  # ``x: Annotated[int, Input(ge=1)] = 3``: the parameter's default
        value = default.default if isinstance(default, InputInfo) else default
    if value is inspect.Parameter.empty:
        value = _MISSING
    return value


def _param_field(where: str, hint: Any, default: Any, out: list[Problem]) -> FieldSpec | None:
    info = default if isinstance(default, InputInfo) else None
    _, meta = _split(hint)
    info = next((m for m in meta if isinstance(m, InputInfo)), info)
    value = declared_default(hint, default)
    f = _hint_field(where, hint, out, frozenset())
    if f is None:
        return None
    if info is not None:
        if info.choices is not None:
            if f.type not in ("string", "integer", "float"):
                out.append((where, "choices only apply to str, int or float"))
                return None
            f.type, f.choices = "selection", info.choices
        if info.description:
            f.description = info.description
        for key in ("ge", "le", "min_length", "max_length", "pattern"):
            if getattr(info, key) is not None:
                setattr(f, key, getattr(info, key))
        if info.example is not None:
            f.example = _json_default(where, info.example, out)
        _apply_media(f, info.media)
    f.required = value is _MISSING
    f.default = None if value is _MISSING else _json_default(where, value, out)
    for key in ("default", "example"):
        value = getattr(f, key)
        if isinstance(value, int) and f.type == "float" and not isinstance(value, bool):
            setattr(f, key, float(value))
    return f


def _json_default(where: str, value: Any, out: list[Problem]) -> Any:
    """A Python default (a pydantic model, a dataclass, an enum, a tuple) as JSON."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return pydantic_core.to_jsonable_python(value, by_alias=True)
    except pydantic_core.PydanticSerializationError:
        out.append((where, f"default {value!r} cannot be written as JSON"))
        return None


_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    bytes: "bytes",
}
_LISTS = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_DICTS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_STREAMS = (
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
)


def _hint_field(
    where: str, hint: Any, out: list[Problem], seen: frozenset[type]
) -> FieldSpec | None:
    """The field a type hint describes (constraints from ``Annotated`` included), or None
    after adding to ``out`` why it cannot be one."""
    base, meta = _split(hint)
    f = _base_field(where, base, out, seen)
    if f is not None:
        _constrain(where, f, meta, out)
    return f


def _base_field(
    where: str, hint: Any, out: list[Problem], seen: frozenset[type]
) -> FieldSpec | None:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint in _SCALARS:
        return FieldSpec(type=_SCALARS[hint])  # type: ignore[arg-type]
    media = _media_type(hint)
    if media is not None:
        return FieldSpec(type=media)  # type: ignore[arg-type]
    if hint is Any or hint is object or hint is pydantic.JsonValue:
        return FieldSpec(type="json")
    if origin is Literal:
        choices = [a for a in args if a is not None]
        return FieldSpec(type="selection", choices=choices, nullable=len(choices) < len(args))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return FieldSpec(type="selection", choices=[m.value for m in hint])
    if origin in (typing.Union, types.UnionType):
        return _union_field(where, args, out, seen)
    if hint in _LISTS or origin in _LISTS:
        item = args[0] if args else Any
        items = _hint_field(where + ".items", item, out, seen)
        return None if items is None else FieldSpec(type="list", items=items)
    if hint in _DICTS or origin in _DICTS:
        key, value = args if len(args) == 2 else (str, Any)
        if key not in (str, Any):
            out.append((where, f"the keys of a dict must be str, not {key!r}"))
            return None
        values = _hint_field(where + ".values", value, out, seen)
        if values is None:
            return None
        return FieldSpec(type="object", values=None if values == _JSON else values)
    if isinstance(hint, type):
        if hint in seen:
            out.append(
                (where, f"{hint.__name__} contains itself; recursive types are not supported")
            )
            return None
        if typing.is_typeddict(hint):
            return _typeddict_field(where, hint, out, seen | {hint})
        if issubclass(hint, pydantic.BaseModel):
            return _fields_of(where, list(hint.model_fields.items()), out, seen | {hint})
        if dataclasses.is_dataclass(hint):
            return _dataclass_field(where, hint, out, seen | {hint})
    out.append((where, f"unsupported type {_name(hint)} (use {_SUPPORTED})"))
    return None


def _media_type(hint: Any) -> str | None:
    """``image`` for ``PIL.Image.Image`` (``modelport.Image``), ``audio`` for
    ``modelport.Audio``; found by name, so Pillow is not imported for specs without them."""
    if not isinstance(hint, type):
        return None
    declared = hint.__dict__.get("__modelport_media__")
    if isinstance(declared, str):
        return declared
    if hint.__module__ == "PIL.Image" and hint.__name__ == "Image":
        return "image"
    return None


def _apply_media(f: FieldSpec, options: dict[str, Any]) -> None:
    """Media options go to the field, or to each item of a list of media."""
    target = f.items if f.type == "list" and f.items is not None else f
    for key, value in options.items():
        setattr(target, key, value)


def _name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else repr(hint)


def _union_field(
    where: str, args: tuple[Any, ...], out: list[Problem], seen: frozenset[type]
) -> FieldSpec | None:
    members = [a for a in args if a is not type(None)]
    nullable = len(members) < len(args)
    parsed = [_hint_field(where, a, out, seen) for a in members]
    if any(p is None for p in parsed):
        return None
    variants: list[FieldSpec] = []
    for p in typing.cast(list[FieldSpec], parsed):
        nullable = nullable or p.nullable
        p.nullable = False
        variants += p.variants if p.type == "union" and p.variants else [p]
    if any(v == _JSON for v in variants):
        return FieldSpec(type="json")
    if len(variants) == 1:
        variants[0].nullable = nullable
        return variants[0]
    return FieldSpec(type="union", variants=variants, nullable=nullable)


def _fields_of(
    where: str,
    items: list[tuple[str, FieldInfo]],
    out: list[Problem],
    seen: frozenset[type],
) -> FieldSpec | None:
    """An object field from a pydantic model's (or pydantic dataclass's) fields."""
    properties: dict[str, FieldSpec] = {}
    failed = False
    for name, info in items:
        key = info.alias or name
        at = f"{where}.{key}"
        sub = _hint_field(at, info.annotation, out, seen)
        if sub is None:
            failed = True
            continue
        _constrain(at, sub, info.metadata, out)
        sub.description = info.description or sub.description
        sub.required = info.is_required()
        if not sub.required:
            value = info.get_default(call_default_factory=True, validated_data={})
            sub.default = _json_default(at, value, out)
        properties[key] = sub
    return None if failed else FieldSpec(type="object", properties=properties)


def _dataclass_field(
    where: str, cls: type, out: list[Problem], seen: frozenset[type]
) -> FieldSpec | None:
    pydantic_fields = getattr(cls, "__pydantic_fields__", None)
    if pydantic_fields is not None:  # a pydantic dataclass: its fields carry the constraints
        return _fields_of(where, list(pydantic_fields.items()), out, seen)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as e:
        out.append((where, f"cannot read the type hints of {cls.__name__}: {e}"))
        return None
    properties: dict[str, FieldSpec] = {}
    failed = False
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        at = f"{where}.{f.name}"
        sub = _hint_field(at, hints[f.name], out, seen)
        if sub is None:
            failed = True
            continue
        if f.default is not dataclasses.MISSING:
            sub.default = _json_default(at, f.default, out)
        elif f.default_factory is not dataclasses.MISSING:
            sub.default = _json_default(at, f.default_factory(), out)
        else:
            sub.required = True
        properties[f.name] = sub
    return None if failed else FieldSpec(type="object", properties=properties)


def _typeddict_field(
    where: str, cls: type, out: list[Problem], seen: frozenset[type]
) -> FieldSpec | None:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as e:
        out.append((where, f"cannot read the type hints of {cls.__name__}: {e}"))
        return None
    required: frozenset[str] = getattr(cls, "__required_keys__", frozenset())
    properties: dict[str, FieldSpec] = {}
    failed = False
    for key, hint in hints.items():
        sub = _hint_field(f"{where}.{key}", hint, out, seen)
        if sub is None:
            failed = True
            continue
        sub.required = key in required
        properties[key] = sub
    return None if failed else FieldSpec(type="object", properties=properties)


_IGNORED_METADATA = ("pydantic.functional_validators", "pydantic.functional_serializers")


def _constrain(where: str, f: FieldSpec, meta: Iterable[Any], out: list[Problem]) -> None:
    """Apply pydantic / annotated-types constraints (``Field(ge=1)``, ``Ge(1)``) to a field."""
    for m in meta:
        if isinstance(m, InputInfo):
            continue
        if isinstance(m, MediaInfo):
            _apply_media(f, m.options)
            continue
        if isinstance(m, FieldInfo):
            f.description = m.description or f.description
            _constrain(where, f, m.metadata, out)
        elif isinstance(m, annotated_types.Ge):
            f.ge = typing.cast(float, m.ge)
        elif isinstance(m, annotated_types.Le):
            f.le = typing.cast(float, m.le)
        elif isinstance(m, annotated_types.MinLen):
            f.min_length = m.min_length
        elif isinstance(m, annotated_types.MaxLen):
            f.max_length = m.max_length
        elif isinstance(m, annotated_types.Gt | annotated_types.Lt):
            out.append((where, "gt/lt are not supported; use ge/le"))
        elif isinstance(m, pydantic.StringConstraints):
            f.min_length = m.min_length if m.min_length is not None else f.min_length
            f.max_length = m.max_length if m.max_length is not None else f.max_length
            f.pattern = str(m.pattern) if m.pattern is not None else f.pattern
            if m.strip_whitespace or m.to_upper or m.to_lower:
                out.append((where, "strip_whitespace/to_upper/to_lower are not supported"))
        elif type(m).__name__ == "_PydanticGeneralMetadata":
            extra = set(vars(m)) - {"pattern", "strict", "allow_inf_nan"}
            if getattr(m, "pattern", None) is not None:
                f.pattern = str(m.pattern)
            if extra:
                out.append((where, f"unsupported constraint: {', '.join(sorted(extra))}"))
        elif isinstance(m, pydantic.Strict) or type(m).__module__ in _IGNORED_METADATA:
            continue  # strict is how every field is validated; validators run on the worker
        elif type(m).__module__.split(".")[0] in ("annotated_types", "pydantic"):
            out.append((where, f"unsupported constraint: {m!r}"))


def _output_from_hint(hint: Any, out: list[Problem]) -> FieldSpec | None:
    """The output type a return annotation declares; None when it says nothing (``Any``).

    A generator's output is its chunks joined (text) or listed, so ``Iterator[str]``
    declares a string and ``Iterator[T]`` a list of T.
    """
    if hint is None or hint is type(None) or hint is Any:
        return None
    base, _ = _split(hint)
    if base in _STREAMS or typing.get_origin(base) in _STREAMS:
        args = typing.get_args(base)
        if not args or args[0] is Any:
            return None
        chunk = _hint_field("output", args[0], out, frozenset())
        if chunk is None or chunk == _JSON:
            return None
        return chunk if chunk.type == "string" else FieldSpec(type="list", items=chunk)
    f = _hint_field("output", hint, out, frozenset())
    return None if f is None or f == _JSON else f


def python_types(func: Any) -> dict[str, Any]:
    """The parameters of ``predict`` whose declared type is built from JSON by pydantic
    (a pydantic model, a dataclass, an enum, possibly inside a list, dict or union),
    each with its type hint."""
    func = inspect.unwrap(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:
        return {}
    return {
        name: _split(hint)[0]
        for name, hint in hints.items()
        if name != "return" and _has_classes(hint)
    }


def _has_classes(hint: Any) -> bool:
    base, _ = _split(hint)
    if _media_type(base) is not None:  # the media module builds these, not pydantic
        return False
    if isinstance(base, type):
        if typing.is_typeddict(base):
            return any(_has_classes(h) for h in typing.get_type_hints(base).values())
        return issubclass(base, enum.Enum | pydantic.BaseModel) or dataclasses.is_dataclass(base)
    return any(_has_classes(a) for a in typing.get_args(base))


def config_disagreements(func: Any, spec: EndpointSpec) -> list[Problem]:
    """Where ``predict``'s signature contradicts a TOML config's inputs: a parameter the
    config does not declare, an input ``predict`` cannot take, another type, other bounds."""
    func = inspect.unwrap(func)
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception:
        hints = {}
    params = [p for n, p in inspect.signature(func).parameters.items() if n != "self"]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    named = {p.name: p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    out: list[Problem] = []
    for key in spec.inputs:
        if key not in named and not takes_any:
            out.append((f"inputs.{key}", f"the config declares it but predict() has no {key!r}"))
    for key, param in named.items():
        at = f"inputs.{key}"
        declared = spec.inputs.get(key)
        hint = hints.get(key)
        default = param.default
        if declared is None:
            if declared_default(hint, default) is _MISSING:
                out.append((at, "predict() requires it but the config does not declare it"))
            continue
        if hint is None:
            continue
        ignored: list[Problem] = []
        ours = _param_field(at, hint, default, ignored)
        if ours is None or ignored:
            continue
        if not _accepts(ours, declared):
            out.append(
                (
                    at,
                    f"predict() takes {_describe_type(ours)} but the config says"
                    f" {_describe_type(declared)}",
                )
            )
            continue
        info = default if isinstance(default, InputInfo) else None
        info = next((m for m in _split(hint)[1] if isinstance(m, InputInfo)), info)
        if not ours.required and ours.default != declared.default:
            out.append(
                (
                    at,
                    f"predict() gives the default {ours.default!r} but the config gives"
                    f" {declared.default!r}",
                )
            )
        if info is not None:
            for rule in ("ge", "le", "min_length", "max_length", "pattern", "choices"):
                mine = getattr(info, rule)
                if mine is not None and mine != getattr(declared, rule):
                    out.append(
                        (
                            at,
                            f"Input({rule}={mine!r}) but the config gives"
                            f" {getattr(declared, rule)!r}",
                        )
                    )
    return out


def _describe_type(f: FieldSpec) -> str:
    if f.type == "list" and f.items is not None:
        return f"a list of {_describe_type(f.items)}"
    if f.type == "union":
        return " or ".join(_describe_type(v) for v in f.variants or ())
    return _describe(f)


def _accepts(ours: FieldSpec, theirs: FieldSpec) -> bool:
    """Whether a parameter declared as ``ours`` can take every value ``theirs`` allows."""
    if ours.type == "json":
        return True
    if theirs.type == "union":
        return all(_accepts(ours, v) for v in theirs.variants or ())
    if ours.type == "union":
        return any(_accepts(v, theirs) for v in ours.variants or ())
    if theirs.type == "selection":
        if ours.type == "selection":
            return set(theirs.choices or ()) <= set(ours.choices or ())
        kinds = {"string": str, "integer": int, "float": int | float}
        kind = kinds.get(ours.type)
        return kind is not None and all(
            isinstance(c, kind) and not isinstance(c, bool) for c in theirs.choices or ()
        )
    if ours.type == "float" and theirs.type == "integer":
        return True
    if ours.type != theirs.type:
        return False
    if ours.type == "list":
        return ours.items is None or theirs.items is None or _accepts(ours.items, theirs.items)
    if ours.type == "object":
        if ours.properties is None:
            if ours.values is None:
                return True
            subs = list((theirs.properties or {}).values())
            subs += [theirs.values] if theirs.values is not None else []
            return bool(subs) and all(_accepts(ours.values, s) for s in subs)
        if theirs.properties is None or set(theirs.properties) - set(ours.properties):
            return False
        return all(_accepts(ours.properties[k], v) for k, v in theirs.properties.items())
    return True


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
