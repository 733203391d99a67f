// quiver._quiver: the engine embedded in a Python process (nanobind).
//
// A thin layer over an Instance (app/instance.h): table schemas cross as TableSchema JSON text;
// data crosses as Arrow C data interface capsules (PyCapsules named "arrow_schema", "arrow_array",
// "arrow_array_stream"), so no value becomes a Python object here. The GIL is released while the
// engine works. Errors raise quiver._quiver.EngineError(code, message), code being the engine's
// StatusCodeName ("NOT_FOUND", ...); the Python package turns it into its QuiverError classes.
//
// Thread safety: an Engine may be used from any number of Python threads (the Catalog is
// thread-safe; writes to one table are serialized by the engine).
#include <arrow/api.h>
#include <arrow/c/abi.h>
#include <arrow/c/bridge.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "app/instance.h"
#include "bindings.h"
#include "common/arrow_status.h"
#include "common/result.h"
#include "common/status.h"
#include "engine/catalog.h"
#include "engine/dtype.h"
#include "engine/schema.h"
#include "engine/schema_change.h"
#include "engine/table.h"
#include "engine/write_cast.h"
#include "kv/keyspace.h"
#include "server/codec/codec.h"
#include "server/resp/local.h"
#include "storage/database.h"

namespace nb = nanobind;

namespace quiver::python {

PyObject* g_engine_error = nullptr;
PyObject* g_kv_error = nullptr;

[[noreturn]] void Raise(const Status& status) {
  nb::object args = nb::make_tuple(std::string(StatusCodeName(status.code())), status.message());
  PyErr_SetObject(g_engine_error, args.ptr());
  throw nb::python_error();
}

nb::object SchemaCapsule(const std::shared_ptr<arrow::Schema>& schema) {
  auto* c_schema = new ArrowSchema;
  arrow::Status status = arrow::ExportSchema(*schema, c_schema);
  if (!status.ok()) {
    delete c_schema;
    Raise(FromArrow(status));
  }
  return nb::steal(PyCapsule_New(c_schema, "arrow_schema", [](PyObject* capsule) {
    auto* s = static_cast<ArrowSchema*>(PyCapsule_GetPointer(capsule, "arrow_schema"));
    if (s->release != nullptr) s->release(s);
    delete s;
  }));
}

nb::object ArrayCapsules(const std::shared_ptr<arrow::RecordBatch>& batch) {
  auto* c_array = new ArrowArray;
  arrow::Status status = arrow::ExportRecordBatch(*batch, c_array);
  if (!status.ok()) {
    delete c_array;
    Raise(FromArrow(status));
  }
  nb::object array = nb::steal(PyCapsule_New(c_array, "arrow_array", [](PyObject* capsule) {
    auto* a = static_cast<ArrowArray*>(PyCapsule_GetPointer(capsule, "arrow_array"));
    if (a->release != nullptr) a->release(a);
    delete a;
  }));
  return nb::make_tuple(SchemaCapsule(batch->schema()), array);
}

nb::object CastColumn(nb::handle array_schema, nb::handle array, nb::handle type_schema,
                      const std::string& cast, const std::string& what) {
  std::shared_ptr<arrow::Array> input = ImportKeys(array_schema, array);
  auto* c_type = CapsulePointer<ArrowSchema>(type_schema, "arrow_schema");
  Result<std::shared_ptr<arrow::RecordBatch>> batch =
      [&]() -> Result<std::shared_ptr<arrow::RecordBatch>> {
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::DataType> type, arrow::ImportType(c_type));
    QUIVER_ASSIGN_OR_RETURN(CastMode mode, ParseCastMode(cast));
    QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> column,
                            CastForWrite(input, type, mode, what));
    return arrow::RecordBatch::Make(arrow::schema({arrow::field("value", type)}), column->length(),
                                    {column});
  }();
  return ArrayCapsules(ValueOrRaise(std::move(batch)));
}

