// Database: a Catalog and a key-value Keyspace made durable in a data directory. Opening one
// recovers the tables and the keyspace (newest snapshot of each, then the write-ahead log after
// it); from then on every create, drop, upsert and delete made through its catalog is logged
// before it is applied (it is the catalog's Journal), every keyspace change is logged as it is
// applied (its KeyspaceLog; buffered, written before its command is answered), and both are
// acknowledged according to the fsync policy. Snapshots are taken when the log has
// grown by snapshot_wal_bytes, when snapshot_interval_seconds have passed with changes, and on
// demand; each is followed by removing the log segments no table needs any more.
//
// Layout of the data directory (formats: docs/durability.md):
//   LOCK                 held (flock) by the process that has the directory open
//   catalog              tables, schemas, snapshot of each, log position (replaced atomically)
//   wal/<lsn>.wal        log segments
//   snapshots/<id>-<lsn>.arrow   one Arrow IPC file per table snapshot
//   snapshots/keyspace-<lsn>.kv  the keyspace's snapshot
//
// Thread safety: every method may be called from any thread; Snapshot calls are serialized.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "engine/catalog.h"
#include "engine/journal.h"
#include "kv/keyspace.h"
#include "storage/catalog_file.h"
#include "storage/file.h"
#include "storage/wal.h"

namespace quiver::storage {

struct AlterTableRecord;  // storage/log_records.h

struct DatabaseOptions {
  std::string data_dir;
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  uint64_t wal_segment_bytes = 64 << 20;
  uint64_t snapshot_wal_bytes = 256 << 20;   // snapshot after the log grew this much (0: never)
  int64_t snapshot_interval_seconds = 3600;  // snapshot changed tables this often (0: never)
  bool wal_truncate_corrupt = false;         // cut a corrupt log instead of refusing to start
  // Start even though recovery finds data lost (a missing catalog, a log with missing segments),
  // with what is there; implies wal_truncate_corrupt. An operator's decision, for one start.
  bool accept_data_loss = false;
  bool keyspace_durable = true;  // false: the keyspace lives in memory only (a pure cache)
  EngineLimits limits;
  RegionBacking backing = RegionBacking::kAnonymous;
  bool publish = false;  // tables publish their memory for other processes (CatalogOptions)
  FileOps* ops = FileOps::Default();
  // Called with the directory locked, before recovery reads it (a restore from a backup).
  std::function<Status()> before_recovery;
  // Every table gets a disk tier there (CatalogOptions::tier).
  std::optional<TierOptions> tier;
  // The memory limit in effect from recovery on (tiered tables recover larger than memory, moving
  // rows to disk as they load); the keyspace's SetMaxMemory and SetPolicy change it later.
  uint64_t maxmemory = 0;
  EvictionPolicy policy = EvictionPolicy::kNoEviction;
  // Not empty: the database only reads, and every change through its catalog or keyspace fails
  // with kReadOnly and this message; the changes come as log records (ApplyReplicated). No
  // snapshots are taken.
  std::string read_only;
};

struct TableSnapshotReport {
  std::string table;
  bool written = false;  // false: unchanged since its last snapshot
  int64_t rows = 0;
  uint64_t bytes = 0;
  uint64_t lsn = 0;
  double seconds = 0;
};

struct SnapshotReport {
  std::vector<TableSnapshotReport> tables;
  std::optional<TableSnapshotReport> keyspace;  // table: "" (absent: not part of this snapshot)
  size_t wal_segments_removed = 0;
  double seconds = 0;
};

struct RecoveryReport {
  size_t tables = 0;
  int64_t snapshot_rows = 0;
  int64_t snapshot_keys = 0;  // of the keyspace
  double snapshot_seconds = 0;
  uint64_t wal_records = 0;  // read (checked) from the log
  uint64_t replayed = 0;     // of them applied
  double wal_seconds = 0;
  double seconds = 0;
  std::string dropped;  // a torn record or a cut log ("" when none)
};

// A set of files recovery can start from, for a backup (Database::Checkpoint).
struct CheckpointFiles {
  std::string catalog;  // an encoded catalog; its LSN is `lsn`
  uint64_t lsn = 0;     // the last LSN of the sealed log (0: it holds no record yet)
  uint64_t replay_from = 0;
  std::vector<std::string> snapshots;  // the snapshot files the catalog names
  std::vector<WalSegment> segments;    // the sealed segments replay needs, oldest first
};

struct DatabaseStats {
  uint64_t wal_bytes = 0;  // appended since the start
  uint64_t wal_fsyncs = 0;
  uint64_t wal_last_lsn = 0;
  size_t wal_segments = 0;
  uint64_t wal_sealed_lsn = 0;     // the last LSN in a sealed (no longer written) segment
  uint64_t snapshots = 0;          // table snapshots written since the start
  int64_t last_snapshot_unix = 0;  // 0: none since the start
};

class Database final : public Journal {
 public:
  static Result<std::unique_ptr<Database>> Open(const DatabaseOptions& options);
  ~Database() override;

