#include "storage/database.h"

#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/api.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "common/arrow_status.h"
#include "common/clock.h"
#include "common/decode_memory.h"
#include "common/log.h"
#include "storage/log_records.h"
#include "storage/snapshot.h"

namespace quiver::storage {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string Milliseconds(double seconds) { return std::to_string(std::llround(seconds * 1000)); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Opening and recovery.

Result<std::unique_ptr<Database>> Database::Open(const DatabaseOptions& options) {
  std::unique_ptr<Database> db(new Database(options));
  for (const std::string& path : {options.data_dir, db->dir("wal"), db->dir("snapshots")}) {
    std::error_code error;
    std::filesystem::create_directories(path, error);
    if (error) return Status::IOError("cannot create '" + path + "': " + error.message());
  }
  QUIVER_ASSIGN_OR_RETURN(db->lock_, DirectoryLock::Acquire(options.data_dir));
  if (options.before_recovery) QUIVER_RETURN_NOT_OK(options.before_recovery());
  CatalogOptions catalog_options;
  catalog_options.limits = options.limits;
  catalog_options.backing = options.backing;
  catalog_options.publish = options.publish;
  catalog_options.journal = db.get();
  catalog_options.memory_limit = &db->memory_limit_;
  catalog_options.tier = options.tier;
  db->memory_limit_.SetMaxMemory(options.maxmemory);
  db->memory_limit_.SetPolicy(options.policy);
  db->catalog_ = std::make_unique<Catalog>(catalog_options);
  db->keyspace_ = std::make_unique<kv::Keyspace>();
  db->keyspace_->SetMemoryLimit(&db->memory_limit_);
  QUIVER_RETURN_NOT_OK(db->Recover());
  if (options.keyspace_durable) db->keyspace_->SetLog(&db->keyspace_journal_);
  if (options.read_only.empty() &&
      (options.snapshot_wal_bytes > 0 || options.snapshot_interval_seconds > 0)) {
    db->snapshot_thread_ = std::thread([d = db.get()] { d->SnapshotLoop(); });
  }
  return db;
}

Result<std::vector<std::string>> Database::UnnamedSnapshots(const CatalogFile& saved) const {
  std::vector<std::string> unnamed;
  std::error_code error;
  std::filesystem::directory_iterator files(dir("snapshots"), error);
  if (error) {
    return Status::IOError("cannot list '" + dir("snapshots") + "': " + error.message());
  }
  for (const auto& file : files) {
    const std::string name = file.path().filename().string();
    const bool named =
        std::any_of(saved.tables.begin(), saved.tables.end(),
                    [&](const auto& t) { return t.snapshot && t.snapshot->name == name; }) ||
        (saved.keyspace.snapshot && saved.keyspace.snapshot->name == name);
    if (!named) unnamed.push_back(name);
  }
  std::sort(unnamed.begin(), unnamed.end());
  return unnamed;
}

Status Database::Recover() {
  const auto start = Clock::now();
  const std::string catalog_path = dir("catalog");
  CatalogFile saved;
  const bool has_catalog = std::filesystem::exists(catalog_path);
  if (has_catalog) {
    QUIVER_ASSIGN_OR_RETURN(std::string text, ReadFile(catalog_path));
    QUIVER_ASSIGN_OR_RETURN(saved, DecodeCatalog(catalog_path, text));
  }
  // Snapshots.
  std::map<uint64_t, std::shared_ptr<Table>> tables;
  for (const CatalogEntry& entry : saved.tables) {
    const auto table_start = Clock::now();
    Result<TableSchema> schema = TableSchema::FromJson(entry.schema_json, options_.limits);
    if (!schema.ok()) {
      return Status::Corruption("catalog '" + catalog_path + "': table '" + entry.name +
                                "': " + schema.status().message());
    }
    QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table,
                            catalog_->RestoreTable(entry.id, entry.name, std::move(*schema)));
    if (entry.snapshot) {
      QUIVER_RETURN_NOT_OK(LoadSnapshot(dir("snapshots"), *entry.snapshot, table.get()));
      recovery_.snapshot_rows += entry.snapshot->rows;
      QUIVER_LOG(kInfo, "snapshot loaded",
                 {{"table", entry.name},
                  {"rows", std::to_string(entry.snapshot->rows)},
                  {"file", entry.snapshot->name},
                  {"ms", Milliseconds(SecondsSince(table_start))}});
    }
    table->set_applied_lsn(entry.lsn);
    saved_[entry.id] = Saved{entry.lsn, entry.snapshot};
    tables[entry.id] = table;
  }
  catalog_->set_next_table_id(saved.next_table_id);
  saved_keyspace_ = Saved{saved.keyspace.lsn, saved.keyspace.snapshot};
  if (saved.keyspace.snapshot && options_.keyspace_durable) {
    const auto keyspace_start = Clock::now();
    QUIVER_RETURN_NOT_OK(
        LoadKeyspaceSnapshot(dir("snapshots"), *saved.keyspace.snapshot, keyspace_.get()));
    recovery_.snapshot_keys = saved.keyspace.snapshot->rows;
    QUIVER_LOG(kInfo, "keyspace snapshot loaded",
               {{"keys", std::to_string(saved.keyspace.snapshot->rows)},
                {"file", saved.keyspace.snapshot->name},
                {"ms", Milliseconds(SecondsSince(keyspace_start))}});
  }
  recovery_.snapshot_seconds = SecondsSince(start);
  // The log.
  const auto wal_start = Clock::now();
  const uint64_t replay_from = saved.replay_from();
  Result<WalScan> scan =
      ScanWal(dir("wal"), options_.wal_truncate_corrupt || options_.accept_data_loss, options_.ops,
              [&](const WalRecord& record) {
                ++recovery_.wal_records;
                if (record.lsn < replay_from) return Status::OK();
                return ApplyRecord(record, saved, &tables);
              });
  QUIVER_RETURN_NOT_OK(scan.status());
  bool cut = scan->cut;
  recovery_.dropped = scan->dropped;
  if (!scan->dropped.empty()) {
    QUIVER_LOG(kWarn, "write-ahead log: dropped", {{"what", scan->dropped}});
  }
  // The directory checks itself: every file another one says must exist is there.
  QUIVER_ASSIGN_OR_RETURN(const std::vector<std::string> unnamed, UnnamedSnapshots(saved));
  // A log that still starts at LSN 1 holds every change ever made: with it, nothing is lost
  // whatever else is missing. (A directory without a catalog is new, or crashed before its first
  // catalog was written, or lost it; log segments go only once a catalog names a snapshot
  // holding their records.)
  const bool whole_log = !scan->segments.empty() && scan->segments.front().first_lsn == 1;
  if (!has_catalog && !whole_log) {
    std::string found;
    if (!scan->segments.empty()) {
      found =
          "a write-ahead log starting at LSN " + std::to_string(scan->segments.front().first_lsn);
    } else {
      for (const std::string& name : unnamed) {
        if (!name.ends_with(".tmp")) {
          found = "the snapshot '" + name + "' and no write-ahead log";
          break;
        }
      }
    }
    if (!found.empty()) {
      const std::string missing = "the catalog '" + catalog_path +
                                  "' is missing, but the data "
                                  "directory holds " +
                                  found + ": the tables it named are lost";
      if (!options_.accept_data_loss) {
        return Status::Corruption(missing +
                                  ". Nothing was changed; to start with what the log holds "
                                  "(keeping the snapshot files), pass --accept-data-loss");
      }
      QUIVER_LOG(kWarn, "starting without the catalog", {{"what", missing}});
      cut = true;
    }
  }
  // Every record from replay_from on must be there, up to the catalog's LSN at least (all of
  // them were synced before it was written). The first segment starts at or before replay_from
  // in a whole log (segments go only once every record in them is older), and a log that was
  // opened once always has a segment.
  const uint64_t log_start = scan->segments.empty() ? 0 : scan->segments.front().first_lsn;
  const uint64_t log_end = scan->segments.empty() ? 0 : scan->end_lsn - 1;
  const bool log_missing =
      has_catalog &&
      (scan->segments.empty() ? saved.lsn > 0 : log_start > replay_from || log_end < saved.lsn);
  if (log_missing) {
    const std::string missing = "the write-ahead log in '" + dir("wal") + "' holds " +
                                (scan->segments.empty() ? std::string("no segment")
                                                        : "LSNs " + std::to_string(log_start) +
                                                              ".." + std::to_string(log_end)) +
                                " but the catalog needs " + std::to_string(replay_from) + ".." +
                                std::to_string(std::max(saved.lsn, replay_from)) +
                                " at least (a segment is missing or was cut)";
    if (!options_.wal_truncate_corrupt && !options_.accept_data_loss) {
      return Status::Corruption(missing +
                                ". Nothing was changed; to start with what is there, "
                                "pass --wal-truncate-corrupt");
    }
    QUIVER_LOG(kWarn, "write-ahead log: starting without missing records", {{"what", missing}});
    cut = true;
  }
  recovery_.wal_seconds = SecondsSince(wal_start);
  // Files the catalog does not name: a snapshot whose publication a crash interrupted, a
  // temporary file, a snapshot a finished one replaced. Removed only now that recovery found
  // everything it needs without them; kept when the catalog was lost and the log is not whole
  // (they may be all that is left of its tables).
  if (has_catalog || whole_log) {
    for (const std::string& name : unnamed) {
      QUIVER_RETURN_NOT_OK(RemoveFile(dir("snapshots") + "/" + name));
    }
  } else if (!unnamed.empty()) {
    QUIVER_LOG(kWarn, "snapshot files kept for the operator",
               {{"dir", dir("snapshots")}, {"files", std::to_string(unnamed.size())}});
  }

