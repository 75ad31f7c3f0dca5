"""Endpoint specs: Python signatures and TOML files give the same contract and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import pydantic
import pytest

import modelport
from modelport import EndpointSpec, FieldSpec, Input, SpecError, spec_from_toml
from modelport.loader import load_models
from modelport.spec import spec_from_dict


class GenOutput(TypedDict):
    images: list[str]


class Point:
    """A custom class: not a supported input type."""


class Gen(modelport.Model):
    """Draw pictures from a prompt."""

    def predict(
        self,
        prompt: str = Input(description="What to draw", max_length=2000),
        num_samples: int = Input(default=1, ge=1, le=10),
        guidance: float = Input(default=7.5, ge=0, le=20, description="How literal"),
        style: Literal["photo", "anime"] = "photo",
        sampler: str = Input(default="ddim", choices=["ddim", "euler"]),
        code: str = Input(default="abc", min_length=1, max_length=8, pattern=r"^[a-z]+$"),
        tags: list[str] = Input(default=[], max_length=3),
        sizes: list[int] = Input(default=[512], min_length=1, max_length=4),
        options: dict[str, Any] = Input(default={}),
        upscale: bool = False,
    ) -> GenOutput:
        return {"images": []}


GEN_TOML = """
[endpoint]
name = "gen"
description = "Draw pictures from a prompt."

[inputs]
prompt = { type = "string", required = true, max_length = 2000, description = "What to draw" }
num_samples = { type = "integer", min = 1, max = 10, default = 1 }
guidance = { type = "float", min = 0, max = 20, default = 7.5, description = "How literal" }
style = { type = "selection", choices = ["photo", "anime"], default = "photo" }
sampler = { type = "selection", choices = ["ddim", "euler"], default = "ddim" }
code = { type = "string", min_length = 1, max_length = 8, pattern = "^[a-z]+$", default = "abc" }
tags = { type = "list", items = "string", max_length = 3, default = [] }
sizes = { type = "list", items = "integer", min_length = 1, max_length = 4, default = [512] }
options = { type = "object", default = {} }
upscale = { type = "boolean", default = false }

