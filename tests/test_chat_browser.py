"""The chat page (``/ui/{endpoint}/chat``) as a person uses it, in Debian's chromium driven
by Playwright against a real ``modelport serve``: words appear while the answer is still
being written, the conversation survives a reload, Stop cancels the job, model text is
shown as text, a phone-sized screen works, and under ``--auth keys`` the page signs in for
a session and is refused without one. Screenshots go to the test's ``tmp_path``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.stores import store_from_url
from tests.conftest import ROOT, ServerProcess
from tests.test_docs_browser import Page, browser

__all__ = ["browser"]  # the fixture, shared with the docs pages' tests

pytestmark = pytest.mark.e2e

SERVED = ["tests/models/chat.py", "examples/echo/model.py"]
JOB_WAIT = 20_000  # ms


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("chat")
    store = f"sqlite:///{root}/jobs.db"
    process = ServerProcess([*SERVED, "--store", store], root / "server.log")
    process.store = store  # type: ignore[attr-defined]
    try:
        yield process.start().wait_ready()
    finally:
        process.stop()


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Page]:
    opened = Page(browser, server)
    yield opened
    opened.context.close()


def _open(page: Any, url: str) -> None:
    response = page.goto(url)
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    page.wait_for_function("() => document.body.dataset.ready === 'true'")


def _send(page: Any, text: str, max_tokens: int, delay: float, *, enter: bool = False) -> None:
    settings = page.locator("details.settings")
    if not settings.evaluate("d => d.open"):
        settings.locator("summary").click()
    page.get_by_label("Max Tokens", exact=True).fill(str(max_tokens))
    page.get_by_label("Delay", exact=True).fill(str(delay))
    page.get_by_label("Message", exact=True).fill(text)
    if enter:
        page.get_by_label("Message", exact=True).press("Enter")
    else:
        page.get_by_role("button", name="Send").click()


def _answer(page: Any) -> Any:
    return page.locator("#messages li.assistant").last


def _first_chunk_ms(store_url: str, job_id: str) -> float:
    """The server's own time to first token: its first output event after the job's
    creation, read from the store."""

    async def read() -> float:
        store = store_from_url(store_url)
        await store.open()
        try:
            job = await store.get(job_id)
            events = await store.events(job_id)
        finally:
            await store.close()
        assert job is not None
        first = next(e for e in events if e.type == "output")
        return (first.time - job.created_at) * 1000

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's loop runs here
        return pool.submit(asyncio.run, read()).result(timeout=30)


def test_chat_streams_measures_and_survives_a_reload(
    page: Page, server: ServerProcess, tmp_path: Path
) -> None:
    p = page.page
    _open(p, server.url + "/ui/parrot/chat")
    _send(p, "tell <b>me</b> <img src=x onerror=alert(1)> files", 40, 0.05)
    answer = _answer(p)
    # Words are on the page while the job still runs: Stop is enabled, the answer busy.
    p.wait_for_function(
        """() => {
            const a = [...document.querySelectorAll('#messages li.assistant')].at(-1);
            return a && a.querySelector('.content').textContent.split(' ').length >= 3;
        }"""
    )
    partial = answer.locator(".content").inner_text()
    assert answer.get_attribute("aria-busy") == "true"
    assert p.get_by_role("button", name="Stop").is_enabled()
    p.screenshot(path=str(tmp_path / "chat-streaming.png"))
    p.wait_for_function(
        "() => document.querySelector('#status').textContent.startsWith('Answered')",
        timeout=JOB_WAIT,
    )
    text = answer.locator(".content").inner_text()
    assert text.startswith(partial) and len(text.split()) == 40 > len(partial.split())
    assert text.split()[:3] == ["tell", "<b>me</b>", "<img"]
    assert p.locator("#messages img, #messages b, #messages script").count() == 0
    assert answer.get_attribute("data-status") == "succeeded"
    assert "Answered: 40 tokens" in p.locator("#status").inner_text()
    assert p.locator("#status").get_attribute("aria-live") == "polite"
    ttft = float(p.locator("#ttft").inner_text().removesuffix(" ms"))
    tps = float(p.locator("#tps").inner_text())
    assert p.locator("#tokens").inner_text() == "40"
    assert 0 < tps < 1 / 0.05 * 1.5
    job_id = answer.get_attribute("data-job")
    assert job_id
    server_ttft = _first_chunk_ms(server.store, job_id)  # type: ignore[attr-defined]
    added = ttft - server_ttft
    print(f"time to first token: page {ttft:.0f} ms, server {server_ttft:.1f} ms, +{added:.1f}")
    (tmp_path / "ttft.txt").write_text(f"page {ttft} ms, server {server_ttft} ms\n")
    assert -1 <= added <= 250  # measured (and reported) well under 20 ms on a quiet machine
    p.screenshot(path=str(tmp_path / "chat-answered.png"))

    p.reload()
    p.wait_for_function("() => document.body.dataset.ready === 'true'")
    contents = p.locator("#messages .content").all_inner_texts()
    assert contents == ["tell <b>me</b> <img src=x onerror=alert(1)> files", text]
    assert p.locator("#ttft").inner_text() == f"{ttft:.0f} ms"
    listed = p.locator("#conversation-list li")
    assert listed.count() >= 1
    assert "tell <b>me</b>" in listed.first.inner_text()
    unlabelled = p.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select, button')]
            .filter(e => !(e.labels?.length || e.getAttribute('aria-label')
                           || (e.tagName === 'BUTTON' && e.textContent.trim())))
            .map(e => e.outerHTML)"""
    )
    assert unlabelled == []
    # A second turn, from the keyboard (Enter sends), carries the whole history.
    _send(p, "again", 3, 0, enter=True)
    p.wait_for_function(
        "() => document.querySelectorAll('#messages li').length === 4 &&"
        " document.querySelector('#status').textContent.startsWith('Answered')",
        timeout=JOB_WAIT,
    )
    assert _answer(p).locator(".content").inner_text() == "again again again"
    page.check_clean()


