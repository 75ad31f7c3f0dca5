"""Chat page benchmark: how much does the page add to the time to first token?

    python bench/chat_page.py --turns 20

``modelport serve examples/textgen/model.py`` (a sqlite store in a temporary folder) and
Debian's chromium, driven by Playwright, on ``/ui/textgen/chat``. Each turn sends a message
and waits until the answer is saved. Per turn it compares:

- ``page``: the time to first token the page measured and stored with the answer (from
  just before the streaming request to the first word on screen);
- ``server``: the server's own first-chunk time, from the job's creation to its first
  ``output`` event, both as the store recorded them.

Reported: p50, p90 and the largest of each and of ``page - server`` (what the page, the
browser and the HTTP round trip add). Target: p50 of ``page - server`` <= 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _load import percentile
from _servers import Server, StartError, exit_on_signals, fmt, free_port, get_json, serve_command

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def server_first_chunk_ms(store_url: str, job_ids: list[str]) -> list[float]:
    from modelport.stores import store_from_url

    async def read() -> list[float]:
        store = store_from_url(store_url)
        await store.open()
        try:
            times = []
            for job_id in job_ids:
                job = await store.get(job_id)
                events = await store.events(job_id)
                assert job is not None
                first = next(e for e in events if e.type == "output")
                times.append((first.time - job.created_at) * 1000)
            return times
        finally:
            await store.close()

    return asyncio.run(read())  # after the browser closed: no other loop runs here


def run_turns(url: str, turns: int, max_tokens: int) -> tuple[list[float], list[str]]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url + "/ui/textgen/chat")
        page.wait_for_function("() => document.body.dataset.ready === 'true'")
        page.locator("details.settings summary").click()
        page.get_by_label("Max Tokens", exact=True).fill(str(max_tokens))
        conversation = None
        for i in range(turns):
            page.get_by_label("Message", exact=True).fill(f"turn {i}: what does asyncio do?")
            page.get_by_role("button", name="Send").click()
            page.wait_for_function(
                "n => document.querySelectorAll('#messages li.assistant').length === n &&"
                " document.querySelector('#status').textContent.startsWith('Answered')",
                arg=i + 1,
                timeout=30_000,
            )
            conversation = page.evaluate("() => localStorage.getItem('modelport.chat.textgen')")
        browser.close()
    _, found = get_json(int(url.rsplit(":", 1)[1]), f"/conversations/{conversation}", 10.0)
    answers = [m for m in found["messages"] if m["role"] == "assistant"]
    return [m["stats"]["ttft_ms"] for m in answers], [m["job_id"] for m in answers]


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p50, p90 = percentile(ordered, 50), percentile(ordered, 90)
    return (
        f"{name:>14}  p50 {fmt(p50, '.1f')} ms  p90 {fmt(p90, '.1f')} ms  max {ordered[-1]:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="messages sent (default 20)")
    parser.add_argument("--max-tokens", type=int, default=20, help="words per answer")
    args = parser.parse_args()
    exit_on_signals()
    folder = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    store = f"sqlite:///{folder / 'jobs.db'}"
    port = free_port()
    with (folder / "server.log").open("wb") as log:
        command = serve_command(port, store, "examples/textgen/model.py")
        with Server("modelport", command, port, log) as server:
            try:
                server.wait_ready("/health/ready", 120)
            except StartError as e:
                print(f"the server did not start: {e}", file=sys.stderr)
                return 1
            started = time.monotonic()
            page, jobs = run_turns(f"http://127.0.0.1:{port}", args.turns, args.max_tokens)
            own = server_first_chunk_ms(store, jobs)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"chat page, {len(page)} turns in {time.monotonic() - started:.1f} s")
    print(row("page", page))
    print(row("server", own))
    added = [a - b for a, b in zip(page, own, strict=True)]
    print(row("page - server", added))
    p50 = percentile(sorted(added), 50)
    print(f"target: the page adds <= 20 ms at p50: {'met' if p50 <= 20 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