[outputs]
images = { type = "list", items = "string", required = true }
"""

GEN_DEFAULTS = {
    "num_samples": 1,
    "guidance": 7.5,
    "style": "photo",
    "sampler": "ddim",
    "code": "abc",
    "tags": [],
    "sizes": [512],
    "options": {},
    "upscale": False,
}


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def toml_spec(tmp_path: Path) -> EndpointSpec:
    return spec_from_toml(write(tmp_path, GEN_TOML))


def validate(spec: EndpointSpec, body: dict[str, Any]) -> dict[str, Any]:
    parsed = spec.request_model.model_validate_json(json.dumps(body))
    inputs: dict[str, Any] = parsed.input.model_dump()  # type: ignore[attr-defined]
    return inputs


def problems(spec: EndpointSpec, body: dict[str, Any] | str) -> list[tuple[str, str]]:
    """The (field path, error type) pairs a body breaks; empty when it is valid."""
    raw = body if isinstance(body, str) else json.dumps(body)
    try:
        spec.request_model.model_validate_json(raw)
    except pydantic.ValidationError as e:
        return [(".".join(str(p) for p in err["loc"]), err["type"]) for err in e.errors()]
    return []


def test_signature_and_toml_give_equal_specs(toml_spec: EndpointSpec) -> None:
    python_spec = Gen.spec()
    assert python_spec.to_dict() == toml_spec.to_dict()
    assert python_spec == toml_spec
    assert python_spec.inputs["prompt"] == FieldSpec(
        type="string", description="What to draw", required=True, max_length=2000
    )
    assert python_spec.inputs["sizes"].items == FieldSpec(type="integer")
    assert python_spec.outputs == {
        "images": FieldSpec(type="list", items=FieldSpec(type="string"), required=True)
    }


def test_signature_and_toml_give_the_same_json_schema(toml_spec: EndpointSpec) -> None:
    python_spec = Gen.spec()
    schema = python_spec.input_schema()
    assert schema == toml_spec.input_schema()
    assert python_spec.output_schema() == toml_spec.output_schema()
    assert schema["required"] == ["prompt"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["prompt"]["maxLength"] == 2000
    assert props["prompt"]["description"] == "What to draw"
    assert props["num_samples"]["minimum"] == 1
    assert props["num_samples"]["maximum"] == 10
    assert props["num_samples"]["default"] == 1
    assert props["style"]["enum"] == ["photo", "anime"]
    assert props["code"]["pattern"] == "^[a-z]+$"


BODIES: list[dict[str, Any]] = [
    {"input": {"prompt": "a cat"}},
    {"input": {}},
    {"input": {"prompt": "x" * 2000}},
    {"input": {"prompt": "x" * 2001}},
    {"input": {"prompt": "a", "num_samples": 10}},
    {"input": {"prompt": "a", "num_samples": 0}},
    {"input": {"prompt": "a", "num_samples": 11}},
    {"input": {"prompt": "a", "num_samples": "5"}},
    {"input": {"prompt": "a", "guidance": 5}},
    {"input": {"prompt": "a", "guidance": 20.5}},
    {"input": {"prompt": "a", "style": "anime"}},
    {"input": {"prompt": "a", "style": "cartoon"}},
    {"input": {"prompt": "a", "sampler": "euler"}},
    {"input": {"prompt": "a", "sampler": "plms"}},
    {"input": {"prompt": "a", "code": "ABC"}},
    {"input": {"prompt": "a", "code": ""}},
    {"input": {"prompt": "a", "code": "abcdefghi"}},
    {"input": {"prompt": "a", "tags": ["x", "y", "z"]}},
    {"input": {"prompt": "a", "tags": ["x", 1]}},
    {"input": {"prompt": "a", "tags": ["w", "x", "y", "z"]}},
    {"input": {"prompt": "a", "sizes": []}},
    {"input": {"prompt": "a", "sizes": [256, "512"]}},
    {"input": {"prompt": "a", "options": {"a": [1, {"b": None}], "c": "ü"}}},
    {"input": {"prompt": "a", "upscale": True}},
    {"input": {"prompt": "a", "upscale": 1}},
    {"input": {"prompt": "a", "seed": 3}},
    {"input": {"prompt": "a"}, "webhook": "http://x"},
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: json.dumps(b)[:60])
def test_signature_and_toml_validate_the_same(
    toml_spec: EndpointSpec, body: dict[str, Any]
) -> None:
    python_spec = Gen.spec()
    assert problems(python_spec, body) == problems(toml_spec, body)


def test_progress_section_is_read(tmp_path: Path) -> None:
    spec = spec_from_toml(write(tmp_path, GEN_TOML + '\n[progress]\nstep = { type = "integer" }\n'))
    assert spec.progress == {"step": FieldSpec(type="integer")}
    assert spec.progress_schema()["properties"]["step"]["anyOf"][0]["type"] == "integer"


MODULE = """
from typing import Any

import modelport


class Painter(modelport.Model):
    config = "painter.toml"
    max_batch_size = 4

    def predict(self, **inputs: Any) -> Any:
        return inputs
"""

PAINTER_TOML = """
[endpoint]
max_batch_wait = 0.05

[inputs]
prompt = { type = "string", required = true, max_length = 2000 }
num_samples = { type = "integer", min = 1, max = 10, default = 1 }

[outputs]
images = { type = "list", items = "string" }

