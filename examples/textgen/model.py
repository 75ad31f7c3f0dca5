"""Textgen: a small word-level Markov model, trained in setup() on the Python standard
library's own docstrings (no download), streaming its words; served as a chat endpoint."""

from __future__ import annotations

import importlib
import inspect
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import modelport
from modelport import Input

_CORPUS_MODULES = (
    "argparse",
    "asyncio",
    "collections",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "decimal",
    "email",
    "functools",
    "heapq",
    "http.client",
    "inspect",
    "itertools",
    "json",
    "logging",
    "os",
    "pathlib",
    "pickle",
    "random",
    "re",
    "shutil",
    "socket",
    "sqlite3",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest",
    "urllib.parse",
    "uuid",
    "zipfile",
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[.,;:!?]?")


def corpus() -> str:
    """Docstrings of standard-library modules and their public members."""
    texts = []
    for name in _CORPUS_MODULES:
        module = importlib.import_module(name)
        texts.append(inspect.getdoc(module) or "")
        for attr in dir(module):
            if not attr.startswith("_"):
                texts.append(inspect.getdoc(getattr(module, attr, None)) or "")
    return "\n".join(t for t in texts if t)


class Textgen(modelport.Model):
    """Writes standard-library-flavoured prose, one word at a time."""

    kind = "chat"
    concurrency = 4  # predict only reads the chain, with its own rng: chats stream side by side

    def setup(self) -> None:
        words = _WORD.findall(corpus())
        self.chain: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for a, b, c in zip(words, words[1:], words[2:], strict=False):
            self.chain[(a, b)][c] += 1
        self.starts = [k for k in self.chain if k[0][0].isupper()]

    def predict(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int = Input(default=60, ge=1, le=2000, description="Words to write"),
        temperature: float = Input(default=1.0, ge=0, le=2),
        stop: list[str] = Input(default=None, max_length=4),
    ) -> Iterator[str]:
        prompt = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        rng = random.Random(prompt)
        state = self._start(prompt, rng)
        text = ""
        for i in range(max_tokens):
            token = state[0] if i == 0 else self._next(state, rng, temperature)
            if i == 0:
                piece = f"{state[0]} {state[1]}"
            else:
                piece = f" {token}"
                state = (state[1], token)
            text += piece
            if stop and any(s in text for s in stop):
                return
            yield piece

    def _start(self, prompt: str, rng: random.Random) -> tuple[str, str]:
        wanted = {w.lower() for w in _WORD.findall(prompt)}
        matching = [k for k in self.starts if k[0].lower() in wanted or k[1].lower() in wanted]
        return rng.choice(matching or self.starts)

    def _next(self, state: tuple[str, str], rng: random.Random, temperature: float) -> str:
        options = self.chain.get(state) or self.chain[rng.choice(self.starts)]
        words = list(options)
        if temperature == 0:
            return max(words, key=lambda w: options[w])
        weights = [options[w] ** (1 / temperature) for w in words]
        return rng.choices(words, weights)[0]
