#include "sync/parquet_sync.h"

#include <arrow/io/interfaces.h>
#include <arrow/record_batch.h>
#include <arrow/table.h>
#include <parquet/arrow/reader.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "common/arrow_status.h"
#include "common/clock.h"
#include "common/json_shape.h"
#include "common/log.h"
#include "storage/file.h"

namespace quiver::sync {
namespace {

constexpr const char* kStateFile = "sources.json";
// LoadFile's error when it stopped (unbound, or the server stops): the file is not recorded.
constexpr const char* kStopped = "stopped";

// A data file of the dataset: *.parquet or *.pq, not hidden or a marker (_SUCCESS, .tmp...).
bool IsDataFile(const std::string& path) {
  const std::filesystem::path name = std::filesystem::path(path).filename();
  const std::string text = name.string();
  if (text.empty() || text[0] == '_' || text[0] == '.') return false;
  const std::string extension = name.extension().string();
  return extension == ".parquet" || extension == ".pq";
}

nlohmann::ordered_json FileJson(const SourceFile& file) {
  nlohmann::ordered_json json = {{"path", file.path},
                                 {"bytes", file.bytes},
                                 {"rows", file.rows},
                                 {"loaded_ms", file.loaded_ms}};
  if (!file.error.empty()) json["error"] = file.error;
  return json;
}

}  // namespace

Result<SourceRequest> ParseSourceRequest(std::string_view body) {
  QUIVER_RETURN_NOT_OK(CheckJsonShape(body, "the source request"));
  const nlohmann::json json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return Status::InvalidArgument(
        "a source request is a JSON object: {\"uri\": \"s3://bucket/prefix/\", "
        "\"poll_seconds\": 60}");
  }
  SourceRequest request;
  for (const auto& [key, value] : json.items()) {
    if (key == "uri") {
      if (!value.is_string() || value.get<std::string>().empty()) {
        return Status::InvalidArgument("\"uri\" must be a non-empty string");
      }
      request.uri = value.get<std::string>();
    } else if (key == "poll_seconds") {
      if (!value.is_number()) return Status::InvalidArgument("\"poll_seconds\" must be a number");
      request.poll_seconds = value.get<double>();
    } else {
      return Status::InvalidArgument("a source request has no field '" + key +
                                     "' (only \"uri\" and \"poll_seconds\")");
    }
  }
  if (request.uri.empty()) return Status::InvalidArgument("a source request needs \"uri\"");
  return request;
}

std::string SourceStatusToJson(const SourceStatus& status) {
  nlohmann::ordered_json files = nlohmann::ordered_json::array();
  int64_t loaded = 0;
  for (const SourceFile& file : status.files) {
    files.push_back(FileJson(file));
    if (file.error.empty()) ++loaded;
  }
  nlohmann::ordered_json json = {
      {"table", status.table},
      {"uri", objstore::WithoutCredentials(status.uri)},
      {"poll_seconds", status.poll_seconds},
      {"state", status.state},
      {"rows_loaded", status.rows_loaded},
      {"files_loaded", loaded},
      {"files_refused", static_cast<int64_t>(status.files.size()) - loaded},
      {"last_poll_ms", status.last_poll_ms},
      {"last_error", status.last_error},
      {"files", std::move(files)}};
  return json.dump();
}

std::string ParquetSync::path() const { return database_.options().data_dir + "/" + kStateFile; }

Result<std::unique_ptr<ParquetSync>> ParquetSync::Start(storage::Database& database) {
  std::unique_ptr<ParquetSync> sync(new ParquetSync(database));
  QUIVER_RETURN_NOT_OK(sync->Load());
  sync->thread_ = std::thread([raw = sync.get()] { raw->Loop(); });
  return sync;
}

ParquetSync::~ParquetSync() { Stop(); }

void ParquetSync::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stop_) return;
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status ParquetSync::Load() {
  if (!std::filesystem::exists(path())) return Status::OK();
  QUIVER_ASSIGN_OR_RETURN(const std::string text, storage::ReadFile(path()));
  try {
    const nlohmann::json json = nlohmann::json::parse(text);
    for (const nlohmann::json& entry : json.at("sources")) {
      auto source = std::make_shared<Source>();
      source->status.table = entry.at("table").get<std::string>();
      source->table_id = entry.at("table_id").get<uint64_t>();
      source->status.uri = entry.at("uri").get<std::string>();
      source->status.poll_seconds = entry.at("poll_seconds").get<double>();
      source->status.state = "waiting";
      for (const nlohmann::json& file : entry.at("files")) {
        SourceFile loaded;
        loaded.path = file.at("path").get<std::string>();
        loaded.bytes = file.at("bytes").get<uint64_t>();
        loaded.rows = file.at("rows").get<int64_t>();
        loaded.loaded_ms = file.at("loaded_ms").get<int64_t>();
        loaded.error = file.value("error", "");
        if (loaded.error.empty()) source->status.rows_loaded += loaded.rows;
        source->status.files.push_back(std::move(loaded));
      }
      sources_[source->status.table] = std::move(source);
    }
  } catch (const nlohmann::json::exception& error) {
    return Status::Corruption("'" + path() + "' is not a sources file: " + error.what());
  }
  return Status::OK();
}