  const uint64_t next_lsn = std::max({scan->end_lsn, saved.lsn + 1, uint64_t{1}});
  WalOptions wal_options;
  wal_options.fsync = options_.fsync;
  wal_options.segment_bytes = options_.wal_segment_bytes;
  wal_options.ops = options_.ops;
  QUIVER_ASSIGN_OR_RETURN(wal_, Wal::Open(dir("wal"), wal_options, *scan, next_lsn));
  wal_bytes_at_snapshot_ = 0;
  recovery_.tables = catalog_->Tables().size();
  if (!options_.keyspace_durable) {
    // A cache: whatever an earlier run kept of the keyspace is let go.
    if (saved_keyspace_.snapshot) doomed_snapshots_.push_back(saved_keyspace_.snapshot->name);
    saved_keyspace_ = Saved{next_lsn - 1, std::nullopt};
    std::lock_guard lock(file_mutex_);
    QUIVER_RETURN_NOT_OK(WriteCatalogLocked().status());
  }
  if (cut || (!scan->segments.empty() && scan->end_lsn != next_lsn)) {
    // The log has a hole now: save every table and the keyspace as they are, so that no later
    // start needs what is before the hole.
    QUIVER_RETURN_NOT_OK(SnapshotTables(catalog_->Tables(), next_lsn - 1, true).status());
  }
  replicated_lsn_ = next_lsn - 1;
  recovery_.seconds = SecondsSince(start);
  QUIVER_LOG(kInfo, "recovered",
             {{"tables", std::to_string(recovery_.tables)},
              {"snapshot_rows", std::to_string(recovery_.snapshot_rows)},
              {"snapshot_keys", std::to_string(recovery_.snapshot_keys)},
              {"snapshot_ms", Milliseconds(recovery_.snapshot_seconds)},
              {"wal_records", std::to_string(recovery_.wal_records)},
              {"replayed", std::to_string(recovery_.replayed)},
              {"wal_ms", Milliseconds(recovery_.wal_seconds)},
              {"next_lsn", std::to_string(next_lsn)},
              {"ms", Milliseconds(recovery_.seconds)}});
  return Status::OK();
}

Status Database::ApplyRecord(const WalRecord& record, const CatalogFile& saved,
                             std::map<uint64_t, std::shared_ptr<Table>>* tables) {
  if (record.type == RecordType::kKeyspace) {
    if (!options_.keyspace_durable || record.lsn <= saved_keyspace_.lsn) return Status::OK();
    QUIVER_RETURN_NOT_OK(ReplayKeyspaceRecord(record.payload, record.lsn, *keyspace_));
    ++recovery_.replayed;
    return Status::OK();
  }
  uint64_t id;
  std::string_view rest;
  QUIVER_RETURN_NOT_OK(DecodeTableId(record.payload, &id, &rest));
  switch (record.type) {
    case RecordType::kCreateTable: {
      if (id < saved.next_table_id) return Status::OK();  // in the catalog, or dropped before it
      CreateTableRecord create;
      QUIVER_RETURN_NOT_OK(DecodeCreateTable(record.payload, &create));
      QUIVER_ASSIGN_OR_RETURN(TableSchema schema,
                              TableSchema::FromJson(create.schema_json, options_.limits));
      QUIVER_ASSIGN_OR_RETURN(
          std::shared_ptr<Table> table,
          catalog_->RestoreTable(id, std::string(create.name), std::move(schema)));
      table->set_applied_lsn(record.lsn);
      saved_[id] = Saved{record.lsn, std::nullopt};
      (*tables)[id] = table;
      break;
    }
    case RecordType::kDropTable:
      catalog_->RemoveTable(id);
      tables->erase(id);
      ForgetTable(id);
      break;
    case RecordType::kAlterTable: {
      // The catalog lists what the table became, or it was dropped: the change is in its picture.
      auto it = tables->find(id);
      if (it == tables->end()) return Status::OK();
      AlterTableRecord alter;
      QUIVER_RETURN_NOT_OK(DecodeAlterTable(record.payload, &alter));
      QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, ReplayAlter(alter, record.lsn));
      InheritSaved(*it->second, alter.new_id, record.lsn);
      tables->erase(it);
      (*tables)[alter.new_id] = table;
      break;
    }
    case RecordType::kKeyspace:  // handled above (it names no table)
      break;
    case RecordType::kUpsert:
    case RecordType::kDelete: {
      auto it = tables->find(id);
      if (it == tables->end() || record.lsn <= saved_[id].lsn) return Status::OK();
      QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatch> batch,
                              DecodeBatchRecord(rest, options_.limits.max_decode_bytes));
      if (record.type == RecordType::kUpsert) {
        QUIVER_RETURN_NOT_OK(it->second->Replay(*batch, record.lsn).status());
      } else {
        if (batch->num_columns() != 1)
          return Status::Corruption("a delete record needs one column");
        QUIVER_RETURN_NOT_OK(it->second->ReplayDelete(*batch->column(0), record.lsn).status());
      }
      break;
    }
  }
  ++recovery_.replayed;
  return Status::OK();
}