def test_stop_cancels_the_job_and_the_page_works_on_a_phone(
    page: Page, server: ServerProcess, tmp_path: Path
) -> None:
    p = page.page
    p.set_viewport_size({"width": 375, "height": 667})
    _open(p, server.url + "/ui/parrot/chat")
    p.get_by_role("button", name="New chat").click()
    _send(p, "never ending story", 100_000, 0.01)
    p.wait_for_function(
        """() => {
            const a = [...document.querySelectorAll('#messages li.assistant')].at(-1);
            return a && a.dataset.job && a.textContent.split(' ').length >= 5;
        }"""
    )
    job_id = _answer(p).get_attribute("data-job")
    p.screenshot(path=str(tmp_path / "chat-phone.png"), full_page=True)
    width = p.evaluate("() => document.documentElement.scrollWidth")
    wide = p.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > 376)
            .map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 8)"""
    )
    assert width <= 375, f"the page is {width} px wide on a 375 px screen: {wide}"
    p.get_by_role("button", name="Stop").click()
    p.wait_for_function(
        "() => document.querySelector('#status').textContent.startsWith('Stopped')",
        timeout=JOB_WAIT,
    )
    job = httpx.get(f"{server.url}/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "cancelled"
    assert _answer(p).get_attribute("data-status") == "cancelled"
    words = len(_answer(p).locator(".content").inner_text().split())
    assert 5 <= words < 100_000
    assert not p.get_by_role("button", name="Stop").is_enabled()
    # What was written before the stop is kept, marked stopped, across a reload.
    p.reload()
    p.wait_for_function("() => document.body.dataset.ready === 'true'")
    assert _answer(p).locator(".meta").inner_text() == "stopped"
    assert len(_answer(p).locator(".content").inner_text().split()) == words
    p.screenshot(path=str(tmp_path / "chat-phone-stopped.png"), full_page=True)
    page.check_clean()


def test_a_conversation_can_be_deleted_and_a_non_chat_endpoint_has_no_chat_page(
    page: Page, server: ServerProcess
) -> None:
    p = page.page
    _open(p, server.url + "/ui/parrot/chat")
    _send(p, "short one", 2, 0)
    p.wait_for_function(
        "() => document.querySelector('#status').textContent.startsWith('Answered')",
        timeout=JOB_WAIT,
    )
    p.locator("#conversation-list li[aria-current=true]").wait_for()
    before = p.locator("#conversation-list li").count()
    title = p.locator("#chat-title").inner_text()
    p.get_by_role("button", name=f"Delete “{title}”").click()
    p.wait_for_function(
        "n => document.querySelectorAll('#conversation-list li').length === n", arg=before - 1
    )
    assert p.locator("#messages li").count() == 0
    # A chat model that returns its answer whole shows it too.
    _open(p, server.url + "/ui/oneshot/chat")
    p.get_by_label("Message", exact=True).fill("<i>abc</i>")
    p.get_by_role("button", name="Send").click()
    p.wait_for_function(
        "() => document.querySelector('#status').textContent.startsWith('Answered')",
        timeout=JOB_WAIT,
    )
    assert _answer(p).locator(".content").inner_text() == ">i/<cba>i<"
    assert httpx.get(server.url + "/ui/echo/chat", timeout=10).status_code == 404
    assert httpx.get(server.url + "/ui/nope/chat", timeout=10).status_code == 404
    page.check_clean()


def test_under_auth_keys_the_page_signs_in_for_a_session(browser: Any, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/jobs.db"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelport",
            "keys",
            "create",
            "--scope",
            "client",
            "--endpoints",
            "parrot",
            "--store",
            store,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    process = ServerProcess([*SERVED, "--store", store, "--auth", "keys"], tmp_path / "s.log")
    try:
        process.start().wait_ready()
        assert httpx.get(process.url + "/conversations", timeout=10).status_code == 401
        page = Page(browser, process)
        p = page.page
        p.goto(process.url + "/ui/parrot/chat")
        p.get_by_label("API key").wait_for()
        p.get_by_label("API key").fill("mp_" + secrets.token_urlsafe(32))
        p.get_by_role("button", name="Sign in").click()
        p.wait_for_function("() => document.querySelector('#login-error').textContent !== ''")
        p.get_by_label("API key").fill(key)
        p.get_by_role("button", name="Sign in").click()
        p.wait_for_function("() => document.body.dataset.ready === 'true'")
        assert key not in p.content()
        stored = p.evaluate("() => JSON.stringify({...sessionStorage, ...localStorage})")
        assert key not in stored and "mps_" in stored
        _send(p, "keyed hello", 2, 0)
        p.wait_for_function(
            "() => document.querySelector('#status').textContent.startsWith('Answered')",
            timeout=JOB_WAIT,
        )
        assert _answer(p).locator(".content").inner_text() == "keyed hello"
        listed = httpx.get(
            process.url + "/conversations", headers={"Authorization": f"Bearer {key}"}, timeout=10
        ).json()
        assert [c["title"] for c in listed] == ["keyed hello"]
        p.screenshot(path=str(tmp_path / "chat-keys.png"))
        page.check_clean()
        page.context.close()
    finally:
        process.stop()
