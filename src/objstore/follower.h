// Follower: a read-only node that serves another node's backups (docs/object-storage.md#followers).
//
// Prepare (with the data directory locked, before recovery) empties the data directory — which
// must be empty or a follower's: a follower's data is a copy, rebuilt at each start — and restores
// the prefix's newest manifest into it; recovery then loads it. Start polls the prefix every
// poll_seconds for manifests newer than the last one applied, downloads the log segments they
// hold past the applied LSN and applies their records to the live tables and keyspace
// (Database::ApplyReplicated), in LSN order. Every change sent to the node itself fails with
// kReadOnly (DatabaseOptions::read_only).
//
// A follower needs every segment after what it applied: the leader keeps each segment in its
// manifests until a manifest has held it, and keeps the newest keep_manifests manifests. A
// follower that falls further behind (down, or polling slower than the leader uploads for
// keep_manifests uploads) stops applying, says so (quiver_follow_stuck 1, the log), and serves
// what it has until it is restarted.
//
// Thread safety: Prepare, Start and Stop from one thread, in that order; Stats and RenderMetrics
// from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "common/periodic.h"
#include "common/result.h"
#include "objstore/object_store.h"
#include "objstore/restore.h"

namespace quiver::storage {
class Database;
}

namespace quiver::objstore {

struct FollowOptions {
  std::string uri;
  double poll_seconds = 1;
  int threads = 8;
};

struct FollowerStats {
  uint64_t applied_lsn = 0;
  double seconds_behind = 0;  // age of the oldest manifest not applied yet (0: none)
  uint64_t manifests_applied = 0;
  uint64_t records_applied = 0;
  uint64_t failures = 0;
  int64_t last_poll_ms = 0;
  bool stuck = false;  // fell behind what the store keeps
  std::string last_error;
};

class Follower {
 public:
  static Result<std::unique_ptr<Follower>> Create(const FollowOptions& options,
                                                  const std::string& data_dir);
  ~Follower();  // Stop()

  Status Prepare();
  const RestoreReport& restore() const { return restore_; }
  void Start(storage::Database* database);
  void Stop();
  // The message every change sent to this node fails with.
  std::string ReadOnlyMessage() const;

  FollowerStats Stats() const;
  void RenderMetrics(std::string* out) const;

 private:
  Follower(FollowOptions options, std::string data_dir, std::unique_ptr<ObjectStore> store)
      : options_(std::move(options)), data_dir_(std::move(data_dir)), store_(std::move(store)) {}
  Status PollOnce();
  // Downloads segment `file` of `manifest` and applies its records past the applied LSN.
  Status ApplySegment(const StoredFile& file, const std::string& name);
  // One poll of the follower's thread; returns the wait before the next.
  std::chrono::microseconds RunOnce();
  std::chrono::microseconds Tick() const;  // the wait between polls

  const FollowOptions options_;
  const std::string data_dir_;
  const std::unique_ptr<ObjectStore> store_;
  storage::Database* database_ = nullptr;
  RestoreReport restore_;
  std::string applied_manifest_;  // the key of the last manifest applied (the thread's)
  int64_t backoff_ms_ = 0;        // after failed polls (the thread's)

  std::atomic<uint64_t> applied_lsn_{0};
  std::atomic<int64_t> behind_since_ms_{0};
  std::atomic<uint64_t> manifests_applied_{0};
  std::atomic<uint64_t> records_applied_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<int64_t> last_poll_ms_{0};
  std::atomic<bool> stuck_{false};
  mutable std::mutex error_mutex_;
  std::string last_error_;

  PeriodicTask polls_;  // last: stopped (joined) first
};

}  // namespace quiver::objstore
