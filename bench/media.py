"""Media benchmark: 512x512 JPEG uploads to an endpoint that takes 224x224 RGB, modelport
against a FastAPI app making the same Pillow calls inline, side by side in one run.

    python bench/media.py --duration 10

Each system gets the same closed-loop load (the asyncio generator: the bodies are binary)
as a multipart upload and as a data URL in JSON. Then modelport alone takes 64 concurrent
4 MB uploads, and the server process's resident memory (peak and after) is reported.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _load import LoadResult, Plan, Target, run_asyncio
from _servers import HOST, ROOT, BenchError, LoadError, Server, StartError, free_port, log_tail
from PIL import Image

BOUNDARY = "modelportbenchboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass(frozen=True)
class Case:
    system: str
    body: str
    path: str
    content_type: str


def photo(side: int, quality: int = 90) -> bytes:
    """A photo-like JPEG: smooth colour gradients with grain."""
    rng = np.random.default_rng(side)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    base = np.stack([xs, ys, 1 - xs * ys], axis=2) * 200
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def multipart(data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def data_url_body(data: bytes) -> bytes:
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    return json.dumps({"input": {"image": url}}).encode()


def commands(port: int, system: str, store: str) -> list[str]:
    if system == "fastapi":
        return [sys.executable, str(ROOT / "bench/apps/fastapi_media.py"), f"--port={port}"]
    return [
        *(sys.executable, "-m", "modelport", "serve", "bench/models/resize224.py"),
        *("--host", HOST, "--port", str(port), "--store", store, "--log-level", "warning"),
        *("--max-body-size", str(16 * 1024 * 1024)),
    ]


def rss_kib(pid: int) -> dict[str, int]:
    """The process's resident memory now and at its peak (VmRSS, VmHWM), in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def run_system(
    system: str, store: str, plan: Plan, bodies: dict[str, bytes], scratch: Path, big: bytes
) -> tuple[dict[str, LoadResult], dict[str, Any]]:
    port = free_port()
    ready = "/health" if system == "fastapi" else "/health/ready"
    results: dict[str, LoadResult] = {}
    memory: dict[str, Any] = {}
    with (
        tempfile.TemporaryFile(dir=scratch) as log,
        Server(system, commands(port, system, store), port, log) as server,
    ):
        try:
            server.wait_ready(ready, 60)
        except StartError as e:
            raise StartError(f"{e}\n{log_tail(log)}") from None
        for body_kind, body in bodies.items():
            if system == "fastapi":
                path = "/predict" if body_kind == "multipart" else "/predict_json"
                expect = b'"size":[224,224]'
            else:
                path, expect = "/endpoints/resize224/jobs", b'"size":[224,224]'
            content_type = MULTIPART if body_kind == "multipart" else "application/json"
            target = Target(HOST, port, path, body, expect, content_type=content_type)
            result = run_asyncio(target, plan)
            if result.ok == 0:
                raise LoadError(f"{system} {body_kind}: no request succeeded\n{log_tail(log)}")
            results[body_kind] = result
        if system == "modelport":
            memory["before_kib"] = rss_kib(server.proc.pid)
            heavy = Plan(connections=64, warmup=0.5, duration=max(15, plan.duration), timeout=60)
            target = Target(
                HOST,
                port,
                "/endpoints/resize224/jobs",
                multipart(big),
                b'"size"',
                content_type=MULTIPART,
            )
            memory["result"] = asdict(run_asyncio(target, heavy))
            memory["after_kib"] = rss_kib(server.proc.pid)
    return results, memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--store", default="memory://", help="modelport's job store")
    parser.add_argument("--json", type=Path, metavar="PATH")
    args = parser.parse_args(argv)
    plan = Plan(connections=args.connections, warmup=args.warmup, duration=args.duration)
    small = photo(512)
    big = photo(2400, quality=97)
    bodies = {"multipart": multipart(small), "data-url": data_url_body(small)}
    print(
        f"512x512 JPEG of {len(small)} bytes; {plan.connections} connections,"
        f" {plan.warmup:g}s warm-up, {plan.duration:g}s measured; big upload {len(big)} bytes;"
        f" python {platform.python_version()}, {os.cpu_count()} cores",
        file=sys.stderr,
    )
    results: dict[str, dict[str, LoadResult]] = {}
    memory: dict[str, Any] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="modelport-bench-") as tmp:
        for system in ("fastapi", "modelport"):
            print(f"{system}: running", file=sys.stderr, flush=True)
            try:
                results[system], found = run_system(
                    system, args.store, plan, bodies, Path(tmp), big
                )
                memory.update(found)
            except BenchError as e:
                failed[system] = f"{e.stage}: {e}"
                print(f"{system}: {e.stage}: {e}", file=sys.stderr)
    lines = [f"{'system':<12}{'body':<12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"]
    for system, rows in results.items():
        for kind, r in rows.items():
            lines.append(
                f"{system:<12}{kind:<12}{r.rps:>10.1f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}"
                f"{r.errors:>8}"
            )
    ratios = {}
    if {"fastapi", "modelport"} <= set(results):
        for kind in bodies:
            ours, theirs = results["modelport"][kind], results["fastapi"][kind]
            ratios[kind] = {
                "throughput": ours.rps / theirs.rps if theirs.rps else None,
                "p99": ours.p99_ms / theirs.p99_ms if theirs.p99_ms else None,
            }
            lines.append(
                f"modelport / fastapi, {kind}: throughput {ratios[kind]['throughput']:.2f}x,"
                f" p99 {ratios[kind]['p99']:.2f}x"
            )
    if memory:
        heavy = memory["result"]
        lines.append(
            f"64 concurrent {len(big) / 1e6:.1f} MB uploads: {heavy['ok']} done,"
            f" {heavy['errors']} errors; server RSS {memory['before_kib']['VmRSS'] / 1024:.0f} MiB"
            f" before, peak {memory['after_kib']['VmHWM'] / 1024:.0f} MiB,"
            f" {memory['after_kib']['VmRSS'] / 1024:.0f} MiB after"
        )
    print("\n".join(lines))
    if args.json:
        document = {
            "plan": asdict(plan),
            "store": args.store,
            "results": {
                s: {k: {**asdict(r), "rps": r.rps} for k, r in rows.items()}
                for s, rows in results.items()
            },
            "ratios": ratios,
            "memory": memory,
            "failed": failed,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