Result<std::shared_ptr<Table>> Database::ReplayAlter(const AlterTableRecord& alter, uint64_t lsn) {
  QUIVER_ASSIGN_OR_RETURN(SchemaChange change,
                          SchemaChange::FromJson(alter.change_json, options_.limits));
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table,
                          catalog_->RestoreAlter(alter.table_id, alter.new_id, change));
  QUIVER_ASSIGN_OR_RETURN(TableSchema logged,
                          TableSchema::FromJson(alter.schema_json, options_.limits));
  if (!table->schema().Equals(logged)) {
    return Status::Corruption("the schema change of table '" + std::string(alter.name) +
                              "' at LSN " + std::to_string(lsn) +
                              " does not give the schema it logged");
  }
  table->set_applied_lsn(lsn);
  return table;
}

Status Database::ApplyReplicated(const WalRecord& record) {
  std::lock_guard lock(replicated_mutex_);
  if (record.lsn <= replicated_lsn_) return Status::OK();
  if (record.type == RecordType::kKeyspace) {
    QUIVER_RETURN_NOT_OK(ReplayKeyspaceRecord(record.payload, record.lsn, *keyspace_));
    replicated_lsn_ = record.lsn;
    return Status::OK();
  }
  uint64_t id;
  std::string_view rest;
  QUIVER_RETURN_NOT_OK(DecodeTableId(record.payload, &id, &rest));
  std::shared_ptr<Table> table;
  for (const std::shared_ptr<Table>& candidate : catalog_->Tables()) {
    if (candidate->id() == id) table = candidate;
  }
  switch (record.type) {
    case RecordType::kCreateTable: {
      if (table != nullptr) break;  // already there (a restore held it)
      CreateTableRecord create;
      QUIVER_RETURN_NOT_OK(DecodeCreateTable(record.payload, &create));
      QUIVER_ASSIGN_OR_RETURN(TableSchema schema,
                              TableSchema::FromJson(create.schema_json, options_.limits));
      QUIVER_ASSIGN_OR_RETURN(
          table, catalog_->RestoreTable(id, std::string(create.name), std::move(schema)));
      table->set_applied_lsn(record.lsn);
      break;
    }
    case RecordType::kDropTable:
      catalog_->RemoveTable(id);
      break;
    case RecordType::kAlterTable: {
      if (table == nullptr) break;  // dropped later in the log, or before this node's start
      AlterTableRecord alter;
      QUIVER_RETURN_NOT_OK(DecodeAlterTable(record.payload, &alter));
      QUIVER_RETURN_NOT_OK(ReplayAlter(alter, record.lsn).status());
      break;
    }
    case RecordType::kUpsert:
    case RecordType::kDelete: {
      if (table == nullptr) break;  // dropped later in the log, or before this node's start
      QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatch> batch,
                              DecodeBatchRecord(rest, options_.limits.max_decode_bytes));
      if (record.type == RecordType::kUpsert) {
        QUIVER_RETURN_NOT_OK(table->Replay(*batch, record.lsn).status());
      } else {
        if (batch->num_columns() != 1) {
          return Status::Corruption("a delete record needs one column");
        }
        QUIVER_RETURN_NOT_OK(table->ReplayDelete(*batch->column(0), record.lsn).status());
      }
      break;
    }
    case RecordType::kKeyspace:
      break;
  }
  replicated_lsn_ = record.lsn;
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Journal.

