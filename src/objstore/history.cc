#include "objstore/history.h"

#include <arrow/api.h>
#include <arrow/compute/cast.h>
#include <arrow/io/memory.h>
#include <parquet/arrow/writer.h>
#include <parquet/properties.h>

#include <algorithm>
#include <cinttypes>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/arrow_status.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "engine/keys.h"
#include "engine/schema.h"
#include "engine/table.h"
#include "storage/catalog_file.h"
#include "storage/database.h"
#include "storage/file.h"
#include "storage/log_records.h"
#include "storage/wal.h"

namespace quiver::objstore {

namespace fs = std::filesystem;

// A table as the history knows it: its name and its history's Arrow schema (the key, the value
// columns, then the history's own).
struct History::TableInfo {
  uint64_t id = 0;
  std::string name;
  std::string schema_json;
  std::vector<ColumnSpec> columns;  // the key column(s) first, then the others in schema order
  size_t key_count = 1;             // key columns (several: a composite key)
  std::shared_ptr<const TableSchema> table_schema;
  std::string event_time;  // "" when none
  std::shared_ptr<arrow::Schema> schema;
};

namespace {

constexpr const char* kScanDir = "history-scan";
constexpr const char* kStageDir = "history-stage";
constexpr std::string_view kReservedPrefix = "_quiver_";
constexpr int64_t kHourMs = 3'600'000;

std::shared_ptr<arrow::DataType> TimeType() {
  return arrow::timestamp(arrow::TimeUnit::MICRO, "UTC");
}

// The history files' "quiver.key": the key column's name, or a composite key's names as a JSON
// list.
std::string KeyMetadata(const History::TableInfo& info) {
  if (info.key_count == 1) return info.columns[0].name;
  nlohmann::json names = nlohmann::json::array();
  for (size_t c = 0; c < info.key_count; ++c) names.push_back(info.columns[c].name);
  return names.dump();
}

Result<std::shared_ptr<const History::TableInfo>> MakeTableInfo(uint64_t id, std::string name,
                                                                std::string schema_json) {
  EngineLimits limits;
  limits.max_columns = 1 << 20;  // the table exists already: its server's limits admitted it
  limits.max_embedding_elements = 1 << 30;
  QUIVER_ASSIGN_OR_RETURN(const TableSchema schema, TableSchema::FromJson(schema_json, limits));
  auto info = std::make_shared<History::TableInfo>();
  info->id = id;
  info->name = std::move(name);
  info->schema_json = std::move(schema_json);
  for (int index : schema.key_columns()) info->columns.push_back(schema.columns()[index]);
  for (int i = 0; i < schema.num_columns(); ++i) {
    if (!schema.IsKeyColumn(i)) info->columns.push_back(schema.columns()[i]);
  }
  info->key_count = schema.key_columns().size();
  info->table_schema = std::make_shared<const TableSchema>(schema);
  if (schema.event_time_index() >= 0) {
    info->event_time = schema.columns()[schema.event_time_index()].name;
  }
  arrow::FieldVector fields;
  for (const ColumnSpec& column : info->columns) {
    if (column.name.starts_with(kReservedPrefix)) {
      return Status::InvalidArgument("column '" + column.name + "' starts with '" +
                                     std::string(kReservedPrefix) +
                                     "', which the change history reserves for its own columns");
    }
    fields.push_back(arrow::field(column.name, column.type, /*nullable=*/true));
  }
  fields.push_back(arrow::field("_quiver_op", arrow::utf8(), false));
  fields.push_back(arrow::field("_quiver_lsn", arrow::int64(), false));
  fields.push_back(arrow::field("_quiver_row", arrow::int32(), false));
  fields.push_back(arrow::field("_quiver_applied_at", TimeType(), false));
  fields.push_back(arrow::field("_quiver_event_time", TimeType(), false));
  fields.push_back(arrow::field("_quiver_expires_at", TimeType(), true));
  fields.push_back(arrow::field("_quiver_omitted", arrow::list(arrow::utf8()), true));
  info->schema =
      arrow::schema(std::move(fields),
                    arrow::KeyValueMetadata::Make(
                        {"quiver.table", "quiver.key", "quiver.event_time", "quiver.schema"},
                        {info->name, KeyMetadata(*info), info->event_time, info->schema_json}));
  return std::shared_ptr<const History::TableInfo>(std::move(info));
}

int64_t MetadataMillis(const arrow::Schema& schema, std::string_view key) {
  const auto& metadata = schema.metadata();
  if (metadata == nullptr) return 0;
  const int index = metadata->FindKey(std::string(key));
  if (index < 0) return 0;
  return std::strtoll(metadata->value(index).c_str(), nullptr, 10);
}

template <typename T>
Result<std::shared_ptr<arrow::Array>> Repeat(const T& scalar, int64_t n) {
  auto array = arrow::MakeArrayFromScalar(scalar, n);
  if (!array.ok()) return FromArrow(array.status());
  return *array;
}

Result<std::shared_ptr<arrow::Array>> Nulls(const std::shared_ptr<arrow::DataType>& type,
                                            int64_t n) {
  auto array = arrow::MakeArrayOfNull(type, n);
  if (!array.ok()) return FromArrow(array.status());
  return *array;
}

Result<std::shared_ptr<arrow::Array>> CastTo(const std::shared_ptr<arrow::Array>& array,
                                             const std::shared_ptr<arrow::DataType>& type,
                                             const std::string& column, bool truncate_time) {
  if (array->type()->Equals(*type)) return array;
  arrow::compute::CastOptions options = arrow::compute::CastOptions::Safe(type);
  options.allow_time_truncate = truncate_time;
  auto cast = arrow::compute::Cast(*array, type, options);
  if (!cast.ok()) {
    return Status::InvalidArgument("column '" + column + "' (" + array->type()->ToString() +
                                   ") does not convert to " + type->ToString() + ": " +
                                   cast.status().message());
  }
  return *cast;
}

// One change as history rows. `batch`: an upsert's rows, a delete's keys, or null for a drop (one
// row, no key).
Result<std::shared_ptr<arrow::RecordBatch>> HistoryRows(const History::TableInfo& info,
                                                        storage::RecordType type, uint64_t lsn,
                                                        const arrow::RecordBatch* batch,
                                                        int64_t applied_ms, int64_t expires_ms) {
  const bool upsert = type == storage::RecordType::kUpsert;
  const int64_t n = batch == nullptr ? 1 : batch->num_rows();
  arrow::ArrayVector columns;
  std::vector<std::string> omitted;
  std::shared_ptr<arrow::Array> event_time;
  // A delete's batch is its keys, in a column named "key" (a composite key's encoded).
  arrow::ArrayVector deleted_keys;
  if (batch != nullptr && !upsert && batch->num_columns() > 0) {
    if (info.key_count > 1) {
      QUIVER_ASSIGN_OR_RETURN(deleted_keys, DecodeKeys(*info.table_schema, *batch->column(0)));
    } else {
      deleted_keys.push_back(batch->column(0));
    }
  }
  for (size_t c = 0; c < info.columns.size(); ++c) {
    const ColumnSpec& column = info.columns[c];
    std::shared_ptr<arrow::Array> values;
    if (batch != nullptr) {
      const int index = upsert ? batch->schema()->GetFieldIndex(column.name) : -1;
      if (index >= 0) values = batch->column(index);
      if (!upsert && c < deleted_keys.size()) values = deleted_keys[c];
    }
    if (values == nullptr) {
      QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(), Nulls(column.type, n));
      if (upsert && c >= info.key_count) omitted.push_back(column.name);
      continue;
    }
    QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(),
                            CastTo(values, column.type, column.name, false));
    if (upsert && column.name == info.event_time) {
      QUIVER_ASSIGN_OR_RETURN(
          event_time, CastTo(columns.back(), TimeType(), column.name, /*truncate_time=*/true));
    }
  }
  const char* op = upsert ? "upsert" : type == storage::RecordType::kDelete ? "delete" : "drop";
  QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(), Repeat(arrow::StringScalar(op), n));
  QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(),
                          Repeat(arrow::Int64Scalar(static_cast<int64_t>(lsn)), n));
  arrow::Int32Builder rows;
  if (!rows.Reserve(n).ok()) return Status::OutOfMemory("no memory for the history's rows");
  for (int64_t i = 0; i < n; ++i) rows.UnsafeAppend(static_cast<int32_t>(i));
  QUIVER_ASSIGN_OR_RETURN_ARROW(columns.emplace_back(), rows.Finish());
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> applied,
                          Repeat(arrow::TimestampScalar(applied_ms * 1000, TimeType()), n));
  columns.push_back(applied);
  columns.push_back(event_time != nullptr ? event_time : applied);
  if (expires_ms > 0) {
    QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(),
                            Repeat(arrow::TimestampScalar(expires_ms * 1000, TimeType()), n));
  } else {
    QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(), Nulls(TimeType(), n));
  }
  if (omitted.empty()) {
    QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(), Nulls(arrow::list(arrow::utf8()), n));
  } else {
    arrow::StringBuilder names;
    for (const std::string& name : omitted) {
      if (!names.Append(name).ok()) return Status::OutOfMemory("no memory for the history");
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> list, names.Finish());
    QUIVER_ASSIGN_OR_RETURN(columns.emplace_back(), Repeat(arrow::ListScalar(list), n));
  }
  return arrow::RecordBatch::Make(info.schema, n, std::move(columns));
}