Status ParquetSync::SaveLocked() {
  nlohmann::ordered_json json;
  json["format"] = 1;
  json["sources"] = nlohmann::ordered_json::array();
  for (const auto& [name, source] : sources_) {
    if (source->removed) continue;
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    for (const SourceFile& file : source->status.files) files.push_back(FileJson(file));
    json["sources"].push_back({{"table", name},
                               {"table_id", source->table_id},
                               {"uri", source->status.uri},
                               {"poll_seconds", source->status.poll_seconds},
                               {"files", std::move(files)}});
  }
  return storage::WriteFileAtomically(path(), json.dump(1) + "\n", storage::FileOps::Default());
}

Result<SourceStatus> ParquetSync::Bind(const std::string& table, const std::string& uri,
                                       double poll_seconds) {
  if (!(poll_seconds >= 0.1) || poll_seconds > 7 * 86400) {
    return Status::InvalidArgument("poll_seconds must be from 0.1 to 604800");
  }
  if (!database_.options().read_only.empty()) {
    return Status::ReadOnly(database_.options().read_only);
  }
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> bound, database_.catalog().GetTable(table));
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<objstore::ObjectStore> store,
                          objstore::ObjectStore::Open(uri));
  std::lock_guard lock(mutex_);
  auto source = std::make_shared<Source>();
  if (auto it = sources_.find(table); it != sources_.end()) {
    it->second->removed = true;  // a poll of it in progress stops
    if (it->second->status.uri == uri && it->second->table_id == bound->id()) {
      source->status.files = it->second->status.files;
      source->status.rows_loaded = it->second->status.rows_loaded;
    }
  }
  source->status.table = table;
  source->status.uri = uri;
  source->status.poll_seconds = poll_seconds;
  source->status.state = "waiting";
  source->table_id = bound->id();
  source->store = std::move(store);
  sources_[table] = source;
  QUIVER_RETURN_NOT_OK(SaveLocked());
  wake_.notify_all();
  return source->status;
}

Status ParquetSync::Unbind(const std::string& table) {
  std::lock_guard lock(mutex_);
  auto it = sources_.find(table);
  if (it == sources_.end()) {
    return Status::NotFound("table '" + table + "' is not bound to a source");
  }
  it->second->removed = true;
  sources_.erase(it);
  return SaveLocked();
}

Result<SourceStatus> ParquetSync::Describe(const std::string& table) const {
  std::lock_guard lock(mutex_);
  auto it = sources_.find(table);
  if (it == sources_.end()) {
    return Status::NotFound("table '" + table + "' is not bound to a source");
  }
  return it->second->status;
}

void ParquetSync::Loop() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    // The source due first.
    int64_t next = INT64_MAX;
    std::string due;
    for (const auto& [name, source] : sources_) {
      if (source->next_poll_ms < next) {
        next = source->next_poll_ms;
        due = name;
      }
    }
    const int64_t now = UnixMillis();
    if (due.empty() || next > now) {
      wake_.wait_for(lock, std::chrono::milliseconds(
                               due.empty() ? 1000 : std::min<int64_t>(next - now, 1000)));
      continue;
    }
    lock.unlock();
    Poll(due);
    lock.lock();
  }
}

