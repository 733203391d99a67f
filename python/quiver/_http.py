"""The HTTP backend: quiverd's murr-compatible routes (docs/http.md) with Arrow IPC bodies.

Requests are described once (``_Call``: method, path, body, how to decode the answer) and sent
by two transports: a keep-alive ``_wire.Connection`` per thread (sync) and ``httpx`` (async, in
quiver.aio).
"""

from __future__ import annotations

import functools
import json
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pyarrow as pa

from . import _convert, _wire
from ._errors import ConnectionError, QuiverError, ServerError, error_from_code

IPC = "application/vnd.apache.arrow.stream"
JSON = "application/json"
# Writes larger than this go as several requests (each one atomic), under quiverd's default
# --max-request-bytes of 64 MiB.
WRITE_CHUNK_BYTES = 32 << 20


def ipc_bytes(data: pa.Table | pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        if isinstance(data, pa.Table):
            writer.write_table(data)
        else:
            writer.write_batch(data)
    return sink.getvalue()


_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


@functools.lru_cache(maxsize=16)
def _key_schema_message(key_type: pa.DataType) -> bytes:
    return pa.schema([("key", key_type)]).serialize().to_pybytes()


def keys_ipc_bytes(keys: pa.Array) -> bytes:
    """An Arrow IPC stream of one batch, column "key" (or a composite key's columns): the schema
    message is made once per type (this is on every read's path; new_stream costs ~10 us more
    per call)."""
    batch = _convert.keys_batch(keys)
    schema = batch.schema.serialize().to_pybytes() if pa.types.is_struct(keys.type) \
        else _key_schema_message(keys.type)
    return b"".join((schema, batch.serialize(), _END_OF_STREAM))


def read_ipc(body: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(body)).read_all()


def _path(name: str, suffix: str = "") -> str:
    return "/api/v1/table/" + urllib.parse.quote(name, safe="") + suffix


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    body: bytes | pa.Buffer | None
    content_type: str | None
    accept: str
    decode: Callable[[bytes], Any]
    schema_op: bool = False


def create_call(name: str, schema: dict[str, Any]) -> _Call:
    return _Call("PUT", _path(name), json.dumps(schema).encode(), JSON, JSON, json.loads,
                 schema_op=True)


def alter_call(name: str, change: dict[str, Any]) -> _Call:
    return _Call("PATCH", _path(name), json.dumps(change).encode(), JSON, JSON, json.loads,
                 schema_op=True)


def describe_call(name: str) -> _Call:
    return _Call("GET", _path(name), None, None, JSON, json.loads)


def drop_call(name: str) -> _Call:
    return _Call("DELETE", _path(name), None, None, JSON, lambda _: None)


def list_call() -> _Call:
    return _Call("GET", "/api/v1/table", None, None, JSON, lambda b: sorted(json.loads(b)))


def schema_call(name: str) -> _Call:
    return _Call("GET", _path(name, "/schema"), None, None, JSON, json.loads)


def write_calls(name: str, data: pa.Table, ttl: float | None = None,
                cast: str | None = None) -> Iterator[_Call]:
    def counts(body: bytes) -> tuple[int, int]:
        answer = json.loads(body)
        return answer["rows_written"], answer["rows_skipped"]

    rows = max(1, data.num_rows)
    per_call = max(1, int(rows * WRITE_CHUNK_BYTES / max(1, data.nbytes)))
    for offset in range(0, max(1, data.num_rows), per_call):
        body = ipc_bytes(data.slice(offset, per_call))
        query = ([] if ttl is None else [("ttl", repr(float(ttl)))]) + \
            ([] if cast is None else [("cast", cast)])
        path = _path(name, "/write") + ("?" + urllib.parse.urlencode(query) if query else "")
        yield _Call("PUT", path, body, IPC, JSON, counts)


@functools.lru_cache(maxsize=256)
def _read_query(columns: tuple[str, ...], with_ttl: bool) -> str:
    # Cached: a Feast read of 50 features spent a sixth of its time quoting their names.
    return urllib.parse.urlencode([("found", "true")] + [("columns", c) for c in columns] +
                                  ([("with_ttl", "true")] if with_ttl else []))


def read_call(name: str, keys: pa.Array, columns: list[str], with_ttl: bool = False) -> _Call:
    query = _read_query(tuple(columns), with_ttl)

    def decode(body: bytes) -> tuple[pa.Table, pa.Array, None]:
        table = read_ipc(body)
        found = table.column(table.num_columns - 1)
        return table.remove_column(table.num_columns - 1), found, None

    body = keys_ipc_bytes(keys)
    return _Call("POST", _path(name, "/fetch") + "?" + query, body, IPC, IPC, decode)


def delete_call(name: str, keys: pa.Array) -> _Call:
    body = json.dumps({"keys": _convert.keys_json(keys)}).encode()
    return _Call("POST", _path(name, "/delete"), body, JSON, JSON, lambda b: json.loads(b)["deleted"])


def snapshot_call(tables: list[str]) -> _Call:
    body = json.dumps({"tables": tables} if tables else {}).encode()
    return _Call("POST", "/api/v1/admin/snapshot", body, JSON, JSON,
                 lambda b: json.loads(b)["tables"])


def source_call(method: str, name: str, uri: str | None = None,
                poll_seconds: float | None = None) -> _Call:
    body = None
    if method == "PUT":
        request: dict[str, Any] = {"uri": uri}
        if poll_seconds is not None:
            request["poll_seconds"] = poll_seconds
        body = json.dumps(request).encode()
    decode = (lambda _: None) if method == "DELETE" else json.loads
    return _Call(method, _path(name, "/source"), body, JSON, JSON, decode)


def error_of(call: _Call, status: int, body: bytes) -> QuiverError:
    try:
        answer = json.loads(body)
        return error_from_code(answer["code"], answer["error"], schema_op=call.schema_op)
    except (ValueError, KeyError, TypeError):
        text = body[:200].decode("utf-8", "replace")
        return ServerError(f"HTTP {status} without a Quiver error body: {text}", "INTERNAL")


def parse_url(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url!r}")
    return parts.hostname, parts.port or 80


class _Routes:
    """The methods that are one request each, for both transports: ``run`` returns the answer
    (sync) or a coroutine of it (async), and these return what ``run`` returns."""

    def run(self, call: _Call) -> Any:
        raise NotImplementedError

    def create_table(self, name: str, schema: dict[str, Any]) -> Any:
        return self.run(create_call(name, schema))

    def drop_table(self, name: str) -> Any:
        return self.run(drop_call(name))

    def alter_table(self, name: str, change: dict[str, Any]) -> Any:
        return self.run(alter_call(name, change))

    def describe(self, name: str) -> Any:
        return self.run(describe_call(name))

    def list_tables(self) -> Any:
        return self.run(list_call())

    def schema(self, name: str) -> Any:
        return self.run(schema_call(name))

    def read(self, name: str, keys: pa.Array, columns: list[str], with_ttl: bool = False) -> Any:
        return self.run(read_call(name, keys, columns, with_ttl))

    def delete(self, name: str, keys: pa.Array) -> Any:
        return self.run(delete_call(name, keys))

    def snapshot(self, tables: list[str]) -> Any:
        return self.run(snapshot_call(tables))

    def sync_table(self, name: str, uri: str, poll_seconds: float | None) -> Any:
        return self.run(source_call("PUT", name, uri, poll_seconds))

    def sync_status(self, name: str) -> Any:
        return self.run(source_call("GET", name))

    def unsync_table(self, name: str) -> Any:
        return self.run(source_call("DELETE", name))


class HttpBackend(_Routes):
    """Sync transport: one keep-alive connection per thread (_wire.Connection)."""

    name = "http"

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._host, self._port = parse_url(self.url)
        self._timeout = timeout
        self._local = threading.local()

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _connection(self) -> _wire.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                connection = _wire.Connection(self._host, self._port, self._timeout)
            except OSError as e:
                raise ConnectionError(f"cannot connect to quiverd at {self.url}: {e}",
                                      "UNAVAILABLE") from None
            self._local.connection = connection
        return connection

    def exchange(self, call: _Call) -> tuple[int, bytes | bytearray]:
        """One request on this thread's connection: (status, undecoded body)."""
        headers = {"Accept": call.accept}
        if call.body is not None:
            headers["Content-Type"] = call.content_type or JSON
        status, body, closes = self._connection().request(call.method, call.path, headers,
                                                          call.body)
        if closes:
            self.close()
        return status, body

    def run(self, call: _Call) -> Any:
        for attempt in (0, 1):
            reused = getattr(self._local, "connection", None) is not None
            try:
                status, body = self.exchange(call)
                break
            except OSError as e:
                self.close()
                # A kept-alive connection the server closed meanwhile: try once on a new one.
                if attempt == 0 and reused:
                    continue
                raise ConnectionError(f"request to quiverd at {self.url} failed: {e}",
                                      "UNAVAILABLE") from None
        if status >= 400:
            raise error_of(call, status, body)
        return call.decode(body)

    def write(self, name: str, data: pa.Table, ttl: float | None = None,
              cast: str | None = None) -> tuple[int, int]:
        written = skipped = 0
        for call in write_calls(name, data, ttl, cast):
            w, s = self.run(call)
            written, skipped = written + w, skipped + s
        return written, skipped


class AsyncHttpBackend(_Routes):
    """Async transport over httpx (HTTP/1.1 keep-alive pool)."""

    name = "http"

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        parse_url(self.url)
        self._httpx = httpx
        self._client = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def run(self, call: _Call) -> Any:
        headers = {"Accept": call.accept}
        body = call.body
        if body is not None:
            headers["Content-Type"] = call.content_type or JSON
            if isinstance(body, pa.Buffer):
                body = body.to_pybytes()
        try:
            response = await self._client.request(call.method, call.path, content=body,
                                                   headers=headers)
        except self._httpx.HTTPError as e:
            raise ConnectionError(f"request to quiverd at {self.url} failed: {e}",
                                  "UNAVAILABLE") from None
        if response.status_code >= 400:
            raise error_of(call, response.status_code, response.content)
        return call.decode(response.content)

    async def write(self, name: str, data: pa.Table, ttl: float | None = None,
                    cast: str | None = None) -> tuple[int, int]:
        written = skipped = 0
        for call in write_calls(name, data, ttl, cast):
            w, s = await self.run(call)
            written, skipped = written + w, skipped + s
        return written, skipped