Result<std::shared_ptr<arrow::Buffer>> ParquetFile(
    const std::shared_ptr<arrow::Schema>& schema,
    const std::vector<std::shared_ptr<arrow::RecordBatch>>& batches) {
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Table> table,
                                arrow::Table::FromRecordBatches(schema, batches));
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::io::BufferOutputStream> sink,
                                arrow::io::BufferOutputStream::Create());
  auto properties = parquet::WriterProperties::Builder()
                        .compression(parquet::Compression::ZSTD)
                        ->max_row_group_length(1 << 20)
                        ->build();
  // The Arrow schema travels along: time zones, the list type, and the table's metadata.
  auto arrow_properties = parquet::ArrowWriterProperties::Builder().store_schema()->build();
  QUIVER_RETURN_NOT_OK(FromArrow(parquet::arrow::WriteTable(
      *table, arrow::default_memory_pool(), sink, 1 << 20, properties, arrow_properties)));
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> buffer, sink->Finish());
  return buffer;
}

std::string ObjectKey(const History::TableInfo& info, int64_t hour_ms, uint64_t first_lsn) {
  const time_t seconds = static_cast<time_t>(hour_ms / 1000);
  struct tm utc {};
  gmtime_r(&seconds, &utc);
  char text[96];
  std::snprintf(text, sizeof(text),
                "/date=%04d-%02d-%02d/hour=%02d/%020" PRIu64 "-%" PRIu64 ".parquet",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, first_lsn, info.id);
  return "table=" + info.name + text;
}

}  // namespace

