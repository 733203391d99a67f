// Operation: one change of a keyspace, as it logs its changes and as recovery applies them
// again. The keyspace emits operations, never bytes: storage/log_records.h encodes them (a log
// record is a View's operations, a dump a shard's key states) and decodes them back.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "kv/entry.h"

namespace quiver::kv {

enum class OpCode : uint8_t {
  kPutString = 1,   // key, expire_at, value: the key's whole new state
  kPutHash = 2,     // key, expire_at, fields: the key's whole new state
  kDelete = 3,      // key
  kExpire = 4,      // key, expire_at (0: none)
  kHashSet = 5,     // key, field, value
  kHashDelete = 6,  // key, field
  kClear = 7,       // every key
};
inline constexpr OpCode kLastOpCode = OpCode::kClear;

// The byte views are valid while the call that passes the operation runs.
struct Operation {
  OpCode code = OpCode::kClear;
  std::string_view key, field, value;
  Millis expire_at = 0;
  std::vector<std::pair<std::string_view, std::string_view>> fields;  // kPutHash
};

// The whole state of a key (kPutString or kPutHash) into `op`, whose views then point into the
// entry (valid while its View holds it unchanged).
void StateOf(std::string_view key, const Entry& entry, Operation* op);

}  // namespace quiver::kv
