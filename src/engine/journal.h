// Journal: where the engine records its changes before making them, so that they can be replayed
// after a restart. The engine only calls it; storage/ implements it (storage/database.h) and
// decides what "durable" means (the fsync policy).
//
// Protocol, for every change (a table created, dropped or changed, a batch upserted, keys
// deleted):
//   1. every check passes and every allocation is made (nothing has changed yet);
//   2. Log*() records the change and returns its log sequence number (LSN); an error stops the
//      change, which then changes nothing;
//   3. the change is applied (this cannot fail), while the table's write lock (or the catalog's
//      DDL lock) is still held, so a table's changes are applied in LSN order;
//   4. after the locks are released, Commit(lsn) waits until the record is as durable as the
//      policy asks; only then is the change acknowledged. An error there fails the request.
//
// Thread safety: implementations are called from any thread, concurrently.
#pragma once

#include <arrow/type_fwd.h>

#include <cstdint>
#include <string_view>

#include "common/result.h"

namespace quiver {

class TableSchema;

class Journal {
 public:
  virtual ~Journal() = default;

  virtual Result<uint64_t> LogCreate(uint64_t table_id, std::string_view name,
                                     const TableSchema& schema) = 0;
  virtual Result<uint64_t> LogDrop(uint64_t table_id, std::string_view name) = 0;
  // A schema change (engine/schema_change.h): table `table_id` is replaced by table `new_id` of
  // `schema`, its rows converted by `change_json` (SchemaChange::ToJson). Replaying it gives the
  // same change.
  virtual Result<uint64_t> LogAlter(uint64_t table_id, uint64_t new_id, std::string_view name,
                                    std::string_view change_json, const TableSchema& schema) = 0;
  // `batch` as given to Table::Upsert (replaying it gives the same change).
  virtual Result<uint64_t> LogUpsert(uint64_t table_id, const arrow::RecordBatch& batch) = 0;
  // `keys` normalized to the table's key type.
  virtual Result<uint64_t> LogDelete(uint64_t table_id, const arrow::Array& keys) = 0;
  // After a create or drop was applied to the catalog (still under the catalog's DDL lock).
  virtual void CatalogChanged(uint64_t lsn) = 0;
  virtual Status Commit(uint64_t lsn) = 0;
};

}  // namespace quiver