std::shared_ptr<arrow::Array> ImportKeys(nb::handle schema, nb::handle array) {
  auto* c_schema = CapsulePointer<ArrowSchema>(schema, "arrow_schema");
  auto* c_array = CapsulePointer<ArrowArray>(array, "arrow_array");
  // The import moves the array out and releases the schema, leaving both capsules empty.
  Result<std::shared_ptr<arrow::Array>> keys = [&]() -> Result<std::shared_ptr<arrow::Array>> {
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> imported,
                                  arrow::ImportArray(c_array, c_schema));
    return imported;
  }();
  return ValueOrRaise(std::move(keys));
}

nb::tuple ReadReply(const std::shared_ptr<arrow::RecordBatch>& batch,
                    const std::shared_ptr<arrow::BooleanArray>& found_array, int64_t found_count) {
  auto found =
      arrow::RecordBatch::Make(arrow::schema({arrow::field("found", arrow::boolean(), false)}),
                               found_array->length(), {found_array});
  return nb::make_tuple(ArrayCapsules(batch), ArrayCapsules(found), found_count);
}

namespace {

// A timestamp of `type`'s unit in microseconds since the epoch (nanoseconds floored).
int64_t ToMicros(int64_t value, const std::shared_ptr<arrow::DataType>& type) {
  switch (static_cast<const arrow::TimestampType&>(*type).unit()) {
    case arrow::TimeUnit::SECOND:
      return value * 1000 * 1000;
    case arrow::TimeUnit::MILLI:
      return value * 1000;
    case arrow::TimeUnit::MICRO:
      return value;
    case arrow::TimeUnit::NANO:
      return value / 1000 - (value % 1000 < 0 ? 1 : 0);
  }
  return value;
}

// The engine: in memory only (no data directory), or a durable Database in one.
class Engine {
 public:
  Engine(std::optional<std::string> data_dir, const std::string& fsync, uint64_t snapshot_wal_bytes,
         int64_t snapshot_interval, std::optional<std::string> shm_socket,
         std::optional<std::string> history, double history_interval) {
    InstanceOptions options;
    if (history) {
      if (!data_dir) {
        Raise(Status::InvalidArgument(
            "history needs a data directory: it is written from the write-ahead log"));
      }
      if (!(history_interval >= 0.05)) {
        Raise(Status::InvalidArgument("history_interval must be at least 0.05 seconds"));
      }
      options.history =
          objstore::HistoryOptions{.uri = *history, .interval_seconds = history_interval};
    }
    // With a data directory the tables are published for other processes, as quiverd's are.
    if (shm_socket && *shm_socket != "off") {
      options.shm_socket = *shm_socket;
    } else if (!shm_socket && data_dir) {
      options.shm_socket = (std::filesystem::path(*data_dir) / "quiver.sock").string();
    }
    options.data_dir = std::move(data_dir);
    if (!storage::ParseFsyncPolicy(fsync, &options.durability.fsync)) {
      Raise(Status::InvalidArgument("fsync must be 'always', 'everysec' or 'no', not '" + fsync +
                                    "'"));
    }
    options.durability.snapshot_wal_bytes = snapshot_wal_bytes;
    options.durability.snapshot_interval_seconds = snapshot_interval;
    Result<std::unique_ptr<Instance>> opened = Status::OK();
    {
      nb::gil_scoped_release release;
      opened = Instance::Open(std::move(options));
    }
    instance_ = ValueOrRaise(std::move(opened));
  }

  // Runs a key-value command (args: bytes; args[0] the name) through the RESP command table;
  // the reply as Python values: bytes, int, float, bool, None, str (status replies), list, dict.
  // An error reply raises KvError(message).
  nb::object KvCall(const std::vector<nb::bytes>& args) {
    catalog();  // raises once closed
    std::vector<std::string> owned;
    owned.reserve(args.size());
    for (const nb::bytes& arg : args) owned.emplace_back(arg.c_str(), arg.size());
    resp::Reply reply;
    {
      nb::gil_scoped_release release;
      const std::vector<std::string_view> views(owned.begin(), owned.end());
      reply = instance_->kv().Call(views);
    }
    return ToPython(reply);
  }

