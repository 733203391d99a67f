"""Table schemas: murr's TableSchema JSON <-> pyarrow.Schema, with the engine's dtype spellings.

The key field of a ``pyarrow.Schema`` carries metadata ``{"quiver.key": "true"}`` (a composite
key's fields their part numbers, ``"1"``, ``"2"``, ...) and the event-time field
``{"quiver.event_time": "true"}``, as in the server (docs/schema.md).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping

import pyarrow as pa

from . import _quiver
from ._errors import SchemaError

KEY_METADATA = {b"quiver.key": b"true"}
EVENT_TIME_METADATA = {b"quiver.event_time": b"true"}
TTL_METADATA = b"quiver.ttl_ms"  # schema metadata: the table's default TTL in milliseconds
DEFAULT_METADATA = b"quiver.default"  # field metadata: the column's default value, as JSON
SPARSE_METADATA = b"quiver.sparse"  # field metadata: "true" for a sparse column
CAST_METADATA = b"quiver.cast"  # schema metadata: "strict" when writes take the columns' types only

# The scalar dtypes, from the engine's registry (engine/dtype.h): each spelling is a pyarrow alias.
_SIMPLE: dict[str, pa.DataType] = {name: pa.type_for_alias(name) for name in _quiver.dtypes()}
_NAMES = {t: name for name, t in _SIMPLE.items()}
_TIMESTAMP = re.compile(r"^timestamp\[\s*(s|ms|us|ns)\s*(?:,\s*tz\s*=\s*([^\]]+?)\s*)?\]$")
_LIST = re.compile(r"^list\[\s*(.+?)\s*\]$")
_FIXED = re.compile(r"^fixed_size_list\[\s*(.+?)\s*,\s*(\d+)\s*\]$")


def parse_dtype(spelling: str) -> pa.DataType:
    """The Arrow type of a dtype spelling ("float32", "timestamp[ms, tz=UTC]", ...)."""
    s = spelling.strip()
    if s in _SIMPLE:
        return _SIMPLE[s]
    if m := _TIMESTAMP.match(s):
        return pa.timestamp(m.group(1), tz=m.group(2))
    if m := _FIXED.match(s):
        return pa.list_(parse_dtype(m.group(1)), int(m.group(2)))
    if m := _LIST.match(s):
        return pa.list_(parse_dtype(m.group(1)))
    raise SchemaError(f"unknown dtype '{spelling}'", "INVALID_ARGUMENT")


def dtype_name(t: pa.DataType, column: str = "") -> str:
    """The dtype spelling of an Arrow type. String, binary and list types of any offset width map
    to the engine's (the data is converted on write)."""
    if t in _NAMES:
        return _NAMES[t]
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "utf8"
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}, tz={t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    if pa.types.is_fixed_size_list(t):
        return f"fixed_size_list[{dtype_name(t.value_type, column)}, {t.list_size}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"list[{dtype_name(t.value_type, column)}]"
    where = f"column '{column}': " if column else ""
    raise SchemaError(f"{where}type {t} is not supported (docs/schema.md lists the dtypes)",
                      "INVALID_ARGUMENT")


def _marked(schema: pa.Schema, mark: dict[bytes, bytes]) -> str | None:
    for field in schema:
        if field.metadata and all(field.metadata.get(k) == v for k, v in mark.items()):
            return field.name
    return None


def key_fields(schema: pa.Schema) -> list[pa.Field]:
    """The fields the metadata marks as the key, in key order (a composite key's part numbers)."""
    parts = []
    for index, field in enumerate(schema):
        mark = (field.metadata or {}).get(b"quiver.key")
        if mark == b"true":
            parts.append((1, index))
        elif mark is not None and mark.isdigit():
            parts.append((int(mark), index))
    return [schema.field(index) for _, index in sorted(parts)]


def _key_of(schema: pa.Schema) -> str | list[str] | None:
    """The key the fields' metadata marks: a name, or a composite key's names in key order."""
    names = [field.name for field in key_fields(schema)]
    return None if not names else names[0] if len(names) == 1 else names


def _key_names(key: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if key is None:
        return []
    return [key] if isinstance(key, str) else list(key)


def to_json(schema: pa.Schema | Mapping[str, Any], key: str | list[str] | None = None,
            event_time: str | None = None, ttl: float | None = None) -> dict[str, Any]:
    """TableSchema JSON from a pyarrow.Schema (key from ``key`` or the field marked as key) or from
    a TableSchema dict (``key`` / ``event_time`` / ``ttl``, when given, must agree with it or fill
    it in)."""
    if isinstance(schema, Mapping):
        out = dict(schema)
        for name, value in (("key", key), ("event_time", event_time), ("ttl", ttl)):
            if value is None:
                continue
            if out.get(name) not in (None, value):
                raise SchemaError(f"{name}='{value}' contradicts the schema's {name} "
                                  f"'{out[name]}'", "INVALID_ARGUMENT")
            out[name] = value
        return out
    if not isinstance(schema, pa.Schema):
        raise SchemaError("a schema is a pyarrow.Schema or a TableSchema dict, not "
                          f"{type(schema).__name__}", "INVALID_ARGUMENT")
    key = key or _key_of(schema)
    if isinstance(key, tuple):
        key = list(key)
    if not key:
        raise SchemaError("no key column: pass key=... or mark a field with metadata "
                          "{'quiver.key': 'true'}", "INVALID_ARGUMENT")
    event_time = event_time or _marked(schema, EVENT_TIME_METADATA)
    columns: dict[str, Any] = {}
    for field in schema:
        spec: dict[str, Any] = {"dtype": dtype_name(field.type, field.name)}
        if field.name not in _key_names(key):  # pyarrow fields are nullable by default; a key never is
            spec["nullable"] = field.nullable
        if field.metadata and DEFAULT_METADATA in field.metadata:
            spec["default"] = json.loads(field.metadata[DEFAULT_METADATA])
        if field.metadata and field.metadata.get(SPARSE_METADATA) == b"true":
            spec["sparse"] = True
        columns[field.name] = spec
    out = {"key": key, "columns": columns}
    if event_time:
        out["event_time"] = event_time
    if ttl is None and schema.metadata and TTL_METADATA in schema.metadata:
        ttl = int(schema.metadata[TTL_METADATA]) / 1000
    if ttl is not None:
        out["ttl"] = ttl
    if schema.metadata and CAST_METADATA in schema.metadata:
        out["cast"] = schema.metadata[CAST_METADATA].decode()
    return out


def from_json(schema: Mapping[str, Any]) -> pa.Schema:
    """The pyarrow.Schema of a TableSchema dict, as the server produces it."""
    key = _key_names(schema.get("key"))
    event_time = schema.get("event_time")
    fields = []
    for name, spec in schema.get("columns", {}).items():
        metadata = None
        if name in key:
            metadata = KEY_METADATA if len(key) == 1 else \
                {b"quiver.key": str(key.index(name) + 1).encode()}
        elif name == event_time:
            metadata = EVENT_TIME_METADATA
        if "default" in spec:
            metadata = {**(metadata or {}), DEFAULT_METADATA: json.dumps(spec["default"]).encode()}
        if spec.get("sparse"):
            metadata = {**(metadata or {}), SPARSE_METADATA: b"true"}
        nullable = bool(spec.get("nullable", name not in key))
        fields.append(pa.field(name, parse_dtype(spec["dtype"]), nullable, metadata))
    metadata = {}
    if schema.get("ttl"):
        metadata[TTL_METADATA] = str(round(schema["ttl"] * 1000))
    if schema.get("cast", "safe") != "safe":
        metadata[CAST_METADATA] = schema["cast"]
    return pa.schema(fields, metadata or None)


def _column_spec(spec: Any, column: str) -> dict[str, Any]:
    """A column of a schema change: a dict as the server reads it, or a pyarrow type / field."""
    if isinstance(spec, pa.Field):
        out = {"dtype": dtype_name(spec.type, column), "nullable": spec.nullable}
        if spec.metadata and DEFAULT_METADATA in spec.metadata:
            out["default"] = json.loads(spec.metadata[DEFAULT_METADATA])
        if spec.metadata and spec.metadata.get(SPARSE_METADATA) == b"true":
            out["sparse"] = True
        return out
    if isinstance(spec, pa.DataType):
        return {"dtype": dtype_name(spec, column)}
    if isinstance(spec, str):
        return {"dtype": spec}
    if isinstance(spec, Mapping):
        out = dict(spec)
        if isinstance(out.get("dtype"), pa.DataType):
            out["dtype"] = dtype_name(out["dtype"], column)
        return out
    raise SchemaError(f"column {column!r}: expected a dtype, a pyarrow type or field, or a dict "
                      f"like {{'dtype': 'float32'}}, not {type(spec).__name__}", "INVALID_ARGUMENT")


def change_json(add: Mapping[str, Any] | None, drop: Iterable[str] | str | None,
                rename: Mapping[str, str] | None, alter: Mapping[str, Any] | None) -> dict[str, Any]:
    """A schema change's JSON (docs/schema.md) from Client.alter_table's arguments."""
    change: dict[str, Any] = {}
    if add:
        change["add"] = {str(name): _column_spec(spec, str(name)) for name, spec in add.items()}
    if drop:
        change["drop"] = [drop] if isinstance(drop, str) else [str(name) for name in drop]
    if rename:
        change["rename"] = {str(old): str(new) for old, new in rename.items()}
    if alter:
        change["alter"] = {str(name): _column_spec(spec, str(name))
                           for name, spec in alter.items()}
    return change
