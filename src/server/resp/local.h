// The key-value store as a library: Redis's commands run in this process against a Keyspace (and
// the feature tables), through the same command table as the RESP server, so the semantics are
// the wire's. Replies come back as values (Reply), not bytes.
//
//   kv::Keyspace keyspace;
//   resp::LocalClient kv(keyspace);
//   kv.Set("k", "v", 60'000);              // SET k v PX 60000
//   std::optional<std::string> v = *kv.Get("k");
//   kv.Call({"HSET", "h", "f", "1"});      // any command; an error is a Reply of kind kError
//
// Thread safety: every method may be called from any thread (each call is its own client).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "engine/catalog.h"
#include "kv/keyspace.h"
#include "server/resp/commands.h"

namespace quiver::resp {

struct Reply {
  enum class Kind { kSimple, kError, kInteger, kBulk, kNull, kArray, kMap, kDouble, kBoolean };
  Kind kind = Kind::kNull;
  std::string text;     // kSimple, kError, kBulk (verbatim strings too, without their format)
  int64_t integer = 0;  // kInteger, kBoolean (0 / 1)
  double number = 0;    // kDouble
  std::vector<Reply> elements;  // kArray; kMap: key, value, key, value, ...
};

// Parses one RESP3 reply at the start of `input`; `consumed` receives its length. InvalidArgument
// when the bytes are not a whole reply.
Result<Reply> ParseReply(std::string_view input, size_t* consumed);

class LocalClient {
 public:
  explicit LocalClient(kv::Keyspace& keyspace, Catalog* catalog = nullptr,
                       std::string table_separator = ":");

  // Runs one command (args[0] is its name); its reply, errors included.
  Reply Call(const std::vector<std::string_view>& args);

  // Typed shortcuts. A Redis error reply becomes a Status: WRONGTYPE and syntax errors
  // InvalidArgument, OOM OutOfMemory, with Redis's text.
  // SET key value [PX ttl_ms]; ttl_ms 0: no TTL.
  Status Set(std::string_view key, std::string_view value, int64_t ttl_ms = 0);
  Result<std::optional<std::string>> Get(std::string_view key);
  Result<int64_t> Delete(const std::vector<std::string_view>& keys);
  // PEXPIRE key ttl_ms; false when the key does not exist.
  Result<bool> Expire(std::string_view key, int64_t ttl_ms);
  // PTTL: milliseconds left, -1 without a TTL, -2 for a missing key.
  Result<int64_t> Ttl(std::string_view key);

  // A Redis error reply as a Status (OK for any other reply).
  static Status ToStatus(const Reply& reply);

 private:
  ServerState state_;
};

}  // namespace quiver::resp
