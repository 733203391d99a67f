// Backup: a data directory kept in an object store, and restored from it (docs/object-storage.md).
//
// A node started with a backup store is the prefix's leader: Prepare (called with the data
// directory locked, before recovery) takes the prefix over — refusing one whose lease another
// live node renews, or one that holds another data set than this directory's — and, when the
// data directory is empty, restores the newest complete set into it (the snapshots and sealed log
// segments of the newest manifest, each part checked, and its catalog), so that the usual
// recovery then loads the snapshots and replays the log. Start then uploads in the background:
// each upload seals the log's current segment (Database::Checkpoint), uploads the files the store
// lacks, checks the lease, and writes a manifest last. Writes never wait for it; failures are
// retried with backoff, counted in the metrics and logged.
//
// What a node that dies loses is what no manifest covers yet: at most upload_interval seconds of
// changes (plus the time an upload takes), or, with upload_interval 0, the current log segment.
//
// Thread safety: Prepare, Start and Stop from one thread, in that order; Stats and RenderMetrics
// from any thread.
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
#include "objstore/manifest.h"
#include "objstore/object_store.h"
#include "objstore/restore.h"

namespace quiver::storage {
class Database;
}

namespace quiver::objstore {

struct BackupOptions {
  std::string uri;  // s3://bucket/prefix?..., file:///path
  // Seconds between uploads while anything changed; the most a node's death loses. 0: upload
  // when a log segment fills (--wal-segment-bytes) and after each snapshot only.
  double upload_interval_seconds = 10;
  int64_t lease_ms = 30'000;  // a leader not heard of for this long may be replaced
  uint64_t part_bytes = 32 << 20;
  int threads = 8;
  size_t keep_manifests = 3;  // older manifests, and objects only they name, are deleted
};

struct BackupStats {
  uint64_t epoch = 0;
  uint64_t uploaded_lsn = 0;    // the last LSN the newest manifest holds
  double lag_seconds = 0;       // age of the oldest change no manifest holds yet (0: none)
  uint64_t uploaded_bytes = 0;  // since the start
  uint64_t uploaded_files = 0;
  uint64_t manifests = 0;        // written since the start
  uint64_t failures = 0;         // uploads that failed (retried)
  int64_t last_manifest_ms = 0;  // Unix ms (0: none since the start)
  bool fenced = false;           // another node took the prefix over: uploads stopped
  std::string last_error;
};

class Backup {
 public:
  static Result<std::unique_ptr<Backup>> Create(const BackupOptions& options,
                                                const std::string& data_dir);
  ~Backup();  // Stop(false)

  // With the data directory locked, before recovery (DatabaseOptions::before_recovery).
  Status Prepare();
  const RestoreReport& restore() const { return restore_; }
  void Start(storage::Database* database);
  // Stops the uploads; with `final_upload`, first uploads what the log holds (a clean stop then
  // loses nothing). Before the database closes.
  void Stop(bool final_upload);

  BackupStats Stats() const;
  void RenderMetrics(std::string* out) const;
  const std::string& store_name() const { return store_->name(); }

 private:
  Backup(BackupOptions options, std::string data_dir, std::unique_ptr<ObjectStore> store);
  // The lease and the newest manifest; whether this directory may lead the prefix; a new epoch.
  Status TakeOver(bool empty_dir);
  Status UploadOnce();
  Status CheckLease();              // fenced_ when another node holds the prefix
  Status WriteLease(bool release);  // release: renewed_ms 0, free to take over at once
  Status CollectGarbage();
  void NotePending();  // when a change no manifest holds was first seen
  bool Due();
  // One round of the upload thread; returns the wait before the next (the backoff after a
  // failure).
  std::chrono::microseconds RunOnce();
  std::chrono::microseconds Tick() const;  // the wait between rounds
  std::string Local(const std::string& sub, const std::string& name) const;

  const BackupOptions options_;
  const std::string data_dir_;
  const std::unique_ptr<ObjectStore> store_;
  const std::string instance_;  // random, per process
  storage::Database* database_ = nullptr;
  RestoreReport restore_;

  // The uploader thread's state (and Prepare's, before it starts).
  bool taken_over_ = false;
  uint64_t sequence_ = 0;
  std::map<std::string, StoredFile> uploaded_;  // local file name -> its objects
  uint64_t snapshots_seen_ = 0;
  int64_t pending_since_ms_ = 0;  // when a change no manifest holds was first seen (0: none)
  int64_t lease_written_ms_ = 0;
  int64_t backoff_ms_ = 0;  // after failed rounds

  std::atomic<uint64_t> epoch_{0};
  std::atomic<uint64_t> uploaded_lsn_{0};
  std::atomic<int64_t> pending_since_shared_{0};
  std::atomic<uint64_t> uploaded_bytes_{0};
  std::atomic<uint64_t> uploaded_files_{0};
  std::atomic<uint64_t> manifests_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<int64_t> last_manifest_ms_{0};
  std::atomic<bool> fenced_{false};
  mutable std::mutex error_mutex_;
  std::string last_error_;

  bool stopped_ = false;
  PeriodicTask uploads_;  // last: stopped (joined) first
};

}  // namespace quiver::objstore