void ParquetSync::Poll(const std::string& table) {
  std::shared_ptr<Source> source;
  {
    std::lock_guard lock(mutex_);
    auto it = sources_.find(table);
    if (it == sources_.end()) return;
    source = it->second;
    source->status.state = "listing";
  }
  const auto finish = [&](const std::string& error) {
    std::lock_guard lock(mutex_);
    source->status.state = "waiting";
    source->status.last_poll_ms = UnixMillis();
    source->status.last_error = error;
    source->next_poll_ms =
        source->status.last_poll_ms + static_cast<int64_t>(source->status.poll_seconds * 1000);
    if (!error.empty()) {
      QUIVER_LOG(kWarn, "parquet source: poll failed",
                 {{"table", table},
                  {"uri", objstore::WithoutCredentials(source->status.uri)},
                  {"error", error}});
    }
  };
  if (source->store == nullptr) {
    Result<std::unique_ptr<objstore::ObjectStore>> store =
        objstore::ObjectStore::Open(source->status.uri);
    if (!store.ok()) return finish(store.status().message());
    source->store = std::move(*store);
  }
  Result<std::shared_ptr<Table>> bound = database_.catalog().GetTable(table);
  if (!bound.ok() || (*bound)->id() != source->table_id) {
    return finish("the table '" + table +
                  "' was dropped since it was bound (DELETE its source, or bind it again)");
  }
  Result<std::vector<objstore::ObjectInfo>> listed = source->store->List("");
  if (!listed.ok()) return finish(listed.status().message());
  std::set<std::pair<std::string, uint64_t>> known;
  {
    std::lock_guard lock(mutex_);
    for (const SourceFile& file : source->status.files) known.emplace(file.path, file.bytes);
  }
  for (const objstore::ObjectInfo& object : *listed) {
    if (!IsDataFile(object.key) || known.contains({object.key, object.bytes})) continue;
    {
      std::lock_guard lock(mutex_);
      if (stop_ || source->removed) return;
      source->status.state = "loading " + object.key;
    }
    SourceFile file;
    file.path = object.key;
    file.bytes = object.bytes;
    LoadFile(*source, *source->store, &file);
    if (file.error == kStopped) return;  // loaded again (whole) when polled next
    if (file.error.empty()) {
      // The rows are in the log, synced, before the file counts as loaded.
      if (Status synced = database_.Sync(); !synced.ok()) return finish(synced.message());
    }
    file.loaded_ms = UnixMillis();
    std::lock_guard lock(mutex_);
    if (source->removed) return;
    if (file.error.empty()) {
      source->status.rows_loaded += file.rows;
      QUIVER_LOG(kInfo, "parquet source: file loaded",
                 {{"table", table}, {"file", file.path}, {"rows", std::to_string(file.rows)}});
    } else {
      QUIVER_LOG(kWarn, "parquet source: file refused",
                 {{"table", table}, {"file", file.path}, {"error", file.error}});
    }
    source->status.files.push_back(std::move(file));
    if (Status saved = SaveLocked(); !saved.ok()) {
      source->status.files.pop_back();  // loaded again at the next poll: same result
      source->status.state = "waiting";
      source->status.last_error = saved.message();
      return;
    }
  }
  finish("");
}

void ParquetSync::LoadFile(Source& source, objstore::ObjectStore& store, SourceFile* file) {
  Result<std::shared_ptr<Table>> table = database_.catalog().GetTable(source.status.table);
  if (!table.ok() || (*table)->id() != source.table_id) {
    file->error = kStopped;  // dropped meanwhile: the next poll says so
    return;
  }
  Result<std::shared_ptr<arrow::io::RandomAccessFile>> input = store.OpenInput(file->path);
  if (!input.ok()) {
    file->error = input.status().message();
    return;
  }
  auto opened = parquet::arrow::OpenFile(*input, arrow::default_memory_pool());
  if (!opened.ok()) {
    file->error = "not a Parquet file: " + opened.status().message();
    return;
  }
  std::unique_ptr<parquet::arrow::FileReader> reader = std::move(*opened);
  std::shared_ptr<arrow::Schema> schema;
  if (arrow::Status status = reader->GetSchema(&schema); !status.ok()) {
    file->error = "its schema cannot be read: " + status.message();
    return;
  }
  // Checked before any row is applied: every column is the table's, and the key is there.
  const TableSchema& table_schema = (*table)->schema();
  for (const std::shared_ptr<arrow::Field>& field : schema->fields()) {
    if (table_schema.FindColumn(field->name()) < 0) {
      file->error =
          "column '" + field->name() + "' is not in the table '" + source.status.table + "'";
      return;
    }
  }
  for (int index : table_schema.key_columns()) {
    const std::string& key = table_schema.columns()[index].name;
    if (schema->GetFieldIndex(key) < 0) {
      file->error = "the key column '" + key + "' is missing";
      return;
    }
  }
  for (int group = 0; group < reader->num_row_groups(); ++group) {
    {
      std::lock_guard lock(mutex_);
      if (stop_ || source.removed) {
        file->error = kStopped;
        return;
      }
    }
    arrow::Result<std::shared_ptr<arrow::Table>> rows = reader->ReadRowGroup(group);
    if (!rows.ok()) {
      file->error =
          "row group " + std::to_string(group) + " cannot be read: " + rows.status().message();
      return;
    }
    Result<UpsertResult> written = (*table)->Upsert(**rows);
    if (!written.ok()) {
      file->error = (group == 0 ? ""
                                : "row group " + std::to_string(group) + " (the " +
                                      std::to_string(group) + " before it stay applied): ") +
                    written.status().message();
      return;
    }
    file->rows += (*rows)->num_rows();
  }
}

}  // namespace quiver::sync