History::History(HistoryOptions options, std::string data_dir, std::unique_ptr<ObjectStore> store)
    : options_(std::move(options)), data_dir_(std::move(data_dir)), store_(std::move(store)) {}

Result<std::unique_ptr<History>> History::Create(const HistoryOptions& options,
                                                 const std::string& data_dir) {
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> store, ObjectStore::Open(options.uri));
  return std::unique_ptr<History>(new History(options, data_dir, std::move(store)));
}

History::~History() = default;

// ---------------------------------------------------------------------------------------------
// The position: the last LSN written, and the tables as of it.

Status History::Start(storage::Database* database) {
  database_ = database;
  const std::string path = data_dir_ + "/" + kHistoryStateFile;
  std::string why_fresh = "first start with this history";
  if (fs::exists(path)) {
    QUIVER_ASSIGN_OR_RETURN(const std::string text, storage::ReadFile(path));
    Result<std::string> loaded = LoadState(text);
    if (!loaded.ok()) {
      return Status::Corruption("the change history's state '" + path + "' cannot be read (" +
                                loaded.status().message() +
                                "); remove it to start the history afresh");
    }
    why_fresh = *loaded;
  }
  if (!why_fresh.empty()) {
    QUIVER_LOG(kInfo, "change history starts at the end of the log",
               {{"store", store_->name()}, {"why", why_fresh}});
    QUIVER_RETURN_NOT_OK(StartFresh());
  }
  database_->SetLogRetention("history", lsn_.load() + 1);
  writes_.StartWithDelays(Tick(), [this] { return RunOnce(); });
  return Status::OK();
}

