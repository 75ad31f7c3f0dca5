"""A model without a server: predict called directly, and modelport.testing's in-process server."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import pytest

import modelport
import modelport.testing
from modelport import Input, InvalidInput, ModelportError

ROOT = Path(__file__).resolve().parent.parent


class Sentiment(modelport.Model):
    """The README's model."""

    name = "sentiment"

    def setup(self) -> None:
        self.words = {"good": 1, "bad": -1}

    def predict(
        self,
        text: str = Input(description="Text to score", max_length=5000),
        scale: float = Input(default=1.0, ge=0, le=10),
        bonus: Annotated[int, Input(ge=0)] = 0,
        tags: list[str] = Input(default=[]),
    ) -> dict[str, float]:
        tags.append("seen")  # a default must not be shared between calls
        score = sum(self.words.get(w, 0) for w in text.lower().split())
        return {"score": scale * score + bonus, "tags": len(tags)}


@dataclasses.dataclass
class Window:
    start: int
    end: int = 10


class Span(modelport.Model):
    def predict(self, window: Window, step: int = Input(default=1, ge=1)) -> list[int]:
        assert isinstance(window, Window)
        return list(range(window.start, window.end, step))


class Streamer(modelport.Model):
    async def predict(self, n: int = Input(default=3, ge=0)) -> AsyncIterator[str]:
        for i in range(n):
            yield f"t{i} "


class Awaiting(modelport.Model):
    async def predict(self, x: int = Input(default=4)) -> int:
        return x * 2


def test_predict_called_directly_gets_the_declared_defaults() -> None:
    model = Sentiment()
    model.setup()
    assert model.predict(text="good good") == {"score": 2.0, "tags": 1}
    assert model.predict("bad", 2.0) == {"score": -2.0, "tags": 1}
    assert model.predict(text="good", bonus=3, tags=["a"]) == {"score": 4.0, "tags": 2}
    assert model.predict(text="good") == {"score": 1.0, "tags": 1}


def test_a_required_input_left_out_is_a_type_error() -> None:
    model = Sentiment()
    model.setup()
    with pytest.raises(TypeError, match=r"Sentiment\.predict\(\) missing required input 'text'"):
        model.predict()
    with pytest.raises(TypeError, match="unexpected keyword argument 'txt'"):
        model.predict(txt="good")  # type: ignore[call-arg]


def test_the_signature_and_spec_stay_those_of_the_class() -> None:
    params = inspect.signature(Sentiment.predict).parameters
    assert list(params) == ["self", "text", "scale", "bonus", "tags"]
    spec = Sentiment.spec()
    assert spec.inputs["scale"].default == 1.0 and spec.inputs["text"].required


def test_predict_called_directly_builds_declared_classes() -> None:
    assert Span().predict(window={"start": 2, "end": 8}, step=3) == [2, 5]  # type: ignore[arg-type]
    assert Span().predict(Window(start=7)) == [7, 8, 9]


def test_the_runner_call_skips_the_wrapper_only_when_it_would_do_nothing() -> None:
    from modelport.model import runner_call

    model = Sentiment()
    model.setup()
    call = runner_call(model)
    assert call is not None
    func, names = call
    assert names == {"text", "scale", "bonus", "tags"}  # a validated input's keys
    assert func(text="good", scale=2.0, bonus=1, tags=[]) == {"score": 3.0, "tags": 1}
    assert runner_call(Span()) is None  # its window is built from JSON: the wrapper's work
    replaced = Sentiment()
    replaced.predict = lambda **inputs: {"score": 0.0}  # type: ignore[method-assign]
    assert runner_call(replaced) is None


async def test_async_predict_called_directly() -> None:
    assert [c async for c in Streamer().predict()] == ["t0 ", "t1 ", "t2 "]
    assert await Awaiting().predict() == 8
    assert inspect.iscoroutinefunction(Awaiting.predict)


def test_a_config_model_called_directly_gets_the_files_defaults() -> None:
    from modelport.loader import load_models

    (txt2img,) = load_models(str(ROOT / "examples/txt2img/model.py"))
    out = txt2img().predict(prompt="a cat", seed=7)
    assert out["seed"] == 7 and len(out["images"]) == 1  # num_samples and size defaulted


def test_serve_gives_a_client_of_a_real_server() -> None:
    with modelport.testing.serve(Sentiment, Span) as client:
        assert client.base_url.startswith("http://127.0.0.1:")
        assert client.predict("sentiment", text="good") == {"score": 1.0, "tags": 1}
        assert client.predict("span", window={"start": 1, "end": 4}) == [1, 2, 3]
        with pytest.raises(InvalidInput) as e:
            client.predict("sentiment", text="good", scale=11)
        assert e.value.errors == [
            {"field": "scale", "message": "Input should be less than or equal to 10"}
        ]
        url = client.base_url
    with pytest.raises(ModelportError, match="cannot reach"):
        modelport.Client(url, timeout=2).predict("sentiment", text="good")


async def test_aserve_streams_on_the_tests_own_loop() -> None:
    async with modelport.testing.aserve(Streamer) as client:
        chunks = [e.data async for e in client.stream("streamer", n=2) if e.event == "output"]
    assert chunks == ["t0 ", "t1 "]


class Broken(modelport.Model):
    def setup(self) -> None:
        raise RuntimeError("no weights here")

    def predict(self, x: int) -> int:
        return x


def test_a_failed_setup_raises_in_the_test() -> None:
    expected = r"broken: setup\(\) failed: RuntimeError: no weights"
    with pytest.raises(ModelportError, match=expected), modelport.testing.serve(Broken):
        pass  # pragma: no cover


async def test_a_failed_setup_raises_in_an_async_test() -> None:
    with pytest.raises(ModelportError, match=r"broken: setup\(\) failed"):
        async with modelport.testing.aserve(Broken):
            pass  # pragma: no cover


class Blocking(modelport.Model):
    """Setup waits for the test, so the test can see serve() wait for it."""

    released = threading.Event()

    def setup(self) -> None:
        assert self.released.wait(10)

    def predict(self, x: int) -> int:
        return x


def test_serve_waits_for_setup_before_handing_over_the_client() -> None:
    timer = threading.Timer(0.3, Blocking.released.set)
    timer.start()
    with modelport.testing.serve(Blocking) as client:
        assert Blocking.released.is_set()
        assert client.predict("blocking", x=3) == 3
    timer.join()


def test_the_readme_test_example_passes_under_pytest(tmp_path: Path) -> None:
    """The README's "Test a model" block, run as a user would: pytest on the two files."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    for name in ("my_model.py", "test_my_model.py"):
        (tmp_path / name).write_text(next(b for b in blocks if f"# {name}\n" in b))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_model.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