  nb::dict KvInfo() {
    kv::Keyspace& keyspace = instance_->keyspace();
    const kv::KeyspaceStats stats = keyspace.Stats();
    nb::dict out;
    out["keys"] = stats.keys;
    out["keys_with_ttl"] = stats.keys_with_ttl;
    out["expired"] = stats.expired;
    out["evicted"] = keyspace.memory_limit().Evicted();         // table rows included, as INFO
    out["used_memory"] = keyspace.memory_limit().UsedMemory();  // tables included, as INFO
    out["used_memory_keyspace"] = stats.bytes;
    out["maxmemory"] = keyspace.MaxMemory();
    out["maxmemory_policy"] = std::string(kv::PolicyName(keyspace.Policy()));
    return out;
  }

  // Syncs the log and releases the data directory; later calls fail.
  void Close() {
    nb::gil_scoped_release release;
    instance_->Close();
    closed_ = true;
  }

  // Per table: (name, written, rows, bytes, lsn, seconds).
  nb::list Snapshot(const std::vector<std::string>& tables) {
    if (instance_->database() == nullptr) {
      Raise(
          Status::InvalidArgument("this engine has no data directory: open it with "
                                  "quiver.open(data_dir) to save snapshots"));
    }
    Result<storage::SnapshotReport> report = Status::OK();
    {
      nb::gil_scoped_release release;
      report = instance_->database()->Snapshot(tables);
    }
    nb::list out;
    for (const auto& table : ValueOrRaise(std::move(report)).tables) {
      out.append(nb::make_tuple(table.table, table.written, table.rows, table.bytes, table.lsn,
                                table.seconds));
    }
    return out;
  }

  std::string CreateTable(const std::string& name, const std::string& schema_json) {
    Result<std::shared_ptr<Table>> table = [&]() -> Result<std::shared_ptr<Table>> {
      QUIVER_ASSIGN_OR_RETURN(TableSchema schema,
                              TableSchema::FromJson(schema_json, catalog().options().limits));
      return catalog().CreateTable(name, std::move(schema));
    }();
    return ValueOrRaise(std::move(table))->schema().ToJson();
  }

  void DropTable(const std::string& name) { RaiseIfError(catalog().DropTable(name)); }

  std::string AlterTable(const std::string& name, const std::string& change_json) {
    Result<std::shared_ptr<Table>> table = [&]() -> Result<std::shared_ptr<Table>> {
      QUIVER_ASSIGN_OR_RETURN(SchemaChange change,
                              SchemaChange::FromJson(change_json, catalog().options().limits));
      return catalog().AlterTable(name, change);
    }();
    return ValueOrRaise(std::move(table))->schema().ToJson();
  }

  std::string Describe(const std::string& name) const {
    return codec::TableInfoToJson(*ValueOrRaise(catalog().GetTable(name)));
  }

  std::vector<std::string> ListTables() const { return catalog().ListTables(); }

  std::string Schema(const std::string& name) const {
    return ValueOrRaise(catalog().GetTable(name))->schema().ToJson();
  }

