"""Quiver as a Feast online store (docs/feast.md).

``feature_store.yaml``::

    online_store:
      type: quiver.feast.QuiverOnlineStore
      url: http://127.0.0.1:8080          # any URL quiver.connect takes, or a data directory

One Quiver table per feature view, named ``<project>.<feature view>``: the entity join keys are its
key (several: a composite key), each feature a typed column, ``event_ts`` its event-time column
(so that a late row never overwrites a newer one) and ``created_ts`` beside it; the feature view's
TTL is the table's. Writes go as one Arrow batch per call, reads as one batch read for all entity
keys. Installed with ``pip install quiver[feast]``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal, Optional, Sequence

import pyarrow as pa
from feast import Entity, FeatureView, RepoConfig
from feast.infra.online_stores.online_store import OnlineStore
from feast.infra.supported_async_methods import SupportedAsyncMethods
from feast.protos.feast.types import Value_pb2
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType
from pydantic import StrictStr

import quiver

from . import _convert, _quiver
from ._embedded import EmbeddedBackend
from ._errors import ConnectionError as QuiverConnectionError
from ._errors import QuiverError, TableNotFound
from ._schema import parse_dtype

# What Feast writes (entity key, features, event time, created time) and reads back.
_WriteRows = list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, Optional[datetime]]]
_ReadRows = list[tuple[Optional[datetime], Optional[dict[str, ValueProto]]]]

EVENT_TS = "event_ts"
CREATED_TS = "created_ts"
_TS_DTYPE = "timestamp[us, tz=UTC]"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class QuiverOnlineStoreConfig(FeastConfigBaseModel):
    """The ``online_store`` section of ``feature_store.yaml``."""

    type: Literal["quiver.feast.QuiverOnlineStore"] = "quiver.feast.QuiverOnlineStore"
    url: StrictStr = "http://127.0.0.1:8080"
    """``http://host:port`` or ``grpc://host:port`` of a quiverd, ``shm:///path`` (reads only), or
    a data directory for the embedded engine."""


# A feature's Feast value type: how Quiver stores it. Scalars and numeric lists get a column of
# their own dtype (readable as such by every Quiver front end); the other kinds (lists of strings,
# bytes or bools, maps, JSON, structs, UUIDs, sets, ...) a binary column of the serialized Value.
class _Kind:
    __slots__ = ("dtype", "field", "number", "list_type", "scale")

    def __init__(self, dtype: str, field: str | None, list_type: Any = None,
                 scale: int = 1) -> None:
        self.dtype = dtype
        self.field = field  # the Value's oneof field; None: the serialized Value
        # Its field number, as quiver._quiver.feast_values takes it (0: the serialized Value).
        self.number = 0 if field is None else ValueProto.DESCRIPTOR.fields_by_name[field].number
        self.list_type = list_type  # the Value's list message for list fields
        self.scale = scale  # unix timestamps: seconds in Feast, milliseconds here


_SCALARS = {
    ValueType.INT32: _Kind("int32", "int32_val"),
    ValueType.INT64: _Kind("int64", "int64_val"),
    ValueType.FLOAT: _Kind("float32", "float_val"),
    ValueType.DOUBLE: _Kind("float64", "double_val"),
    ValueType.BOOL: _Kind("bool", "bool_val"),
    ValueType.STRING: _Kind("utf8", "string_val"),
    ValueType.BYTES: _Kind("binary", "bytes_val"),
    ValueType.UNIX_TIMESTAMP: _Kind("timestamp[ms, tz=UTC]", "unix_timestamp_val", scale=1000),
    ValueType.INT32_LIST: _Kind("list[int32]", "int32_list_val", Value_pb2.Int32List),
    ValueType.INT64_LIST: _Kind("list[int64]", "int64_list_val", Value_pb2.Int64List),
    ValueType.FLOAT_LIST: _Kind("list[float32]", "float_list_val", Value_pb2.FloatList),
    ValueType.DOUBLE_LIST: _Kind("list[float64]", "double_list_val", Value_pb2.DoubleList),
    ValueType.UNIX_TIMESTAMP_LIST: _Kind("list[int64]", "unix_timestamp_list_val",
                                         Value_pb2.Int64List),
}
_SERIALIZED = _Kind("binary", None)
# Value types a feature cannot have: Feast's placeholders, not data.
_UNSTORABLE = {ValueType.UNKNOWN, ValueType.NULL}
# Join key types: Quiver keys are int64 or utf8.
_KEY_DTYPES = {ValueType.INT64: "int64", ValueType.INT32: "int64", ValueType.STRING: "utf8"}
_KEY_FIELDS = {"int64": ("int64_val", "int32_val"), "utf8": ("string_val",)}


def _feature_kind(fv_name: str, name: str, value_type: ValueType, vector_length: int) -> _Kind:
    if value_type in _UNSTORABLE:
        raise ValueError(f"feature view '{fv_name}': feature '{name}' has type {value_type.name}, "
                         "which Quiver cannot store (give the field a dtype)")
    kind = _SCALARS.get(value_type)
    if kind is None:
        return _SERIALIZED
    if vector_length and kind.list_type is not None and value_type in (
            ValueType.FLOAT_LIST, ValueType.DOUBLE_LIST, ValueType.INT32_LIST,
            ValueType.INT64_LIST):
        # An embedding of a known length: a fixed_size_list (one block of the row).
        element = kind.dtype[len("list["):-1]
        return _Kind(f"fixed_size_list[{element}, {vector_length}]", kind.field, kind.list_type)
    return kind


class _View:
    """A feature view as a Quiver table: its name, schema and how each column converts."""

    def __init__(self, config: RepoConfig, fv: FeatureView) -> None:
        self.name = table_name(config, fv)
        entity_columns = {field.name: field for field in fv.entity_columns}
        join_keys = sorted(entity_columns) or ["__dummy_id"]
        self.keys: list[str] = join_keys
        self.key_dtypes: dict[str, str] = {}
        for key in join_keys:
            field = entity_columns.get(key)
            value_type = field.dtype.to_value_type() if field is not None else ValueType.STRING
            dtype = _KEY_DTYPES.get(value_type)
            if dtype is None:
                raise ValueError(f"feature view '{fv.name}': join key '{key}' has type "
                                 f"{value_type.name}; Quiver keys are int64 or utf8 (a Feast "
                                 "INT32, INT64 or STRING entity)")
            self.key_dtypes[key] = dtype
        self.kinds: dict[str, _Kind] = {}
        # Features that are a join key too (Feast allows an entity's column in the schema as a
        # feature): no column of their own, read back from the entity key.
        self.key_features: list[str] = []
        for field in fv.features:
            value_type = field.dtype.to_value_type()
            if field.name in self.key_dtypes:
                if _KEY_DTYPES.get(value_type) != self.key_dtypes[field.name]:
                    raise ValueError(f"feature view '{fv.name}': feature '{field.name}' is the "
                                     f"join key of that name, which is "
                                     f"{self.key_dtypes[field.name]}, but has type "
                                     f"{value_type.name}")
                self.key_features.append(field.name)
                continue
            if field.name in (EVENT_TS, CREATED_TS):
                raise ValueError(f"feature view '{fv.name}': feature '{field.name}' has the name "
                                 "of a column the online store keeps "
                                 f"('{EVENT_TS}', '{CREATED_TS}')")
            self.kinds[field.name] = _feature_kind(fv.name, field.name, value_type,
                                                   int(getattr(field, "vector_length", 0) or 0))
        ttl = fv.ttl.total_seconds() if fv.ttl else 0
        self.ttl = ttl if ttl > 0 else None

    def schema(self) -> dict[str, Any]:
        columns: dict[str, Any] = {key: {"dtype": dtype} for key, dtype in self.key_dtypes.items()}
        for name, kind in self.kinds.items():
            columns[name] = {"dtype": kind.dtype, "nullable": True}
        columns[EVENT_TS] = {"dtype": _TS_DTYPE, "nullable": False}
        columns[CREATED_TS] = {"dtype": _TS_DTYPE, "nullable": True}
        schema: dict[str, Any] = {"key": self.keys if len(self.keys) > 1 else self.keys[0],
                                  "columns": columns, "event_time": EVENT_TS}
        if self.ttl:
            schema["ttl"] = self.ttl
        return schema

    def arrow_type(self, name: str) -> pa.DataType:
        return parse_dtype(self.kinds[name].dtype)

    # -- entity keys ------------------------------------------------------------------------

    def key_arrays(self, entity_keys: Sequence[EntityKeyProto]) -> dict[str, pa.Array]:
        """One array per key column (by name) of Feast's entity keys."""
        values: dict[str, list[Any]] = {key: [] for key in self.keys}
        for entity_key in entity_keys:
            if len(entity_key.join_keys) != len(self.keys):
                raise ValueError(f"table '{self.name}' is keyed by {', '.join(self.keys)}; an "
                                 f"entity key has {', '.join(entity_key.join_keys) or 'none'}")
            for key, value in zip(entity_key.join_keys, entity_key.entity_values):
                column = values.get(key)
                if column is None:
                    raise ValueError(f"table '{self.name}' has no join key '{key}' (its keys: "
                                     f"{', '.join(self.keys)})")
                field = value.WhichOneof("val")
                if field not in _KEY_FIELDS[self.key_dtypes[key]]:
                    raise ValueError(f"table '{self.name}': join key '{key}' is "
                                     f"{self.key_dtypes[key]}, given a {field or 'null'} value")
                column.append(getattr(value, field))
        return {key: pa.array(column, pa.int64() if self.key_dtypes[key] == "int64"
                              else pa.string()) for key, column in values.items()}

    def keys_argument(self, entity_keys: Sequence[EntityKeyProto]) -> Any:
        arrays = self.key_arrays(entity_keys)
        if len(self.keys) == 1:
            return arrays[self.keys[0]]
        return arrays

    # -- values -----------------------------------------------------------------------------

    def column_of(self, name: str, protos: list[Optional[ValueProto]]) -> pa.Array:
        """Feast Values (None or an empty Value: null) as the Arrow column of feature `name`. A
        Value of another kind than the feature's is an error naming it, never a silent null."""
        kind = self.kinds[name]
        out: list[Any] = []
        append = out.append
        field, scale = kind.field, kind.scale
        for value in protos:
            which = None if value is None else value.WhichOneof("val")
            if which is None:
                append(None)
            elif field is None:
                append(value.SerializeToString())
            elif which != field:
                raise ValueError(f"table '{self.name}': feature '{name}' is {kind.dtype} "
                                 f"({field}); a write gave it a {which} value")
            elif kind.list_type is not None:
                append(list(getattr(value, field).val))
            else:
                append(getattr(value, field) * scale if scale != 1 else getattr(value, field))
        if kind.scale != 1:
            return pa.array(out, pa.int64()).cast(self.arrow_type(name))
        return pa.array(out, self.arrow_type(name))


