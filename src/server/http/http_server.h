// HttpServer: the HTTP/1.1 front end of quiverd, on Boost.Beast / Asio.
//
// One io_context per thread; a single acceptor hands each connection to the next io_context in
// turn, and a connection stays on its thread (no locks in the request path). Connections are
// keep-alive; a request body over max_request_bytes is refused with 413 before it is read.
//
// Stop(): stop accepting, close idle connections, let requests in flight finish (their responses
// say Connection: close), then join the threads.
//
// Thread safety: Start and Stop from one controlling thread; everything else is internal.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "common/result.h"

namespace quiver::sync {
class ParquetSync;
}

namespace quiver::storage {
class Database;
}  // namespace quiver::storage

namespace quiver::net_util {
class IoPool;
}  // namespace quiver::net_util

namespace quiver::http_server {

class Router;

struct HttpServerOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 8080;  // 0: any free port (port() tells which)
  int threads = 2;
  size_t max_request_bytes = 64 << 20;
  // Waiting for a request's headers (including an idle keep-alive wait): past this the
  // connection is closed. Reading its body: past this it is closed too.
  int header_timeout_seconds = 30;
  int body_timeout_seconds = 60;
  // At this many connections a new one closes the oldest that has not sent its request headers
  // yet, else the oldest idle between requests; when every one is busy the new one is answered
  // 503 and closed.
  int max_connections = 1024;
  // One log line per request: method, route, target, status, bytes in and out, microseconds.
  bool access_log = false;
  // After handling work, an io thread polls this long before it sleeps (0: never polls).
  int busy_poll_us = 0;
  // The Parquet sources of tables (PUT/GET/DELETE /api/v1/table/{name}/source); null: none.
  sync::ParquetSync* sync = nullptr;
};

class HttpServer {
 public:
  // Binds and starts serving; an address in use is an IOError saying so. Request metrics go to
  // `metrics`, which /metrics renders (with those of other front ends sharing it).
  static Result<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                   storage::Database& database,
                                                   MetricsRegistry& metrics);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  void Stop();

 private:
  class Session;

  HttpServer(const HttpServerOptions& options, storage::Database& database,
             MetricsRegistry& metrics);
  // What becomes of an accepted connection (a session, or a refusal at the limit) and what is
  // recorded of a request (metrics, the access log): http_server.cc, nested so that no Asio or
  // Beast type appears here (this header is included by programs; Beast is not).
  struct Acceptor;
  void Register(const std::shared_ptr<Session>& session);
  // Closes the oldest fresh (else idle) connection; false when there is none.
  bool ShedIdleSession();

  const HttpServerOptions options_;
  MetricsRegistry& metrics_;
  const std::unique_ptr<const Router> router_;
  std::unique_ptr<net_util::IoPool> pool_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> open_sessions_{0};
  CounterMetric* connections_opened_ = nullptr;  // in metrics_
  CounterMetric* connections_closed_ = nullptr;
  CounterMetric* connections_shed_ = nullptr;
  std::mutex sessions_mutex_;
  std::list<std::weak_ptr<Session>> sessions_;
};

}  // namespace quiver::http_server