Result<std::string> History::LoadState(const std::string& text) {
  try {
    const nlohmann::json state = nlohmann::json::parse(text);
    if (state.at("format").get<int>() != 1) return Status::Corruption("an unknown format");
    const uint64_t lsn = state.at("lsn").get<uint64_t>();
    if (state.at("store").get<std::string>() != store_->name()) {
      return std::string("the history went to another store before");
    }
    if (lsn > database_->Stats().wal_last_lsn) {
      return std::string("the log is behind the history's position (it was cut)");
    }
    for (const nlohmann::json& table : state.at("tables")) {
      const uint64_t id = table.at("id").get<uint64_t>();
      const std::string name = table.at("name").get<std::string>();
      Result<std::shared_ptr<const TableInfo>> info =
          MakeTableInfo(id, name, table.at("schema").get<std::string>());
      if (info.ok()) {
        tables_[id] = *info;
      } else {  // its changes are left out, each said
        QUIVER_LOG(kError, "change history: a table's changes are left out",
                   {{"table", name}, {"error", info.status().message()}});
      }
    }
    lsn_ = lsn;
    return std::string();
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(e.what());
  }
}

Status History::StartFresh() {
  // The sealed end of the log and the tables then, read together.
  QUIVER_ASSIGN_OR_RETURN(
      const storage::CheckpointFiles files,
      database_->Checkpoint(data_dir_ + "/" + kStageDir, [](const std::string&) { return false; }));
  QUIVER_ASSIGN_OR_RETURN(const storage::CatalogFile catalog,
                          storage::DecodeCatalog("(checkpoint)", files.catalog));
  tables_.clear();
  for (const storage::CatalogEntry& entry : catalog.tables) {
    Result<std::shared_ptr<const TableInfo>> info =
        MakeTableInfo(entry.id, entry.name, entry.schema_json);
    if (info.ok()) {
      tables_[entry.id] = *info;
    } else {  // its changes are left out, each said
      QUIVER_LOG(kError, "change history: a table's changes are left out",
                 {{"table", entry.name}, {"error", info.status().message()}});
    }
  }
  lsn_ = files.lsn;
  return SaveState();
}

Status History::SaveState() {
  nlohmann::ordered_json state;
  state["format"] = 1;
  state["store"] = store_->name();
  state["lsn"] = lsn_.load();
  state["tables"] = nlohmann::ordered_json::array();
  for (const auto& [id, info] : tables_) {
    state["tables"].push_back({{"id", id}, {"name", info->name}, {"schema", info->schema_json}});
  }
  // Names and schemas came through JSON before; a byte that is not UTF-8 is replaced, not thrown.
  return storage::WriteFileAtomically(
      data_dir_ + "/" + kHistoryStateFile,
      state.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
      storage::FileOps::Default());
}

// ---------------------------------------------------------------------------------------------
// Writing.

Status History::WriteRound() {
  QUIVER_RETURN_NOT_OK(store_->Prepare());
  QUIVER_ASSIGN_OR_RETURN(const storage::Wal::Sealed sealed, database_->SealLog());
  for (size_t i = 0; i < sealed.segments.size(); ++i) {
    const uint64_t first = sealed.segments[i].first_lsn;
    const uint64_t last =
        i + 1 < sealed.segments.size() ? sealed.segments[i + 1].first_lsn - 1 : sealed.end;
    if (last <= lsn_.load()) continue;
    if (first > lsn_.load() + 1) {
      // Unreachable while the log keeps what the history needs; said, never passed over quietly.
      skipped_ += first - lsn_.load() - 1;
      QUIVER_LOG(
          kError, "change history: log records were removed before being written",
          {{"from_lsn", std::to_string(lsn_.load() + 1)}, {"to_lsn", std::to_string(first - 1)}});
    }
    QUIVER_RETURN_NOT_OK(WriteSegment(sealed.segments[i], last));
    lsn_ = last;
    QUIVER_RETURN_NOT_OK(SaveState());
    database_->SetLogRetention("history", last + 1);
  }
  return Status::OK();
}

