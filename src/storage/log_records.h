// The payloads of the write-ahead log's records and the keyspace dump: every record type's
// encoding and its decoding, in one place. (How records are framed in segment files is wal.cc's;
// docs/durability.md has both.) Integers are little-endian and byte strings length-prefixed
// (common/coding.h):
//
//   bytes := length:fixed32 byte{length}
//
//   CreateTable := table_id:fixed64 name:bytes schema:byte*   the TableSchema's JSON, to the end
//   DropTable   := table_id:fixed64 name:byte* [0 dropped_at:int64]   Unix ms (older logs: none)
//   AlterTable  := table_id:fixed64 new_id:fixed64 name:bytes change:bytes schema:bytes
//                  altered_at:int64      a schema change: the SchemaChange's JSON, the new
//                                        TableSchema's JSON, Unix ms
//   Upsert      := table_id:fixed64 batch [84 logged_at:int64]   batch: an Arrow IPC stream
//                  (schema, one batch, end marker); logged_at: Unix ms ('T'; older logs: none)
//   Delete      := the same; the batch has one column: the keys
//   Keyspace    := op*                             one View's changes (kv/operation.h)
//
//   op := 1 key:bytes expire_at:int64 value:bytes                          PutString
//       | 2 key:bytes expire_at:int64 count:fixed32 (field:bytes value:bytes){count}   PutHash
//       | 3 key:bytes                                                      Delete
//       | 4 key:bytes expire_at:int64                                      Expire (0: none)
//       | 5 key:bytes field:bytes value:bytes                              HashSet
//       | 6 key:bytes field:bytes                                          HashDelete
//       | 7                                                                Clear
//
//   keyspace dump := "QUIVERKV" version:fixed32 (1) shards:fixed32 (64) section{shards}
//   section       := lsn:fixed64 count:fixed64 (PutString | PutHash){count}   a shard's keys
//
// Decoders check every length against what is left and return kCorruption naming what is wrong.
//
// Thread safety: functions; an EncodedKeyspaceRecord belongs to one thread at a time.
#pragma once

#include <arrow/type_fwd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/coding.h"
#include "common/result.h"
#include "kv/keyspace.h"

namespace quiver::storage {

// --- Tables -----------------------------------------------------------------------------------

std::string EncodeCreateTable(uint64_t table_id, std::string_view name,
                              std::string_view schema_json);
struct CreateTableRecord {
  uint64_t table_id = 0;
  std::string_view name, schema_json;
};
Status DecodeCreateTable(std::string_view payload, CreateTableRecord* out);

// `dropped_at`: when, Unix ms (the change history's; table names hold no 0 byte).
std::string EncodeDropTable(uint64_t table_id, std::string_view name, int64_t dropped_at);
// A DropTable record's `rest` (after the id): the name, and the time (0 when not logged).
void DecodeDropTable(std::string_view rest, std::string_view* name, int64_t* dropped_at);
std::string EncodeAlterTable(uint64_t table_id, uint64_t new_id, std::string_view name,
                             std::string_view change_json, std::string_view schema_json,
                             int64_t altered_at);
struct AlterTableRecord {
  uint64_t table_id = 0, new_id = 0;
  std::string_view name, change_json, schema_json;
  int64_t altered_at = 0;
};
Status DecodeAlterTable(std::string_view payload, AlterTableRecord* out);

// Every table record starts with the table's id; `rest` is what follows.
Status DecodeTableId(std::string_view payload, uint64_t* table_id, std::string_view* rest);

// An Upsert or Delete record: its payload as parts (the id, then the Arrow IPC stream's schema,
// batch and end-of-stream marker, then the time), not copied into one buffer; the parts view
// this object.
struct EncodedBatch {
  std::string id;
  std::shared_ptr<arrow::Buffer> schema, batch;
  std::string logged_at;
  std::vector<std::string_view> parts() const;
};
// `logged_at`: when the change was made, Unix ms (0: not recorded).
Result<EncodedBatch> EncodeBatchRecord(uint64_t table_id, const arrow::RecordBatch& batch,
                                       int64_t logged_at);
// The time an Upsert or Delete record's `rest` (after the id) says it was logged; 0 when it says
// none (logged by an older version). Readers of the batch stop at its end marker.
int64_t BatchRecordTime(std::string_view rest);
// The batch of an Upsert or Delete record's `rest` (after the id), decoded from an aligned copy
// within `max_decode_bytes` (DecodeMemory): a record past that stops the start with
// kLimitExceeded saying so, instead of the process being killed for memory.
Result<std::shared_ptr<arrow::RecordBatch>> DecodeBatchRecord(std::string_view rest,
                                                              uint64_t max_decode_bytes);

// --- Keyspace operations ----------------------------------------------------------------------

void EncodeOperation(const kv::Operation& op, std::string* out);
// The next operation of `in`; false when it cannot be read whole.
bool DecodeOperation(ByteReader& in, kv::Operation* op);

// A keyspace record in this format (what Database hands the keyspace as its KeyspaceRecord).
class EncodedKeyspaceRecord final : public kv::KeyspaceRecord {
 public:
  void Add(const kv::Operation& op) override { EncodeOperation(op, &bytes_); }
  bool empty() const override { return bytes_.empty(); }
  void Clear() override { bytes_.clear(); }
  std::string_view bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

// Applies a Keyspace record logged as `lsn` (Keyspace::Replay). kCorruption when it cannot be
// read; the operations before the damage are applied.
Status ReplayKeyspaceRecord(std::string_view record, uint64_t lsn, kv::Keyspace& keyspace);

// --- Keyspace dumps ---------------------------------------------------------------------------

// Dumps `keyspace` (Keyspace::Dump) in the dump format, handing `sink` the header and then one
// section per shard. Returns the number of keys.
Result<int64_t> DumpKeyspace(kv::Keyspace& keyspace,
                             const std::function<Status(std::string_view)>& sink);
// Loads a dump into the empty `keyspace`; returns the number of keys. kCorruption naming what is
// wrong (the keyspace is cleared then: nothing is kept).
Result<int64_t> LoadKeyspaceDump(std::string_view dump, kv::Keyspace& keyspace);

}  // namespace quiver::storage
