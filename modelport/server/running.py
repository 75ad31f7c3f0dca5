"""uvicorn, as ``modelport serve`` runs it."""

from __future__ import annotations

import asyncio
import socket
from types import FrameType

import uvicorn

from modelport.server.app import Server


class UvicornServer(uvicorn.Server):
    """uvicorn, ending long polls at the first exit signal so shutdown is not held up."""

    def __init__(self, config: uvicorn.Config, server: Server) -> None:
        super().__init__(config)
        self.modelport = server
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.modelport.broker.closing)
        super().handle_exit(sig, frame)