[progress]
step = { type = "integer" }
"""


def test_model_config_reads_toml_beside_its_module(tmp_path: Path) -> None:
    module_dir = tmp_path / "pkg"
    module_dir.mkdir()
    write(module_dir, MODULE, "painter.py")
    toml = write(module_dir, PAINTER_TOML, "painter.toml")
    (painter,) = load_models(str(module_dir / "painter.py"))
    spec = painter.spec()
    assert spec.name == "painter"
    assert spec.max_batch_size == 4  # the class setting wins
    assert spec.max_batch_wait == 0.05  # the file setting stays
    assert spec.inputs == spec_from_toml(toml, name="painter").inputs
    assert spec.inputs["prompt"] == FieldSpec(type="string", required=True, max_length=2000)
    assert spec.inputs["num_samples"] == FieldSpec(type="integer", ge=1, le=10, default=1)
    assert spec.outputs == {"images": FieldSpec(type="list", items=FieldSpec(type="string"))}
    assert spec.progress == {"step": FieldSpec(type="integer")}


def test_model_config_name_must_agree_with_the_file(tmp_path: Path) -> None:
    write(tmp_path, MODULE.replace("max_batch_size = 4", 'name = "brush"'), "painter2.py")
    write(
        tmp_path, '[endpoint]\nname = "painter"\n' + PAINTER_TOML.split("\n", 3)[3], "painter.toml"
    )
    (painter,) = load_models(str(tmp_path / "painter2.py"))
    with pytest.raises(SpecError, match="'brush' differs"):
        painter.spec()


def test_model_config_missing_file_names_the_path(tmp_path: Path) -> None:
    write(tmp_path, MODULE, "lonely.py")
    (painter,) = load_models(str(tmp_path / "lonely.py"))
    with pytest.raises(SpecError) as e:
        painter.spec()
    assert str(tmp_path / "painter.toml") in e.value.message
    assert "cannot read" in e.value.message


class MyModel(modelport.Model):
    def predict(self, x: int) -> int:
        return x


class Renamed(modelport.Model):
    name = "custom-name"

    def predict(self, x: int) -> int:
        return x


def test_input_inside_annotated_keeps_the_parameter_default() -> None:
    class Steps(modelport.Model):
        def predict(
            self,
            steps: Annotated[int, Input(ge=1, le=100, description="Steps")] = 30,
            seed: Annotated[int, Input(ge=0)] = Input(default=7),
            prompt: Annotated[str, Input(max_length=5)] = Input(),
        ) -> int:
            return steps

    spec = Steps.spec()
    steps, seed, prompt = spec.inputs["steps"], spec.inputs["seed"], spec.inputs["prompt"]
    assert (steps.default, steps.ge, steps.le, steps.required) == (30, 1, 100, False)
    assert steps.description == "Steps"
    assert (seed.default, seed.required) == (7, False)
    assert (prompt.required, prompt.max_length) == (True, 5)
    parsed = spec.request_model.model_validate({"input": {"prompt": "hi"}})
    assert parsed.input.model_dump() == {"steps": 30, "seed": 7, "prompt": "hi"}  # type: ignore[attr-defined]


def test_name_defaults_to_the_lower_case_class_name() -> None:
    assert MyModel.endpoint_name() == "mymodel"
    assert MyModel.spec().name == "mymodel"


def test_name_attribute_overrides_the_class_name() -> None:
    assert Renamed.spec().name == "custom-name"


def test_toml_without_name_takes_the_given_one(tmp_path: Path) -> None:
    path = write(tmp_path, '[inputs]\nx = "integer"\n')
    assert spec_from_toml(path, name="fallback").name == "fallback"
    with pytest.raises(SpecError, match=r"endpoint\.name: required"):
        spec_from_toml(path)


TOML_MISTAKES = [
    ('[inputs]\nx = { type = "str" }\n', "inputs.x", "unknown type 'str'"),
    (
        '[inputs]\nn = { type = "integer", min = 10, max = 1 }\n',
        "inputs.n",
        "min (10) is greater than max (1)",
    ),
    (
        '[inputs]\nn = { type = "integer", min = 1, max = 10, default = 11 }\n',
        "inputs.n",
        "default 11 is invalid",
    ),
    (
        '[inputs]\nf = { type = "float", min = 0, max = 1, default = -0.5 }\n',
        "inputs.f",
        "default -0.5 is invalid",
    ),
    ('[inputs]\nn = { type = "integer", default = "5" }\n', "inputs.n", "default '5' is invalid"),
    ('[inputs]\nn = { type = "integer", default = 2.5 }\n', "inputs.n", "default 2.5 is invalid"),
    ('[inputs]\nb = { type = "boolean", default = 1 }\n', "inputs.b", "default 1 is invalid"),
    (
        '[inputs]\ns = { type = "string", max_length = 2, default = "abc" }\n',
        "inputs.s",
        "default 'abc' is invalid",
    ),
    (
        '[inputs]\ns = { type = "selection", choices = ["a", "b"], default = "c" }\n',
        "inputs.s",
        "default 'c' is invalid",
    ),
    ('[inputs]\nn = { type = "integer", maximum = 3 }\n', "inputs.n.maximum", "unknown key"),
    ('[input]\nn = { type = "integer" }\n', "[input]", "unknown section"),
    ('[endpoint]\nname = "x"\nbatch = 3\n', "endpoint.batch", "unknown key"),
    ('[inputs]\ns = { type = "selection" }\n', "inputs.s", "needs a non-empty 'choices'"),
    (
        '[inputs]\ns = { type = "selection", choices = [] }\n',
        "inputs.s",
        "needs a non-empty 'choices'",
    ),
    (
        '[inputs]\ns = { type = "string", pattern = "([a-z" }\n',
        "inputs.s",
        "not a valid regular expression",
    ),
    ('[inputs]\nl = { type = "list" }\n', "inputs.l", "a list needs 'items'"),
    ('[inputs]\ns = { type = "string", min = 1 }\n', "inputs.s", "min/max only apply"),
    (
        '[inputs]\nx = { type = "string", required = true, default = "a" }\n',
        "inputs.x",
        "a required field cannot have a default",
    ),
    ('[inputs]\nx = { description = "no type" }\n', "inputs.x", "'type' is required"),
    ('[outputs]\nimages = { type = "picture" }\n', "outputs.images", "unknown type 'picture'"),
    ('[progress]\nstep = { type = "integer", min = 2, max = 1 }\n', "progress.step", "min (2)"),
    ("[endpoint]\nmax_batch_size = 0\n", "endpoint.max_batch_size", "from 1 to 1024"),
    ('[endpoint]\nname = "Bad Name"\n', "'Bad Name'", "lower-case"),
    ('[inputs]\nprompt = { type = "string"\n', "line 2", "not valid TOML"),
    ('[inputs]\nprompt = { type = "string" }\nprompt = "integer"\n', "line 3", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "key", "reason"), TOML_MISTAKES, ids=lambda v: str(v)[:40])
def test_toml_mistake_names_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as e:
        spec_from_toml(path, name="gen")
    message = e.value.message
    assert message.startswith(f"{path}: "), message
    assert key in message, message
    assert reason in message, message


MANY_MISTAKES = """
[endpoint]
name = "gen"
max_batch_sise = 4
max_attempts = 0

