"""Admin dashboard benchmark: what does an open dashboard cost a busy server?

    python bench/admin_page.py --rounds 3

``modelport serve examples/echo/model.py`` (a sqlite store in a temporary folder) under
load (``POST /endpoints/echo/jobs``, ``--connections`` at a time), measured alternately
without and with ``--dashboards`` dashboards open. An open dashboard is what the page keeps
doing: one ``GET /admin/events`` stream (an admin key), an overview every 2 seconds, read
here by a thread per dashboard (the browser's own CPU is not the server's cost).

Reported: requests per second of each (the median of ``--rounds`` runs), the cost (the
throughput lost with the dashboards open, in percent), the overviews the dashboards
received, and two measures a busy machine does not blur (read from the server's own CPU
counters): the server's CPU per overview (an open dashboard costs that every 2 s) and its
CPU per job with and without the dashboards. Target: one open dashboard costs <= 2% of the
throughput.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _load import (
    Load,
    LoadResult,
    Plan,
    Target,
    add_load_arguments,
    check_load_arguments,
    describe,
    median_run,
    percentile,
    spread,
)
from _servers import (
    HOST,
    CpuWindow,
    Server,
    StartError,
    check_call,
    exit_on_signals,
    free_port,
    http_call,
    serve_command,
)

BODY = b'{"input": {"text": "hello"}}'


class Dashboard(threading.Thread):
    """Reads ``/admin/events`` as the page does, counting the overviews, until stopped."""

    def __init__(self, port: int, key: str) -> None:
        super().__init__(daemon=True)
        self.port, self.key = port, key
        self.overviews = 0
        self.failure: str | None = None
        self.conn: http.client.HTTPConnection | None = None
        self.stopping = False

    def run(self) -> None:
        try:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
            headers = {"Authorization": f"Bearer {self.key}", "Accept": "text/event-stream"}
            self.conn.request("GET", "/admin/events", headers=headers)
            response = self.conn.getresponse()
            if response.status != 200:
                self.failure = f"/admin/events answered {response.status}"
                return
            for line in response:
                if line.startswith(b"event: overview"):
                    self.overviews += 1
        except Exception as e:  # once stop() closed the socket, whatever it breaks is fine
            if not self.stopping:
                self.failure = f"{type(e).__name__}: {e}"

    def stop(self) -> None:
        self.stopping = True
        conn, self.conn = self.conn, None
        if conn is not None and conn.sock is not None:
            conn.sock.shutdown(2)
            conn.close()
        self.join(10)


def measured(load: Load, server: Server, target: Target, plan: Plan) -> LoadResult:
    """One load run with the server's CPU seconds in its measured window."""
    window = CpuWindow(server)
    result = load(target, plan, server.settler("echo", 60), window.start)
    window.stop()
    return dataclasses.replace(result, cpu_s=window.used[0])


def overview_cpu_ms(server: Server, key: str, count: int) -> float | None:
    """The server's CPU milliseconds per ``GET /admin/overview``, over ``count`` of them."""
    window = CpuWindow(server)
    window.start()
    overview_ms(server.port, key, count)
    window.stop()
    used = window.used[0]
    return None if used is None else used * 1000 / count


def overview_ms(port: int, key: str, count: int) -> list[float]:
    """Milliseconds of ``count`` ``GET /admin/overview`` one after another, sorted."""
    headers = {"Authorization": f"Bearer {key}"}
    took = []
    for _ in range(count):
        started = time.perf_counter()
        status, _ = http_call(port, "GET", "/admin/overview", None, 10.0, headers)
        took.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise StartError(f"/admin/overview answered {status}")
    return sorted(took)


