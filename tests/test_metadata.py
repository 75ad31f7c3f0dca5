"""Model metadata: what a model declares (``Model.metadata``, TOML ``[metadata]``) and what
each worker's model says of itself (``Model.info()``), in the endpoint, its own route and the
OpenAPI description; each finished job names the model version and worker that made it."""

from __future__ import annotations

from typing import Any, ClassVar

import modelport
from tests.conftest import AppFactory, eventually
from tests.test_endpoints_runtime import BOUND, put, serving


class Tagger(modelport.Model):
    """Tags a text as a cat or a dog."""

    version = "2.1"
    metadata: ClassVar[dict[str, Any]] = {
        "labels": ["cat", "dog"],
        "metrics": {"accuracy": 0.97, "f1": 0.95},
        "training_args": {"epochs": 10, "learning_rate": 0.001},
        "dataset": "pets-v3",
    }

    def __init__(self, weights: str = "pets.pt") -> None:
        self.weights = weights

    def info(self) -> dict[str, Any]:
        return {"weights": self.weights}

    def predict(self, text: str) -> str:
        return "cat" if "meow" in text else "dog"


async def test_metadata_is_in_the_endpoint_its_route_and_the_openapi_description(
    app_factory: AppFactory,
) -> None:
    app = await app_factory([Tagger])
    http = app.http
    detail = (await http.get("/endpoints/tagger")).json()
    assert detail["metadata"] == Tagger.metadata
    meta = (await http.get("/endpoints/tagger/metadata")).json()
    assert {k: meta[k] for k in ("name", "version", "revision", "metadata")} == {
        "name": "tagger",
        "version": "2.1",
        "revision": 1,
        "metadata": Tagger.metadata,
    }
    assert meta["description"] == "Tags a text as a cat or a dog."
    (worker,) = meta["workers"]
    assert worker["model"]["version"] == "2.1" and worker["model"]["weights"] == "pets.pt"
    assert worker["model"]["class"].endswith("Tagger") and meta["workers_differ"] is False
    doc = (await http.get("/openapi.json")).json()
    described = doc["paths"]["/endpoints/tagger/jobs"]["post"]["description"]
    assert "**Model** version 2.1" in described
    assert "labels: `cat`, `dog`" in described and "`accuracy` = 0.97" in described
    assert "`epochs` = 10" in described and "dataset: pets-v3" in described
    job = (await http.post("/endpoints/tagger/jobs", json={"input": {"text": "meow"}})).json()
    assert (job["output"], job["model_version"], job["revision"]) == ("cat", "2.1", 1)
    assert job["worker"] == worker["id"]


async def test_workers_whose_models_differ_are_told_apart(app_factory: AppFactory) -> None:
    app = await app_factory([Tagger])
    async with serving(app, Tagger(weights="pets-finetuned.pt"), "tagger-2"):

        async def both() -> bool:
            return len(await app.server.broker.workers_online("tagger")) == 2

        await eventually(both, BOUND, "the second worker")
        meta = (await app.http.get("/endpoints/tagger/metadata")).json()
        weights = sorted(w["model"]["weights"] for w in meta["workers"])
        assert weights == ["pets-finetuned.pt", "pets.pt"]
        assert meta["workers_differ"] is True


async def test_toml_metadata_of_an_endpoint_put_at_run_time(app_factory: AppFactory) -> None:
    app = await app_factory()
    toml = """\
[endpoint]
version = "7"
[inputs]
text = { type = "string" }
[metadata]
labels = ["spam", "ham"]
metrics = { auc = 0.91 }
"""
    assert (await put(app.http, "spam", toml)).status_code == 201
    meta = (await app.http.get("/endpoints/spam/metadata")).json()
    assert meta["metadata"] == {"labels": ["spam", "ham"], "metrics": {"auc": 0.91}}
    assert (meta["version"], meta["workers"], meta["workers_differ"]) == ("7", [], False)
    wrong = await app.http.put("/endpoints/spam", json={"metadata": ["not", "a", "table"]})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "[metadata]"
