"""/docs, /redoc and / as a person sees them: Debian's chromium, driven by Playwright,
against a real `modelport serve` on 127.0.0.1. Every request the pages make is watched:
none may leave this machine."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.e2e

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVED = [
    "examples/iris/model.py",
    "examples/echo/model.py",
    "examples/textgen/model.py",
    "examples/txt2img/model.py",
]


def _missing(why: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {why}")
    pytest.skip(why)


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not os.access(path, os.X_OK):
        _missing("no chromium (make install puts Debian's chromium there)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (it is in the dev extra)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("docs")
    process = ServerProcess([*SERVED, "--store", f"sqlite:///{root}/jobs.db"], root / "server.log")
    try:
        yield process.start().wait_ready()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(server.url + "/openapi.json", timeout=10).json()
    return doc


class Page:
    """A fresh page that refuses and records every request not to this server, and every
    uncaught script error."""

    def __init__(self, browser: Any, server: ServerProcess) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.route("**/*", self._route)
        self.origin = server.url

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(self.origin + "/"):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def check_clean(self) -> None:
        assert self.outside == [], f"the page tried to reach other hosts: {self.outside}"
        assert self.errors == [], f"script errors: {self.errors}"


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Page]:
    opened = Page(browser, server)
    yield opened
    opened.context.close()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
    ]


def test_docs_renders_every_operation(page: Page, server: ServerProcess, document: Any) -> None:
    expected = {(method.upper(), path) for method, path, _ in operations(document)}
    assert page.page.goto(server.url + "/docs").status == 200
    page.page.wait_for_function(
        "() => document.querySelector('.opblock') || document.body.innerText.includes('Unable')"
    )
    assert "Unable to render" not in page.page.inner_text("body")
    assert len(expected) > 20
    page.page.wait_for_function(
        "n => document.querySelectorAll('.opblock').length >= n", arg=len(expected)
    )
    shown = page.page.eval_on_selector_all(
        ".opblock-summary",
        """els => els.map(e => [
            e.querySelector('.opblock-summary-method').innerText,
            e.querySelector('.opblock-summary-path').innerText])""",
    )
    assert {(m.strip(), p.replace("\u200b", "").strip()) for m, p in shown} == expected
    assert "OAS 3.1" in page.page.inner_text("body")
    page.check_clean()


def test_docs_try_it_out_sends_the_example(page: Page, server: ServerProcess) -> None:
    """The iris operation shows its example, and "Try it out" with it gets a real answer."""
    page.page.goto(server.url + "/docs#/iris/submit_iris")
    block = page.page.locator("#operations-iris-submit_iris")
    block.locator(".opblock-body").wait_for()
    example = json.loads(block.locator(".body-param__example, .example").first.inner_text())
    assert example == {
        "input": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    }
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table tbody .response-col_status")
    status.wait_for()
    assert status.inner_text().strip().startswith("200")
    answer = json.loads(block.locator(".live-responses-table .microlight").first.inner_text())
    assert answer["status"] == "succeeded"
    assert answer["output"]["label"] == "setosa"
    page.check_clean()


def test_redoc_renders_every_operation(page: Page, server: ServerProcess, document: Any) -> None:
    assert page.page.goto(server.url + "/redoc").status == 200
    page.page.locator("h2").first.wait_for()
    for method, path, op in operations(document):
        section = page.page.locator(f'[id="tag/{op["tags"][0]}/operation/{op["operationId"]}"]')
        assert section.locator("h2").first.inner_text() == op["summary"], (method, path)
        shown = section.locator("button:has(.http-verb)").first.inner_text().split()
        assert [shown[0].upper(), shown[1]] == [method.upper(), path]
    assert "modelport" in page.page.inner_text("h1")
    page.check_clean()


def test_index_page_lists_endpoints_and_links_to_the_docs(
    page: Page, server: ServerProcess, document: Any
) -> None:
    assert page.page.goto(server.url + "/").status == 200
    assert page.page.inner_text("h1").startswith("modelport")
    assert "ready" in page.page.inner_text(".status")
    endpoints = httpx.get(server.url + "/endpoints", timeout=10).json()
    assert {e["name"] for e in endpoints} == {"iris", "echo", "textgen", "txt2img"}
    for endpoint in endpoints:
        section = page.page.locator(f"#endpoint-{endpoint['name']}")
        assert section.locator("h2 a").inner_text() == endpoint["name"]
        assert endpoint["description"] in section.inner_text()
        online = endpoint["workers_online"]
        assert online >= 1
        assert f"{online} worker{'' if online == 1 else 's'} online" in section.inner_text()
    curl = page.page.locator("#endpoint-iris pre").inner_text()
    assert f"curl {server.url}/endpoints/iris/jobs" in curl
    assert '"sepal_length":5.1' in curl
    for label, path in (("Health", "/health/ready"), ("OpenAPI JSON", "/openapi.json")):
        href = page.page.get_by_role("link", name=label).get_attribute("href")
        assert href == path
        assert httpx.get(server.url + href, timeout=10).status_code == 200
    page.page.locator("#endpoint-iris h2 a").click()
    page.page.locator("#operations-iris-submit_iris .opblock-body").wait_for()
    assert page.page.url == server.url + "/docs#/iris/submit_iris"
    page.page.goto(server.url + "/")
    page.page.get_by_role("link", name="ReDoc").click()
    page.page.locator('[id="tag/iris/operation/submit_iris"]').wait_for()
    page.check_clean()