[inputs]
prompt = { type = "string", max_lenght = 10 }
steps = { type = "int", default = 3 }
strength = { type = "float", min = 1, max = 0 }

[ouputs]
images = "string"
"""


def test_every_toml_mistake_is_reported_at_once_with_suggestions(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    with pytest.raises(SpecError) as e:
        spec_from_toml(path)
    assert e.value.message.startswith(f"{path}: 6 problems:\n  "), e.value.message
    assert {err["field"]: err["message"] for err in e.value.errors} == {
        "[ouputs]": "unknown section (did you mean [outputs]?)",
        "endpoint.max_batch_sise": "unknown key (did you mean 'max_batch_size'?)",
        "inputs.prompt.max_lenght": "unknown key (did you mean 'max_length'?)",
        "inputs.steps": "unknown type 'int' (did you mean 'integer'?)",
        "inputs.strength": "min (1) is greater than max (0)",
        "endpoint.max_attempts": "must be an integer from 1 to 1000, got 0",
    }
    for err in e.value.errors:
        assert f"  {err['field']}: {err['message']}" in e.value.message


def test_python_and_toml_mistakes_name_the_field_alike(tmp_path: Path) -> None:
    class Steps(modelport.Model):
        max_batch_size = 0

        def predict(self, steps: int = Input(default=0, ge=1), extra: object = None) -> int:
            return steps

    toml = write(
        tmp_path,
        '[endpoint]\nname = "steps"\nmax_batch_size = 0\n'
        '[inputs]\nsteps = { type = "integer", min = 1, default = 0 }\n',
    )
    with pytest.raises(SpecError) as python_error:
        Steps.spec()
    with pytest.raises(SpecError) as toml_error:
        spec_from_toml(toml)
    assert python_error.value.errors == toml_error.value.errors
    assert [e["field"] for e in python_error.value.errors] == [
        "endpoint.max_batch_size",
        "inputs.steps",
    ]
    assert python_error.value.message.startswith("Steps: 2 problems:")


def test_missing_toml_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(SpecError) as e:
        spec_from_toml(path)
    assert e.value.message.startswith(f"{path}: cannot read")


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"prompt": "a", "seed": 3}, [("input.seed", "extra_forbidden")]),
        ({}, [("input.prompt", "missing")]),
        ({"prompt": 5}, [("input.prompt", "string_type")]),
        ({"prompt": "a", "num_samples": "5"}, [("input.num_samples", "int_type")]),
        ({"prompt": "a", "num_samples": 2.5}, [("input.num_samples", "int_type")]),
        ({"prompt": "a", "num_samples": True}, [("input.num_samples", "int_type")]),
        ({"prompt": "a", "upscale": 1}, [("input.upscale", "bool_type")]),
        ({"prompt": "a", "upscale": "true"}, [("input.upscale", "bool_type")]),
        ({"prompt": "a", "guidance": "7"}, [("input.guidance", "float_type")]),
        ({"prompt": "a", "num_samples": 0}, [("input.num_samples", "greater_than_equal")]),
        ({"prompt": "a", "num_samples": 11}, [("input.num_samples", "less_than_equal")]),
        ({"prompt": "a", "guidance": -0.1}, [("input.guidance", "greater_than_equal")]),
        ({"prompt": "x" * 2001}, [("input.prompt", "string_too_long")]),
        ({"prompt": "a", "code": ""}, [("input.code", "string_too_short")]),
        ({"prompt": "a", "code": "ab1"}, [("input.code", "string_pattern_mismatch")]),
        ({"prompt": "a", "style": "Photo"}, [("input.style", "literal_error")]),
        ({"prompt": "a", "sampler": 1}, [("input.sampler", "literal_error")]),
        ({"prompt": "a", "tags": "x"}, [("input.tags", "list_type")]),
        ({"prompt": "a", "tags": ["x", 2]}, [("input.tags.1", "string_type")]),
        ({"prompt": "a", "tags": ["a", "b", "c", "d"]}, [("input.tags", "too_long")]),
        ({"prompt": "a", "sizes": []}, [("input.sizes", "too_short")]),
        ({"prompt": "a", "sizes": [1, 2.5]}, [("input.sizes.1", "int_type")]),
        ({"prompt": "a", "sizes": [1, "2"]}, [("input.sizes.1", "int_type")]),
    ],
)
def test_validation_rejects_naming_the_field(
    toml_spec: EndpointSpec, inputs: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert problems(toml_spec, {"input": inputs}) == expected


def test_unknown_top_level_field_is_rejected_by_name(toml_spec: EndpointSpec) -> None:
    body = {"input": {"prompt": "a"}, "webhook": "http://example.com"}
    assert problems(toml_spec, body) == [("webhook", "extra_forbidden")]


def test_defaults_are_filled_in(toml_spec: EndpointSpec) -> None:
    assert validate(toml_spec, {"input": {"prompt": "a cat"}}) == {
        "prompt": "a cat",
        **GEN_DEFAULTS,
    }


def test_defaults_are_not_shared_between_requests(toml_spec: EndpointSpec) -> None:
    first = validate(toml_spec, {"input": {"prompt": "a"}})
    first["sizes"].append(1024)
    first["options"]["x"] = 1
    assert validate(toml_spec, {"input": {"prompt": "b"}})["sizes"] == [512]
    assert validate(toml_spec, {"input": {"prompt": "b"}})["options"] == {}


def test_valid_values_pass_through(toml_spec: EndpointSpec) -> None:
    body = {
        "prompt": "ünïcode 🐱",
        "num_samples": 10,
        "guidance": 20,
        "style": "anime",
        "sampler": "euler",
        "code": "abcdefgh",
        "tags": ["a", "b", "c"],
        "sizes": [1, 2, 3, 4],
        "options": {"nested": [1, 2.5, None, {"deep": True}]},
        "upscale": True,
    }
    out = validate(toml_spec, {"input": body})
    assert out == body
    assert isinstance(out["guidance"], float)  # an int is accepted for a float, as a float


def test_optional_field_without_default_is_none(tmp_path: Path) -> None:
    spec = spec_from_toml(write(tmp_path, '[endpoint]\nname = "o"\n[inputs]\nseed = "integer"\n'))
    assert validate(spec, {"input": {}}) == {"seed": None}
    assert validate(spec, {}) == {"seed": None}
    assert validate(spec, {"input": {"seed": 7}}) == {"seed": 7}


def test_float_refuses_infinity_and_nan(toml_spec: EndpointSpec) -> None:
    for literal in ("Infinity", "NaN"):
        body = '{"input": {"prompt": "a", "guidance": %s}}' % literal  # noqa: UP031
        assert problems(toml_spec, body) == [("input.guidance", "finite_number")]


def test_integer_selection_refuses_a_boolean(tmp_path: Path) -> None:
    spec = spec_from_toml(
        write(
            tmp_path,
            '[endpoint]\nname = "s"\n[inputs]\nn = { type = "selection", choices = [1, 2] }\n',
        )
    )
    assert problems(spec, {"input": {"n": 2}}) == []
    assert problems(spec, {"input": {"n": "1"}}) == [("input.n", "literal_error")]
    assert problems(spec, {"input": {"n": True}}) == [("input.n", "literal_error")]


def test_json_input_refuses_nan(toml_spec: EndpointSpec) -> None:
    """NaN is not JSON: accepting it here means a store writes null, or fails, later."""
    body = '{"input": {"prompt": "a", "options": {"x": NaN}}}'
    assert problems(toml_spec, body) != []


@pytest.mark.parametrize(
    ("ftype", "default"),
    [
        ("boolean", True),
        ("boolean", False),
        ("string", "x"),
        ("string", ""),
        ("integer", 0),
        ("float", 0.0),
    ],
)
def test_to_dict_round_trips_defaults(ftype: str, default: Any) -> None:
    spec = EndpointSpec(name="d", inputs={"v": FieldSpec(type=ftype, default=default)})  # type: ignore[arg-type]
    again = spec_from_dict(spec.to_dict())
    assert again.inputs["v"].default == default
    assert again == spec


def test_to_dict_round_trips_the_whole_spec(toml_spec: EndpointSpec) -> None:
    assert spec_from_dict(json.loads(json.dumps(toml_spec.to_dict()))) == toml_spec


def test_parameter_without_type_hint() -> None:
    class NoHint(modelport.Model):
        def predict(self, prompt, steps: int = 3):
            return prompt

    with pytest.raises(SpecError, match=r"^NoHint: inputs\.prompt: add a type hint"):
        NoHint.spec()


def test_optional_type_is_a_nullable_field() -> None:
    class Seeded(modelport.Model):
        def predict(self, seed: int | None = None, name: str | None = Input()) -> int:
            return 0

    spec = Seeded.spec()
    assert spec.inputs["seed"] == FieldSpec(type="integer", nullable=True)
    assert spec.inputs["name"] == FieldSpec(type="string", nullable=True, required=True)
    assert problems(spec, {"input": {"name": None}}) == []
    assert problems(spec, {"input": {}}) == [("input.name", "missing")]


def test_custom_class_is_refused() -> None:
    class Custom(modelport.Model):
        def predict(self, where: Point) -> int:
            return 0

    with pytest.raises(SpecError, match=r"^Custom: inputs\.where: unsupported type Point"):
        Custom.spec()


def test_python_default_outside_bounds_is_refused() -> None:
    class Bounded(modelport.Model):
        def predict(self, steps: int = Input(default=0, ge=1, le=100)) -> int:
            return steps

    with pytest.raises(SpecError, match=r"inputs\.steps: default 0 is invalid"):
        Bounded.spec()


def test_choices_on_a_boolean_are_refused() -> None:
    class Chooser(modelport.Model):
        def predict(self, on: bool = Input(default=True, choices=[True])) -> int:
            return 0

    with pytest.raises(SpecError, match=r"^Chooser: inputs\.on: choices only apply"):
        Chooser.spec()


def test_model_without_predict_is_refused() -> None:
    class Empty(modelport.Model):
        pass

    with pytest.raises(SpecError, match="define predict"):
        Empty.spec()


class Measured(modelport.Model):
    """Inputs with examples for the docs."""

    def predict(
        self,
        length: float = Input(ge=0, le=10, example=5),
        label: str = Input(default="a", example="setosa"),
        tags: Annotated[list[str], Input(example=["x", "y"])] = [],  # noqa: B006
    ) -> Any:
        return length


def test_input_example_is_kept_round_trips_and_is_in_the_json_schema(tmp_path: Path) -> None:
    spec = Measured.spec()
    assert spec.inputs["length"].example == 5.0  # an int example of a float input is a float
    assert type(spec.inputs["length"].example) is float
    assert spec.inputs["label"].example == "setosa"
    assert spec.to_dict()["inputs"]["tags"]["example"] == ["x", "y"]
    assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    properties = spec.input_schema()["properties"]
    assert properties["length"]["examples"] == [5.0]
    assert properties["label"]["examples"] == ["setosa"]
    assert properties["tags"]["examples"] == [["x", "y"]]
    path = tmp_path / "m.toml"
    path.write_text(
        '[endpoint]\nname = "measured"\ndescription = "Inputs with examples for the docs."\n'
        "[inputs]\n"
        'length = { type = "float", required = true, min = 0, max = 10, example = 5 }\n'
        'label = { type = "string", default = "a", example = "setosa" }\n'
        'tags = { type = "list", items = "string", default = [], example = ["x", "y"] }\n'
    )
    assert spec_from_toml(path).inputs == spec.inputs


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ('{ type = "float", max = 10, example = 50 }', "inputs.x: example 50.0 is invalid"),
        ('{ type = "integer", example = "3" }', "inputs.x: example '3' is invalid"),
        ('{ type = "selection", choices = ["a"], example = "b" }', "inputs.x: example 'b'"),
    ],
)
def test_an_example_the_endpoint_would_refuse_is_refused(
    tmp_path: Path, field: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[endpoint]\nname = "bad"\n[inputs]\nx = {field}\n')
    with pytest.raises(SpecError, match=message.replace(".", r"\.").replace("(", r"\(")):
        spec_from_toml(path)
