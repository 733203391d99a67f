// The RESP command table: Redis's commands over a kv::Keyspace, with Redis's replies and error
// texts (docs/resp.md lists them).
//
// Thread safety: Execute may be called from any thread; each Client is used by one connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/catalog.h"
#include "kv/keyspace.h"
#include "server/resp/protocol.h"

namespace quiver::resp {

// A connection's state. Its own thread reads and writes it; CLIENT LIST on other threads reads it
// through ClientLine: `name` and `protocol` are written under `mutex`, `last_command` is atomic.
struct Client {
  int64_t id = 0;
  std::string name;
  std::string address;  // "ip:port"
  int64_t created_ms = 0;
  int protocol = 2;
  bool authenticated = false;
  bool close_after_reply = false;             // QUIT
  std::atomic<const char*> last_command{""};  // a name from the command table
  mutable std::mutex mutex;
  // The last log record of this client's changes not yet written, and where their replies are
  // in the output: Flush writes the records before the replies go out.
  uint64_t unwritten_lsn = 0;
  std::vector<std::pair<size_t, size_t>> unwritten_replies;  // [begin, end) offsets
};

struct ServerState {
  kv::Keyspace* keyspace = nullptr;
  // Feature tables read as hashes ("<table><separator><key>") and by QUIVER.FETCH; may be null.
  Catalog* catalog = nullptr;
  std::string table_separator = ":";
  std::string requirepass;  // empty: no password
  std::string bind;
  uint16_t port = 0;
  int threads = 1;
  int64_t started_ms = 0;
  std::atomic<int64_t> commands{0};
  std::atomic<int64_t> connections_received{0};
  // The connected clients (CLIENT LIST, INFO clients): a callback filling one line per client.
  std::function<std::vector<std::string>()> list_clients;
  std::function<size_t()> client_count;
  // INFO's "# Shm" section (the shared-memory readers), when the host publishes tables.
  std::function<std::string()> shm_info;
  // Client buffer limits, as Redis's (docs/resp.md#client-limits); CONFIG SET changes them.
  // client-output-buffer-limit normal <hard> <soft> <soft seconds>: a client whose unsent
  // replies pass `hard`, or stay past `soft` that long, is closed (0: no limit).
  std::atomic<uint64_t> output_hard_limit{uint64_t{1} << 30};
  std::atomic<uint64_t> output_soft_limit{uint64_t{256} << 20};
  std::atomic<int64_t> output_soft_seconds{60};
  // client-query-buffer-limit: a client whose unparsed request grows past this is closed.
  std::atomic<uint64_t> query_buffer_limit{uint64_t{1} << 30};
  // maxmemory-clients (ClientMemory): -1 for the default, kDefaultClientMemory while maxmemory
  // is set and no limit otherwise.
  std::atomic<int64_t> maxmemory_clients{-1};
  std::atomic<uint64_t> clients_closed_for_memory{0};
};

inline constexpr uint64_t kDefaultClientMemory = uint64_t{128} << 20;

// Sets ClientMemory's limit from maxmemory-clients and maxmemory (after either changes).
void ApplyClientMemoryLimit(ServerState& server);

// "HARD SOFT SECONDS" (sizes as ParseByteSize reads them), optionally after the class "normal";
// false for anything else.
bool ParseOutputBufferLimit(std::string_view text, uint64_t* hard, uint64_t* soft,
                            int64_t* seconds);

// Runs one command (args[0] is its name, any case) and appends its reply. With a logged keyspace,
// a change is refused (MISCONF) while the log cannot be written; under fsync=always its reply
// waits for the log's fsync, otherwise the caller runs Flush before sending replies.
void Execute(ServerState& server, Client& client, std::span<const std::string_view> args,
             ReplyWriter& reply);

// Appends the keyspace keys a request names (its command's key positions) to `keys`: what a
// pipeline prefetches (Keyspace::Prefetch) before its commands run. None for an unknown command.
void AppendKeys(std::span<const std::string_view> args, std::vector<std::string_view>* keys);

// Writes the log records of the client's changes (one write for a whole pipeline) before the
// replies in `output` go out. When that fails, their replies become MISCONF errors (the changes
// stay in memory and their records buffered, retried each second; later changes are refused
// until a retry succeeds).
void Flush(ServerState& server, Client& client, std::string* output);

// CLIENT INFO's line for a client (CLIENT LIST has one per connection); any thread.
std::string ClientLine(const Client& client);

// The number of commands in the table (COMMAND COUNT).
size_t CommandCount();

}  // namespace quiver::resp
