"""A program called directly: a plain uvicorn app that keeps ``--processes`` copies of a
JSON-lines program (``bench/models/echo_lines.py``) and sends each ``POST /predict`` body's
``input`` to a free one, one request at a time per copy. The baseline of
``bench/adapters.py``'s subprocess model: the least a hand-written wrapper does.

    python bench/apps/program_direct.py --port 8001 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import orjson
import uvicorn

PROGRAM = Path(__file__).resolve().parents[1] / "models" / "echo_lines.py"
_JSON = [(b"content-type", b"application/json")]


class Pool:
    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.free: asyncio.Queue[asyncio.subprocess.Process] = asyncio.Queue()
        self.ids = itertools.count()

    async def start(self) -> None:
        for _ in range(self.processes):
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(PROGRAM),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            assert proc.stdout is not None
            await proc.stdout.readline()  # {"ready": true}
            self.free.put_nowait(proc)

    async def call(self, given: Any) -> Any:
        proc = await self.free.get()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            job = next(self.ids)
            proc.stdin.write(orjson.dumps({"id": job, "input": given}) + b"\n")
            await proc.stdin.drain()
            while True:
                answer = orjson.loads(await proc.stdout.readline())
                if answer.get("id") == job and "output" in answer:
                    return answer["output"]
        finally:
            self.free.put_nowait(proc)


def build(processes: int) -> Any:
    pool = Pool(processes)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await pool.start()
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
            status, answer = 200, b'{"status":"ok"}'
        else:
            output = await pool.call(orjson.loads(body)["input"])
            status, answer = 200, orjson.dumps({"output": output})
        await send({"type": "http.response.start", "status": status, "headers": _JSON})
        await send({"type": "http.response.body", "body": answer})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    uvicorn.run(
        build(args.processes),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