Status History::WriteSegment(const storage::WalSegment& segment, uint64_t last_lsn) {
  // The segment is read through a link of its own, which a snapshot removing it cannot take away.
  const std::string dir = data_dir_ + "/" + kScanDir;
  std::error_code error;
  fs::remove_all(dir, error);
  fs::create_directories(dir, error);
  const std::string linked = dir + "/" + fs::path(segment.path).filename().string();
  if (!error) fs::create_hard_link(segment.path, linked, error);
  if (error) {
    return Status::IOError("cannot link '" + segment.path + "' into '" + dir +
                           "': " + error.message());
  }
  struct Pending {
    std::shared_ptr<const TableInfo> info;
    int64_t hour_ms = 0;
    std::vector<std::shared_ptr<arrow::RecordBatch>> batches;
  };
  std::map<std::pair<uint64_t, int64_t>, Pending> pending;  // by table id and hour
  std::map<uint64_t, std::shared_ptr<const TableInfo>> tables = tables_;
  // A drop logged by an older version carries no clock: it gets the time of the next change that
  // does (or now), so a read as of a time before that still sees the table.
  std::vector<std::pair<std::shared_ptr<const TableInfo>, uint64_t>> drops;
  const auto add = [&](const std::shared_ptr<const TableInfo>& info, storage::RecordType type,
                       uint64_t lsn, const arrow::RecordBatch* batch, int64_t applied_ms,
                       int64_t expires_ms) -> Status {
    QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatch> rows,
                            HistoryRows(*info, type, lsn, batch, applied_ms, expires_ms));
    const int64_t hour = applied_ms - applied_ms % kHourMs;
    Pending& entry = pending[{info->id, hour}];
    entry.info = info;
    entry.hour_ms = hour;
    entry.batches.push_back(std::move(rows));
    return Status::OK();
  };
  const auto flush_drops = [&](int64_t applied_ms) -> Status {
    for (const auto& [info, lsn] : drops) {
      QUIVER_RETURN_NOT_OK(add(info, storage::RecordType::kDropTable, lsn, nullptr, applied_ms, 0));
    }
    drops.clear();
    return Status::OK();
  };
  uint64_t skipped = 0;  // counted once the segment is written (a retry reads it again)
  const auto skip = [&](uint64_t lsn, const Status& why) {
    ++skipped;
    QUIVER_LOG(kError, "change history: a logged change is left out",
               {{"lsn", std::to_string(lsn)}, {"error", why.message()}});
    return Status::OK();
  };
  Result<storage::WalScan> scan = storage::ScanWal(
      dir, /*truncate_corrupt=*/false, storage::FileOps::Default(),
      [&](const storage::WalRecord& record) -> Status {
        if (record.lsn <= lsn_.load() || record.lsn > last_lsn) return Status::OK();
        switch (record.type) {
          case storage::RecordType::kKeyspace:
            return Status::OK();
          case storage::RecordType::kCreateTable: {
            storage::CreateTableRecord create;
            Status decoded = storage::DecodeCreateTable(record.payload, &create);
            if (!decoded.ok()) return skip(record.lsn, decoded);
            Result<std::shared_ptr<const TableInfo>> info = MakeTableInfo(
                create.table_id, std::string(create.name), std::string(create.schema_json));
            if (!info.ok()) {
              tables.erase(create.table_id);
              return skip(record.lsn, Status::InvalidArgument("table '" + std::string(create.name) +
                                                              "': " + info.status().message()));
            }
            tables[create.table_id] = *info;
            return Status::OK();
          }
          case storage::RecordType::kAlterTable: {
            // The table goes on under its new id and schema: later rows have the new columns.
            storage::AlterTableRecord alter;
            Status decoded = storage::DecodeAlterTable(record.payload, &alter);
            if (!decoded.ok()) return skip(record.lsn, decoded);
            tables.erase(alter.table_id);
            Result<std::shared_ptr<const TableInfo>> info = MakeTableInfo(
                alter.new_id, std::string(alter.name), std::string(alter.schema_json));
            if (!info.ok()) {
              return skip(record.lsn, Status::InvalidArgument("table '" + std::string(alter.name) +
                                                              "': " + info.status().message()));
            }
            tables[alter.new_id] = *info;
            return Status::OK();
          }
          case storage::RecordType::kDropTable:
          case storage::RecordType::kUpsert:
          case storage::RecordType::kDelete:
            break;
        }
        uint64_t id = 0;
        std::string_view rest;
        QUIVER_RETURN_NOT_OK(storage::DecodeTableId(record.payload, &id, &rest));
        auto it = tables.find(id);
        if (it == tables.end()) {
          return skip(record.lsn, Status::NotFound("table id " + std::to_string(id) +
                                                   " is unknown to the history"));
        }
        const std::shared_ptr<const TableInfo> info = it->second;
        if (record.type == storage::RecordType::kDropTable) {
          std::string_view name;
          int64_t dropped_at = 0;
          storage::DecodeDropTable(rest, &name, &dropped_at);
          tables.erase(it);
          if (dropped_at > 0) {
            return add(info, storage::RecordType::kDropTable, record.lsn, nullptr, dropped_at, 0);
          }
          drops.emplace_back(info, record.lsn);  // logged by an older version: no time
          return Status::OK();
        }
        Result<std::shared_ptr<arrow::RecordBatch>> batch =
            storage::DecodeBatchRecord(rest, options_.max_decode_bytes);
        if (!batch.ok()) return skip(record.lsn, batch.status());
        int64_t applied_ms = storage::BatchRecordTime(rest);
        if (applied_ms <= 0) {  // logged by an older version: its writer's clock when it had TTLs
          applied_ms = MetadataMillis(*(*batch)->schema(), kLoggedNowMetadata);
        }
        if (applied_ms <= 0) applied_ms = UnixMillis();
        QUIVER_RETURN_NOT_OK(flush_drops(applied_ms));
        const int64_t expires_ms = MetadataMillis(*(*batch)->schema(), kLoggedExpireAtMetadata);
        Status added = add(info, record.type, record.lsn, batch->get(), applied_ms, expires_ms);
        if (!added.ok()) {
          return skip(record.lsn,
                      Status(added.code(), "table '" + info->name + "': " + added.message()));
        }
        return Status::OK();
      });
  fs::remove_all(dir, error);
  QUIVER_RETURN_NOT_OK(scan.status());
  QUIVER_RETURN_NOT_OK(flush_drops(UnixMillis()));
  for (const auto& [where, entry] : pending) {
    QUIVER_ASSIGN_OR_RETURN(const std::shared_ptr<arrow::Buffer> file,
                            ParquetFile(entry.info->schema, entry.batches));
    const std::string_view bytes(reinterpret_cast<const char*>(file->data()),
                                 static_cast<size_t>(file->size()));
    QUIVER_RETURN_NOT_OK(
        store_->Put(ObjectKey(*entry.info, entry.hour_ms, segment.first_lsn), bytes));
    int64_t rows = 0;
    for (const auto& batch : entry.batches) rows += batch->num_rows();
    rows_ += static_cast<uint64_t>(rows);
    bytes_ += bytes.size();
    ++files_;
  }
  if (!pending.empty()) last_write_ms_ = UnixMillis();
  skipped_ += skipped;
  tables_ = std::move(tables);
  return Status::OK();
}

