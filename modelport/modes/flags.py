"""Command-line flags built from an endpoint spec: one ``--kebab-case`` flag per input, its
help text from the spec (type, bounds, choices, default, description). The values are turned
into JSON types only; checking them is left to the spec's own request model, so a bad value
gets the message the server would answer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from modelport.spec import EndpointSpec, FieldSpec, media_field

INPUTS_TITLE = "inputs"


def flag_of(name: str, taken: Iterable[str] = ()) -> str:
    """``--sepal-length`` for ``sepal_length``; ``--input-json`` when ``--json`` is taken."""
    flag = "--" + name.replace("_", "-")
    return "--input-" + name.replace("_", "-") if flag in set(taken) else flag


def add_input_flags(parser: argparse.ArgumentParser, spec: EndpointSpec) -> dict[str, str]:
    """Add a flag per input to ``parser`` (in an "inputs" group); returns flag -> input name.
    A flag left out is left out of the input, so the spec's default applies."""
    taken = set(parser._option_string_actions)
    group = parser.add_argument_group(INPUTS_TITLE, spec.description or None)
    flags: dict[str, str] = {}
    for name, f in spec.inputs.items():
        flag = flag_of(name, taken)
        flags[flag] = name
        options: dict[str, Any] = {
            "dest": _dest(name),
            "default": argparse.SUPPRESS,
            "help": help_text(f),
        }
        media = media_field(f)
        if f.type == "boolean":
            options["action"] = argparse.BooleanOptionalAction
        elif media is not None:
            options["type"] = read_media
            options["metavar"] = "FILE"
            if f.type == "list":
                options["nargs"] = "+"
        else:
            options["type"] = converter(f)
            options["metavar"] = _metavar(f)
        group.add_argument(flag, **options)
    return flags


def _dest(name: str) -> str:
    return "input:" + name


def inputs_of(args: argparse.Namespace, spec: EndpointSpec) -> dict[str, Any]:
    """The inputs given as flags."""
    values = vars(args)
    return {name: values[_dest(name)] for name in spec.inputs if _dest(name) in values}


def help_text(f: FieldSpec) -> str:
    parts = [f.description.rstrip(".")] if f.description else []
    parts.append(describe_type(f))
    if f.required:
        parts.append("required")
    elif f.default is not None:
        parts.append(f"default: {json.dumps(f.default)}")
    # argparse formats help with %; a literal percent sign must be doubled.
    return "; ".join(parts).replace("%", "%%")


def describe_type(f: FieldSpec) -> str:
    """``float, 0 <= x <= 10``, ``one of 'a', 'b'``, ``JSON list of string, at most 4``."""
    media = media_field(f)
    if media is not None:
        text = _media_kind(media) + (" files" if f.type == "list" else " file")
        text += ": a path, - for stdin, or a data URL"
    elif f.type == "selection":
        text = "one of " + ", ".join(json.dumps(c) for c in f.choices or ())
    elif f.type in ("list", "object", "union", "json"):
        text = "JSON " + _json_kind(f)
    else:
        text = f.type
    if f.choices and f.type != "selection":
        text += ", one of " + ", ".join(json.dumps(c) for c in f.choices)
    if f.ge is not None and f.le is not None:
        text += f", {_num(f.ge)} <= x <= {_num(f.le)}"
    elif f.ge is not None:
        text += f", >= {_num(f.ge)}"
    elif f.le is not None:
        text += f", <= {_num(f.le)}"
    unit = "characters" if f.type == "string" else "items"
    if f.min_length is not None and f.max_length is not None:
        text += f", {f.min_length} to {f.max_length} {unit}"
    elif f.min_length is not None:
        text += f", at least {f.min_length} {unit}"
    elif f.max_length is not None:
        text += f", at most {f.max_length} {unit}"
    if f.pattern is not None:
        text += f", matching {f.pattern}"
    if f.nullable:
        text += ", or null"
    return text


def _media_kind(f: FieldSpec) -> str:
    kind = "" if f.type == "bytes" else f.type
    return f"{'/'.join(f.format)} {kind}".strip() if f.format else kind or "any"


def _json_kind(f: FieldSpec) -> str:
    if f.type == "list":
        return "list" + (f" of {_json_kind(f.items) if f.items else 'any'}")
    if f.type == "object" and f.properties is not None:
        return "object {" + ", ".join(f.properties) + "}"
    if f.type == "object":
        return "object"
    if f.type == "union":
        return " or ".join(_json_kind(v) for v in f.variants or ())
    return "value" if f.type == "json" else f.type


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _metavar(f: FieldSpec) -> str:
    if f.type == "selection":
        return "{" + ",".join(str(c) for c in f.choices or ()) + "}"
    return {"integer": "INT", "float": "NUMBER", "string": "TEXT"}.get(f.type, "JSON")


def read_media(text: str) -> bytes | str:
    """A media flag's value: a file's path (its bytes), ``-`` (all of stdin), or a data URL
    or http(s) URL passed on as it is; converting it is left to the spec, as on a server."""
    if text.startswith(("data:", "http://", "https://")):
        return text
    if text == "-":
        data = sys.stdin.buffer.read()
        if not data:
            raise argparse.ArgumentTypeError("stdin is empty (and it can be read only once)")
        return data
    try:
        with open(text, "rb") as file:
            return file.read()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {e.strerror}") from None


read_media.__name__ = "file"


def converter(f: FieldSpec) -> Callable[[str], Any]:
    """Text to the JSON value it stands for; text that is not one is passed on as it is, for
    the spec's validation to refuse with its own message."""

    def convert(text: str) -> Any:
        if f.nullable and text == "null":
            return None
        if f.type == "string":
            return text
        if f.type in ("integer", "float"):
            try:
                value = json.loads(text)
            except ValueError:
                return text
            return value if isinstance(value, int | float) and not isinstance(value, bool) else text
        if f.type == "selection":
            for choice in f.choices or ():
                if str(choice) == text or json.dumps(choice) == text:
                    return choice
            return text
        try:
            return json.loads(text)
        except ValueError as e:
            if f.type in ("json", "union"):
                return text  # a bare word is a string
            raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None

    convert.__name__ = f.type  # argparse names the type in its "invalid ... value" message
    return convert