  // Upserts every batch of an Arrow C stream as one write, the rows living `ttl` seconds (None:
  // the table's TTL). Returns (rows_written, rows_skipped).
  std::pair<int64_t, int64_t> Write(const std::string& name, nb::handle stream_capsule,
                                    std::optional<double> ttl, std::optional<std::string> cast) {
    WriteOptions options;
    if (ttl) options.ttl_ms = ValueOrRaise(TtlFromSeconds(*ttl, "ttl"));
    if (cast) options.cast = ValueOrRaise(ParseCastMode(*cast));
    auto* stream = CapsulePointer<ArrowArrayStream>(stream_capsule, "arrow_array_stream");
    std::shared_ptr<Table> table = ValueOrRaise(catalog().GetTable(name));
    Result<UpsertResult> result = Status::OK();
    {
      nb::gil_scoped_release release;
      result = [&]() -> Result<UpsertResult> {
        QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::RecordBatchReader> reader,
                                      arrow::ImportRecordBatchReader(stream));
        QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Table> data, reader->ToTable());
        return table->Upsert(*data, options);
      }();
    }
    UpsertResult counts = ValueOrRaise(std::move(result));
    return {counts.rows_written, counts.rows_skipped};
  }

  // Returns ((schema, array) capsules of the feature batch, (schema, array) capsules of a
  // one-column batch "found", found_count).
  // With `with_ttl`, the batch ends with "_ttl_ms" (codec::FetchResultBatch).
  nb::tuple Read(const std::string& name, nb::handle keys_schema, nb::handle keys_array,
                 const std::vector<std::string>& columns, bool with_ttl) const {
    std::shared_ptr<arrow::Array> keys = ImportKeys(keys_schema, keys_array);
    std::shared_ptr<Table> table = ValueOrRaise(catalog().GetTable(name));
    Result<ReadResult> result = Status::OK();
    {
      nb::gil_scoped_release release;
      result = table->Read(*keys, columns, ReadOptions{.with_ttl = with_ttl});
    }
    ReadResult read = ValueOrRaise(std::move(result));
    std::shared_ptr<arrow::RecordBatch> batch =
        ValueOrRaise(codec::FetchResultBatch(read, /*found_column=*/false));
    return ReadReply(batch, read.found, read.found_count);
  }

  // quiver.feast's read (docs/feast.md "Reads and writes"), with no Arrow object crossing into
  // Python: (the `columns` as one serialized Feast RepeatedValue, column after column, fields[i]
  // the Value field of columns[i] (AppendFeastValues); one byte per key, 1 where found; each
  // row's `event_column` in microseconds since the epoch, 0 where not found).
  nb::tuple ReadFeast(const std::string& name, nb::handle keys_schema, nb::handle keys_array,
                      std::vector<std::string> columns, const std::vector<int>& fields,
                      const std::string& event_column) const {
    if (fields.size() != columns.size()) {
      Raise(Status::InvalidArgument("read_feast: " + std::to_string(columns.size()) + " columns, " +
                                    std::to_string(fields.size()) + " fields"));
    }
    std::shared_ptr<arrow::Array> keys = ImportKeys(keys_schema, keys_array);
    std::shared_ptr<Table> table = ValueOrRaise(catalog().GetTable(name));
    columns.push_back(event_column);
    std::string values;
    std::string found;
    std::vector<int64_t> micros;
    Status status = Status::OK();
    {
      nb::gil_scoped_release release;
      status = [&]() -> Status {
        QUIVER_ASSIGN_OR_RETURN(ReadResult read, table->Read(*keys, columns, ReadOptions{}));
        for (size_t c = 0; c < fields.size(); ++c) {
          QUIVER_RETURN_NOT_OK(AppendFeastValues(*read.batch->column(static_cast<int>(c)),
                                                 fields[c], "column '" + columns[c] + "'",
                                                 &values));
        }
        const arrow::Array& times = *read.batch->column(static_cast<int>(fields.size()));
        if (times.type_id() != arrow::Type::TIMESTAMP) {
          return Status::InvalidArgument("table '" + name + "': column '" + event_column + "' is " +
                                         times.type()->ToString() + ", not a timestamp");
        }
        const auto& stamps = static_cast<const arrow::TimestampArray&>(times);
        const int64_t n = read.batch->num_rows();
        found.resize(static_cast<size_t>(n));
        micros.resize(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          bool hit = read.found->Value(i) && stamps.IsValid(i);
          found[static_cast<size_t>(i)] = hit ? 1 : 0;
          micros[static_cast<size_t>(i)] = hit ? ToMicros(stamps.Value(i), stamps.type()) : 0;
        }
        return Status::OK();
      }();
    }
    RaiseIfError(status);
    return nb::make_tuple(nb::bytes(values.data(), values.size()),
                          nb::bytes(found.data(), found.size()), micros);
  }

  int64_t Delete(const std::string& name, nb::handle keys_schema, nb::handle keys_array) {
    std::shared_ptr<arrow::Array> keys = ImportKeys(keys_schema, keys_array);
    std::shared_ptr<Table> table = ValueOrRaise(catalog().GetTable(name));
    Result<int64_t> deleted = Status::OK();
    {
      nb::gil_scoped_release release;
      deleted = table->Delete(*keys);
    }
    return ValueOrRaise(std::move(deleted));
  }

  nb::dict Stats(const std::string& name) const {
    TableStats stats = ValueOrRaise(catalog().GetTable(name))->Stats();
    nb::dict out;
    out["rows"] = stats.rows;
    out["bytes"] = stats.bytes;
    out["row_bytes"] = stats.row_bytes;
    out["index_bytes"] = stats.index_bytes;
    out["heap_bytes"] = stats.heap_bytes;
    out["heap_garbage_bytes"] = stats.heap_garbage_bytes;
    out["heap_compactions"] = stats.heap_compactions;
    out["heap_moved_bytes"] = stats.heap_moved_bytes;
    out["rows_with_ttl"] = stats.rows_with_ttl;
    out["expired"] = stats.expired;
    out["evicted"] = stats.evicted;
    out["used_bytes"] = stats.used_bytes;
    return out;
  }

 private:
  Catalog& catalog() const {
    if (closed_) Raise(Status::InvalidArgument("the engine is closed"));
    return instance_->catalog();
  }

  static nb::object ToPython(const resp::Reply& reply) {
    using Kind = resp::Reply::Kind;
    switch (reply.kind) {
      case Kind::kError: {
        PyErr_SetString(g_kv_error, reply.text.c_str());
        throw nb::python_error();
      }
      case Kind::kSimple:
        return nb::str(reply.text.c_str(), reply.text.size());
      case Kind::kInteger:
        return nb::int_(reply.integer);
      case Kind::kBoolean:
        return nb::bool_(reply.integer != 0);
      case Kind::kDouble:
        return nb::float_(reply.number);
      case Kind::kBulk:
        return nb::bytes(reply.text.data(), reply.text.size());
      case Kind::kArray: {
        nb::list list;
        for (const resp::Reply& element : reply.elements) list.append(ToPython(element));
        return list;
      }
      case Kind::kMap: {
        nb::dict dict;
        for (size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
          dict[ToPython(reply.elements[i])] = ToPython(reply.elements[i + 1]);
        }
        return dict;
      }
      case Kind::kNull:
        break;
    }
    return nb::none();
  }

  std::unique_ptr<Instance> instance_;
  std::atomic<bool> closed_{false};
};

}  // namespace
}  // namespace quiver::python

