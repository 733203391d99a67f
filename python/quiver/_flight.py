"""The Arrow Flight backend (docs/flight.md): DoGet tickets for reads, DoPut for writes, actions
for the rest. pyarrow.flight's client is thread-safe and releases the GIL while it waits."""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight

from . import _convert
from ._errors import ConnectionError, QuiverError, error_from_code
from ._schema import to_json

# pyarrow appends the gRPC and client context to a server's message; the message is what precedes.
_CONTEXT = re.compile(r"\. (gRPC client debug context|Detail|Client context):.*$", re.S)
_KEYS_PER_BATCH = 65536
# A stream's first batch failed: nothing was done, so the engine's message alone is the same as
# from the other backends. (A later batch keeps the prefix: it tells what was written.)
_FIRST_BATCH = re.compile(r"^batch 0( \(batches before it were written\))?: ")
_UNAVAILABLE = (flight.FlightUnavailableError, flight.FlightTimedOutError,
                flight.FlightCancelledError)


def _message(error: Exception) -> str:
    return _CONTEXT.sub("", str(error))


def _code_of(error: pa.ArrowException) -> str:
    """The Quiver machine code of an error raised by pyarrow.flight (docs/flight.md's table)."""
    if isinstance(error, pa.ArrowInvalid):
        return "INVALID_ARGUMENT"
    if isinstance(error, pa.ArrowKeyError):
        return "NOT_FOUND"
    if isinstance(error, pa.ArrowCapacityError):
        return "LIMIT_EXCEEDED"
    if isinstance(error, pa.ArrowMemoryError) or (
            isinstance(error, flight.FlightError) and error.extra_info == b"OUT_OF_MEMORY"):
        return "OUT_OF_MEMORY"
    if isinstance(error, flight.FlightError) and error.extra_info == b"READ_ONLY":
        return "READ_ONLY"
    if isinstance(error, pa.ArrowNotImplementedError):
        return "NOT_IMPLEMENTED"
    if isinstance(error, _UNAVAILABLE):
        return "UNAVAILABLE"
    if "already exists" in str(error) and not isinstance(error, flight.FlightError):
        return "ALREADY_EXISTS"  # pyarrow has no class for Arrow's AlreadyExists code
    return "INTERNAL"


class FlightBackend:
    name = "flight"

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        try:
            self._client = flight.connect(url)
        except (pa.ArrowException, ValueError) as e:
            raise ValueError(f"not a Flight URL: {url!r} ({e})") from None
        self._options = flight.FlightCallOptions(timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def _error(self, error: pa.ArrowException, schema_op: bool = False) -> QuiverError:
        code = _code_of(error)
        message = _FIRST_BATCH.sub("", _message(error))
        if code == "ALREADY_EXISTS":
            message = re.sub(r"^\w[\w ]*: ", "", message)  # "Unknown: table 't' already exists"
        if code == "UNAVAILABLE" and isinstance(error, flight.FlightUnavailableError):
            message = f"cannot reach quiverd at {self.url}: {message}"
            return ConnectionError(message, code)
        return error_from_code(code, message, schema_op=schema_op)

    def _action(self, kind: str, body: dict[str, Any], schema_op: bool = False) -> Any:
        try:
            results = list(self._client.do_action(
                flight.Action(kind, json.dumps(body).encode()), self._options))
        except pa.ArrowException as e:
            raise self._error(e, schema_op) from None
        return json.loads(results[0].body.to_pybytes()) if results else None

    def create_table(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return self._action("create_table", {"table": name, "schema": schema}, schema_op=True)

    def drop_table(self, name: str) -> None:
        self._action("drop_table", {"table": name})

    def alter_table(self, name: str, change: dict[str, Any]) -> dict[str, Any]:
        return self._action("alter_table", {"table": name, "change": change}, schema_op=True)

    def describe(self, name: str) -> dict[str, Any]:
        return self._action("describe_table", {"table": name})

    def list_tables(self) -> list[str]:
        try:
            infos = list(self._client.list_flights(options=self._options))
        except pa.ArrowException as e:
            raise self._error(e) from None
        return sorted(info.descriptor.path[0].decode() for info in infos)

    def schema(self, name: str) -> dict[str, Any]:
        try:
            result = self._client.get_schema(flight.FlightDescriptor.for_path(name), self._options)
        except pa.ArrowException as e:
            raise self._error(e) from None
        return to_json(result.schema)

    def write(self, name: str, data: pa.Table, ttl: float | None = None,
              cast: str | None = None) -> tuple[int, int]:
        written = skipped = 0
        command = {"table": name, **({} if ttl is None else {"ttl": ttl}),
                   **({} if cast is None else {"cast": cast})}
        descriptor = (flight.FlightDescriptor.for_path(name) if len(command) == 1 else
                      flight.FlightDescriptor.for_command(json.dumps(command)))
        try:
            writer, acks = self._client.do_put(descriptor, data.schema, self._options)
            with writer:
                for batch in data.to_batches(max_chunksize=65536):
                    writer.write_batch(batch)
                    ack = json.loads(acks.read().to_pybytes())
                    written += ack["rows_written"]
                    skipped += ack["rows_skipped"]
                writer.done_writing()
        except pa.ArrowException as e:
            raise self._error(e) from None
        return written, skipped

    def read(self, name: str, keys: pa.Array, columns: list[str],
             with_ttl: bool = False) -> tuple[pa.Table, pa.Array, None]:
        # DoExchange with the keys as Arrow (not a JSON ticket): they reach the engine as they are,
        # so key errors read as from the other backends. One key batch, one answer, in turn.
        command = {"table": name, "columns": columns, "found": True}
        if with_ttl:
            command["with_ttl"] = True
        descriptor = flight.FlightDescriptor.for_command(json.dumps(command).encode())
        batches = []
        try:
            writer, reader = self._client.do_exchange(descriptor, self._options)
            with writer:
                batch = _convert.keys_batch(keys)
                writer.begin(batch.schema)
                for offset in range(0, len(keys), _KEYS_PER_BATCH):
                    writer.write_batch(batch.slice(offset, _KEYS_PER_BATCH))
                    batches.append(reader.read_chunk().data)
                writer.done_writing()
                schema = reader.schema
        except pa.ArrowException as e:
            raise self._error(e) from None
        table = pa.Table.from_batches(batches, schema=schema)
        last = table.num_columns - 1
        return table.remove_column(last), table.column(last), None

    def delete(self, name: str, keys: pa.Array) -> int:
        return self._action("delete", {"table": name, "keys": _convert.keys_json(keys)})["deleted"]

    def snapshot(self, tables: list[str]) -> list[dict[str, Any]]:
        return self._action("snapshot", {"tables": tables} if tables else {})["tables"]