def admin_key(store: str) -> str:
    command = [sys.executable, "-m", "modelport", "keys", "create", "--scope", "admin"]
    done = subprocess.run(
        [*command, "--store", store], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_load_arguments(parser, duration=5.0)
    parser.add_argument("--dashboards", type=int, default=1, help="dashboards open (default 1)")
    args = parser.parse_args()
    check_load_arguments(parser, args)
    if not 1 <= args.dashboards <= 100:
        parser.error("--dashboards must be between 1 and 100")
    exit_on_signals()
    folder = Path(tempfile.mkdtemp(prefix="bench-admin-"))
    store = f"sqlite:///{folder / 'jobs.db'}"
    key = admin_key(store)
    port = free_port()
    plan = Plan(args.connections, args.warmup, args.duration)
    target = Target(HOST, port, "/endpoints/echo/jobs", BODY, b'"succeeded"')
    runs: dict[str, list[LoadResult]] = {"closed": [], "open": []}
    overviews = 0
    with (
        (folder / "server.log").open("wb") as log,
        Server(
            "modelport", serve_command(port, store, "examples/echo/model.py"), port, log
        ) as server,
    ):
        try:
            server.wait_ready("/health/ready", args.startup_timeout)
            check_call(port, target.path, BODY, b'"succeeded"', 10.0)
        except StartError as e:
            print(f"the server did not start: {e}", file=sys.stderr)
            return 1
        took = overview_ms(port, key, 50)
        overview_cpu = overview_cpu_ms(server, key, 200)
        for _ in range(args.rounds):
            runs["closed"].append(measured(args.load, server, target, plan))
            boards = [Dashboard(port, key) for _ in range(args.dashboards)]
            for board in boards:
                board.start()
            runs["open"].append(measured(args.load, server, target, plan))
            for board in boards:
                board.stop()
                if board.failure is not None:
                    print(f"a dashboard failed: {board.failure}", file=sys.stderr)
                    return 1
                overviews += board.overviews
        jobs = sum(r.ok for rs in runs.values() for r in rs)
        overview_cpu_after = overview_cpu_ms(server, key, 200)
    shutil.rmtree(folder, ignore_errors=True)
    print(describe(args.generator_name, plan))
    closed, opened = median_run(runs["closed"]), median_run(runs["open"])
    for name, result in (("no dashboard", closed), (f"{args.dashboards} open", opened)):
        errors = f", {result.errors} errors" if result.errors else ""
        print(
            f"{name:>14}: {result.rps:8.0f} req/s  p50 {result.p50_ms:.2f} ms"
            f"  p99 {result.p99_ms:.2f} ms  {spread(runs['closed' if name[0] == 'n' else 'open'])}"
            f"{errors}"
        )
    print(
        f"one overview: p50 {percentile(took, 50):.2f} ms, p90 {percentile(took, 90):.2f} ms"
        f" of the server's time (idle): one every 2 s is"
        f" {percentile(took, 50) / 20:.3f}% of one core"
    )
    for when, cpu in (("at the start", overview_cpu), (f"after {jobs} jobs", overview_cpu_after)):
        if cpu is not None:
            print(
                f"one overview {when}: {cpu:.2f} ms of the server's CPU; one every 2 s per"
                f" dashboard is {cpu / 20:.3f}% of a core"
            )
    per_job = {k: sorted(r.cpu_us_per_job or 0.0 for r in rs) for k, rs in runs.items()}
    if all(per_job["closed"]) and all(per_job["open"]):
        mid = {k: v[(len(v) - 1) // 2] for k, v in per_job.items()}
        print(
            f"server CPU per job: {mid['closed']:.0f} us without"
            f" ({per_job['closed'][0]:.0f}-{per_job['closed'][-1]:.0f}),"
            f" {mid['open']:.0f} us with the dashboards"
            f" ({per_job['open'][0]:.0f}-{per_job['open'][-1]:.0f}):"
            f" {100 * (mid['open'] / mid['closed'] - 1):+.2f}%"
        )
    cost = 100 * (1 - opened.rps / closed.rps) if closed.rps else float("nan")
    seconds = args.rounds * (args.warmup + args.duration)
    print(
        f"overviews received: {overviews}"
        f" ({args.dashboards} dashboards, about {seconds:.0f} s each)"
    )
    print(f"cost of the dashboards: {cost:.2f}% of the throughput")
    noise = max(r.rps for r in runs["closed"]) / min(r.rps for r in runs["closed"]) - 1
    resolvable = len(runs["closed"]) == 1 or 100 * noise <= 2
    if resolvable or overview_cpu_after is None:
        verdict = "met" if cost <= 2 else "NOT met"
    else:
        # A busy server runs at one core at most; a dashboard takes one overview's CPU every
        # 2 s of it.
        share = args.dashboards * overview_cpu_after / 20
        print(
            f"the runs without a dashboard alone differ by {100 * noise:.0f}%: this machine is"
            " too busy to resolve 2% by throughput, so the server's own CPU counters decide:"
            f" the dashboards take {share:.3f}% of a busy server's core"
        )
        verdict = "met" if share <= 2 else "NOT met"
    print(f"target: one open dashboard costs <= 2%: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
