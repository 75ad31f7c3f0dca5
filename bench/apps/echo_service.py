"""A plain echo service under uvicorn: ``POST /predict`` answers the JSON body it got,
``GET /health`` answers 200. The upstream of ``bench/adapters.py``'s HTTP model, and the
baseline it is measured against.

    python bench/apps/echo_service.py --port 8001
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

Scope = dict[str, Any]

_JSON = [(b"content-type", b"application/json")]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/health":
        status, body = 200, b'{"status":"ok"}'
    elif scope["path"] == "/predict" and scope["method"] == "POST":
        status = 200
    else:
        status, body = 404, b'{"detail":"not found"}'
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
