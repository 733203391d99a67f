// OpStatus: how a keyspace operation of a command ended, and the one place its Redis error text
// is written (ReplyError). The command families run their operations as functions returning an
// OpResult (a value or a status) and reply from it; connection and server commands, whose
// errors are about their own arguments, write their texts themselves.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <variant>

#include "server/resp/protocol.h"

namespace quiver::resp {

enum class OpStatus : uint8_t {
  kOk,
  kKeyNotFound,          // not an error: each command replies its own way (nil, 0, -2)
  kWrongType,            // the key holds another type
  kNotInteger,           // an argument or a stored value is not a 64-bit integer
  kNotFloat,             // ... not a valid float
  kHashValueNotInteger,  // HINCRBY on a field that is not an integer
  kSyntax,               // an unknown or misplaced option
  kWrongArity,           // the command's argument count (named)
  kInvalidExpireTime,    // a TTL that is not positive or overflows (the command named)
  kOverflow,             // an increment past int64
  kDecrementOverflow,    // DECRBY of int64's minimum
  kNanOrInfinity,        // INCRBYFLOAT to a NaN or an infinity
  kStringTooLong,        // a string past proto-max-bulk-len
  kNoSuchKey,            // RENAME of a missing key
  kInvalidCursor,        // SCAN's cursor
  kNoTables,             // QUIVER.FETCH where no feature tables are served
};

// Redis's error reply for `status` (not kOk nor kKeyNotFound); `command`: the command's name,
// for the texts that name it.
void ReplyError(ReplyWriter& reply, OpStatus status, std::string_view command);

// A value, or the status that stopped the operation.
template <typename T>
class OpResult {
 public:
  OpResult(T value) : state_(std::move(value)) {}  // NOLINT: implicit, as Result<T>
  OpResult(OpStatus status) : state_(status) {}    // NOLINT
  bool ok() const { return state_.index() == 0; }
  OpStatus status() const { return ok() ? OpStatus::kOk : std::get<1>(state_); }
  const T& value() const { return std::get<0>(state_); }
  const T& operator*() const { return value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, OpStatus> state_;
};

}  // namespace quiver::resp