def table_name(config: RepoConfig, fv: FeatureView) -> str:
    """The Quiver table of feature view `fv`: ``<project>.<name>`` (a version suffix when the
    registry versions online feature views)."""
    name = fv.name
    if getattr(config.registry, "enable_online_feature_view_versioning", False):
        from feast.infra.online_stores.helpers import compute_versioned_name
        name = compute_versioned_name(fv, True)
    return f"{config.project}.{name}"


def _rows(features: list[str], n: int, values: bytes, found: Sequence[Any],
          times: Sequence[Optional[datetime]]) -> _ReadRows:
    """Feast's rows of a read of n keys: `values` is the serialized RepeatedValue of the
    features, column after column (quiver._quiver.feast_values); `found` and `times` per key.
    Parsed at once and sliced: converting an Arrow column to Python costs about 4 µs and a Value
    made from Python about 0.5 µs, so one entity × 50 features spent 200 µs that way, and 100
    entities several ms."""
    parsed = Value_pb2.RepeatedValue.FromString(values).val if features else []
    columns = [parsed[i * n:(i + 1) * n] for i in range(len(features))]
    # Rows assembled by zip (in C): one dict per found key.
    return [(at, dict(zip(features, row))) if hit else (None, None)
            for hit, at, row in zip(found, times, zip(*columns) if columns else [()] * n)]


