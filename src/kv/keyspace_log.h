// KeyspaceLog: where a keyspace logs its changes (kv/keyspace.h, "Persistence"), and what a
// thread's changes logged.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/result.h"

namespace quiver::kv {

// Where a keyspace logs its changes (storage::Database implements it over its write-ahead log).
class KeyspaceLog {
 public:
  virtual ~KeyspaceLog() = default;
  // Checked before a write runs: an error when changes cannot be logged now (they are refused).
  virtual Status Writable() = 0;
  // Adds one record, called under the locks of the shards it touches, and returns its LSN. The
  // record may be buffered: Commit writes it.
  virtual Result<uint64_t> Append(std::string_view record) = 0;
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

}  // namespace quiver::kv