  Catalog& catalog() { return *catalog_; }
  kv::Keyspace& keyspace() { return *keyspace_; }
  // One limit over the tables and the keyspace (the keyspace's SetMaxMemory etc. change it).
  MemoryLimit& memory_limit() { return memory_limit_; }
  const RecoveryReport& recovery() const { return recovery_; }
  const DatabaseOptions& options() const { return options_; }

  // Snapshots the named tables (every table and the keyspace when empty) that changed since their
  // last snapshot. kNotFound for an unknown name (nothing is written then).
  Result<SnapshotReport> Snapshot(const std::vector<std::string>& tables = {});
  DatabaseStats Stats() const;
  // Syncs the log: every change made so far is on disk, whatever the fsync policy.
  Status Sync();
  // Seals the log's current segment (when it holds records) and describes a restorable set: a
  // catalog whose LSN is the sealed end, the snapshots it names and the sealed segments from the
  // one holding its replay_from (or the retention floor, when lower) on. Each of those files whose
  // name `wanted` accepts is hard-linked into `stage_dir`/snapshots/ or `stage_dir`/wal/ first, so
  // that it outlives a later snapshot removing it. Creates, drops and snapshots wait meanwhile (a
  // few ms).
  Result<CheckpointFiles> Checkpoint(const std::string& stage_dir,
                                     const std::function<bool(const std::string&)>& wanted);
  // A read-only database (a follower): applies a record of another node's log, as recovery
  // would, to the live tables and keyspace (creates, drops, upserts, deletes, key-value changes).
  // Records must come in LSN order; one at or below an applied LSN is skipped.
  Status ApplyReplicated(const WalRecord& record);
  // Log segments holding records from `lsn` on are kept even when snapshots no longer need them,
  // for `holder` (a backup that has not uploaded them yet, the change history that has not
  // written them): the lowest of the holders' LSNs counts. 0: `holder` needs none.
  void SetLogRetention(const std::string& holder, uint64_t lsn);
  // Seals the log's current segment when it holds records (Wal::Seal): the sealed segments, which
  // no longer change, and the last LSN in them. kReadOnly on a follower.
  Result<Wal::Sealed> SealLog();
  // The last LSN this database holds: recovered, or applied by ApplyReplicated.
  uint64_t replicated_lsn() {
    std::lock_guard lock(replicated_mutex_);
    return replicated_lsn_;
  }
  // Stops the background work, syncs the log and releases the directory; later writes fail.
  // Called by the destructor.
  void Close();

  // Journal.
  Result<uint64_t> LogCreate(uint64_t table_id, std::string_view name,
                             const TableSchema& schema) override;
  Result<uint64_t> LogDrop(uint64_t table_id, std::string_view name) override;
  Result<uint64_t> LogAlter(uint64_t table_id, uint64_t new_id, std::string_view name,
                            std::string_view change_json, const TableSchema& schema) override;
  Result<uint64_t> LogUpsert(uint64_t table_id, const arrow::RecordBatch& batch) override;
  Result<uint64_t> LogDelete(uint64_t table_id, const arrow::Array& keys) override;
  void CatalogChanged(uint64_t lsn) override;
  Status Commit(uint64_t lsn) override;

 private:
  struct Saved {
    uint64_t lsn = 0;  // the table's changes up to here are in `snapshot` (or it was empty)
    std::optional<SnapshotFile> snapshot;
    // A table made by a schema change and not snapshotted since: the saved table it comes from
    // (through one change or several), which the catalog file lists in its place until its own
    // snapshot is written; recovery restores that one and replays the changes from the log.
    std::shared_ptr<const CatalogEntry> origin;
  };

