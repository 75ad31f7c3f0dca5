"""Instructions per request: modelport's app against a plain FastAPI app, counted, not timed.

    python bench/instructions.py
    python bench/instructions.py --requests 4000 --connections 64

On a machine shared with others, or a VM whose other tenants come and go, req/s move by
10-40% between back-to-back runs of the same code, which hides a change of a few percent.
Instructions do not move: this script runs each app in process, its ASGI callable called
by ``--connections`` concurrent clients on the event loop uvicorn would use (uvloop), under
``valgrind --tool=callgrind``, and counts what the process executes. Each app is run twice,
with ``--requests`` / 4 and ``--requests`` requests after as many unmeasured ones; the
difference over the difference in requests is the count per request, free of start-up.

What it leaves out: the HTTP server (uvicorn parsing the request and writing the answer,
the same for every app here) and the kernel's work on sockets. What it keeps: everything
the app does, the store's SQL and the model thread included. Systems:

- ``fastapi-async``: ``bench/apps/plain_fastapi.py``'s ``async def`` route calling the echo;
- ``modelport``: ``examples/echo`` (``max_batch_size = 64``), the default sqlite store;
- ``modelport-default``: ``bench/models/echo_default.py`` (one job at a time).

Reported: instructions per request and each modelport system's ratio to ``fastapi-async``
(lower is better). Needs valgrind (Debian's ``valgrind`` package); about four minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Not this folder on the path: its queue.py would stand for the standard library's, which
# the thread pool of a served model imports.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Awaitable, Callable, MutableMapping  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"input": {"text": "hello"}}'
SYSTEMS = {
    "fastapi-async": "/predict",
    "modelport": "/endpoints/echo/jobs",
    "modelport-default": "/endpoints/echo/jobs",
}
MODELS = {
    "modelport": "examples/echo/model.py",
    "modelport-default": "bench/models/echo_default.py",
}
BASELINE = "fastapi-async"
_COLLECTED = re.compile(r"Collected : (\d+)")

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _load(system: str, store_dir: str) -> tuple[App, Callable[[], Awaitable[None]]]:
    """The system's ASGI app, started, and what stops it."""
    if system == BASELINE:
        sys.path.insert(0, str(ROOT / "bench" / "apps"))
        plain_fastapi = importlib.import_module("plain_fastapi")
        app: App = plain_fastapi.build(plain_fastapi.load_echo(), "async")

        async def nothing() -> None:
            return None

        return app, nothing
    from modelport.loader import load_models
    from modelport.logs import AccessLog
    from modelport.server.app import Server

    server = Server(load_models(MODELS[system]), store=f"sqlite:///{store_dir}/bench.db")
    app = AccessLog(server.app())  # as `modelport serve` wraps it
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    life = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"{system} did not start: {started}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await life

    return app, stop


async def _load_and_run(system: str, requests: int, connections: int) -> None:
    """``requests`` unmeasured requests, then ``requests`` more, each checked."""
    path = SYSTEMS[system]
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as store_dir:
        app, stop = await _load(system, store_dir)

        async def one() -> None:
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "root_path": "",
                "client": ("127.0.0.1", 50000),
                "server": ("127.0.0.1", 8000),
                "headers": [
                    (b"host", b"127.0.0.1:8000"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode()),
                ],
                "state": {},
            }
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": BODY, "more_body": False}
                await asyncio.Event().wait()  # no disconnect: the answer is awaited
                raise AssertionError("unreachable")

            messages: list[dict[str, Any]] = []

            async def send(message: dict[str, Any]) -> None:
                messages.append(message)

            await app(scope, receive, send)
            body = b"".join(m.get("body", b"") for m in messages[1:])
            if messages[0]["status"] != 200 or (system != BASELINE and b"succeeded" not in body):
                raise SystemExit(f"{system} answered {messages[0]['status']}: {body[:300]!r}")

        for _ in range(2):  # the unmeasured requests, then the measured ones
            left = [requests]

            async def client(left: list[int] = left) -> None:
                while left[0] > 0:
                    left[0] -= 1
                    await one()

            await asyncio.gather(*(client() for _ in range(connections)))
        await stop()


def run_child(system: str, requests: int, connections: int) -> None:
    """The load itself (in the process valgrind counts)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(_load_and_run(system, requests, connections))
        return
    uvloop.run(_load_and_run(system, requests, connections))


def count(system: str, requests: int, connections: int, valgrind: str) -> int:
    """The instructions a child process running ``requests`` (twice) executes."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as tmp:
        command = [
            valgrind,
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            system,
            "--requests",
            str(requests),
            "--connections",
            str(connections),
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, cwd=ROOT, timeout=1800, check=False
        )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(
            f"{system} under valgrind failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="the longer run's requests")
    parser.add_argument("--connections", type=int, default=64, help="concurrent clients")
    parser.add_argument("--only", help="comma-separated systems (default: all)")
    parser.add_argument("--child", choices=sorted(SYSTEMS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 100 <= args.requests <= 1_000_000:
        parser.error("--requests must be from 100 to 1000000")
    if not 1 <= args.connections <= 1024:
        parser.error("--connections must be from 1 to 1024")
    if args.child:
        run_child(args.child, args.requests, args.connections)
        return
    systems = list(SYSTEMS) if not args.only else args.only.split(",")
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; choose from {sorted(SYSTEMS)}")
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    short = args.requests // 4
    print(
        f"in process, no HTTP server; {args.connections} clients; {short} and {args.requests}"
        f" requests after as many unmeasured; python {sys.version.split()[0]}",
        flush=True,
    )
    per_request: dict[str, float] = {}
    for system in systems:
        print(f"{system}: counting", file=sys.stderr, flush=True)
        low = count(system, short, args.connections, valgrind)
        high = count(system, args.requests, args.connections, valgrind)
        per_request[system] = (high - low) / (2 * (args.requests - short))
    print(f"{'system':20} {'instructions/request':>22} {'x ' + BASELINE:>18}")
    for system, n in per_request.items():
        ratio = f"{n / per_request[BASELINE]:.2f}" if BASELINE in per_request else "-"
        print(f"{system:20} {n:22,.0f} {ratio:>18}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")  # the same dict layouts from run to run
    main()
