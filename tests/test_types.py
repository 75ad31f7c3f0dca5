"""The types model authors write every day: optional and union inputs, pydantic models,
dataclasses, TypedDicts and enums in and out, output schemas from return annotations,
typed chat messages, and a TOML config that contradicts its predict signature."""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Optional, TypedDict

import httpx
import pydantic
import pytest

import modelport
import modelport.testing
from modelport import EndpointSpec, FieldSpec, Input, SpecError, spec_from_toml
from modelport.spec import spec_from_dict


class Point(pydantic.BaseModel):
    x: float = pydantic.Field(ge=0, description="Across")
    y: float = 0.0


@dataclasses.dataclass
class Box:
    width: int
    height: int = 1


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Tag(TypedDict):
    name: str
    weight: float


class Area(pydantic.BaseModel):
    area: float
    color: str
    kinds: list[str]


@dataclasses.dataclass
class Size:
    width: int
    height: int


class Geometry(modelport.Model):
    """Every structured input type, each checked to arrive as the declared Python type."""

    def predict(
        self,
        point: Point,
        box: Box | None = None,
        color: Color = Color.RED,
        limit: int | None = None,
        label: Optional[str] = None,  # noqa: UP045 (the spelling users still write)
        value: int | str = 0,
        points: list[Point] = Input(default=[], max_length=3),
        tags: list[Tag] = Input(default=[]),
    ) -> Area:
        kinds = [type(point).__name__, type(box).__name__, type(color).__name__]
        kinds += [type(p).__name__ for p in points] + [type(t).__name__ for t in tags]
        width = box.width if box is not None else 1
        return Area(area=point.x * width, color=color.value, kinds=kinds)


class Measure(modelport.Model):
    def predict(self, size: Size) -> Size:
        return Size(width=size.width * 2, height=size.height * 2)


class Scores(modelport.Model):
    """Declares dict[str, float]: the output is checked on the way out."""

    def predict(self, honest: bool = True) -> dict[str, float]:
        if honest:
            return {"good": 0.75, "bad": 0.25}
        return {"good": "very"}  # type: ignore[dict-item]


class Words(modelport.Model):
    def predict(self, n: int = 2) -> Iterator[str]:
        for i in range(n):
            yield f"w{i} "


class Chat(modelport.Model):
    kind = "chat"

    def predict(self, messages: list[dict[str, Any]]) -> str:
        return " | ".join(f"{m['role']}: {m['content']}" for m in messages)


MODELS: list[type[modelport.Model]] = [Geometry, Measure, Scores, Words, Chat]


@pytest.fixture
async def api() -> Any:
    async with (
        modelport.testing.aserve(*MODELS) as client,
        httpx.AsyncClient(base_url=client.base_url, timeout=30) as http,
    ):
        yield http


async def submit(http: httpx.AsyncClient, endpoint: str, **inputs: Any) -> httpx.Response:
    return await http.post(f"/endpoints/{endpoint}/jobs", json={"input": inputs})