Status Database::CheckWritable() const {
  if (!options_.read_only.empty()) return Status::ReadOnly(options_.read_only);
  return Status::OK();
}

Result<uint64_t> Database::LogCreate(uint64_t table_id, std::string_view name,
                                     const TableSchema& schema) {
  QUIVER_RETURN_NOT_OK(CheckWritable());
  QUIVER_ASSIGN_OR_RETURN(
      uint64_t lsn,
      wal_->Append(RecordType::kCreateTable, {EncodeCreateTable(table_id, name, schema.ToJson())}));
  std::lock_guard lock(file_mutex_);
  saved_[table_id] = Saved{lsn, std::nullopt};
  return lsn;
}

Result<uint64_t> Database::LogDrop(uint64_t table_id, std::string_view name) {
  QUIVER_RETURN_NOT_OK(CheckWritable());
  QUIVER_ASSIGN_OR_RETURN(
      uint64_t lsn,
      wal_->Append(RecordType::kDropTable, {EncodeDropTable(table_id, name, UnixMillis())}));
  std::lock_guard lock(file_mutex_);
  ForgetTable(table_id);
  return lsn;
}

void Database::ForgetTable(uint64_t table_id) {
  if (auto it = saved_.find(table_id); it != saved_.end()) {
    if (it->second.snapshot) doomed_snapshots_.push_back(it->second.snapshot->name);
    if (it->second.origin && it->second.origin->snapshot) {
      doomed_snapshots_.push_back(it->second.origin->snapshot->name);
    }
    saved_.erase(it);
  }
}

