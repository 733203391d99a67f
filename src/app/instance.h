// Instance: one Quiver, wired once for every host: quiverd (apps/quiverd.cc) and the Python
// module (python/ext/module.cc). It owns the memory limit, the catalog of feature tables, the
// key-value keyspace, their active expiry threads and an in-process client of the command table
// (LocalClient): in memory only, or durable in a data directory (a storage::Database, which then
// holds the catalog, the keyspace and the limit); and, when asked, the socket through which
// readers in other processes map the tables (ShmServer). The network protocol servers are the
// host's; they are given the Instance's parts.
//
// Thread safety: the accessors from any thread; Close from one, after the servers stopped.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/eviction.h"
#include "common/result.h"
#include "engine/catalog.h"
#include "kv/keyspace.h"
#include "objstore/backup.h"
#include "objstore/follower.h"
#include "objstore/history.h"
#include "server/resp/local.h"
#include "server/shm/shm_server.h"
#include "storage/database.h"
#include "sync/parquet_sync.h"

namespace quiver {

struct InstanceOptions {
  // The data directory (created when missing): tables and keys are durable there. None: in
  // memory only.
  std::optional<std::string> data_dir;
  // How a durable instance keeps its data (data_dir above wins over durability.data_dir).
  storage::DatabaseOptions durability;
  uint64_t maxmemory = 0;  // of the tables and the keyspace together (0: none)
  EvictionPolicy policy = EvictionPolicy::kNoEviction;
  // A disk tier for every table in this directory (engine/tier.h, docs/tiering.md): rows the
  // memory limit takes move there instead of being dropped. Empty: none.
  std::string tier_dir;
  TierIo tier_io = TierIo::kAuto;
  int expiry_hz = 10;                 // active expiry cycles a second, of tables and keyspace
  std::string table_separator = ":";  // the LocalClient's HGETALL <table><separator><key>
  // Local readers in other processes attach to the tables through a Unix socket at this path
  // (server/shm/, docs/shm.md); the tables then live in memfds. Empty: not published.
  std::string shm_socket;
  mode_t shm_socket_mode = 0600;
  int64_t shm_lease_ms = int64_t{60} * 1000;
  // With a data directory: back it up to an object store, and restore it from there when it is
  // empty (objstore/backup.h, docs/object-storage.md).
  std::optional<objstore::BackupOptions> backup;
  // With a data directory: a read-only follower of another node's backups (objstore/follower.h);
  // not with `backup`.
  std::optional<objstore::FollowOptions> follow;
  // With a data directory: every table change also written to a Parquet dataset
  // (objstore/history.h); not on a follower.
  std::optional<objstore::HistoryOptions> history;
};

class Instance {
 public:
  // Recovers the data directory (when one is given) and starts active expiry.
  static Result<std::unique_ptr<Instance>> Open(InstanceOptions options);
  ~Instance();  // Close()
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  Catalog& catalog() { return database_ ? database_->catalog() : *catalog_; }
  kv::Keyspace& keyspace() { return database_ ? database_->keyspace() : *keyspace_; }
  MemoryLimit& memory_limit() { return database_ ? database_->memory_limit() : *memory_limit_; }
  // The durable store, or null in memory.
  storage::Database* database() { return database_.get(); }
  // Redis's commands against the keyspace and the tables, in process.
  resp::LocalClient& kv() { return *kv_; }
  // The socket of shared-memory readers, or null when the tables are not published.
  ShmServer* shm() { return shm_.get(); }
  // The object-store backup, or null.
  objstore::Backup* backup() { return backup_.get(); }
  // The follower of another node's backups, or null.
  objstore::Follower* follower() { return follower_.get(); }
  // The change history, or null.
  objstore::History* history() { return history_.get(); }
  // The tables' Parquet sources (durable instances only), or null.
  sync::ParquetSync* sync() { return sync_.get(); }

  // Stops active expiry and, when durable, writes the last changes to the history and the backup,
  // syncs the log
  // and releases the data directory. Idempotent.
  void Close();

 private:
  Instance() = default;

  // In memory: the limit outlives the catalog and the keyspace that count towards it.
  std::unique_ptr<MemoryLimit> memory_limit_;
  std::unique_ptr<TierDirectory> tier_dir_;  // held (locked) while the tables use it
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<kv::Keyspace> keyspace_;
  std::unique_ptr<objstore::Backup> backup_;  // outlives database_'s Open, stops before its Close
  std::unique_ptr<objstore::Follower> follower_;  // likewise
  std::unique_ptr<objstore::History> history_;    // likewise
  std::unique_ptr<storage::Database> database_;
  std::unique_ptr<sync::ParquetSync> sync_;  // writes into database_'s tables
  std::unique_ptr<resp::LocalClient> kv_;
  std::unique_ptr<ShmServer> shm_;  // last: goes first
  bool closed_ = false;
};

}  // namespace quiver