NB_MODULE(_quiver, m) {
  using quiver::python::Engine;
  m.doc() = "Quiver's engine, embedded (the quiver package wraps it; use quiver.open()).";
  quiver::python::g_engine_error = PyErr_NewExceptionWithDoc(
      "quiver._quiver.EngineError", "An engine error: args are (code, message).",
      PyExc_RuntimeError, nullptr);
  m.attr("EngineError") = nb::borrow(quiver::python::g_engine_error);
  quiver::python::g_kv_error = PyErr_NewExceptionWithDoc(
      "quiver._quiver.KvError", "An error reply of a key-value command: args are (message,).",
      PyExc_RuntimeError, nullptr);
  m.attr("KvError") = nb::borrow(quiver::python::g_kv_error);
  m.def(
      "dtypes",
      [] {
        std::vector<std::string> names;
        for (const quiver::Dtype& dtype : quiver::Dtypes()) {
          if (dtype.make != nullptr) names.emplace_back(dtype.name);
        }
        return names;
      },
      "The scalar dtype spellings (engine/dtype.h), in the docs' order; each is a pyarrow type "
      "alias. timestamp[...], list[...] and fixed_size_list[...] are built from them.");
  m.def("cast_column", &quiver::python::CastColumn, nb::arg("array_schema"), nb::arg("array"),
        nb::arg("type"), nb::arg("cast"), nb::arg("what"),
        "An array (C data capsules) converted to a column's type (a type's schema capsule) by "
        "the write rules (engine/write_cast.h) under cast 'safe' or 'strict'; returns the "
        "(schema, array) capsules of a one-column batch.");

  m.def("feast_values", &quiver::python::FeastValues, nb::arg("stream"), nb::arg("fields"),
        "The columns of an 'arrow_array_stream' capsule as one serialized "
        "feast.types.RepeatedValue: column after column, a Value per row (a null: an empty "
        "Value); fields[i] is the Value oneof field number column i fills, 0 for a binary "
        "column of serialized Values (quiver.feast; python/ext/feast_values.cc).");

  nb::class_<Engine>(m, "Engine", "An in-memory catalog of feature tables.")
      .def(nb::init<std::optional<std::string>, const std::string&, uint64_t, int64_t,
                    std::optional<std::string>, std::optional<std::string>, double>(),
           nb::arg("data_dir").none(), nb::arg("fsync") = "everysec",
           nb::arg("snapshot_wal_bytes") = uint64_t{256} << 20, nb::arg("snapshot_interval") = 3600,
           nb::arg("shm_socket").none() = nb::none(), nb::arg("history").none() = nb::none(),
           nb::arg("history_interval") = 60.0,
           "In memory (data_dir None), or durable in data_dir: recovers what is there, logs "
           "every write (fsync: always, everysec or no) and snapshots in the background; then "
           "its tables are published for readers of other processes at shm_socket (None: "
           "<data_dir>/quiver.sock; 'off': not published). history: a URI every table change "
           "is also written to as Parquet, every history_interval seconds (objstore/history.h).")
      .def("close", &Engine::Close, "Syncs the log and releases the data directory.")
      .def("snapshot", &Engine::Snapshot, nb::arg("tables"),
           "Snapshots the named tables (all when empty); per table (name, written, rows, "
           "bytes, lsn, seconds).")
      .def("create_table", &Engine::CreateTable, nb::arg("name"), nb::arg("schema_json"),
           "Creates a table from TableSchema JSON; returns the stored schema as JSON.")
      .def("drop_table", &Engine::DropTable, nb::arg("name"))
      .def("alter_table", &Engine::AlterTable, nb::arg("name"), nb::arg("change_json"),
           "Changes a table's schema online (SchemaChange JSON); returns the new schema as JSON.")
      .def("describe", &Engine::Describe, nb::arg("name"),
           "The table's rows, bytes, key, TTL and columns as JSON.")
      .def("list_tables", &Engine::ListTables, "Table names, sorted.")
      .def("schema", &Engine::Schema, nb::arg("name"), "The table's TableSchema JSON.")
      .def("write", &Engine::Write, nb::arg("name"), nb::arg("stream"), nb::arg("ttl").none(),
           nb::arg("cast").none(),
           "Upserts an 'arrow_array_stream' capsule as one write; returns (written, skipped).")
      .def("read", &Engine::Read, nb::arg("name"), nb::arg("keys_schema"), nb::arg("keys_array"),
           nb::arg("columns"), nb::arg("with_ttl") = false,
           "Reads keys given as C data capsules; returns ((schema, array), (schema, array), "
           "found_count) for the feature batch and the 'found' batch.")
      .def("read_feast", &Engine::ReadFeast, nb::arg("name"), nb::arg("keys_schema"),
           nb::arg("keys_array"), nb::arg("columns"), nb::arg("fields"), nb::arg("event_column"),
           "quiver.feast's read: (serialized feast.types.RepeatedValue of the columns, column "
           "after column; one byte per key, 1 where found; event times in microseconds since "
           "the epoch, 0 where not found). fields as feast_values takes them.")
      .def("delete", &Engine::Delete, nb::arg("name"), nb::arg("keys_schema"),
           nb::arg("keys_array"), "Deletes keys; returns how many were present.")
      .def("stats", &Engine::Stats, nb::arg("name"), "Memory and row counts of a table.")
      .def("kv_call", &Engine::KvCall, nb::arg("args"),
           "Runs a key-value command (a list of bytes) with the RESP server's semantics; "
           "returns its reply as Python values, raises KvError for an error reply.")
      .def("kv_info", &Engine::KvInfo, "Key-value keyspace counts and memory.");
  quiver::python::BindShm(m);
}
