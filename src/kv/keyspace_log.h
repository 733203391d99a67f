// Where a keyspace logs its changes (kv/keyspace.h, "Persistence"), in operations (operation.h):
// KeyspaceLog, implemented by storage::Database over its write-ahead log, and KeyspaceRecord, a
// record under construction in the log's format; DumpWriter, where a dump's key states go.
#pragma once

#include <cstdint>
#include <memory>

#include "common/result.h"
#include "kv/operation.h"

namespace quiver::kv {

// The operations of one View, encoded as they are added (by the log's format). The keyspace only
// adds operations and hands the record to the log that made it.
class KeyspaceRecord {
 public:
  virtual ~KeyspaceRecord() = default;
  virtual void Add(const Operation& op) = 0;
  virtual bool empty() const = 0;
  virtual void Clear() = 0;
};

class KeyspaceLog {
 public:
  virtual ~KeyspaceLog() = default;
  // Checked before a write runs: an error when changes cannot be logged now (they are refused).
  virtual Status Writable() = 0;
  // An empty record of this log's format (a thread keeps one and reuses it).
  virtual std::unique_ptr<KeyspaceRecord> NewRecord() = 0;
  // Adds one record (made by NewRecord), called under the locks of the shards it touches, and
  // returns its LSN. The record may be buffered: Commit writes it.
  virtual Result<uint64_t> Append(const KeyspaceRecord& record) = 0;
  // Writes the records up to `lsn` to the log file, and syncs them when SyncsOnCommit().
  virtual Status Commit(uint64_t lsn) = 0;
  virtual bool SyncsOnCommit() const = 0;
  // The LSN the last record appended (of any kind) got.
  virtual uint64_t LastLsn() = 0;
};

// What the Views of this thread logged since the last TakeLogOutcome(): the LSN of the last
// record, and the first error (a change applied in memory whose record the log refused).
struct LogOutcome {
  uint64_t lsn = 0;
  Status error;
};
LogOutcome TakeLogOutcome();

// Receives a dump (Keyspace::Dump): a section per shard, in shard order. BeginSection, Add and
// EndSection run under the shard's lock (keep them to encoding); Flush runs after it is released.
class DumpWriter {
 public:
  virtual ~DumpWriter() = default;
  // The shard's log position: every record touching it up to `lsn` is in the section.
  virtual void BeginSection(uint64_t lsn) = 0;
  virtual void Add(const Operation& key_state) = 0;  // kPutString or kPutHash
  virtual void EndSection(uint64_t keys) = 0;
  virtual Status Flush() = 0;
};

}  // namespace quiver::kv
