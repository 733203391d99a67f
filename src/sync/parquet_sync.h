// ParquetSync: tables kept in sync with a Parquet dataset — a prefix in an object store
// (`s3://bucket/features/users/`) or a local directory (docs/object-storage.md#parquet-sources).
//
// A table bound to a source loads the Parquet files there (`*.parquet`, `*.pq`; names starting
// with `_` or `.` are left out), in the order of their paths, then polls every poll_seconds for
// files it has not loaded, loading each once. A file is known by its path and size: one rewritten
// with another size is new. Each file is read a row group at a time, each row group one upsert
// (logged like any write). Once a file's rows are in the log (synced), its name is recorded in
// `<data-dir>/sources.json` (replaced atomically): a crash before that loads the same file again
// on restart, which ends as if it had been loaded once (upserts set values; no later file was
// started before it was recorded). A file whose schema does not fit the table (a column the table
// lacks, a missing key column, a type that does not cast) is refused before any of its rows is
// applied, recorded with its error, and skipped until it changes; a value refused in a later row
// group stops the file there (the row groups before it stay) and records the error too.
//
// Thread safety: every method may be called from any thread; one background thread loads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "objstore/object_store.h"
#include "storage/database.h"

namespace quiver::sync {

struct SourceFile {
  std::string path;  // relative to the source's URI
  uint64_t bytes = 0;
  int64_t rows = 0;       // loaded (or, with an error, applied before it)
  int64_t loaded_ms = 0;  // Unix ms
  std::string error;      // "" when loaded
};

struct SourceStatus {
  std::string table;
  std::string uri;  // as given (credentials included: only the owner reads it back)
  double poll_seconds = 60;
  std::string state;              // "waiting", "listing", "loading <file>"
  std::vector<SourceFile> files;  // loaded and refused, in load order
  int64_t rows_loaded = 0;
  int64_t last_poll_ms = 0;  // 0: not yet
  std::string last_error;    // the last poll's listing error ("" when it worked)
};

// A bind request's body: {"uri": "s3://...", "poll_seconds": 60} (poll_seconds optional).
struct SourceRequest {
  std::string uri;
  double poll_seconds = 60;
};
Result<SourceRequest> ParseSourceRequest(std::string_view body);
// {"table", "uri" (without credentials), "poll_seconds", "state", "rows_loaded", "files_loaded",
//  "files_refused", "last_poll_ms", "last_error", "files": [{"path", "bytes", "rows",
//  "loaded_ms", "error"?}]}
std::string SourceStatusToJson(const SourceStatus& status);

class ParquetSync {
 public:
  // Reads `<data dir>/sources.json` and starts polling the sources it names.
  static Result<std::unique_ptr<ParquetSync>> Start(storage::Database& database);
  ~ParquetSync();  // Stop()
  void Stop();

  // Binds `table` (which must exist) to `uri`, replacing an earlier binding (whose loaded files
  // are forgotten only when the URI changes), and polls it at once.
  Result<SourceStatus> Bind(const std::string& table, const std::string& uri, double poll_seconds);
  // kNotFound when the table has no source.
  Status Unbind(const std::string& table);
  Result<SourceStatus> Describe(const std::string& table) const;

 private:
  struct Source {
    SourceStatus status;
    uint64_t table_id = 0;  // a table dropped and created again is not the bound one
    int64_t next_poll_ms = 0;
    bool removed = false;
    std::shared_ptr<objstore::ObjectStore> store;  // opened at the first poll
  };
  explicit ParquetSync(storage::Database& database) : database_(database) {}
  Status Load();
  Status SaveLocked();  // under mutex_
  void Loop();
  void Poll(const std::string& table);
  // Loads one file into the table; fills `file` (rows, error).
  void LoadFile(Source& source, objstore::ObjectStore& store, SourceFile* file);
  std::string path() const;

  storage::Database& database_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Source>> sources_;  // by table name
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace quiver::sync