def _add_key_feature(rows: _ReadRows, entity_keys: list[EntityKeyProto], name: str) -> None:
    """Adds feature `name`, a join key, to each row found: its value in the row's entity key."""
    for (_, features), entity_key in zip(rows, entity_keys):
        if features is not None:
            features[name] = entity_key.entity_values[list(entity_key.join_keys).index(name)]


def _unreachable(url: str, error: QuiverConnectionError) -> QuiverConnectionError:
    return QuiverConnectionError(f"the Quiver online store at {url} is unreachable: {error}",
                                 error.code)


def _utc(moment: Optional[datetime]) -> Optional[datetime]:
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


class QuiverOnlineStore(OnlineStore):
    """Feast's online store interface over a Quiver client (docs/feast.md)."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}
        self._views: dict[tuple[str, str, int], tuple[FeatureView, _View]] = {}
        self._lock = threading.Lock()

    # -- connections ------------------------------------------------------------------------

    def _client(self, config: RepoConfig) -> Any:
        store = config.online_store
        url = getattr(store, "url", None) or QuiverOnlineStoreConfig().url
        with self._lock:
            client = self._clients.get(url)
            if client is None:
                try:
                    if "://" in url:
                        client = quiver.connect(url)
                    else:
                        client = quiver.open(os.path.abspath(os.path.expanduser(url)))
                except QuiverConnectionError as e:
                    raise _unreachable(url, e) from None
                self._clients[url] = client
            return client

    def _view(self, config: RepoConfig, fv: FeatureView) -> _View:
        # By the feature view object, held with its view so that its id cannot be reused by
        # another while cached; bounded, since Feast may make new objects as its registry
        # refreshes.
        key = (config.project, fv.name, id(fv))
        cached = self._views.get(key)
        if cached is not None and cached[0] is fv:
            return cached[1]
        if len(self._views) >= 256:
            self._views.clear()
        view = _View(config, fv)
        self._views[key] = (fv, view)
        return view

    def _call(self, config: RepoConfig, call: Callable[[Any], Any]) -> Any:
        client = self._client(config)
        try:
            return call(client)
        except QuiverConnectionError as e:
            raise _unreachable(getattr(config.online_store, "url", ""), e) from None

    @property
    def async_supported(self) -> SupportedAsyncMethods:
        return SupportedAsyncMethods(read=True, write=True)

    # -- writes -----------------------------------------------------------------------------

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: _WriteRows,
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        if not data:
            return
        view = self._view(config, table)
        batch = self._batch(view, data)
        self._call(config, lambda client: client.write(view.name, batch))
        if progress:
            progress(len(data))

    async def online_write_batch_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: _WriteRows,
        progress: Optional[Callable[[int], Any]],
    ) -> None:
        await asyncio.to_thread(self.online_write_batch, config, table, data, progress)

    @staticmethod
    def _batch(view: _View, data: _WriteRows) -> pa.Table:
        columns: dict[str, pa.Array] = dict(view.key_arrays([row[0] for row in data]))
        for name in view.kinds:
            columns[name] = view.column_of(name, [row[1].get(name) for row in data])
        timestamp = pa.timestamp("us", tz="UTC")
        columns[EVENT_TS] = pa.array([_utc(row[2]) for row in data], timestamp)
        columns[CREATED_TS] = pa.array([_utc(row[3]) for row in data], timestamp)
        return pa.table(columns)

    # -- reads ------------------------------------------------------------------------------

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: Optional[list[str]] = None,
    ) -> _ReadRows:
        if not entity_keys:
            return []
        view = self._view(config, table)
        requested = requested_features or [*view.kinds, *view.key_features]
        features = [name for name in requested if name in view.kinds]
        keys = view.keys_argument(entity_keys)
        fields = [view.kinds[name].number for name in features]
        backend = self._client(config)._backend
        if isinstance(backend, EmbeddedBackend):
            # In process: the engine hands over the Values' bytes, not Arrow columns.
            values, found, micros = backend.read_feast(view.name, _convert.to_keys(keys),
                                                       features, fields, EVENT_TS)
            times = [_EPOCH + timedelta(microseconds=m) for m in micros]
        else:
            result = self._call(config, lambda client: client.read(view.name, keys,
                                                                   features + [EVENT_TS]))
            data = result.to_arrow()
            values = _quiver.feast_values(data.select(features).__arrow_c_stream__(), fields)
            found = result.found.tolist()
            times = data.column(EVENT_TS).to_pylist()
        rows = _rows(features, len(found), values, found, times)
        for name in view.key_features:
            if name in requested:
                _add_key_feature(rows, entity_keys, name)
        return rows

    async def online_read_async(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: Optional[list[str]] = None,
    ) -> _ReadRows:
        return await asyncio.to_thread(self.online_read, config, table, entity_keys,
                                       requested_features)

    # -- tables -----------------------------------------------------------------------------

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        # Every feature view is checked before anything changes: a bad one changes nothing.
        views = [_View(config, fv) for fv in tables_to_keep]
        self._call(config, lambda client: self._apply(client, views, tables_to_delete, config))

    def _apply(self, client: Any, views: list[_View], tables_to_delete: Sequence[FeatureView],
               config: RepoConfig) -> None:
        plans = [(view, self._plan(client, view)) for view in views]
        for view, plan in plans:
            if plan == "create":
                client.create_table(view.name, view.schema())
            elif plan:
                client.alter_table(view.name, **plan)
        for fv in tables_to_delete:
            try:
                client.drop_table(table_name(config, fv))
            except TableNotFound:
                pass
        self._views.clear()

    @staticmethod
    def _plan(client: Any, view: _View) -> Any:
        """"create", the change that brings an existing table to the view (a dict of
        alter_table's arguments, empty when none), or an error naming the difference."""
        try:
            have = client.table_schema(view.name)
        except TableNotFound:
            return "create"
        want = view.schema()
        have_key = have.get("key")
        if have_key != want["key"] or have.get("event_time") != EVENT_TS:
            raise QuiverError(f"table '{view.name}' exists with key {have_key!r} and event time "
                              f"{have.get('event_time')!r}; the feature view needs key "
                              f"{want['key']!r} and event time '{EVENT_TS}' (drop the table, or "
                              "name the feature view differently); nothing was changed",
                              "ALREADY_EXISTS")
        add: dict[str, Any] = {}
        for name, column in want["columns"].items():
            existing = have["columns"].get(name)
            if existing is None:
                add[name] = column
            elif parse_dtype(existing.get("dtype", "")) != parse_dtype(column["dtype"]):
                raise QuiverError(f"table '{view.name}' exists with column '{name}' of dtype "
                                  f"{existing.get('dtype')}; the feature view needs "
                                  f"{column['dtype']} (drop the table or rename the feature); "
                                  "nothing was changed", "ALREADY_EXISTS")
        change: dict[str, Any] = {}
        if add:
            change["add"] = add
        if (have.get("ttl") or None) != (want.get("ttl") or None):
            change["ttl"] = want.get("ttl") or 0
        return change

    def teardown(self, config: RepoConfig, tables: Sequence[FeatureView],
                 entities: Sequence[Entity]) -> None:
        def drop(client: Any) -> None:
            for fv in tables:
                try:
                    client.drop_table(table_name(config, fv))
                except TableNotFound:
                    pass
        self._call(config, drop)
        self._views.clear()
