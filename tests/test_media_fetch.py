"""Media inputs given as URLs: fetched only from allowed hosts, never from loopback or
private addresses unless that host is listed by name, redirects and DNS answers checked."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from modelport.server.app import Settings
from tests.conftest import AppFactory, Serve
from tests.models.media import Inspect
from tests.test_media import jpeg

PHOTO = jpeg(64, 32)


class Files:
    """A little web server on 127.0.0.1: /cat.jpg, /big, /slow, /to?url (a redirect)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/cat.jpg":
                    self._send(PHOTO)
                elif self.path == "/big":
                    self._send(b"\xff" * 200_000)
                elif self.path == "/slow":
                    files.release.wait(30)
                    self._send(PHOTO)
                elif self.path.startswith("/to?"):
                    self.send_response(302)
                    self.send_header("location", self.path.split("?", 1)[1])
                    self.send_header("content-length", "0")
                    self.end_headers()
                else:
                    self.send_error(404)

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("content-type", "image/jpeg")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def files() -> Iterator[Files]:
    served = Files()
    yield served
    served.stop()


async def submit(app_factory: AppFactory, url: str, **settings: Any) -> Any:
    app = await app_factory([Inspect], settings=Settings(**settings))
    r = await app.http.post("/endpoints/inspect/jobs", json={"input": {"image": url}})
    return r


async def test_no_url_is_fetched_without_fetch_allow(app_factory: AppFactory, files: Files) -> None:
    r = await submit(app_factory, files.url("/cat.jpg"))
    assert r.status_code == 422
    assert r.json()["errors"][0] == {
        "field": "image",
        "message": "URLs are not fetched by this server; send the file itself",
    }


async def test_a_listed_host_is_fetched_and_converted(
    app_factory: AppFactory, files: Files
) -> None:
    r = await submit(app_factory, files.url("/cat.jpg"), fetch_allow=("127.0.0.1",))
    assert r.status_code == 200, r.text
    assert r.json()["output"]["size"] == [32, 16]
    assert r.json()["input"]["image"].endswith("/files/input.image")  # the job keeps the file


async def test_loopback_is_refused_to_a_wildcard(app_factory: AppFactory, files: Files) -> None:
    r = await submit(app_factory, files.url("/cat.jpg"), fetch_allow=("*",))
    assert r.status_code == 422
    assert "resolves to 127.0.0.1, a loopback, private or link-local address" in r.text


async def test_a_name_resolving_to_loopback_is_refused_unless_listed(
    app_factory: AppFactory, files: Files
) -> None:
    r = await submit(
        app_factory, files.url("/cat.jpg", "localhost"), fetch_allow=("*.localhost", "*")
    )
    assert r.status_code == 422 and "loopback, private or link-local" in r.text
    r = await submit(app_factory, files.url("/cat.jpg", "localhost"), fetch_allow=("localhost",))
    assert r.status_code == 200, r.text


async def test_a_redirect_is_checked_again(app_factory: AppFactory, files: Files) -> None:
    hop = files.url("/to?" + files.url("/cat.jpg", "127.0.0.1"), "localhost")
    r = await submit(app_factory, hop, fetch_allow=("localhost",))
    assert r.status_code == 422
    assert "cannot fetch from 127.0.0.1: not a host this server fetches from" in r.text
    r = await submit(app_factory, hop, fetch_allow=("localhost", "127.0.0.1"))
    assert r.status_code == 200, r.text


async def test_size_and_time_limits(app_factory: AppFactory, files: Files) -> None:
    r = await submit(
        app_factory, files.url("/big"), fetch_allow=("127.0.0.1",), max_body_size=100_000
    )
    assert r.status_code == 422 and "the limit is 100000" in r.text
    r = await submit(app_factory, files.url("/slow"), fetch_allow=("127.0.0.1",), fetch_timeout=0.3)
    assert r.status_code == 422 and "took longer than 0.3 seconds" in r.text


async def test_bad_urls(app_factory: AppFactory, files: Files) -> None:
    r = await submit(app_factory, files.url("/missing"), fetch_allow=("127.0.0.1",))
    assert r.status_code == 422 and "answered HTTP 404" in r.text
    r = await submit(app_factory, "ftp://127.0.0.1/x.jpg", fetch_allow=("*",))
    assert r.status_code == 422  # not a URL this server fetches, nor base64
    r = await submit(app_factory, "http://10.0.0.1/x.jpg", fetch_allow=("*",))
    assert r.status_code == 422 and "10.0.0.1, a loopback, private" in r.text
    r = await submit(app_factory, "http://169.254.169.254/latest/meta-data", fetch_allow=("*",))
    assert r.status_code == 422 and "169.254.169.254" in r.text


def test_serve_fetch_allow(serve: Serve, files: Files) -> None:
    server = serve(
        ["tests/models/media.py:Inspect", "--store", "memory://", "--fetch-allow", "127.0.0.1"]
    )
    server.start().wait_ready()
    r = httpx.post(
        f"{server.url}/endpoints/inspect/jobs",
        json={"input": {"image": files.url("/cat.jpg")}},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.json()["output"]["size"] == [32, 16]


def test_serve_refuses_a_url_as_a_fetch_host() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelport", "serve", "--fetch-allow", "http://x/", "x.py"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "'http://x/' is not a host name" in done.stderr
