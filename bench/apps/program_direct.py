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
from _baselines import answer, request_body, serve_asgi

PROGRAM = Path(__file__).resolve().parents[1] / "models" / "echo_lines.py"


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
                reply = orjson.loads(await proc.stdout.readline())
                if reply.get("id") == job and "output" in reply:
                    return reply["output"]
        finally:
            self.free.put_nowait(proc)


def build(processes: int) -> Any:
    pool = Pool(processes)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await request_body(scope, receive, send, pool.start)
        if body is not None:
            output = await pool.call(orjson.loads(body)["input"])
            await answer(send, 200, orjson.dumps({"output": output}))

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    serve_asgi(build(args.processes), args.port)


if __name__ == "__main__":
    main()
