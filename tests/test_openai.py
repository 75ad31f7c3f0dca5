"""The official `openai` package against a real server: models, chat (plain and streamed),
embeddings (base64 and float), and OpenAI-shaped errors."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("openai")
    server = ServerProcess(
        [
            "examples/textgen/model.py",
            "examples/embeddings/model.py",
            "examples/iris/model.py",
            "--store",
            f"sqlite:///{tmp}/o.db",
        ],
        tmp / "server.log",
    )
    try:
        yield server.start().wait_ready(timeout=120)
    finally:
        server.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_models_lists_chat_and_embedding_endpoints(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert ids == {"textgen", "all-minilm-l6-v2"}  # iris is a plain predict endpoint


def test_chat_completion(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="textgen",
        messages=[{"role": "user", "content": "How do I read a file?"}],
        max_tokens=12,
    )
    assert reply.object == "chat.completion"
    text = reply.choices[0].message.content
    assert reply.choices[0].message.role == "assistant"
    assert text and len(text.split()) >= 12
    # Twelve chunks (tokens) made, all that was asked for.
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 12
    again = client.chat.completions.create(
        model="textgen",
        messages=[{"role": "user", "content": "How do I read a file?"}],
        max_tokens=12,
    )
    assert again.choices[0].message.content == text  # seeded by the prompt


def test_chat_completion_stream_arrives_in_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="textgen",
        messages=[{"role": "user", "content": "threads"}],
        max_tokens=30,
        stream=True,
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) == 30
    assert chunks[-1].choices[0].finish_reason == "length"
    plain = client.chat.completions.create(
        model="textgen", messages=[{"role": "user", "content": "threads"}], max_tokens=30
    )
    assert "".join(pieces) == plain.choices[0].message.content


def test_chat_stop_and_temperature_zero(client: openai.OpenAI) -> None:
    cold = client.chat.completions.create(
        model="textgen",
        messages=[{"role": "user", "content": "socket"}],
        max_tokens=40,
        temperature=0,
        stop=["."],
    )
    text = cold.choices[0].message.content or ""
    assert "." not in text.rstrip(".")[:-1]
    # The stop sequence ended it before max_tokens.
    assert cold.usage is not None and cold.usage.completion_tokens < 40
    assert cold.choices[0].finish_reason == "stop"


def test_embeddings_base64_by_default_and_float(client: openai.OpenAI) -> None:
    texts = ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell sharply."]
    result = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    vectors = [d.embedding for d in result.data]
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(len(v) == 384 for v in vectors)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-3) for v in vectors)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    floats = client.embeddings.create(
        model="all-minilm-l6-v2", input="A cat sits on the mat.", encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)


def test_openai_shaped_errors(client: openai.OpenAI, server: ServerProcess) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="iris", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="textgen", messages=[], max_tokens=5)
    assert bad.value.body["param"] == "messages"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="textgen", messages=[{"role": "user", "content": "x"}], max_tokens=5000
        )
    r = httpx.post(f"{server.url}/v1/embeddings", content=b"{nope", timeout=10)
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
