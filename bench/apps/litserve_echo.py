"""LitServe baseline: the echo model behind a LitAPI (one API server, one CPU worker).

Started by bench/overhead.py as ``python bench/apps/litserve_echo.py --port 8003``.
"""

import argparse
from typing import Any

import litserve as ls
from _baselines import Echo, load_echo
from _litserve import serve


class EchoAPI(ls.LitAPI):  # type: ignore[misc]
    """``POST /predict`` with ``{"input": {"text": ...}}``; readiness is ``GET /health``.

    LitServe reads the annotations at runtime to build its route, so they stay unquoted."""

    def __init__(self, echo: Echo) -> None:
        super().__init__()
        self.echo = echo

    def setup(self, device: str) -> None:
        self.model = self.echo

    def decode_request(self, request: dict[str, Any], **kwargs: Any) -> str:
        text: str = request["input"]["text"]
        return text

    def predict(self, x: str, **kwargs: Any) -> dict[str, str]:
        return self.model(x)

    def encode_response(self, output: dict[str, str], **kwargs: Any) -> dict[str, str]:
        return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(EchoAPI(load_echo()), args.port)


if __name__ == "__main__":
    main()
