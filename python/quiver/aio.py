"""asyncio variants of the remote clients.

    async with await quiver.aio.connect("http://127.0.0.1:8080") as db:
        result = await db.read("docs", ["a", "b"])

HTTP runs on httpx's async client; Flight runs pyarrow.flight's blocking calls on worker threads
(they release the GIL), since pyarrow offers no asyncio Flight client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._client import AsyncClient
from ._flight import FlightBackend
from ._http import AsyncHttpBackend

__all__ = ["connect", "AsyncClient"]


class _ThreadedBackend:
    """Any sync backend's methods as coroutines, each call on a worker thread."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.name = backend.name
        self.url = backend.url

    def __getattr__(self, method: str) -> Any:
        function = getattr(self._backend, method)

        async def call(*args: Any) -> Any:
            return await asyncio.to_thread(function, *args)

        return call


async def connect(url: str, *, timeout: float = 30.0) -> AsyncClient:
    """An AsyncClient for ``http://host:port`` (HTTP) or ``grpc://host:port`` (Arrow Flight)."""
    if url.startswith("http://"):
        return AsyncClient(AsyncHttpBackend(url, timeout))
    if url.startswith(("grpc://", "grpc+tcp://")):
        return AsyncClient(_ThreadedBackend(FlightBackend(url, timeout)))
    raise ValueError(f"quiver.aio.connect() takes an http:// or grpc:// URL, not {url!r}")
