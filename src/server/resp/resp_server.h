// RespServer: the Redis protocol (RESP2 and RESP3) over TCP on Boost.Asio, serving a
// kv::Keyspace with the commands of commands.h. One io_context per thread; a connection lives on
// one thread. Pipelined requests are parsed from each read and answered with one write.
//
// A protocol error is answered with Redis's "-ERR Protocol error: ..." and the connection is
// closed, as Redis does; every other error is a reply and the connection goes on.
//
// Thread safety: Start and Stop from one thread; the server runs on its own threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "kv/keyspace.h"
#include "server/resp/commands.h"

namespace quiver::net_util {
class IoPool;
}  // namespace quiver::net_util

namespace quiver::resp {

struct RespServerOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 6380;  // 0: any free port
  int threads = 1;
  std::string requirepass;            // empty: no AUTH needed
  std::string table_separator = ":";  // HGETALL <table><separator><key> reads a table's row
  // Redis's maxclients. At the limit a new connection closes the oldest one that has not sent a
  // byte yet; when there is none it is answered "-ERR max number of clients reached".
  size_t max_connections = 10000;
  // Client buffer limits (ServerState; docs/resp.md#client-limits).
  uint64_t output_hard_limit = uint64_t{1} << 30;
  uint64_t output_soft_limit = uint64_t{256} << 20;
  int64_t output_soft_seconds = 60;
  uint64_t query_buffer_limit = uint64_t{1} << 30;
  int64_t maxmemory_clients = -1;         // -1: 128 MiB while maxmemory is set, else none
  std::function<std::string()> shm_info;  // INFO's "# Shm" section; may be empty
};

class RespServer {
 public:
  // `catalog` (may be null): the feature tables also served, read-only.
  static Result<std::unique_ptr<RespServer>> Start(const RespServerOptions& options,
                                                   kv::Keyspace& keyspace,
                                                   Catalog* catalog = nullptr);
  ~RespServer();
  RespServer(const RespServer&) = delete;
  RespServer& operator=(const RespServer&) = delete;

  uint16_t port() const;
  // Stops accepting, closes every connection and joins the threads.
  void Stop();

 private:
  class Connection;
  // What becomes of an accepted connection (resp_server.cc; nested, so that no Asio type appears
  // here).
  struct Acceptor;

  RespServer(const RespServerOptions& options, kv::Keyspace& keyspace, Catalog* catalog);
  // True when a new connection may be served: under the limit, or a silent one was closed.
  bool RoomForConnection();
  // Past maxmemory-clients: closes the clients holding the most buffer memory until the rest fit.
  void CloseBiggestClients();

  const RespServerOptions options_;
  ServerState state_;
  std::unique_ptr<net_util::IoPool> pool_;
  std::atomic<int64_t> next_client_id_{1};
  std::mutex connections_mutex_;
  std::set<Connection*> connections_;
  bool stopped_ = false;
};

}  // namespace quiver::resp
