#include "server/resp/op_status.h"

#include <string>

namespace quiver::resp {

void ReplyError(ReplyWriter& reply, OpStatus status, std::string_view command) {
  switch (status) {
    case OpStatus::kOk:
    case OpStatus::kKeyNotFound:
      break;  // not errors: a caller's mistake, answered as an internal error below
    case OpStatus::kWrongType:
      return reply.Error("WRONGTYPE Operation against a key holding the wrong kind of value");
    case OpStatus::kNotInteger:
      return reply.Error("ERR value is not an integer or out of range");
    case OpStatus::kNotFloat:
      return reply.Error("ERR value is not a valid float");
    case OpStatus::kHashValueNotInteger:
      return reply.Error("ERR hash value is not an integer");
    case OpStatus::kSyntax:
      return reply.Error("ERR syntax error");
    case OpStatus::kWrongArity:
      return reply.Error("ERR wrong number of arguments for '" + std::string(command) +
                         "' command");
    case OpStatus::kInvalidExpireTime:
      return reply.Error("ERR invalid expire time in '" + std::string(command) + "' command");
    case OpStatus::kOverflow:
      return reply.Error("ERR increment or decrement would overflow");
    case OpStatus::kDecrementOverflow:
      return reply.Error("ERR decrement would overflow");
    case OpStatus::kNanOrInfinity:
      return reply.Error("ERR increment would produce NaN or Infinity");
    case OpStatus::kStringTooLong:
      return reply.Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    case OpStatus::kNoSuchKey:
      return reply.Error("ERR no such key");
    case OpStatus::kInvalidCursor:
      return reply.Error("ERR invalid cursor");
    case OpStatus::kNoTables:
      return reply.Error("ERR no feature tables are served here");
  }
  reply.Error("ERR internal error: no error text for this status");
}

}  // namespace quiver::resp
