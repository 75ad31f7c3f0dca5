"""uvicorn, as ``modelport serve`` runs it, and the banner the server logs when it starts."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from modelport._version import __version__
from modelport.server.app import Server

log = logging.getLogger("modelport")


class UvicornServer(uvicorn.Server):
    """uvicorn, logging modelport's banner once it listens, and ending long polls at the first
    exit signal so shutdown is not held up."""

    def __init__(self, config: uvicorn.Config, server: Server, *, store: str = "") -> None:
        super().__init__(config)
        self.modelport = server
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def _log_started_message(self, listeners: Sequence[socket.SocketType]) -> None:
        super()._log_started_message(listeners)
        port = listeners[0].getsockname()[1] if listeners else self.config.port
        for line in banner(self.modelport, url_of(self.config.host, port), self.store):
            log.info("%s", line)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.modelport.broker.closing)
        super().handle_exit(sig, frame)


def url_of(host: str, port: int) -> str:
    """The server's URL, as a browser takes it."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner(server: Server, url: str, store: str) -> list[str]:
    """The lines a server logs when it starts: where it listens, its docs, its store, and
    each endpoint with the URL to submit to."""
    local = {r.spec.name for r in server.runners}
    lines = [f"modelport {__version__} serving {url} (docs: {url}/docs)"]
    if store:
        lines.append(f"store: {_public(store)}{_where(store)}")
    for name, spec in server.broker.specs.items():
        where = "model in this process" if name in local else "jobs wait for remote workers"
        if spec.kind == "chat":
            where += f"; OpenAI-style at {url}/v1/chat/completions"
        elif spec.kind == "embedding":
            where += f"; OpenAI-style at {url}/v1/embeddings"
        lines.append(f"endpoint {name}: POST {url}/endpoints/{name}/jobs ({where})")
    if server.settings.worker_token:
        lines.append(f"remote workers welcome: modelport worker MODEL.py --server {url} --token …")
    return lines


def _where(store: str) -> str:
    """Where a relative sqlite:/// file is, since it depends on the working directory."""
    path = store.removeprefix("sqlite:///")
    if path == store or path.startswith("/"):
        return ""
    return f" ({Path(path).resolve()})"


def _public(url: str) -> str:
    """A store URL fit for a log line: no password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
