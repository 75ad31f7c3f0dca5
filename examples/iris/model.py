"""Iris: a scikit-learn classifier trained in setup() on the iris data shipped with scikit-learn."""

from __future__ import annotations

from typing import Any

import modelport
from modelport import Input


class Iris(modelport.Model):
    """Classify an iris flower from four measurements in centimetres."""

    max_batch_size = 32

    def setup(self) -> None:
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        data = load_iris()
        self.labels = [str(name) for name in data.target_names]
        self.clf = LogisticRegression(max_iter=500).fit(data.data, data.target)

    def predict(
        self,
        sepal_length: float = Input(description="Sepal length (cm)", ge=0, le=10, example=5.1),
        sepal_width: float = Input(description="Sepal width (cm)", ge=0, le=10, example=3.5),
        petal_length: float = Input(description="Petal length (cm)", ge=0, le=10, example=1.4),
        petal_width: float = Input(description="Petal width (cm)", ge=0, le=10, example=0.2),
    ) -> dict[str, Any]:
        item = {
            "sepal_length": sepal_length,
            "sepal_width": sepal_width,
            "petal_length": petal_length,
            "petal_width": petal_width,
        }
        output: dict[str, Any] = self.predict_batch([item])[0]
        return output

    def predict_batch(self, inputs: list[dict[str, Any]]) -> list[Any]:
        rows = [
            [x["sepal_length"], x["sepal_width"], x["petal_length"], x["petal_width"]]
            for x in inputs
        ]
        probabilities = self.clf.predict_proba(rows)
        return [
            {
                "label": self.labels[int(p.argmax())],
                "probabilities": {
                    name: round(float(v), 4) for name, v in zip(self.labels, p, strict=True)
                },
            }
            for p in probabilities
        ]