Result<uint64_t> Database::LogAlter(uint64_t table_id, uint64_t new_id, std::string_view name,
                                    std::string_view change_json, const TableSchema& schema) {
  QUIVER_RETURN_NOT_OK(CheckWritable());
  QUIVER_ASSIGN_OR_RETURN(
      uint64_t lsn,
      wal_->Append(RecordType::kAlterTable, {EncodeAlterTable(table_id, new_id, name, change_json,
                                                              schema.ToJson(), UnixMillis())}));
  std::lock_guard lock(file_mutex_);
  std::shared_ptr<Table> old;
  for (const std::shared_ptr<Table>& table : catalog_->Tables()) {
    if (table->id() == table_id) old = table;
  }
  if (old != nullptr) InheritSaved(*old, new_id, lsn);
  return lsn;
}

void Database::InheritSaved(const Table& old, uint64_t new_id, uint64_t lsn) {
  std::shared_ptr<const CatalogEntry> origin;
  if (auto it = saved_.find(old.id()); it != saved_.end()) {
    origin = it->second.origin;
    if (origin == nullptr) {
      auto entry = std::make_shared<CatalogEntry>();
      entry->id = old.id();
      entry->name = old.name();
      entry->schema_json = old.schema().ToJson();
      entry->lsn = it->second.lsn;
      entry->snapshot = it->second.snapshot;
      origin = std::move(entry);
    }
    saved_.erase(it);
  }
  saved_[new_id] = Saved{lsn, std::nullopt, std::move(origin)};
}

Result<uint64_t> Database::LogUpsert(uint64_t table_id, const arrow::RecordBatch& batch) {
  return AppendBatch(RecordType::kUpsert, table_id, batch);
}

Result<uint64_t> Database::AppendBatch(RecordType type, uint64_t table_id,
                                       const arrow::RecordBatch& batch) {
  QUIVER_RETURN_NOT_OK(CheckWritable());
  // Each change carries the time it was logged (the change history's, objstore/history.h).
  QUIVER_ASSIGN_OR_RETURN(EncodedBatch encoded, EncodeBatchRecord(table_id, batch, UnixMillis()));
  QUIVER_ASSIGN_OR_RETURN(uint64_t lsn, wal_->Append(type, encoded.parts()));
  WakeSnapshotterIfDue();
  return lsn;
}

void Database::WakeSnapshotterIfDue() {
  if (options_.snapshot_wal_bytes > 0 &&
      wal_->bytes_appended() - wal_bytes_at_snapshot_ >= options_.snapshot_wal_bytes) {
    loop_wake_.notify_one();
  }
}

std::unique_ptr<kv::KeyspaceRecord> Database::KeyspaceJournal::NewRecord() {
  return std::make_unique<EncodedKeyspaceRecord>();
}

Result<uint64_t> Database::KeyspaceJournal::Append(const kv::KeyspaceRecord& record) {
  // Every record of this log is one NewRecord made.
  const auto& encoded = static_cast<const EncodedKeyspaceRecord&>(record);
  Result<uint64_t> lsn = db_.wal_->Buffer(RecordType::kKeyspace, encoded.bytes());
  if (lsn.ok()) db_.WakeSnapshotterIfDue();
  return lsn;
}

Result<uint64_t> Database::LogDelete(uint64_t table_id, const arrow::Array& keys) {
  auto batch = arrow::RecordBatch::Make(arrow::schema({arrow::field("key", keys.type(), false)}),
                                        keys.length(), {arrow::MakeArray(keys.data())});
  return AppendBatch(RecordType::kDelete, table_id, *batch);
}

void Database::CatalogChanged(uint64_t lsn) {
  std::lock_guard lock(file_mutex_);
  // The log has the change already; the catalog file only saves replaying it.
  if (Result<uint64_t> written = WriteCatalogLocked(); !written.ok()) {
    QUIVER_LOG(kWarn, "catalog not rewritten (the log keeps the change)",
               {{"lsn", std::to_string(lsn)}, {"error", written.status().message()}});
  }
}

Status Database::Commit(uint64_t lsn) { return wal_->Commit(lsn); }