def fields_of(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {e["field"]: e["message"] for e in r.json()["errors"]}


# inputs


async def test_structured_inputs_arrive_as_their_declared_types(api: httpx.AsyncClient) -> None:
    r = await submit(
        api,
        "geometry",
        point={"x": 2},
        box={"width": 3},
        color="blue",
        points=[{"x": 1, "y": 1}],
        tags=[{"name": "a", "weight": 0.5}],
    )
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "succeeded", job["error"]
    assert job["output"] == {
        "area": 6.0,
        "color": "blue",
        "kinds": ["Point", "Box", "Color", "Point", "dict"],
    }
    assert job["input"]["point"] == {"x": 2.0, "y": 0.0}  # the model's defaults filled in
    assert job["input"]["box"] == {"width": 3, "height": 1}


async def test_optional_and_union_inputs(api: httpx.AsyncClient) -> None:
    for extra in ({"limit": None}, {"limit": 5}, {"label": None}, {"value": "x"}, {"value": 7}):
        r = await submit(api, "geometry", point={"x": 1}, **extra)
        assert r.json()["status"] == "succeeded", (extra, r.text)
    assert fields_of(await submit(api, "geometry", point={"x": 1}, limit="5")) == {
        "limit": "Input should be a valid integer"
    }
    for wrong in (1.5, True, None, [1]):
        problems = fields_of(await submit(api, "geometry", point={"x": 1}, value=wrong))
        assert problems == {"value": "Input should be an integer or a string"}, wrong


async def test_nested_fields_are_validated_before_queueing(api: httpx.AsyncClient) -> None:
    problems = fields_of(
        await submit(
            api,
            "geometry",
            point={"x": -1, "z": 0},
            box={"height": 2},
            color="green",
            points=[{"x": 1}, {"x": "far"}],
            tags=[{"name": "a"}],
        )
    )
    assert set(problems) == {
        "point.x",
        "point.z",
        "box.width",
        "color",
        "points.1.x",
        "tags.0.weight",
    }
    assert "greater than or equal to 0" in problems["point.x"]
    assert problems["point.z"] == "unknown field 'point.z'"
    assert fields_of(await submit(api, "geometry")) == {"point": "Field required"}


async def test_schema_shows_the_nested_types(api: httpx.AsyncClient) -> None:
    body = (await api.get("/endpoints/geometry")).json()
    schema = body["input_schema"]
    point = schema["$defs"][schema["properties"]["point"]["$ref"].rsplit("/", 1)[1]]
    assert point["properties"]["x"] == {
        "description": "Across",
        "minimum": 0,
        "title": "X",
        "type": "number",
    }
    assert point["required"] == ["x"] and point["additionalProperties"] is False
    assert schema["properties"]["color"]["enum"] == ["red", "blue"]
    assert body["spec"]["inputs"]["value"] == {
        "type": "union",
        "default": 0,
        "variants": [{"type": "integer"}, {"type": "string"}],
    }
    assert body["output_schema"]["required"] == ["area", "color", "kinds"]


# outputs


async def test_pydantic_and_dataclass_outputs_are_serialised(api: httpx.AsyncClient) -> None:
    r = await submit(api, "measure", size={"width": 2, "height": 3})
    assert r.json()["status"] == "succeeded", r.text
    assert r.json()["output"] == {"width": 4, "height": 6}


async def test_output_schema_comes_from_the_return_annotation(api: httpx.AsyncClient) -> None:
    scores = (await api.get("/endpoints/scores")).json()
    assert scores["output_schema"] == {"type": "object", "additionalProperties": {"type": "number"}}
    words = (await api.get("/endpoints/words")).json()
    assert words["output_schema"] == {"type": "string"}
    chat = (await api.get("/endpoints/chat")).json()
    assert chat["output_schema"] == {"type": "string"}


async def test_output_is_checked_against_its_declared_type(api: httpx.AsyncClient) -> None:
    ok = (await submit(api, "scores")).json()
    assert ok["status"] == "succeeded" and ok["output"] == {"good": 0.75, "bad": 0.25}
    wrong = (await submit(api, "scores", honest=False)).json()
    assert wrong["status"] == "failed"
    assert (
        "does not match the endpoint's outputs: good: Input should be a valid number"
        in (wrong["error"])
    )


async def test_a_text_stream_that_writes_nothing_outputs_empty_text(
    api: httpx.AsyncClient,
) -> None:
    assert (await submit(api, "words", n=2)).json()["output"] == "w0 w1 "
    empty = (await submit(api, "words", n=0)).json()
    assert (empty["status"], empty["output"]) == ("succeeded", "")


# chat messages


async def test_chat_messages_are_role_content_objects(api: httpx.AsyncClient) -> None:
    r = await submit(api, "chat", messages=["hello"])
    assert fields_of(r) == {"messages.0": "Input should be an object"}
    problems = fields_of(await submit(api, "chat", messages=[{"role": "user"}, {"text": "x"}]))
    assert set(problems) == {
        "messages.0.content",
        "messages.1.role",
        "messages.1.content",
        ("messages.1.text"),
    }
    good = await submit(api, "chat", messages=[{"role": "user", "content": "hi"}])
    assert good.json()["output"] == "user: hi"
    spec = Chat.spec().inputs["messages"]
    assert spec.items is not None and spec.items.properties is not None
    assert set(spec.items.properties) == {"role", "content"}


def test_the_textgen_example_has_typed_messages() -> None:
    from modelport.loader import load_models

    (textgen,) = load_models(str(Path(__file__).parent.parent / "examples/textgen/model.py"))
    items = textgen.spec().inputs["messages"].items
    assert items is not None and items.properties is not None
    assert items.properties["role"].required and items.properties["content"].required


def test_a_chat_endpoint_refuses_messages_that_cannot_be_messages() -> None:
    class Strings(modelport.Model):
        kind = "chat"

        def predict(self, messages: list[str]) -> str:
            return ""

    with pytest.raises(SpecError, match=r"Strings: inputs\.messages: .* \{role, content\}"):
        Strings.spec()


# the spec stays plain data


def test_structured_specs_round_trip_through_json() -> None:
    for model in MODELS:
        spec = model.spec()
        again = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec
        assert again.input_schema() == spec.input_schema()
        assert again.output_schema() == spec.output_schema()


BODIES: list[dict[str, Any]] = [
    {"point": {"x": 1}},
    {"point": {"x": 1, "y": "2"}},
    {"point": {"x": -1}},
    {"point": {"x": 1}, "box": None},
    {"point": {"x": 1}, "box": {"width": 1.5}},
    {"point": {"x": 1}, "value": False},
    {"point": {"x": 1}, "value": "s", "limit": None, "label": "l"},
    {"point": {"x": 1}, "points": [{"x": 0}] * 4},
    {"point": {"x": 1}, "tags": [{"name": "n", "weight": 1}]},
    {"point": {"x": 1}, "tags": [{"name": "n", "weight": 1, "extra": 0}]},
    {"point": {"x": 1}, "color": "RED"},
]

GEOMETRY_TOML = """
[endpoint]
name = "geometry"
description = "Every structured input type, each checked to arrive as the declared Python type."

[inputs.point]
type = "object"
required = true
properties.x = { type = "float", min = 0, description = "Across", required = true }
properties.y = { type = "float", default = 0.0 }

[inputs.box]
type = "object"
nullable = true
properties.width = { type = "integer", required = true }
properties.height = { type = "integer", default = 1 }

[inputs.color]
type = "selection"
choices = ["red", "blue"]
default = "red"

[inputs.limit]
type = "integer"
nullable = true

[inputs.label]
type = "string"
nullable = true

[inputs.value]
type = "union"
variants = ["integer", "string"]
default = 0

[inputs.points]
type = "list"
max_length = 3
default = []
items.type = "object"
items.properties.x = { type = "float", min = 0, description = "Across", required = true }
items.properties.y = { type = "float", default = 0.0 }

[inputs.tags]
type = "list"
default = []
items.type = "object"
items.properties.name = { type = "string", required = true }
items.properties.weight = { type = "float", required = true }

[outputs]
area = { type = "float", required = true }
color = { type = "string", required = true }
kinds = { type = "list", items = "string", required = true }
"""


def problems(spec: EndpointSpec, inputs: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        spec.request_model.model_validate_json(json.dumps({"input": inputs}))
    except pydantic.ValidationError as e:
        return [(".".join(map(str, err["loc"])), err["type"]) for err in e.errors()]
    return []


def test_toml_declares_the_same_structured_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "geometry.toml"
    path.write_text(GEOMETRY_TOML, encoding="utf-8")
    toml = spec_from_toml(path)
    python = Geometry.spec()
    assert toml.to_dict() == python.to_dict()
    assert toml.input_schema() == python.input_schema()
    assert toml.output_schema() == python.output_schema()
    remote = spec_from_dict(json.loads(json.dumps(python.to_dict())))  # as a worker sends it
    for body in BODIES:
        assert problems(toml, body) == problems(python, body) == problems(remote, body), body


def test_output_type_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "scores.toml"
    path.write_text(
        '[inputs]\nhonest = { type = "boolean", default = true }\n'
        '[output]\ntype = "object"\nvalues = "float"\n',
        encoding="utf-8",
    )
    toml = spec_from_toml(path, name="scores")
    python = Scores.spec()
    assert toml.output == python.output == FieldSpec(type="object", values=FieldSpec(type="float"))
    assert toml.output_schema() == python.output_schema()


class Recursive(pydantic.BaseModel):
    child: Recursive | None = None


class Exclusive(pydantic.BaseModel):
    n: int = pydantic.Field(gt=0)


def test_unsupported_types_are_named() -> None:
    class Odd(modelport.Model):
        def predict(
            self, tree: Recursive, n: Exclusive, when: complex, keys: dict[int, str]
        ) -> None:
            pass

    with pytest.raises(SpecError) as e:
        Odd.spec()
    assert e.value.message.startswith("Odd: 4 problems:")
    fields = {err["field"]: err["message"] for err in e.value.errors}
    assert "recursive types are not supported" in fields["inputs.tree.child"]
    assert "gt/lt are not supported; use ge/le" in fields["inputs.n.n"]
    assert "unsupported type complex" in fields["inputs.when"]
    assert "the keys of a dict must be str" in fields["inputs.keys"]


def test_literal_with_none_and_nullable_lists() -> None:
    class Picky(modelport.Model):
        def predict(
            self, mode: Literal["a", "b"] | None = None, xs: list[int | None] | None = None
        ) -> int:
            return 0

    spec = Picky.spec()
    assert spec.inputs["mode"] == FieldSpec(type="selection", choices=["a", "b"], nullable=True)
    xs = spec.inputs["xs"]
    assert xs.nullable and xs.items == FieldSpec(type="integer", nullable=True)
    assert problems(spec, {"xs": [1, None]}) == []
    assert problems(spec, {"xs": [1, "a"]}) == [("input.xs.1", "int_type")]


# a TOML config beside a typed predict


CONFIG = """
[inputs]
prompt = { type = "string", required = true }
steps = { type = "integer", min = 1, max = 50, default = 20 }
seed = { type = "integer", default = 0 }
"""


def test_a_config_that_contradicts_the_signature_is_refused_at_start(tmp_path: Path) -> None:
    (tmp_path / "painter.toml").write_text(CONFIG, encoding="utf-8")
    module = tmp_path / "painter.py"
    module.write_text(
        "import modelport\n"
        "from modelport import Input\n\n"
        "class Painter(modelport.Model):\n"
        '    config = "painter.toml"\n\n'
        "    def predict(self, prompt: int, steps: int = Input(default=30, le=100),\n"
        "                strength: float = 0.5, style: str = Input()) -> str:\n"
        "        return ''\n",
        encoding="utf-8",
    )
    from modelport.loader import load_models

    (painter,) = load_models(str(module))
    with pytest.raises(SpecError) as e:
        painter.spec()
    assert e.value.message.startswith("Painter: predict() and painter.toml disagree: 5 problems")
    fields = [(err["field"], err["message"]) for err in e.value.errors]
    assert fields == [
        ("inputs.seed", "the config declares it but predict() has no 'seed'"),
        ("inputs.prompt", "predict() takes an integer but the config says a string"),
        ("inputs.steps", "predict() gives the default 30 but the config gives 20"),
        ("inputs.steps", "Input(le=100) but the config gives 50"),
        ("inputs.style", "predict() requires it but the config does not declare it"),
    ]


def test_a_config_with_a_matching_signature_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "painter.toml").write_text(CONFIG, encoding="utf-8")
    module = tmp_path / "agree.py"
    module.write_text(
        "import modelport\n\n"
        "class Painter(modelport.Model):\n"
        '    config = "painter.toml"\n\n'
        "    def predict(self, prompt: str, steps: int = 20, seed: float = 0, **rest: object)"
        " -> str:\n"
        "        return prompt * steps\n",
        encoding="utf-8",
    )
    from modelport.loader import load_models

    (painter,) = load_models(str(module))
    assert set(painter.spec().inputs) == {"prompt", "steps", "seed"}
    assert painter().predict(prompt="a", steps=2) == "aa"