void History::NotePending() {
  if (database_->Stats().wal_last_lsn > lsn_.load()) {
    if (pending_since_ms_ == 0) pending_since_ms_ = UnixMillis();
  } else {
    pending_since_ms_ = 0;
  }
  pending_since_shared_ = pending_since_ms_;
}

std::chrono::microseconds History::RunOnce() {
  NotePending();
  const storage::DatabaseStats stats = database_->Stats();
  const int64_t now = UnixMillis();
  const bool due =
      stats.wal_last_lsn > lsn_.load() &&
      (stats.wal_sealed_lsn > lsn_.load() ||  // a segment filled
       static_cast<double>(now - pending_since_ms_) >= options_.interval_seconds * 1000);
  Status status;
  if (due) {
    status = WriteRound();
    if (status.ok()) {
      // Changes after the seal wait for the next round; their age counts from it.
      pending_since_ms_ = database_->Stats().wal_last_lsn > lsn_.load() ? now : 0;
      pending_since_shared_ = pending_since_ms_;
    }
  }
  if (status.ok()) {
    backoff_ms_ = 0;
    return Tick();
  }
  ++failures_;
  backoff_ms_ = std::clamp<int64_t>(backoff_ms_ * 2, 1000, 60'000);
  QUIVER_LOG(kWarn, "change history write failed; retrying",
             {{"store", store_->name()},
              {"error", status.message()},
              {"retry_in_ms", std::to_string(backoff_ms_)}});
  std::lock_guard lock(error_mutex_);
  last_error_ = status.message();
  return std::chrono::milliseconds(backoff_ms_);
}

std::chrono::microseconds History::Tick() const {
  return std::chrono::milliseconds(
      std::clamp<int64_t>(static_cast<int64_t>(options_.interval_seconds * 1000 / 4), 50, 1000));
}

void History::Stop(bool final_write) {
  if (std::exchange(stopped_, true)) return;
  writes_.Stop();
  if (!final_write || database_ == nullptr) return;
  if (database_->Stats().wal_last_lsn <= lsn_.load()) return;
  if (Status status = WriteRound(); !status.ok()) {
    QUIVER_LOG(kWarn, "change history: the last write failed (the log keeps the changes)",
               {{"store", store_->name()}, {"error", status.message()}});
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

HistoryStats History::Stats() const {
  HistoryStats stats;
  stats.lsn = lsn_;
  const int64_t since = pending_since_shared_;
  stats.lag_seconds = since == 0 ? 0 : static_cast<double>(UnixMillis() - since) / 1000;
  stats.rows = rows_;
  stats.files = files_;
  stats.bytes = bytes_;
  stats.failures = failures_;
  stats.skipped = skipped_;
  stats.last_write_ms = last_write_ms_;
  std::lock_guard lock(error_mutex_);
  stats.last_error = last_error_;
  return stats;
}

void History::RenderMetrics(std::string* out) const {
  const HistoryStats stats = Stats();
  const MetricFamilySample metrics[] = {
      {"quiver_history_lsn", "gauge", "Every change up to this log position is in the history",
       static_cast<double>(stats.lsn)},
      {"quiver_history_lag_seconds", "gauge",
       "Age of the oldest change not in the history yet (0: none)", stats.lag_seconds},
      {"quiver_history_rows_total", "counter", "History rows written since the start",
       static_cast<double>(stats.rows)},
      {"quiver_history_files_total", "counter", "History files written since the start",
       static_cast<double>(stats.files)},
      {"quiver_history_bytes_total", "counter", "History bytes written since the start",
       static_cast<double>(stats.bytes)},
      {"quiver_history_failures_total", "counter", "History writes that failed and were retried",
       static_cast<double>(stats.failures)},
      {"quiver_history_skipped_total", "counter",
       "Logged changes left out of the history (each logged as an error)",
       static_cast<double>(stats.skipped)},
      {"quiver_history_last_write_timestamp_seconds", "gauge",
       "When the history was last written (Unix seconds; 0: not since the start)",
       static_cast<double>(stats.last_write_ms) / 1000},
  };
  AppendFamilySamples(out, metrics, {{"store", store_->name()}});
}

}  // namespace quiver::objstore
