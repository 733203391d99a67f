"""One keep-alive HTTP/1.1 connection to quiverd, for the sync HTTP backend.

http.client spends more time in Python than quiverd spends answering a small read (it parses
every response head with the email package and sends head and body as two writes). This writes
a request in one ``sendmsg`` of its parts (no copy of the body) and parses the response head by
hand: the status line, Content-Length or chunked Transfer-Encoding, and Connection. It is made
for quiverd's answers, not for HTTP at large: no 1xx responses, no trailers kept.
"""

from __future__ import annotations

import socket
from typing import Any

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 << 10
_RECV = 256 << 10


class ProtocolError(OSError):
    """The server's answer was not HTTP/1.1 as expected (or the connection ended early)."""


class Connection:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self._host = f"{host}:{port}".encode()
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pending = bytearray()  # received bytes not yet consumed

    def close(self) -> None:
        self._sock.close()

    def request(self, method: str, path: str, headers: dict[str, str],
                body: Any = None) -> tuple[int, bytes | bytearray, bool]:
        """Sends one request and reads its response: (status, body, whether the server closes)."""
        size = 0 if body is None else memoryview(body).nbytes
        head = [method.encode(), b" ", path.encode(), b" HTTP/1.1\r\nHost: ", self._host, b"\r\n"]
        for name, value in headers.items():
            head += [name.encode(), b": ", value.encode(), b"\r\n"]
        if body is not None or method in ("POST", "PUT"):
            head += [b"Content-Length: ", str(size).encode(), b"\r\n"]
        head.append(b"\r\n")
        parts = [b"".join(head)] + ([memoryview(body).cast("B")] if size else [])
        self._send(parts)
        return self._response(method)

    def _send(self, parts: list[Any]) -> None:
        while parts:
            sent = self._sock.sendmsg(parts)
            while parts and sent >= memoryview(parts[0]).nbytes:
                sent -= memoryview(parts[0]).nbytes
                parts.pop(0)
            if parts and sent:
                parts[0] = memoryview(parts[0])[sent:]

    def _fill(self) -> None:
        chunk = self._sock.recv(_RECV)
        if not chunk:
            raise ProtocolError("quiverd closed the connection")
        self._pending += chunk

    def _line(self) -> bytes:
        while (end := self._pending.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self._pending[:end])
        del self._pending[:end + 2]
        return line

    def _exactly(self, size: int) -> bytes | bytearray:
        pending = self._pending
        if len(pending) >= size:
            data = bytes(pending[:size])
            del pending[:size]
            return data
        data = bytearray(size)
        view = memoryview(data)
        have = len(pending)
        view[:have] = pending
        pending.clear()
        while have < size:
            got = self._sock.recv_into(view[have:])
            if not got:
                raise ProtocolError("quiverd closed the connection inside a response")
            have += got
        return data

    def _response(self, method: str) -> tuple[int, bytes | bytearray, bool]:
        while (end := self._pending.find(_HEAD_END)) < 0:
            if len(self._pending) > _MAX_HEAD:
                raise ProtocolError("response head too large")
            self._fill()
        head = bytes(self._pending[:end]).decode("latin-1").split("\r\n")
        del self._pending[:end + 4]
        version, _, rest = head[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 response: {head[0][:80]!r}")
        status = int(rest[:3])
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        closes = fields.get("connection", "").lower() == "close" or version == "HTTP/1.0"
        if method == "HEAD" or status in (204, 304):
            return status, b"", closes
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return status, self._chunked(), closes
        if "content-length" in fields:
            return status, self._exactly(int(fields["content-length"])), closes
        # Neither: the body runs to the end of the connection.
        while True:
            try:
                self._fill()
            except ProtocolError:
                break
        body = bytes(self._pending)
        self._pending.clear()
        return status, body, True

    def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self._line().split(b";", 1)[0], 16)
            if size == 0:
                while self._line():  # trailers, then the empty line
                    pass
                return b"".join(parts)
            parts.append(self._exactly(size))
            self._line()
