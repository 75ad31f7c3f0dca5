"""An endpoint's input JSON Schema as an HTML form: one labelled control per input, its
description and bounds shown, its default filled in. Each field says how its value is read
(``data-kind``), so the page's module turns the form back into the job's input."""

from __future__ import annotations

from typing import Any

import orjson

from modelport.server.pages import e

_MEDIA = ("image", "audio", "video")


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A property's schema with a local ``$ref`` followed and an ``anyOf [X, null]`` reduced
    to X; and whether null is allowed."""
    nullable = False
    options = schema.get("anyOf")
    if isinstance(options, list):
        kept = [o for o in options if o.get("type") != "null"]
        nullable = len(kept) < len(options)
        if len(kept) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema, nullable


def kind_of(schema: dict[str, Any]) -> str:
    """How the field is edited: media, enum, boolean, integer, number, string, list, json."""
    media = schema.get("contentMediaType")
    if isinstance(media, str):
        return "media"
    if "enum" in schema:
        return "enum"
    kind = schema.get("type")
    if kind in ("boolean", "integer", "number", "string"):
        return str(kind)
    if kind == "array" and schema.get("items", {}).get("type") in ("string", "integer", "number"):
        return "list"
    return "json"


def _initial(schema: dict[str, Any], example: Any) -> Any:
    if "default" in schema:
        return schema["default"]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    return example


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def field_html(
    name: str, schema: dict[str, Any], required: bool, nullable: bool, example: Any = None
) -> str:
    """One input's label, control, description and error slot; filled with the input's
    default, else its example, else ``example`` (one the docs would show)."""
    kind = kind_of(schema)
    ident = f"in-{name}"
    title = schema.get("title") or name
    description = schema.get("description") or ""
    value = None if kind == "media" else _initial(schema, example)
    hints = [description] if description else []
    attrs = f'id="{e(ident)}" name="{e(name)}" aria-describedby="hint-{e(name)} err-{e(name)}"'
    if required:
        attrs += ' required aria-required="true"'
    low, high = schema.get("minimum"), schema.get("maximum")
    if kind == "media":
        media = str(schema["contentMediaType"])
        accept = media if media.split("/")[0] in _MEDIA else ""
        hints.append(f"a file ({media})")
        control = (
            f'<input type="file" {attrs}{f" accept={e(accept)!r}" if accept else ""}>'
            f'<div class="preview" id="preview-{e(name)}"></div>'
        )
    elif kind == "enum":
        options = "".join(
            f'<option value="{e(orjson.dumps(choice).decode())}"'
            f"{' selected' if choice == value else ''}>{e(_text(choice))}</option>"
            for choice in schema["enum"]
        )
        if nullable or (not required and "default" not in schema):
            options = '<option value="">(none)</option>' + options
        control = f"<select {attrs}>{options}</select>"
    elif kind == "boolean":
        checked = " checked" if value is True else ""
        return f"""<div class="field" data-field="{e(name)}" data-kind="boolean">
<label><input type="checkbox" {attrs}{checked}> {e(title)}</label>
<span class="hint" id="hint-{e(name)}">{e(description)}</span>
<span class="error" id="err-{e(name)}"></span>
</div>"""
    elif kind in ("integer", "number"):
        step = "1" if kind == "integer" else "any"
        bounds = ""
        for attr, bound in (("min", low), ("max", high)):
            if bound is not None:
                bounds += f' {attr}="{e(_number(bound))}"'
        for word, key in (("more than", "exclusiveMinimum"), ("less than", "exclusiveMaximum")):
            if key in schema:
                hints.append(f"{word} {_number(schema[key])}")
        if low is not None and high is not None:
            hints.append(f"from {_number(low)} to {_number(high)}")
            start = value if value is not None else low
            slider_step = "1" if kind == "integer" else _slider_step(low, high)
            control = f"""<div class="range">
<input type="range" id="range-{e(name)}" data-for="{e(ident)}" min="{e(_number(low))}"
 max="{e(_number(high))}" step="{slider_step}" value="{e(_number(start))}"
 aria-label="{e(title)} (slider)">
<input type="number" {attrs} step="{step}"{bounds} value="{e(_number(start))}">
</div>"""
        else:
            if low is not None:
                hints.append(f"at least {_number(low)}")
            if high is not None:
                hints.append(f"at most {_number(high)}")
            control = (
                f'<input type="number" {attrs} step="{step}"{bounds} value="{e(_number(value))}">'
            )
    elif kind == "string":
        limits = ""
        if "maxLength" in schema:
            limits += f' maxlength="{int(schema["maxLength"])}"'
        rows = 2 if schema.get("maxLength", 10_000) <= 200 else 4
        control = (
            f'<textarea class="text" rows="{rows}" {attrs}{limits}>{e(_text(value))}</textarea>'
        )
    elif kind == "list":
        item = schema["items"]["type"]
        hints.append(f"one {item} per line")
        lines = "\n".join(_text(v) for v in value) if isinstance(value, list) else ""
        control = f'<textarea rows="4" data-items="{e(item)}" {attrs}>{e(lines)}</textarea>'
    else:
        hints.append("JSON")
        text = "" if value is None else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        control = f'<textarea rows="6" spellcheck="false" {attrs}>{e(text)}</textarea>'
    marked = ' class="required"' if required else ""
    extra = ' data-nullable="true"' if nullable else ""
    if kind == "media":
        extra += f' data-media="{e(str(schema["contentMediaType"]))}"'
    return f"""<div class="field" data-field="{e(name)}" data-kind="{kind}"{extra}>
<label for="{e(ident)}"{marked}>{e(title)}</label>
{control}
<span class="hint" id="hint-{e(name)}">{e(" · ".join(hints))}</span>
<span class="error" id="err-{e(name)}"></span>
</div>"""


def _slider_step(low: float, high: float) -> str:
    span = float(high) - float(low)
    return _number(10 ** (len(str(int(span))) - 3)) if span >= 1 else "any"


def form_html(schema: dict[str, Any], example: dict[str, Any] | None = None) -> str:
    """Every input of an endpoint, in the order the spec lists them, filled so that the
    form can run as it is (``example``: a valid input, from :func:`input_example`)."""
    required = set(schema.get("required", []))
    fields = []
    for name, prop in schema.get("properties", {}).items():
        resolved, nullable = resolve(prop, schema)
        value = (example or {}).get(name)
        fields.append(field_html(name, resolved, name in required, nullable, value))
    return "\n".join(fields)
