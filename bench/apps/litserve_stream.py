"""LitServe baseline for streaming: the streamer's generator behind a streaming LitAPI.

Started by bench/streaming.py as ``python bench/apps/litserve_stream.py --port 8004
--workers 1``. ``POST /predict`` takes the body modelport takes (``{"input": {"chunks": 100,
"interval_ms": 10}}``) and streams one JSON line per chunk, ``{"output": " t1@..."}``, as
LitServe writes a streamed dict; readiness is ``GET /health``.
"""

import argparse
from collections.abc import Iterator
from typing import Any

import litserve as ls
from _baselines import Generate, load_generate
from _litserve import serve


class StreamAPI(ls.LitAPI):  # type: ignore[misc]
    """One request is one generator run; its chunks go out as they are made.

    LitServe reads the annotations at runtime to build its route, so they stay unquoted."""

    def __init__(self, generate: Generate) -> None:
        super().__init__(stream=True)
        self.generate = generate

    def setup(self, device: str) -> None:
        self.model = self.generate

    def decode_request(self, request: dict[str, Any], **kwargs: Any) -> tuple[int, float]:
        inputs = request.get("input", {})
        return int(inputs.get("chunks", 100)), float(inputs.get("interval_ms", 10.0))

    def predict(self, x: tuple[int, float], **kwargs: Any) -> Iterator[str]:
        yield from self.model(*x)

    def encode_response(self, output: Iterator[str], **kwargs: Any) -> Any:
        # Any: FastAPI would make a response model of an Iterator annotation, and fail.
        for chunk in output:
            yield {"output": chunk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="inference worker processes")
    args = parser.parse_args()
    serve(StreamAPI(load_generate()), args.port, args.workers)


if __name__ == "__main__":
    main()
