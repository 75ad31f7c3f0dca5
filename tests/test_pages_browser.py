"""The playground, the index and the admin dashboard as a person uses them: Debian's
chromium driven by Playwright against real `modelport serve` processes on 127.0.0.1 (and a
real remote worker for the dashboard). Every request a page makes is watched (none may
leave this machine) and every page is screenshotted into the test's tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import (
    ROOT,
    WORKER_TOKEN,
    ServerProcess,
    WorkerProcess,
    wait_for,
    worker_args,
)
from tests.test_docs_browser import Page, browser

__all__ = ["browser"]

pytestmark = pytest.mark.e2e

EXAMPLES = [  # the `make run` set, and a model that answers a picture with a picture
    "examples/iris/model.py",
    "examples/echo/model.py",
    "examples/txt2img/model.py",
    "examples/textgen/model.py",
    "examples/digits/model.py",
    "examples/painter/model.py",
    "examples/audio/model.py",
    "tests/models/pages.py",
    "tests/models/chatty.py",
]
TIMEOUT = 30_000
"""Milliseconds a page may take to show what a test waits for."""


def _keys_create(store: str, scope: str, *extra: str) -> str:
    command = [sys.executable, "-m", "modelport", "keys", "create", "--scope", scope]
    done = subprocess.run(
        [*command, "--store", store, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("pages")
    args = [*EXAMPLES, "--worker-token", WORKER_TOKEN, "--store", f"sqlite:///{root}/jobs.db"]
    process = ServerProcess(args, root / "server.log")
    try:
        yield process.start().wait_ready(timeout=90)
    finally:
        process.stop()


@pytest.fixture
def page(browser: Any, server: ServerProcess, tmp_path: Path) -> Iterator[Page]:
    opened = Page(browser, server)
    opened.page.set_default_timeout(TIMEOUT)
    yield opened
    opened.page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    opened.context.close()


def record(page: Page) -> None:
    """Note, in order, every text the result area shows (as added text nodes), so a test
    can tell what the page showed before the job ended."""
    page.page.evaluate(
        """() => {
        window.__shown = [];
        const watch = new MutationObserver((records) => {
            for (const r of records) for (const n of r.addedNodes) {
                const where = r.target.id || r.target.className || r.target.tagName;
                window.__shown.push([where, n.textContent || n.nodeName]);
            }
        });
        watch.observe(document.getElementById('result'), {childList: true, subtree: true});
    }"""
    )


def shown(page: Page) -> list[tuple[str, str]]:
    return [tuple(x) for x in page.page.evaluate("() => window.__shown")]


def open_playground(page: Page, server: ServerProcess, endpoint: str) -> Any:
    assert page.page.goto(f"{server.url}/ui/{endpoint}").status == 200
    page.page.wait_for_selector('body[data-ready="true"]')
    record(page)
    return page.page


def run(p: Any) -> str:
    p.get_by_role("button", name="Run").click()
    p.wait_for_function(
        "() => /^(Succeeded|Failed|Cancelled|Expired|Error|The input)/"
        ".test(document.getElementById('status').textContent)"
    )
    return str(p.inner_text("#status"))


def last_job(p: Any) -> str:
    """The id of the last job the page followed (from the requests it made)."""
    urls = p.evaluate("() => performance.getEntriesByType('resource').map(e => e.name)")
    ids = [u.split("/jobs/")[1].split("/")[0] for u in urls if "/jobs/" in u]
    assert ids, urls
    return str(ids[-1])


def events(server: ServerProcess, job_id: str) -> list[tuple[str, Any]]:
    """The job's stored events, as the server streams them."""
    text = httpx.get(f"{server.url}/jobs/{job_id}/events", timeout=30).text
    found = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            found.append((fields["event"], json.loads(fields["data"])))
    return found


