"""quiver._wire.Connection against a scripted HTTP peer: response heads and bodies split across
many small writes, chunked bodies, Connection: close, bodies that run to the end of the
connection, and malformed answers."""

import socket
import threading

import pytest

from quiver._wire import Connection, ProtocolError


class Peer:
    """Accepts one connection; for each request received answers the next scripted response,
    written in pieces of `piece` bytes."""

    def __init__(self, responses: list[bytes], piece: int = 7) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, args=(responses, piece), daemon=True)
        self.thread.start()

    def _serve(self, responses: list[bytes], piece: int) -> None:
        conn, _ = self.listener.accept()
        with conn:
            for response in responses:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append(request if not body else head + b"\r\n\r\n" + body)
                for i in range(0, len(response), piece):
                    conn.sendall(response[i:i + piece])
            if responses and b"connection: close" in responses[-1].lower():
                return
            conn.recv(1)

    def close(self) -> None:
        self.listener.close()


def connect(peer: Peer) -> Connection:
    return Connection("127.0.0.1", peer.port, timeout=5)


def test_keep_alive_requests_with_split_responses():
    bodies = [b"x" * 100_000, b"{}"]
    peer = Peer([b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(b), b) for b in bodies],
                piece=999)
    connection = connect(peer)
    status, body, closes = connection.request("POST", "/a", {"Accept": "x"}, b"k" * 70_000)
    assert (status, bytes(body), closes) == (200, bodies[0], False)
    status, body, closes = connection.request("GET", "/b", {})
    assert (status, bytes(body), closes) == (200, bodies[1], False)
    first, second = peer.requests
    assert first.startswith(b"POST /a HTTP/1.1\r\nHost: 127.0.0.1:") and b"Accept: x\r\n" in first
    assert b"Content-Length: 70000\r\n" in first and first.endswith(b"k" * 70_000)
    assert second.startswith(b"GET /b HTTP/1.1\r\n") and b"Content-Length" not in second
    connection.close()
    peer.close()


def test_chunked_body_with_extensions_and_trailers():
    response = (b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: y\r\n\r\n")
    peer = Peer([response, b"HTTP/1.1 204 No Content\r\n\r\n"], piece=3)
    connection = connect(peer)
    assert connection.request("GET", "/", {})[:2] == (404, b"hello world")
    assert connection.request("DELETE", "/", {})[:2] == (204, b"")
    connection.close()
    peer.close()


def test_connection_close_and_body_to_end_of_connection():
    peer = Peer([b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"])
    status, body, closes = connect(peer).request("GET", "/", {})
    assert (status, body, closes) == (200, b"all of it", True)
    peer.close()


@pytest.mark.parametrize("response", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
])
def test_malformed_or_cut_answers_raise_protocol_error(response):
    peer = Peer([response])
    connection = connect(peer)
    with pytest.raises(ProtocolError):
        connection.request("GET", "/", {})
    connection.close()
    peer.close()