CatalogFile Database::BuildCatalogLocked(uint64_t lsn) {
  CatalogFile file;
  file.lsn = lsn;
  file.next_table_id = catalog_->next_table_id();
  for (const std::shared_ptr<Table>& table : catalog_->Tables()) {
    CatalogEntry entry;
    entry.id = table->id();
    entry.name = table->name();
    entry.schema_json = table->schema().ToJson();
    const Saved& saved = saved_[table->id()];
    if (saved.origin != nullptr) {  // changed, not yet snapshotted: recovery starts from its origin
      file.tables.push_back(*saved.origin);
      continue;
    }
    entry.lsn = saved.lsn;
    entry.snapshot = saved.snapshot;
    file.tables.push_back(std::move(entry));
  }
  file.keyspace = KeyspaceEntry{saved_keyspace_.lsn, saved_keyspace_.snapshot};
  return file;
}

Result<uint64_t> Database::WriteCatalogLocked() {
  const CatalogFile file = BuildCatalogLocked(wal_->synced_lsn());
  QUIVER_RETURN_NOT_OK(WriteFileAtomically(dir("catalog"), EncodeCatalog(file), options_.ops));
  for (const std::string& name : doomed_snapshots_) {
    if (Status removed = RemoveFile(dir("snapshots") + "/" + name); !removed.ok()) {
      QUIVER_LOG(kWarn, "old snapshot not removed", {{"error", removed.message()}});
    }
  }
  doomed_snapshots_.clear();
  return file.replay_from();
}

Result<CheckpointFiles> Database::Checkpoint(
    const std::string& stage_dir, const std::function<bool(const std::string&)>& wanted) {
  // With the DDL lock and file_mutex_ held, no create, drop or snapshot is published meanwhile:
  // every table's and the keyspace's base LSN is at most the end of the sealed log, and the files
  // the catalog names stay until they are linked.
  std::unique_lock ddl = catalog_->LockDdl();
  std::lock_guard lock(file_mutex_);
  QUIVER_ASSIGN_OR_RETURN(const Wal::Sealed sealed, wal_->Seal());
  CheckpointFiles files;
  files.lsn = sealed.end;
  const CatalogFile catalog = BuildCatalogLocked(sealed.end);
  files.catalog = EncodeCatalog(catalog);
  files.replay_from = catalog.replay_from();
  for (const CatalogEntry& entry : catalog.tables) {
    if (entry.snapshot) files.snapshots.push_back(entry.snapshot->name);
  }
  if (catalog.keyspace.snapshot) files.snapshots.push_back(catalog.keyspace.snapshot->name);
  for (size_t i = 0; i < sealed.segments.size(); ++i) {
    // Segment i holds [first_i, first_{i+1}); the last sealed one ends at sealed.end.
    const uint64_t next =
        i + 1 < sealed.segments.size() ? sealed.segments[i + 1].first_lsn : sealed.end + 1;
    const uint64_t floor = RetentionFloor();
    const uint64_t from = floor == 0 ? files.replay_from : std::min(floor, files.replay_from);
    if (next > from) files.segments.push_back(sealed.segments[i]);
  }
  const auto link = [&](const std::string& from, const std::string& sub, const std::string& name) {
    if (!wanted(name)) return Status::OK();
    const std::string to = stage_dir + "/" + sub + "/" + name;
    std::error_code error;
    std::filesystem::create_directories(stage_dir + "/" + sub, error);
    if (std::filesystem::exists(to, error)) return Status::OK();
    std::filesystem::create_hard_link(from, to, error);
    if (error) {
      return Status::IOError("cannot link '" + from + "' to '" + to + "': " + error.message());
    }
    return Status::OK();
  };
  for (const std::string& name : files.snapshots) {
    QUIVER_RETURN_NOT_OK(link(dir("snapshots") + "/" + name, "snapshots", name));
  }
  for (const WalSegment& segment : files.segments) {
    const std::string name = std::filesystem::path(segment.path).filename().string();
    QUIVER_RETURN_NOT_OK(link(segment.path, "wal", name));
  }
  return files;
}

void Database::SetLogRetention(const std::string& holder, uint64_t lsn) {
  std::lock_guard lock(retention_mutex_);
  if (lsn == 0) {
    retention_.erase(holder);
  } else {
    retention_[holder] = lsn;
  }
}

uint64_t Database::RetentionFloor() {
  std::lock_guard lock(retention_mutex_);
  uint64_t floor = 0;
  for (const auto& [holder, lsn] : retention_) floor = floor == 0 ? lsn : std::min(floor, lsn);
  return floor;
}

Result<Wal::Sealed> Database::SealLog() {
  QUIVER_RETURN_NOT_OK(CheckWritable());
  return wal_->Seal();
}

// ---------------------------------------------------------------------------------------------
// Snapshots.