  // The keyspace's log: records buffered in the write-ahead log.
  class KeyspaceJournal final : public kv::KeyspaceLog {
   public:
    explicit KeyspaceJournal(Database& db) : db_(db) {}
    Status Writable() override {
      QUIVER_RETURN_NOT_OK(db_.CheckWritable());
      return db_.wal_->Writable();
    }
    std::unique_ptr<kv::KeyspaceRecord> NewRecord() override;
    Result<uint64_t> Append(const kv::KeyspaceRecord& record) override;
    Status Commit(uint64_t lsn) override { return db_.wal_->Commit(lsn); }
    bool SyncsOnCommit() const override { return db_.options_.fsync == FsyncPolicy::kAlways; }
    uint64_t LastLsn() override { return db_.wal_->assigned_lsn(); }

   private:
    Database& db_;
  };

  explicit Database(DatabaseOptions options) : options_(std::move(options)) {}
  Status Recover();
  Status CheckWritable() const;  // kReadOnly on a follower
  // The files in snapshots/ the catalog does not name, sorted.
  Result<std::vector<std::string>> UnnamedSnapshots(const CatalogFile& saved) const;
  Status ApplyRecord(const WalRecord& record, const CatalogFile& saved,
                     std::map<uint64_t, std::shared_ptr<Table>>* tables);
  // A logged schema change applied again (recovery, a follower); checks it gives the logged
  // schema.
  Result<std::shared_ptr<Table>> ReplayAlter(const AlterTableRecord& alter, uint64_t lsn);
  // Under file_mutex_ (or at recovery): the table's saved state is gone, its snapshot doomed.
  void ForgetTable(uint64_t table_id);
  // Under file_mutex_ (or at recovery): table `new_id`, made from `old` by the schema change
  // logged at `lsn`, takes over its saved state (as its origin).
  void InheritSaved(const Table& old, uint64_t new_id, uint64_t lsn);
  // `floor`: snapshot every table (changed or not) at an LSN of at least `floor` (after a cut log).
  Result<SnapshotReport> SnapshotTables(const std::vector<std::shared_ptr<Table>>& tables,
                                        uint64_t floor, bool keyspace);
  // Part of SnapshotTables: writes the keyspace when it changed since its snapshot, or moves its
  // base. Sets *written to the new file (none when unchanged).
  Result<TableSnapshotReport> SnapshotKeyspace(uint64_t floor, std::optional<SnapshotFile>* written,
                                               uint64_t* base);
  // Under the catalog's DDL lock and file_mutex_. Returns the written catalog's replay_from():
  // log segments wholly below it are no longer needed.
  Result<uint64_t> WriteCatalogLocked();
  CatalogFile BuildCatalogLocked(uint64_t lsn);  // under the DDL lock and file_mutex_
  void SnapshotLoop();
  // A record holding `batch` as an Arrow IPC stream after the table id (upserts, deletes).
  Result<uint64_t> AppendBatch(RecordType type, uint64_t table_id, const arrow::RecordBatch& batch);
  // Called after each append: wakes the snapshot thread once the log grew snapshot_wal_bytes.
  void WakeSnapshotterIfDue();
  std::string dir(const char* sub) const { return options_.data_dir + "/" + sub; }

  const DatabaseOptions options_;
  std::unique_ptr<DirectoryLock> lock_;
  MemoryLimit memory_limit_;  // the tables' and the keyspace's; outlives both
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<Wal> wal_;
  KeyspaceJournal keyspace_journal_{*this};
  std::unique_ptr<kv::Keyspace> keyspace_;  // destroyed first: it holds &keyspace_journal_
  RecoveryReport recovery_;

  std::mutex file_mutex_;            // the catalog file and saved_
  std::map<uint64_t, Saved> saved_;  // by table id
  Saved saved_keyspace_;
  std::vector<std::string> doomed_snapshots_;  // to remove once the catalog no longer names them

  std::mutex snapshot_mutex_;  // one snapshot at a time
  std::atomic<uint64_t> snapshots_{0};
  uint64_t RetentionFloor();  // the lowest holder's LSN (0: none)
  std::mutex retention_mutex_;
  std::map<std::string, uint64_t> retention_;  // holder -> the first LSN it needs
  std::mutex replicated_mutex_;                // ApplyReplicated, one record at a time
  uint64_t replicated_lsn_ = 0;
  std::atomic<int64_t> last_snapshot_unix_{0};
  std::atomic<uint64_t> wal_bytes_at_snapshot_{0};

  std::mutex loop_mutex_;
  std::condition_variable loop_wake_;
  bool stop_ = false;
  bool closed_ = false;
  std::thread snapshot_thread_;
};

}  // namespace quiver::storage
