// Catalog: the named tables of one Quiver instance.
//
// Thread safety: every method may be called from any thread. Lookups take a shared lock for the
// time of a map lookup only and return a shared_ptr, so a table dropped while a request uses it
// stays alive until that request ends. Creates and drops are serialized by a separate DDL lock,
// held while they are journaled, so lookups never wait for the journal.
//
// Each table created gets a new id (never reused, also across restarts when the journal keeps
// next_table_id()); the journal names tables by id, so a table dropped and created again under
// the same name is a different table to it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/periodic.h"
#include "common/result.h"
#include "engine/journal.h"
#include "engine/limits.h"
#include "engine/region.h"
#include "engine/schema.h"
#include "engine/schema_change.h"
#include "engine/table.h"

namespace quiver {

struct CatalogOptions {
  EngineLimits limits;
  RegionBacking backing = RegionBacking::kAnonymous;
  // Every table publishes its memory for readers in other processes (engine/publication.h);
  // implies shared-memory backing.
  bool publish = false;
  Journal* journal = nullptr;  // records creates, drops and every table's writes; may be null
  // Every table counts towards this limit and may be evicted from by it; may be null. It must
  // outlive the catalog.
  MemoryLimit* memory_limit = nullptr;
  // Every table gets a disk tier there (Table::AttachTier): rows the limit takes move to disk.
  std::optional<TierOptions> tier;
};

class Catalog {
 public:
  explicit Catalog(CatalogOptions options = {}) : options_(std::move(options)) {
    if (options_.publish) options_.backing = RegionBacking::kSharedMemory;
  }
  ~Catalog();  // stops the active expiry thread
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // kAlreadyExists when the name is taken; kInvalidArgument for a bad name.
  Result<std::shared_ptr<Table>> CreateTable(std::string_view name, TableSchema schema);
  // kNotFound when absent.
  Status DropTable(std::string_view name);
  // Changes the table's schema online (engine/schema_change.h): the table is copied into a new
  // one (a new id) while reads and writes go on, and the new one takes its name in one step.
  // kNotFound when absent; the errors of ApplySchemaChange; nothing changes on any error.
  // Creates, drops and other changes wait meanwhile.
  Result<std::shared_ptr<Table>> AlterTable(std::string_view name, const SchemaChange& change);
  Result<std::shared_ptr<Table>> GetTable(std::string_view name) const;
  // Sorted by name.
  std::vector<std::string> ListTables() const;
  std::vector<std::shared_ptr<Table>> Tables() const;

  const CatalogOptions& options() const { return options_; }

  // Recovery (storage/): tables as recorded, without journaling. RestoreTable fails like
  // CreateTable; RemoveTable returns whether the id was present.
  Result<std::shared_ptr<Table>> RestoreTable(uint64_t id, std::string_view name,
                                              TableSchema schema);
  bool RemoveTable(uint64_t id);
  // Recovery: the schema change recorded for table `id` (which must be here) applied again.
  Result<std::shared_ptr<Table>> RestoreAlter(uint64_t id, uint64_t new_id,
                                              const SchemaChange& change);
  uint64_t next_table_id() const;
  void set_next_table_id(uint64_t id);
  // Holds off creates and drops while alive (to save a consistent picture of the tables). The
  // journal's CatalogChanged runs with this lock already held.
  std::unique_lock<std::mutex> LockDdl() { return std::unique_lock(ddl_mutex_); }

  // Active expiry of the tables' rows: one Table::ExpireCycle per table with a share of
  // `budget_us`; returns the rows reclaimed. StartActiveExpiry runs it `hz` times a second on a
  // background thread (each run within a quarter of the period), and with it the promotions of
  // cold rows reads asked for (Table::PromoteQueued).
  int64_t ExpireCycle(int64_t budget_us);
  void StartActiveExpiry(int hz = 10);
  void StopActiveExpiry() { expiry_.Stop(); }  // waits for a cycle in progress

 private:
  // Under ddl_mutex_: `table` (named `name`) rebuilt under `change` as table `new_id`; `journal`:
  // whether the change is logged.
  Result<std::shared_ptr<Table>> Alter(const std::shared_ptr<Table>& table,
                                       const SchemaChange& change, uint64_t new_id, bool journal,
                                       uint64_t* lsn);

  // A new table, with the catalog's tier attached.
  Result<std::shared_ptr<Table>> MakeTable(std::string_view name, TableSchema schema, uint64_t id);

  CatalogOptions options_;  // set once, by the constructor
  std::mutex ddl_mutex_;    // creates and drops, in journal order
  uint64_t next_id_ = 1;    // under mutex_
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<Table>, std::less<>> tables_;

  PeriodicTask expiry_;  // last: stopped before the tables go
};

}  // namespace quiver
