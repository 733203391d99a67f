// History: every change to a table also kept as rows of a Parquet dataset in an object store (a
// prefix or a local directory), for training jobs' point-in-time joins
// (docs/object-storage.md#change-history; the Python side is quiver.offline).
//
// The history is read from the write-ahead log, so it neither slows nor blocks a write and holds
// every change the log holds. Every interval (or when a log segment fills) the log's current
// segment is sealed (Database::SealLog) and each sealed segment past the last one written is
// read: its upserts, deletes and table drops become rows of Parquet files, one per table and hour
// of the time the change was made, each written whole under a name made of the segment's first
// LSN and the table's id; then the position reached is saved in <data-dir>/history. After a crash
// the segments past that position are written again under the same names (the same rows): no row
// is lost and none appears twice. The log keeps every segment the history has not written
// (Database::SetLogRetention), so a store that is away only delays the history.
//
// Dataset layout: <prefix>/table=<name>/date=YYYY-MM-DD/hour=HH/<first LSN, 20 digits>-<table
// id>.parquet. Columns: the table's key and value columns (a column a write left out is null and
// listed in _quiver_omitted), then _quiver_op ("upsert", "delete" or "drop"), _quiver_lsn,
// _quiver_row (the row's position in its write), _quiver_applied_at (the writer's clock),
// _quiver_event_time (the row's event-time column, or the applied time), _quiver_expires_at (null:
// never) and _quiver_omitted (null: none).
//
// Thread safety: Start and Stop from one thread, in that order; Stats and RenderMetrics from any
// thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/periodic.h"
#include "common/result.h"
#include "objstore/object_store.h"

namespace quiver::storage {
class Database;
struct WalRecord;
struct WalSegment;
}  // namespace quiver::storage

namespace quiver::objstore {

// The history's state file in the data directory.
inline constexpr const char* kHistoryStateFile = "history";

struct HistoryOptions {
  std::string uri;
  double interval_seconds = 60;                     // between writes while anything changed
  uint64_t max_decode_bytes = uint64_t{256} << 20;  // one log record's decoded batch
};

struct HistoryStats {
  uint64_t lsn = 0;        // every change up to this LSN is in the history
  double lag_seconds = 0;  // age of the oldest change not written yet (0: none)
  uint64_t rows = 0;       // written since the start
  uint64_t files = 0;
  uint64_t bytes = 0;
  uint64_t failures = 0;      // rounds that failed (retried)
  uint64_t skipped = 0;       // log records that could not be turned into rows (logged)
  int64_t last_write_ms = 0;  // Unix ms (0: none since the start)
  std::string last_error;
};

class History {
 public:
  static Result<std::unique_ptr<History>> Create(const HistoryOptions& options,
                                                 const std::string& data_dir);
  ~History();  // stops the writes (writes_ goes first); no final write

  // Continues from the saved position, or, the first time (or with another store), starts at the
  // end of the log: changes made before are not in the history.
  Status Start(storage::Database* database);
  // Stops; with `final_write`, first writes what the log holds (a clean stop then leaves nothing
  // behind). Before the database closes.
  void Stop(bool final_write);

  HistoryStats Stats() const;
  void RenderMetrics(std::string* out) const;

  struct TableInfo;

 private:
  History(HistoryOptions options, std::string data_dir, std::unique_ptr<ObjectStore> store);
  // The saved position and tables: "" when they continue, or why the history starts afresh.
  Result<std::string> LoadState(const std::string& text);
  Status StartFresh();  // the position: the sealed end of the log, and its tables
  Status SaveState();
  Status WriteRound();  // seals the log and writes every sealed segment past lsn_
  Status WriteSegment(const storage::WalSegment& segment, uint64_t last_lsn);
  void NotePending();
  std::chrono::microseconds RunOnce();
  std::chrono::microseconds Tick() const;

  const HistoryOptions options_;
  const std::string data_dir_;
  const std::unique_ptr<ObjectStore> store_;
  storage::Database* database_ = nullptr;

  // The writer thread's state (and Start's, before it starts).
  std::map<uint64_t, std::shared_ptr<const TableInfo>> tables_;  // by id, as of lsn_
  int64_t last_round_ms_ = 0;
  int64_t pending_since_ms_ = 0;
  int64_t backoff_ms_ = 0;

  std::atomic<uint64_t> lsn_{0};
  std::atomic<int64_t> pending_since_shared_{0};
  std::atomic<uint64_t> rows_{0};
  std::atomic<uint64_t> files_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> skipped_{0};
  std::atomic<int64_t> last_write_ms_{0};
  mutable std::mutex error_mutex_;
  std::string last_error_;

  bool stopped_ = false;
  PeriodicTask writes_;  // last: stopped (joined) first
};

}  // namespace quiver::objstore
