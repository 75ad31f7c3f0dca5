"""Serving precomputed predictions: answered from the table, else the model (or 404)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import ModelportError
from modelport.predictions import TableWriter, prediction
from modelport.server.app import Server
from modelport.settings import Settings
from modelport.spec import EndpointSpec, spec_from_toml
from tests.conftest import AppFactory
from tests.models.basic import Add


def validated(spec: EndpointSpec, inputs: dict[str, Any]) -> dict[str, Any]:
    parsed = spec.request_model.model_validate({"input": inputs})
    return dict(parsed.input.model_dump())  # type: ignore[attr-defined]


def table(path: Path, version: str = "1", rows: int = 3) -> Path:
    """A table of Add whose outputs are not what Add computes, so a hit is visible."""
    spec = Add.spec()
    writer = TableWriter(path)
    writer.write(
        prediction(i, "add", version, validated(spec, {"a": i}), {"sum": 1000 + i})
        for i in range(rows)
    )
    writer.write([prediction(9, "add", version, validated(spec, {"a": 9}), error="boom")])
    writer.close()
    return path


def settings(path: Path) -> Settings:
    return Settings(precomputed={"add": str(path)})


async def test_an_input_in_the_table_is_answered_from_it(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    app = await app_factory([Add], settings=settings(table(tmp_path / "p.db")))
    r = await app.http.post("/endpoints/add/jobs", json={"input": {"a": 2, "b": 1}})
    assert r.status_code == 200
    assert r.headers["x-cache"] == "precomputed"
    assert r.headers["x-job-status"] == "succeeded"
    body = r.json()
    assert body["output"] == {"sum": 1002}
    assert body["source"] == "precomputed"
    assert body["model_version"] == "1"
    assert body["input"] == {"a": 2.0, "b": 1.0}
    assert (await app.http.get("/endpoints/add")).json()["queue_depth"] == 0


async def test_other_inputs_fall_back_to_the_model(app_factory: AppFactory, tmp_path: Path) -> None:
    app = await app_factory([Add], settings=settings(table(tmp_path / "p.db")))
    for inputs in ({"a": 2, "b": 5}, {"a": 9}):  # not in the table; in it but failed there
        r = await app.http.post("/endpoints/add/jobs", json={"input": inputs})
        assert r.status_code == 200
        assert r.headers["x-cache"] == "miss"
        assert r.json()["output"] == {"sum": inputs["a"] + inputs.get("b", 1)}
        assert "source" not in r.json()


async def test_without_fallback_a_missing_input_is_404(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    class Only(Add):
        name = "add"
        fallback = False

    app = await app_factory([Only], settings=settings(table(tmp_path / "p.db")))
    assert (await app.http.post("/endpoints/add/jobs", json={"input": {"a": 1}})).status_code == 200
    r = await app.http.post("/endpoints/add/jobs", json={"input": {"a": 50}})
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert "answers only from its precomputed table" in r.json()["detail"]


async def test_a_table_of_another_model_version_is_reported_and_not_used(
    app_factory: AppFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelport.core"):
        app = await app_factory([Add], settings=settings(table(tmp_path / "p.db", version="0")))
    assert "holds predictions of model version(s) 0, not of the endpoint's version '1'" in (
        caplog.text
    )
    report = (await app.http.get("/endpoints/add")).json()["precomputed"]
    assert report["model_versions"] == ["0"]
    assert report["rows"] == 0
    assert "not of the endpoint's version '1'" in report["problem"]
    r = await app.http.post("/endpoints/add/jobs", json={"input": {"a": 2}})
    assert r.json()["output"] == {"sum": 3.0}  # the model's, not the table's 1002


async def test_endpoints_report_the_table(app_factory: AppFactory, tmp_path: Path) -> None:
    path = table(tmp_path / "p.db")
    app = await app_factory([Add], settings=settings(path))
    report = (await app.http.get("/endpoints/add")).json()["precomputed"]
    assert report == {
        "file": str(path),
        "rows": 3,
        "model_versions": ["1"],
        "fallback": True,
        "problem": None,
    }


def test_bad_tables_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(ModelportError, match="no such file"):
        Server([Add], settings=settings(tmp_path / "missing.db"))
    (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ModelportError, match="not a modelport batch output"):
        Server([Add], settings=settings(tmp_path / "junk.db"))
    with pytest.raises(ModelportError, match="there is no endpoint 'nope'"):
        Server([Add], settings=Settings(precomputed={"nope": str(table(tmp_path / "p.db"))}))


async def test_toml_precomputed_is_relative_to_the_toml(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    table(tmp_path / "add.db")
    toml = tmp_path / "add.toml"
    toml.write_text(
        '[endpoint]\nname = "add"\nprecomputed = "add.db"\nfallback = false\n'
        '[inputs]\na = "float"\nb = { type = "float", default = 1.0 }\n'
    )
    spec = spec_from_toml(toml)
    assert spec.precomputed == str(tmp_path / "add.db")
    assert not spec.fallback
    app = await app_factory([], [spec])
    r = await app.http.post("/endpoints/add/jobs", json={"input": {"a": 1}})
    assert r.headers["x-cache"] == "precomputed"
    assert r.json()["output"] == {"sum": 1001}