Result<SnapshotReport> Database::Snapshot(const std::vector<std::string>& names) {
  QUIVER_RETURN_NOT_OK(CheckWritable());
  std::vector<std::shared_ptr<Table>> tables;
  if (names.empty()) {
    tables = catalog_->Tables();
  } else {
    for (const std::string& name : names) {
      QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, catalog_->GetTable(name));
      tables.push_back(std::move(table));
    }
  }
  return SnapshotTables(tables, 0, names.empty());
}

Result<TableSnapshotReport> Database::SnapshotKeyspace(uint64_t floor,
                                                       std::optional<SnapshotFile>* written,
                                                       uint64_t* base) {
  TableSnapshotReport entry;
  // Every keyspace record up to `position` is applied; later ones may be partly in the file
  // (each shard's section says where it was taken).
  const auto [changed, position] = keyspace_->Quiesced([&] { return wal_->assigned_lsn(); });
  *base = std::max(position, floor);
  entry.lsn = *base;
  uint64_t saved_lsn;
  {
    std::lock_guard lock(file_mutex_);
    saved_lsn = saved_keyspace_.lsn;
  }
  if (changed <= saved_lsn && floor == 0) return entry;  // only its base moves
  const auto start = Clock::now();
  QUIVER_ASSIGN_OR_RETURN(*written,
                          WriteKeyspaceSnapshot(*keyspace_, *base, dir("snapshots"), options_.ops));
  entry.written = true;
  entry.rows = (*written)->rows;
  entry.bytes = (*written)->bytes;
  entry.seconds = SecondsSince(start);
  return entry;
}

Result<SnapshotReport> Database::SnapshotTables(const std::vector<std::shared_ptr<Table>>& tables,
                                                uint64_t floor, bool keyspace) {
  std::lock_guard one_at_a_time(snapshot_mutex_);
  const auto start = Clock::now();
  const uint64_t wal_bytes = wal_->bytes_appended();
  SnapshotReport report;
  std::vector<std::pair<std::shared_ptr<Table>, SnapshotFile>> written;
  std::vector<std::pair<uint64_t, uint64_t>> unchanged;  // (table id, new base LSN)
  for (const std::shared_ptr<Table>& table : tables) {
    TableSnapshotReport entry;
    entry.table = table->name();
    // Every change of the table up to `lsn` is applied; later ones may be partly in the file.
    const auto [changed, position] = table->QuiescedLsn([&] { return wal_->last_lsn(); });
    const uint64_t lsn = std::max(position, floor);
    uint64_t saved_lsn = 0;
    bool has_origin = false;
    {
      std::lock_guard lock(file_mutex_);
      auto it = saved_.find(table->id());
      if (it == saved_.end()) continue;  // dropped meanwhile
      saved_lsn = it->second.lsn;
      has_origin = it->second.origin != nullptr;
    }
    entry.lsn = lsn;
    if (changed <= saved_lsn && floor == 0 && !has_origin) {
      // No change since its snapshot (or creation): the file stays exact up to `lsn`, so only
      // the table's base moves, and it pins no log segment.
      unchanged.emplace_back(table->id(), lsn);
      report.tables.push_back(entry);
      continue;
    }
    const auto table_start = Clock::now();
    Result<SnapshotFile> file = WriteSnapshot(*table, lsn, dir("snapshots"), options_.ops);
    if (!file.ok()) {
      for (const auto& [unused, done] : written) {
        (void)RemoveFile(dir("snapshots") + "/" + done.name);
      }
      QUIVER_LOG(kError, "snapshot failed", {{"error", file.status().message()}});
      return file.status();
    }
    entry.written = true;
    entry.rows = file->rows;
    entry.bytes = file->bytes;
    entry.seconds = SecondsSince(table_start);
    report.tables.push_back(entry);
    written.emplace_back(table, *file);
  }
  std::optional<SnapshotFile> keyspace_file;
  uint64_t keyspace_base = 0;
  if (keyspace && options_.keyspace_durable) {
    Result<TableSnapshotReport> entry = SnapshotKeyspace(floor, &keyspace_file, &keyspace_base);
    if (!entry.ok()) {
      for (const auto& [unused, done] : written) {
        (void)RemoveFile(dir("snapshots") + "/" + done.name);
      }
      QUIVER_LOG(kError, "snapshot failed", {{"error", entry.status().message()}});
      return entry.status();
    }
    report.keyspace = *entry;
  }
  // Rows of changes after a snapshot's LSN may be in it: those changes must be durable in the
  // log before the snapshot is published, so that recovery replays them whole.
  QUIVER_RETURN_NOT_OK(wal_->Sync());
  uint64_t replay_from;
  {
    std::unique_lock ddl = catalog_->LockDdl();
    std::lock_guard lock(file_mutex_);
    for (const auto& [table, file] : written) {
      auto it = saved_.find(table->id());
      if (it == saved_.end()) {  // dropped meanwhile
        doomed_snapshots_.push_back(file.name);
        continue;
      }
      if (it->second.snapshot && it->second.snapshot->name != file.name) {
        doomed_snapshots_.push_back(it->second.snapshot->name);
      }
      if (it->second.origin && it->second.origin->snapshot) {
        doomed_snapshots_.push_back(it->second.origin->snapshot->name);
      }
      it->second = Saved{file.lsn, file, nullptr};
    }
    for (const auto& [id, lsn] : unchanged) {
      if (auto it = saved_.find(id); it != saved_.end())
        it->second.lsn = std::max(it->second.lsn, lsn);
    }
    if (keyspace_file) {
      if (saved_keyspace_.snapshot && saved_keyspace_.snapshot->name != keyspace_file->name) {
        doomed_snapshots_.push_back(saved_keyspace_.snapshot->name);
      }
      saved_keyspace_ = Saved{keyspace_base, keyspace_file};
    } else if (report.keyspace) {
      saved_keyspace_.lsn = std::max(saved_keyspace_.lsn, keyspace_base);
    }
    QUIVER_ASSIGN_OR_RETURN(replay_from, WriteCatalogLocked());
  }
  const size_t segments = wal_->segment_count();
  const uint64_t retained = RetentionFloor();
  QUIVER_RETURN_NOT_OK(
      wal_->RemoveSegmentsBefore(retained == 0 ? replay_from : std::min(retained, replay_from)));
  report.wal_segments_removed = segments - wal_->segment_count();
  report.seconds = SecondsSince(start);
  wal_bytes_at_snapshot_ = wal_bytes;
  snapshots_ += written.size() + (keyspace_file ? 1 : 0);
  last_snapshot_unix_ = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  if (!written.empty() || keyspace_file) {
    int64_t rows = 0;
    for (const auto& [table, file] : written) rows += file.rows;
    QUIVER_LOG(kInfo, "snapshot",
               {{"tables", std::to_string(written.size())},
                {"rows", std::to_string(rows)},
                {"keys", keyspace_file ? std::to_string(keyspace_file->rows) : "unchanged"},
                {"wal_segments_removed", std::to_string(report.wal_segments_removed)},
                {"ms", Milliseconds(report.seconds)}});
  }
  return report;
}

