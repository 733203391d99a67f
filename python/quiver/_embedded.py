"""The embedded backend: the engine in this process (quiver._quiver), no server."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from . import _quiver
from ._errors import QuiverError, error_from_code


class _CArray:
    """Holds exported (schema, array) capsules until pyarrow imports them."""

    __slots__ = ("capsules",)

    def __init__(self, capsules: tuple[Any, Any]) -> None:
        self.capsules = capsules

    def __arrow_c_array__(self, requested_schema: Any = None) -> tuple[Any, Any]:
        return self.capsules


def _translate(error: _quiver.EngineError, schema_op: bool = False) -> QuiverError:
    code, message = error.args
    return error_from_code(code, message, schema_op=schema_op)


class EmbeddedBackend:
    name = "embedded"

    def __init__(self) -> None:
        self._engine = _quiver.Engine()

    def close(self) -> None:
        pass

    def create_table(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        try:
            return json.loads(self._engine.create_table(name, json.dumps(schema)))
        except _quiver.EngineError as e:
            raise _translate(e, schema_op=True) from None

    def drop_table(self, name: str) -> None:
        try:
            self._engine.drop_table(name)
        except _quiver.EngineError as e:
            raise _translate(e) from None

    def list_tables(self) -> list[str]:
        return list(self._engine.list_tables())

    def schema(self, name: str) -> dict[str, Any]:
        try:
            return json.loads(self._engine.schema(name))
        except _quiver.EngineError as e:
            raise _translate(e) from None

    def write(self, name: str, data: pa.Table) -> tuple[int, int]:
        try:
            return self._engine.write(name, data.__arrow_c_stream__())
        except _quiver.EngineError as e:
            raise _translate(e) from None

    def read(self, name: str, keys: pa.Array,
             columns: list[str]) -> tuple[pa.RecordBatch, pa.Array, int]:
        try:
            batch, found, found_count = self._engine.read(name, *keys.__arrow_c_array__(), columns)
        except _quiver.EngineError as e:
            raise _translate(e) from None
        return pa.record_batch(_CArray(batch)), pa.record_batch(_CArray(found)).column(0), found_count

    def delete(self, name: str, keys: pa.Array) -> int:
        try:
            return self._engine.delete(name, *keys.__arrow_c_array__())
        except _quiver.EngineError as e:
            raise _translate(e) from None

    def stats(self, name: str) -> dict[str, int]:
        try:
            return dict(self._engine.stats(name))
        except _quiver.EngineError as e:
            raise _translate(e) from None
