// ServerConfig: quiverd's settings, and where they come from: defaults, then the YAML file
// (--config), then QUIVER_* environment variables, then flags, each overriding the one before
// (docs/operations.md). Every option has its three spellings (a flag --http-port, a key of the
// YAML file http.port, a variable QUIVER_HTTP_PORT) from one table.
//
// Thread safety: functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"

namespace quiver {

struct ServerConfig {
  std::string bind = "127.0.0.1";
  int64_t http_port = 8080;
  int64_t flight_port = 8081;
  int64_t resp_port = 6380;
  int64_t resp_threads = 1;
  std::string requirepass;
  std::string resp_table_separator = ":";
  int64_t maxmemory = 0;
  std::string maxmemory_policy = "noeviction";
  std::string data_dir = "./quiver-data";
  std::string tier_dir;  // "": no disk tier
  std::string tier_io = "auto";
  int64_t threads = 2;
  std::string log_level = "info";
  int64_t max_request_bytes = 64 << 20;
  int64_t max_decode_bytes = int64_t{256} << 20;
  int64_t header_timeout = 30;
  int64_t body_timeout = 60;
  int64_t max_connections = 1024;
  int64_t resp_max_clients = 10000;
  int64_t maxmemory_clients = -1;
  int64_t query_buffer_limit = int64_t{1} << 30;
  uint64_t output_hard_limit = uint64_t{1} << 30;
  uint64_t output_soft_limit = uint64_t{256} << 20;
  int64_t output_soft_seconds = 60;
  bool access_log = false;
  int64_t busy_poll_us = 0;
  std::string fsync = "everysec";
  int64_t snapshot_wal_bytes = int64_t{256} << 20;
  int64_t snapshot_interval = 3600;
  int64_t wal_segment_bytes = int64_t{64} << 20;
  bool wal_truncate_corrupt = false;
  bool accept_data_loss = false;
  bool kv_memory_only = false;
  std::string shm_socket;  // "": <data_dir>/quiver.sock; "off": not published
  int64_t shm_socket_mode = 0600;
  int64_t shm_lease_seconds = 60;
  std::string object_store;  // "": no backup
  double upload_interval = 10;
  int64_t object_store_lease_seconds = 30;
  int64_t object_store_keep_manifests = 3;
  std::string follow;  // "": not a follower
  double follow_interval = 1;
  std::string history;  // "": no change history
  double history_interval = 60;
};

// The shared-memory socket's path for `config` ("" when publishing is off).
std::string ShmSocketPath(const ServerConfig& config);

enum class ConfigRequest { kRun, kHelp, kVersion };

// Reads `args` (the flags, without the program's name) over `environment` ("NAME=value"
// entries, as environ holds them) into `config`, which holds the defaults. InvalidArgument naming
// the option and what is wrong (an unknown key, a wrong type, an impossible value, two front ends
// on one port); nothing else is read after --help or --version (`request`).
Status ParseServerConfig(const std::vector<std::string>& args,
                         const std::vector<std::string>& environment, ServerConfig* config,
                         ConfigRequest* request);

// The --help text: every option with its help, default and other spellings.
std::string ServerConfigHelp();

}  // namespace quiver
