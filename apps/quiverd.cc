// quiverd: the Quiver server. Serves the catalog over HTTP (docs/http.md) and Arrow Flight
// (docs/flight.md) until SIGTERM or SIGINT, then stops accepting, finishes the requests in flight
// and exits 0.
//
//   quiverd [--config FILE] [--bind ADDR] [--http-port N] ... [--help] [--version]
//
// Settings: defaults, then the YAML file, then QUIVER_* environment variables, then flags
// (docs/operations.md). Exit status: 0 after a signal; 2 for an unknown key, a wrong type or an
// impossible value (the message names it); 1 when the server cannot start (a port in use).
#include <arrow/config.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "app/instance.h"
#include "app/server_config.h"
#include "common/decode_memory.h"
#include "common/log.h"
#include "server/flight/flight_server.h"
#include "server/http/http_server.h"
#include "server/resp/resp_server.h"

namespace quiver {
namespace {

// Descriptors kept for what is not a client connection: data files, log segments, snapshots
// being written, Flight's connections, the listening sockets.
constexpr int64_t kReservedDescriptors = 256;

// Raises the soft limit on open descriptors to the hard one, then cuts the HTTP and RESP
// connection limits, in proportion, until both fit in it beside kReservedDescriptors: running out
// of descriptors fails accepts, and worse, the log's and snapshots' files.
void FitConnectionsToDescriptors(ServerConfig* options) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return;
  const int64_t room =
      std::max<int64_t>(static_cast<int64_t>(limit.rlim_cur) - kReservedDescriptors, 2);
  const int64_t wanted = options->max_connections + options->resp_max_clients;
  if (wanted <= room) return;
  const int64_t http = std::max<int64_t>(1, room * options->max_connections / wanted);
  const int64_t resp = std::max<int64_t>(1, room - http);
  QUIVER_LOG(kWarn, "connection limits cut to fit the descriptor limit",
             {{"nofile", std::to_string(limit.rlim_cur)},
              {"http_max_connections",
               std::to_string(options->max_connections) + "->" + std::to_string(http)},
              {"resp_maxclients",
               std::to_string(options->resp_max_clients) + "->" + std::to_string(resp)}});
  options->max_connections = http;
  options->resp_max_clients = resp;
}

int Run(ServerConfig options) {
  LogLevel level = LogLevel::kInfo;
  ParseLogLevel(options.log_level, &level);
  SetLogLevel(level);

  std::error_code error;
  std::filesystem::create_directories(options.data_dir, error);
  if (error) {
    std::fprintf(stderr, "quiverd: --data-dir: cannot create '%s': %s\n", options.data_dir.c_str(),
                 error.message().c_str());
    return 2;
  }
  FitConnectionsToDescriptors(&options);
  // A file over RLIMIT_FSIZE fails its write with EFBIG, like a full disk, instead of killing us.
  signal(SIGXFSZ, SIG_IGN);

  // Signals are taken by sigwait below, never by a server thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  InstanceOptions instance_options;
  instance_options.data_dir = options.data_dir;
  storage::DatabaseOptions& storage = instance_options.durability;
  storage::ParseFsyncPolicy(options.fsync, &storage.fsync);
  storage.snapshot_wal_bytes = static_cast<uint64_t>(options.snapshot_wal_bytes);
  storage.snapshot_interval_seconds = options.snapshot_interval;
  storage.wal_segment_bytes = static_cast<uint64_t>(options.wal_segment_bytes);
  storage.wal_truncate_corrupt = options.wal_truncate_corrupt;
  storage.accept_data_loss = options.accept_data_loss;
  storage.limits.max_decode_bytes = static_cast<uint64_t>(options.max_decode_bytes);
  DecodeMemory::SetProcessLimit(storage.limits.max_decode_bytes);
  storage.keyspace_durable = !options.kv_memory_only;
  instance_options.maxmemory = static_cast<uint64_t>(options.maxmemory);
  instance_options.policy = *kv::ParsePolicy(options.maxmemory_policy);
  instance_options.tier_dir = options.tier_dir;
  instance_options.tier_io = options.tier_io == "uring"   ? TierIo::kUring
                             : options.tier_io == "pread" ? TierIo::kPread
                                                          : TierIo::kAuto;
  instance_options.table_separator = options.resp_table_separator;
  instance_options.shm_socket = ShmSocketPath(options);
  const std::string instance_options_shm =
      instance_options.shm_socket.empty() ? "off" : instance_options.shm_socket;
  instance_options.shm_socket_mode = static_cast<mode_t>(options.shm_socket_mode);
  instance_options.shm_lease_ms = options.shm_lease_seconds * 1000;
  if (!options.object_store.empty()) {
    objstore::BackupOptions backup;
    backup.uri = options.object_store;
    backup.upload_interval_seconds = options.upload_interval;
    backup.lease_ms = options.object_store_lease_seconds * 1000;
    backup.keep_manifests = static_cast<size_t>(options.object_store_keep_manifests);
    instance_options.backup = backup;
  }
  if (!options.follow.empty()) {
    instance_options.follow =
        objstore::FollowOptions{.uri = options.follow, .poll_seconds = options.follow_interval};
  }
  if (!options.history.empty()) {
    instance_options.history =
        objstore::HistoryOptions{.uri = options.history,
                                 .interval_seconds = options.history_interval,
                                 .max_decode_bytes = storage.limits.max_decode_bytes};
  }
  QUIVER_LOG(kInfo, "recovering", {{"data_dir", options.data_dir}, {"fsync", options.fsync}});
  auto instance = Instance::Open(std::move(instance_options));
  if (!instance.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", instance.status().message()}});
    return 1;
  }
  storage::Database& database = *(*instance)->database();
  http_server::HttpServerOptions http;
  http.bind = options.bind;
  http.port = static_cast<uint16_t>(options.http_port);
  http.threads = static_cast<int>(options.threads);
  http.max_request_bytes = static_cast<size_t>(options.max_request_bytes);
  http.header_timeout_seconds = static_cast<int>(options.header_timeout);
  http.body_timeout_seconds = static_cast<int>(options.body_timeout);
  http.max_connections = static_cast<int>(options.max_connections);
  http.access_log = options.access_log;
  http.busy_poll_us = static_cast<int>(options.busy_poll_us);
  http.sync = (*instance)->sync();
  MetricsRegistry metrics;
  if (ShmServer* shm = (*instance)->shm()) {
    metrics.AddCollector([shm](std::string* out) { shm->RenderMetrics(out); });
  }
  if (objstore::Backup* backup = (*instance)->backup()) {
    metrics.AddCollector([backup](std::string* out) { backup->RenderMetrics(out); });
  }
  if (objstore::History* history = (*instance)->history()) {
    metrics.AddCollector([history](std::string* out) { history->RenderMetrics(out); });
  }
  if (objstore::Follower* follower = (*instance)->follower()) {
    metrics.AddCollector([follower](std::string* out) { follower->RenderMetrics(out); });
  }
  // Flight first: once HTTP answers /health, every front end is listening.
  flight_server::FlightServerOptions flight;
  flight.bind = options.bind;
  flight.port = static_cast<uint16_t>(options.flight_port);
  auto flight_server = flight_server::FlightServer::Start(flight, database, metrics);
  if (!flight_server.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", flight_server.status().message()}});
    return 1;
  }
  // Under a limit, blocks of 1 MiB and more (request bodies, Flight messages) get their own
  // mapping, returned to the system when freed. glibc's default raises this threshold to the
  // largest block freed so far (up to 32 MiB), after which such blocks are carved from the
  // per-thread arenas, whose memory stays there: some 20 MiB resident past the limit after a
  // burst of 2 MB writes (docs/engine.md#memory-limit). It costs the page faults of a fresh
  // mapping per such block (2 MB writes ~15% slower). The threshold stays fixed once set.
  const auto tune_malloc = [](uint64_t bytes) {
    if (bytes != 0) mallopt(M_MMAP_THRESHOLD, 1 << 20);
  };
  tune_malloc(static_cast<uint64_t>(options.maxmemory));
  (*instance)->memory_limit().OnSetMaxMemory(tune_malloc);
  resp::RespServerOptions resp;
  resp.bind = options.bind;
  resp.port = static_cast<uint16_t>(options.resp_port);
  resp.threads = static_cast<int>(options.resp_threads);
  resp.requirepass = options.requirepass;
  resp.table_separator = options.resp_table_separator;
  resp.max_connections = static_cast<size_t>(options.resp_max_clients);
  resp.maxmemory_clients = options.maxmemory_clients;
  if (ShmServer* shm = (*instance)->shm()) resp.shm_info = [shm] { return shm->InfoText(); };
  resp.query_buffer_limit = static_cast<uint64_t>(options.query_buffer_limit);
  resp.output_hard_limit = options.output_hard_limit;
  resp.output_soft_limit = options.output_soft_limit;
  resp.output_soft_seconds = options.output_soft_seconds;
  auto resp_server = resp::RespServer::Start(resp, (*instance)->keyspace(), &database.catalog());
  if (!resp_server.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", resp_server.status().message()}});
    (*flight_server)->Stop();
    return 1;
  }
  auto server = http_server::HttpServer::Start(http, database, metrics);
  if (!server.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", server.status().message()}});
    (*resp_server)->Stop();
    (*flight_server)->Stop();
    return 1;
  }
  QUIVER_LOG(kInfo, "listening",
             {{"http", options.bind + ":" + std::to_string((*server)->port())},
              {"flight", options.bind + ":" + std::to_string((*flight_server)->port())},
              {"resp", options.bind + ":" + std::to_string((*resp_server)->port())},
              {"data_dir", options.data_dir},
              {"shm_socket", instance_options_shm},
              {"threads", std::to_string(options.threads)},
              {"version", QUIVER_VERSION}});
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  QUIVER_LOG(kInfo, "stopping", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Stop();
  (*resp_server)->Stop();
  (*flight_server)->Stop();
  (*instance)->Close();
  QUIVER_LOG(kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace quiver

int main(int argc, char** argv) {
  quiver::ServerConfig config;
  quiver::ConfigRequest request;
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) environment.emplace_back(*entry);
  const quiver::Status parsed = quiver::ParseServerConfig(
      std::vector<std::string>(argv + 1, argv + argc), environment, &config, &request);
  if (!parsed.ok()) {
    std::fprintf(stderr, "quiverd: %s\n", parsed.message().c_str());
    return 2;
  }
  switch (request) {
    case quiver::ConfigRequest::kHelp:
      std::fputs(quiver::ServerConfigHelp().c_str(), stdout);
      return 0;
    case quiver::ConfigRequest::kVersion:
      std::printf("quiverd %s (Arrow %s)\n", QUIVER_VERSION, ARROW_VERSION_STRING);
      return 0;
    case quiver::ConfigRequest::kRun:
      break;
  }
  const int status = quiver::Run(config);
  // After every object store is gone, before static destruction (the AWS SDK needs it).
  quiver::objstore::FinalizeObjectStores();
  return status;
}