def test_index_lists_state_and_links_to_each_playground(page: Page, server: ServerProcess) -> None:
    p = page.page
    response = p.goto(server.url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    endpoints = httpx.get(server.url + "/endpoints", timeout=10).json()
    for endpoint in endpoints:
        section = p.locator(f"#endpoint-{endpoint['name']}")
        assert section.locator(".state").inner_text() == endpoint["state"]
        # (a remote worker's endpoint, from the dashboard's test, has none once it left)
        assert endpoint["state"] == "ready" or endpoint["name"] == "fails"
        assert f"{endpoint['queue_depth']} queued" in section.inner_text()
        link = section.get_by_role("link", name="Playground")
        assert link.get_attribute("href") == f"/ui/{endpoint['name']}"
    assert p.locator("#endpoint-textgen").get_by_role("link", name="Chat").count() == 1
    p.locator("#endpoint-echo").get_by_role("link", name="Playground").click()
    p.wait_for_selector('body[data-ready="true"]')
    assert p.inner_text("#state") == "ready"
    record(page)
    assert run(p).startswith("Succeeded")  # the form comes filled with a valid example
    assert p.inner_text("#output pre") == p.get_by_label("Text").input_value() != ""
    page.check_clean()


def test_numbers_with_sliders_run_and_the_code_matches(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "iris")
    length = p.get_by_label("Sepal Length", exact=True)
    assert length.get_attribute("min") == "0" and length.get_attribute("max") == "10"
    assert length.input_value() == "5.1"  # the spec's example
    slider = p.get_by_label("Sepal Length (slider)")
    slider.fill("7")
    assert length.input_value() == "7"
    p.get_by_label("Petal Length", exact=True).fill("4.7")
    p.get_by_label("Petal Width", exact=True).fill("1.4")
    p.get_by_label("Sepal Width", exact=True).fill("3.2")
    curl = p.inner_text("#code-curl")
    assert f"curl {server.url}/endpoints/iris/jobs" in curl
    body = json.loads(curl.split("-d ", 1)[1].strip().strip("'"))
    assert body == {
        "input": {"sepal_length": 7, "sepal_width": 3.2, "petal_length": 4.7, "petal_width": 1.4}
    }
    assert run(p).startswith("Succeeded")
    expected = httpx.post(server.url + "/endpoints/iris/jobs", json=body, timeout=30).json()
    assert expected["output"]["label"] == "versicolor"
    assert json.loads(p.inner_text("#output pre")) == expected["output"]
    p.get_by_role("tab", name="Python").click()
    assert 'client.predict("iris", inputs)' in p.inner_text("#code-python")
    p.keyboard.press("ArrowRight")
    assert "new Client(" in p.inner_text("#code-js")
    page.check_clean()


def test_errors_are_shown_on_their_fields(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "iris")
    p.get_by_label("Sepal Length", exact=True).fill("11")
    p.get_by_label("Petal Width", exact=True).fill("")
    assert run(p) == "The input was refused"
    length_error = p.inner_text("#err-sepal_length")
    assert "less than or equal to 10" in length_error
    assert p.get_by_label("Sepal Length", exact=True).get_attribute("aria-invalid") == "true"
    assert "required" in p.inner_text("#err-petal_width").lower()
    assert p.inner_text("#err-sepal_width") == ""
    page.check_clean()


def test_text_and_choices_with_progress(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "txt2img")
    p.get_by_label("Prompt").fill("a cat")
    size = p.get_by_label("Size")
    assert size.locator("option").all_inner_texts() == ["8", "16", "32"]
    size.select_option(label="8")
    p.get_by_label("Seed").fill("7")
    assert run(p).startswith("Succeeded")
    body = json.loads(p.inner_text("#code-curl").split("-d ", 1)[1].strip().strip("'"))
    assert body == {"input": {"prompt": "a cat", "num_samples": 1, "seed": 7, "size": 8}}
    direct = httpx.post(server.url + "/endpoints/txt2img/jobs", json=body, timeout=30).json()
    assert p.locator("#output pre").first.inner_text() == direct["output"]["images"][0]
    assert p.locator("#output pre").last.inner_text() == "7"  # the seed
    page.check_clean()


def test_progress_shows_previews_and_the_output_image(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "painter")
    p.get_by_label("Prompt").fill("a red boat")
    p.get_by_label("Steps", exact=True).fill("6")
    p.get_by_label("Width", exact=True).fill("64")
    p.get_by_label("Height", exact=True).fill("48")
    assert run(p).startswith("Succeeded")
    seen = shown(page)
    messages = [text for where, text in seen if where == "message"]
    stored = events(server, last_job(p))
    progress = [data["message"] for kind, data in stored if kind == "progress"]
    assert progress and all(m.startswith("pass ") for m in progress)
    assert messages[: len(progress)] == progress, "every progress report is shown, in order"
    final = httpx.get(f"{server.url}/jobs/{last_job(p)}", timeout=10).json()["progress"]
    assert p.inner_text("#message") == final["message"]
    previews = [i for i, (where, _) in enumerate(seen) if where == "preview"]
    done = next(i for i, (where, text) in enumerate(seen) if text.startswith("Succeeded"))
    assert previews and previews[0] < done, "a preview was shown before the job ended"
    assert p.locator("#preview img").get_attribute("src").startswith("data:image/")
    output = p.locator("#output img")
    assert output.evaluate("img => img.complete && img.naturalWidth") == 64
    assert p.locator("#progress").evaluate("el => el.value") == 1
    page.check_clean()


def test_an_uploaded_image_is_previewed_and_the_output_image_shown(
    page: Page, server: ServerProcess, tmp_path: Path
) -> None:
    picture = tmp_path / "red.png"
    Image.new("RGB", (20, 10), (255, 0, 0)).save(picture)
    p = open_playground(page, server, "invert")
    p.get_by_label("Image").set_input_files(str(picture))
    assert (
        p.locator("#preview-image img").evaluate("i => i.decode().then(() => i.naturalWidth)") == 20
    )
    assert "-F 'image=@red.png'" in p.inner_text("#code-curl")
    assert run(p).startswith("Succeeded")
    src = p.locator("#output img").get_attribute("src")
    assert src.startswith("data:image/")
    pixel = p.locator("#output img").evaluate(
        """img => img.decode().then(() => {
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            return [c.width, c.height, ...g.getImageData(0, 0, 1, 1).data.slice(0, 3)];
        })"""
    )
    assert pixel[:2] == [20, 10]
    assert pixel[2] < 10 and pixel[3] > 245 and pixel[4] > 245  # red inverted: cyan
    assert p.get_by_role("link", name="Download output").count() == 1
    page.check_clean()


def test_audio_in_and_out(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "tones")
    notes = p.get_by_label("Notes")
    assert notes.input_value() == "A4\nC5\nE5"
    notes.fill("C4\nG4")
    assert run(p).startswith("Succeeded")
    audio = p.locator("#output audio")
    assert audio.get_attribute("src").startswith("data:audio/wav")
    wav = httpx.post(
        server.url + "/endpoints/tones/jobs", json={"input": {"notes": ["C4", "G4"]}}, timeout=30
    ).json()["output"]
    assert wav.startswith("data:audio/wav")
    duration = audio.evaluate(
        "a => a.readyState >= 1 ? a.duration"
        " : new Promise(r => a.onloadedmetadata = () => r(a.duration))"
    )
    assert duration == pytest.approx(0.8, abs=0.05)
    p.goto(server.url + "/ui/loudness")
    p.wait_for_selector('body[data-ready="true"]')
    p.get_by_label("Audio").set_input_files(
        files=[{"name": "tones.wav", "mimeType": "audio/wav", "buffer": _data_url_bytes(wav)}]
    )
    assert p.locator("#preview-audio audio").count() == 1
    assert run(p).startswith("Succeeded")
    assert json.loads(p.inner_text("#output pre"))["duration"] == pytest.approx(0.8, abs=0.01)
    page.check_clean()


def _data_url_bytes(url: str) -> bytes:
    import base64

    return base64.b64decode(url.split(",", 1)[1])


def test_streamed_text_shows_before_the_answer_ends(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "textgen")
    messages = p.get_by_label("Messages")
    messages.fill('[{"role": "user", "content": "tell me about sockets"}]')
    p.get_by_label("Max Tokens", exact=True).fill("80")
    assert run(p).startswith("Succeeded")
    seen = shown(page)
    chunks = [i for i, (where, _) in enumerate(seen) if where == "stream"]
    done = next(i for i, (where, text) in enumerate(seen) if text.startswith("Succeeded"))
    assert len(chunks) > 10 and chunks[0] < done
    assert ("status", "Streaming") in seen
    job = httpx.get(f"{server.url}/jobs/{last_job(p)}", timeout=10).json()
    assert p.inner_text("#output .stream") == job["output"]
    assert len(job["output"].split()) >= 80
    page.check_clean()


def test_a_model_answering_markup_shows_it_as_text(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "echo")
    attack = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    p.get_by_label("Text").fill(attack)
    p.get_by_label("Text").press("Tab")  # the keyboard reaches Run from the last field
    assert p.evaluate("() => document.activeElement.id") == "run"
    p.keyboard.press("Enter")
    p.wait_for_function("() => document.getElementById('status').textContent.startsWith('Succ')")
    assert attack in p.inner_text("#output")
    assert p.locator("#output img, #output script").count() == 0
    assert p.evaluate("() => window.pwned") is None
    page.check_clean()


def test_cancel_stops_a_running_job(page: Page, server: ServerProcess) -> None:
    p = open_playground(page, server, "painter")
    p.get_by_label("Prompt").fill("a long one")
    p.get_by_label("Steps", exact=True).fill("100")
    p.get_by_label("Width", exact=True).fill("1024")
    p.get_by_label("Height", exact=True).fill("1024")
    p.get_by_role("button", name="Run").click()
    p.wait_for_function("() => document.getElementById('message').textContent.startsWith('pass')")
    p.get_by_role("button", name="Cancel").click()
    p.wait_for_function("() => document.getElementById('status').textContent === 'Cancelled'")
    job_id = last_job(p)
    job = httpx.get(f"{server.url}/jobs/{job_id}", timeout=10).json()
    assert job["status"] == "cancelled"
    assert job["progress"]["fraction"] < 1
    page.check_clean()


def _store_of(server: ServerProcess) -> str:
    return server.args[server.args.index("--store") + 1]


def sign_in(p: Any, key: str) -> None:
    p.locator("#login").wait_for()
    p.get_by_label("API key").fill(key)
    p.get_by_role("button", name="Sign in").click()


def secrets_kept(p: Any) -> str:
    """Everything the page keeps: its DOM, sessionStorage and localStorage."""
    return str(
        p.evaluate(
            "() => document.documentElement.outerHTML + JSON.stringify(sessionStorage)"
            " + JSON.stringify(localStorage)"
        )
    )


def test_admin_shows_a_worker_joining_and_a_job_failing(
    page: Page, server: ServerProcess, tmp_path: Path
) -> None:
    store = _store_of(server)
    admin = _keys_create(store, "admin")
    client_key = _keys_create(store, "client")
    p = page.page
    assert p.goto(server.url + "/admin").status == 200
    assert p.locator("#dashboard").is_hidden()
    sign_in(p, client_key)
    p.wait_for_function("() => document.getElementById('login-error').textContent")
    assert "admin key" in p.inner_text("#login-error")
    sign_in(p, admin)
    p.wait_for_selector('body[data-ready="true"]')
    p.wait_for_function("() => document.getElementById('live').textContent.startsWith('Live')")
    kept = secrets_kept(p)
    assert admin not in kept and client_key not in kept
    assert "mps_" in p.evaluate("() => JSON.stringify(sessionStorage)")

    worker = WorkerProcess(
        worker_args(server, "tests/models/basic.py:Fails"), tmp_path / "worker.log"
    ).start()
    try:
        row = p.locator("#workers tbody tr", has_text="fails")
        row.wait_for()
        cells = row.locator("td").all_inner_texts()
        assert cells[1] == "online" and cells[4] == "fails"
        assert cells[2] and cells[3] == "cpu"  # host, device

        failed = httpx.post(
            server.url + "/endpoints/fails/jobs", json={"input": {"x": -1}}, timeout=30
        ).json()
        assert failed["status"] == "failed"
        job_row = p.locator(f'#jobs tbody tr[data-job="{failed["id"]}"]')
        job_row.wait_for()
        assert job_row.locator(".state").inner_text() == "failed"
        assert "must not be negative" in job_row.inner_text()
        p.get_by_label("Status").select_option("succeeded")
        job_row.wait_for(state="detached")
        p.get_by_label("Status").select_option("failed")
        job_row.get_by_role("button", name=failed["id"]).click()
        p.wait_for_function("() => document.getElementById('job').textContent.includes('negative')")
        assert p.locator("#job .state").inner_text() == "failed"
        caption = p.locator("#chart-fails figcaption").first
        p.wait_for_function(
            "() => document.querySelector('#chart-fails figcaption')"
            ".textContent.startsWith('Throughput: 0.017')"
        )
        assert caption.inner_text().startswith("Throughput: 0.017 jobs/s")
        assert p.locator("#chart-fails svg rect").count() >= 1
    finally:
        worker.stop()

    queued = httpx.post(
        server.url + "/endpoints/fails/jobs",
        json={"input": {"x": 1}},
        headers={"Prefer": "respond-async"},
        timeout=30,
    ).json()
    assert queued["status"] == "queued"
    p.get_by_label("Status").select_option("")
    p.get_by_role("button", name=f"Cancel job {queued['id']}").click()
    p.wait_for_function("() => document.getElementById('live').textContent.includes('cancelled')")
    assert httpx.get(f"{server.url}/jobs/{queued['id']}", timeout=10).json()["status"] == (
        "cancelled"
    )

    p.get_by_label("Name").fill("made-in-the-page")
    p.get_by_label("Endpoints (comma-separated, empty: all)").fill("echo")
    p.get_by_role("button", name="Create key").click()
    secret = p.locator("#key-secret")
    secret.wait_for()
    key_row = p.locator("#keys tbody tr", has_text="made-in-the-page")
    key_row.wait_for()
    key_id = key_row.get_attribute("data-key")
    assert key_row.locator("td").nth(3).inner_text() == "echo"
    with httpx.Client(base_url=server.url, timeout=10) as http:
        bearer = {"Authorization": f"Bearer {secret.inner_text()}"}
        made = http.post("/sessions", json={}, headers=bearer)
        assert made.status_code == 201, made.text
        key_row.get_by_role("button", name=f"Revoke key {key_id}").click()
        key_row.wait_for(state="detached")
        listed = http.get("/keys", headers={"Authorization": f"Bearer {admin}"}).json()
        assert key_id not in {k["id"] for k in listed}
    page.check_clean()


RUNTIME_SPEC = """\
[endpoint]
description = "Put at run time by a test"
version = "2.3"

[metadata]
labels = ["<cat>", "dog"]

[inputs]
word = { type = "string", required = true }
"""


def text_of(p: Any, selector: str, expected: str) -> None:
    """Wait until the element shows exactly ``expected``."""
    p.wait_for_function(
        "([s, t]) => document.querySelector(s)?.textContent === t", arg=[selector, expected]
    )


def test_admin_disables_enables_drains_and_shows_logs(
    page: Page, server: ServerProcess, tmp_path: Path
) -> None:
    """Disable an endpoint with a reason from /admin: submits get 503 with it and its
    playground shows it; enable it; read its model's log lines, filtered by job and level;
    drain an endpoint put at run time and see it leave the dashboard and the index. What
    the model printed and the reason are shown as text."""
    admin = _keys_create(_store_of(server), "admin")
    word = "<b>bold</b>"
    done = httpx.post(
        server.url + "/endpoints/chatty/jobs", json={"input": {"word": word}}, timeout=30
    ).json()
    assert done["status"] == "succeeded"
    p = page.page
    p.goto(server.url + "/admin")
    sign_in(p, admin)
    p.wait_for_selector('body[data-ready="true"]')
    card = p.locator("#chart-chatty")
    card.locator(".state").wait_for()

    card.get_by_role("button", name="Logs of chatty").click()
    p.get_by_label("Job id (empty: all)").fill(done["id"])
    p.get_by_label("Job id (empty: all)").press("Tab")
    lines = p.locator("#log-lines tbody tr")
    p.wait_for_function("() => document.querySelectorAll('#log-lines tbody tr').length === 5")
    assert lines.first.locator("td").nth(4).inner_text() == f"starting {word}"
    assert [lines.nth(i).get_attribute("data-level") for i in range(5)] == [
        "info",
        "warning",
        "warning",
        "error",
        "info",
    ]
    p.get_by_label("Level").select_option("error")
    p.wait_for_function("() => document.querySelectorAll('#log-lines tbody tr').length === 1")
    assert lines.first.locator("td").nth(4).inner_text() == f"bad {word}"
    assert p.locator("#log-lines b").count() == 0
    assert "1 line of chatty, error and above" in p.inner_text("#logs-status")

    reason = "retraining <i>now</i>"
    try:
        card.get_by_label("Reason to disable chatty").fill(reason)
        card.get_by_role("button", name="Disable chatty").click()
        text_of(p, "#chart-chatty .state", "disabled")
        assert card.locator(".reason").inner_text() == reason
        assert card.locator("i").count() == 0
        assert card.get_by_role("button", name="Enable chatty").is_visible()
        assert card.get_by_role("button", name="Disable chatty").is_hidden()
        p.screenshot(path=str(tmp_path / "admin-disabled.png"), full_page=True)
        refused = httpx.post(
            server.url + "/endpoints/chatty/jobs", json={"input": {"word": "x"}}, timeout=30
        )
        assert refused.status_code == 503
        assert refused.json()["detail"] == f"endpoint 'chatty' is disabled: {reason}"
        assert int(refused.headers["retry-after"]) >= 1

        p.goto(server.url + "/ui/chatty")  # the same tab: its admin session stays
        p.wait_for_selector('body[data-ready="true"]')
        assert p.inner_text("#state") == "disabled"
        assert p.inner_text("#state-detail").endswith(f" · {reason}")
        with p.expect_response(lambda r: r.url.endswith("/endpoints/chatty/jobs")) as answer:
            p.get_by_role("button", name="Run").click()
        assert answer.value.status == 503
        text_of(p, "#status", "Not taking jobs now")
        assert p.inner_text("#form-error") == f"endpoint 'chatty' is disabled: {reason}"
        assert p.locator("#form-error i").count() == 0

        p.goto(server.url + "/admin")
        p.wait_for_selector('body[data-ready="true"]')
        text_of(p, "#chart-chatty .state", "disabled")  # live from the overview
        card.get_by_role("button", name="Enable chatty").click()
        text_of(p, "#chart-chatty .state", "ready")
        assert card.locator(".reason").is_hidden()
        assert card.get_by_label("Reason to disable chatty").is_visible()
    finally:
        httpx.post(server.url + "/endpoints/chatty/enable", timeout=10)
    again = httpx.post(
        server.url + "/endpoints/chatty/jobs", json={"input": {"word": "x"}}, timeout=30
    ).json()
    assert again["output"] == "X"
    finished = p.locator(f'#jobs tbody tr[data-job="{again["id"]}"]')
    finished.wait_for()
    assert finished.locator("td").all_inner_texts()[1:5] == [
        "chatty",
        str(again["revision"]),
        again["model_version"],
        "succeeded",
    ]

    put = httpx.put(
        server.url + "/endpoints/ephemeral",
        content=RUNTIME_SPEC,
        headers={"content-type": "application/toml"},
        timeout=10,
    )
    assert put.status_code == 201, put.text
    queued = httpx.post(
        server.url + "/endpoints/ephemeral/jobs",
        json={"input": {"word": "w"}},
        headers={"Prefer": "respond-async"},
        timeout=10,
    ).json()
    assert queued["status"] == "queued"  # no worker serves it
    ephemeral = p.locator("#chart-ephemeral")
    ephemeral.wait_for()  # it appears on the dashboard live
    job_row = p.locator(f'#jobs tbody tr[data-job="{queued["id"]}"]')
    job_row.wait_for()
    assert job_row.locator("td").all_inner_texts()[1:5] == ["ephemeral", "1", "2.3", "queued"]
    ephemeral.get_by_role("button", name="Details of ephemeral").click()
    detail = p.locator("#endpoint-detail")
    detail.locator("h3").wait_for()
    assert detail.locator("h3").inner_text() == "ephemeral · version 2.3 · revision 1"
    assert json.loads(detail.locator("pre.metadata").inner_text()) == {"labels": ["<cat>", "dog"]}
    assert "No worker serves it now." in detail.inner_text()
    card.get_by_role("button", name="Details of chatty").click()
    p.wait_for_function(
        "() => document.querySelector('#endpoint-detail h3')?.textContent.startsWith('chatty')"
    )
    cells = detail.locator("table tbody tr").first.locator("td").all_inner_texts()
    assert cells[1:3] == ["online", "1"]
    p.screenshot(path=str(tmp_path / "admin-details.png"), full_page=True)
    ephemeral.get_by_role("button", name="Drain ephemeral").click()
    ephemeral.get_by_role("button", name="Confirm: drain ephemeral").click()
    text_of(p, "#chart-ephemeral .state", "deleting")
    assert "draining: 1 queued and 0 running" in p.inner_text("#endpoints-status")
    refused = httpx.post(
        server.url + "/endpoints/ephemeral/jobs", json={"input": {"word": "w"}}, timeout=10
    )
    assert refused.status_code == 503
    assert "being deleted" in refused.json()["detail"]
    assert httpx.get(f"{server.url}/jobs/{queued['id']}", timeout=10).json()["status"] == (
        "queued"
    )  # draining: the queued job may still run; once it is cancelled nothing is left
    httpx.post(f"{server.url}/jobs/{queued['id']}/cancel", timeout=10).raise_for_status()
    ephemeral.wait_for(state="detached")
    assert httpx.get(server.url + "/endpoints/ephemeral", timeout=10).status_code == 404
    p.goto(server.url + "/")
    assert p.locator("#endpoint-chatty").count() == 1
    assert p.locator("#endpoint-ephemeral").count() == 0
    page.check_clean()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    root = tmp_path_factory.mktemp("keyed")
    store = f"sqlite:///{root}/jobs.db"
    key = _keys_create(store, "client", "--endpoints", "echo")
    process = ServerProcess(
        ["examples/echo/model.py", "--auth", "keys", "--store", store], root / "server.log"
    )
    try:
        yield process.start().wait_ready(), key
    finally:
        process.stop()


def test_under_auth_keys_a_page_works_with_a_session_and_refuses_without(
    browser: Any, keyed: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    server, key = keyed
    opened = Page(browser, server)
    p = opened.page
    p.set_default_timeout(TIMEOUT)
    try:
        p.goto(server.url + "/ui/echo")
        p.locator("#login").wait_for()  # GET /endpoints/echo answered 401
        refused = p.evaluate(
            """() => fetch('/endpoints/echo/jobs', {method: 'POST',
                headers: {'content-type': 'application/json'},
                body: JSON.stringify({input: {text: 'hi'}})}).then(r => r.status)"""
        )
        assert refused == 401
        p.get_by_label("Text").fill("hello")
        p.get_by_role("button", name="Run").click()
        p.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Sign in')"
        )
        sign_in(p, key)
        p.wait_for_selector("#login", state="hidden")
        assert run(p).startswith("Succeeded")
        assert p.inner_text("#output pre") == "hello"
        assert key not in secrets_kept(p)
        token = p.evaluate("() => sessionStorage.getItem('modelport.session.client')")
        assert token.startswith("mps_")
        assert "Bearer $MODELPORT_API_KEY" in p.inner_text("#code-curl")

        p.reload()  # the session outlives a reload of the tab
        p.wait_for_selector('body[data-ready="true"]')
        assert p.locator("#login").is_hidden()
        p.get_by_label("Text").fill("again")
        assert run(p).startswith("Succeeded")

        p.evaluate("() => sessionStorage.setItem('modelport.session.client', 'mps_forged.x')")
        p.reload()
        p.locator("#login").wait_for()
        p.goto(server.url + "/admin")
        sign_in(p, key)
        p.wait_for_function("() => document.getElementById('login-error').textContent")
        assert "admin key" in p.inner_text("#login-error")

        # an admin session (the page holds no key) may stop an endpoint; the client key
        # itself may not, and is refused while it is stopped
        bearer = {"Authorization": f"Bearer {key}"}
        refused = httpx.post(f"{server.url}/endpoints/echo/disable", headers=bearer, timeout=10)
        assert refused.status_code == 403
        admin = _keys_create(_store_of(server), "admin")
        sign_in(p, admin)
        p.wait_for_selector('body[data-ready="true"]')
        card = p.locator("#chart-echo")
        card.get_by_label("Reason to disable echo").fill("moving racks")
        card.get_by_role("button", name="Disable echo").click()
        text_of(p, "#chart-echo .state", "disabled")
        submit = httpx.post(
            f"{server.url}/endpoints/echo/jobs",
            json={"input": {"text": "x"}},
            headers=bearer,
            timeout=10,
        )
        assert submit.status_code == 503
        assert submit.json()["detail"].endswith("disabled: moving racks")
        card.get_by_role("button", name="Enable echo").click()
        text_of(p, "#chart-echo .state", "ready")
        assert admin not in secrets_kept(p)
        opened.check_clean()
    finally:
        p.screenshot(path=str(tmp_path / "keyed.png"), full_page=True)
        opened.context.close()


def test_a_job_behind_another_shows_its_queue_position(page: Page, server: ServerProcess) -> None:
    long = {"prompt": "first", "steps": 100, "width": 1024, "height": 1024}
    ahead = httpx.post(
        server.url + "/endpoints/painter/jobs",
        json={"input": long},
        headers={"Prefer": "respond-async"},
        timeout=30,
    ).json()
    try:
        wait_for(
            lambda: (
                httpx.get(f"{server.url}/jobs/{ahead['id']}", timeout=10).json()["status"]
                == "running"
            ),
            30,
            "the first job to run",
        )
        p = open_playground(page, server, "painter")
        p.get_by_label("Prompt").fill("second")
        p.get_by_label("Steps", exact=True).fill("2")
        p.get_by_role("button", name="Run").click()
        p.wait_for_function(
            "() => document.getElementById('status').textContent === 'Queued: position 1'"
        )
    finally:
        httpx.post(f"{server.url}/jobs/{ahead['id']}/cancel", timeout=10)
    p.wait_for_function("() => document.getElementById('status').textContent.startsWith('Succ')")
    assert ("status", "Queued: position 1") in shown(page)
    assert p.locator("#output img").count() == 1
    page.check_clean()