void Database::SnapshotLoop() {
  auto last = Clock::now();
  std::unique_lock lock(loop_mutex_);
  while (!stop_) {
    // Woken early by WakeSnapshotterIfDue; the age is checked once a second.
    loop_wake_.wait_for(lock, std::chrono::seconds(1));
    if (stop_) break;
    const uint64_t grown = wal_->bytes_appended() - wal_bytes_at_snapshot_;
    const bool by_size = options_.snapshot_wal_bytes > 0 && grown >= options_.snapshot_wal_bytes;
    const bool by_age =
        options_.snapshot_interval_seconds > 0 && grown > 0 &&
        Clock::now() - last >= std::chrono::seconds(options_.snapshot_interval_seconds);
    if (!by_size && !by_age) continue;
    lock.unlock();
    Result<SnapshotReport> report = Snapshot();
    lock.lock();
    last = Clock::now();
    if (!report.ok()) {
      // Logged by SnapshotTables; wait before trying again.
      loop_wake_.wait_for(lock, std::chrono::seconds(10), [&] { return stop_; });
    }
  }
}

Status Database::Sync() { return wal_->Sync(); }

DatabaseStats Database::Stats() const {
  DatabaseStats stats;
  stats.wal_bytes = wal_->bytes_appended();
  stats.wal_fsyncs = wal_->fsyncs();
  stats.wal_last_lsn = wal_->last_lsn();
  stats.wal_segments = wal_->segment_count();
  stats.wal_sealed_lsn = wal_->sealed_lsn();
  stats.snapshots = snapshots_.load();
  stats.last_snapshot_unix = last_snapshot_unix_.load();
  return stats;
}

void Database::Close() {
  {
    std::lock_guard lock(loop_mutex_);
    if (closed_) return;
    closed_ = stop_ = true;
  }
  loop_wake_.notify_all();
  if (snapshot_thread_.joinable()) snapshot_thread_.join();
  if (catalog_ != nullptr) catalog_->StopActiveExpiry();  // its cycles end before the log
  if (wal_ != nullptr) {
    wal_->Close();
    // The catalog's LSN moves to the log's end: a later start then knows every record up to it
    // must be there, and stops when a segment went missing (the newest one included).
    std::lock_guard lock(file_mutex_);
    if (Result<uint64_t> written = WriteCatalogLocked(); !written.ok()) {
      QUIVER_LOG(kWarn, "catalog not rewritten at close", {{"error", written.status().message()}});
    }
  }
  lock_.reset();  // another process may open the directory now
}

Database::~Database() { Close(); }

}  // namespace quiver::storage
