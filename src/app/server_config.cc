#include "app/server_config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iterator>
#include <string_view>
#include <utility>

#include "common/byte_size.h"
#include "common/log.h"
#include "kv/keyspace.h"
#include "server/resp/commands.h"
#include "storage/wal.h"

namespace quiver {
namespace {

// One option, in its three spellings: a flag (--http-port), a key of the YAML file (http.port)
// and an environment variable (QUIVER_HTTP_PORT, from the key).
struct Option {
  const char* flag;
  const char* key;
  const char* value_name;
  const char* help;
  // Sets the option from text; returns an error (naming `where`) or "".
  std::function<std::string(ServerConfig&, const std::string& value, const std::string& where)> set;
  std::function<std::string(const ServerConfig&)> show;  // the current value, for --help defaults
  bool is_switch = false;  // a flag without a value means true (--flag=false also works)
};

std::string EnvName(const char* key) {
  std::string name = "QUIVER_";
  for (const char* c = key; *c; ++c) {
    name += *c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(*c)));
  }
  return name;
}

std::string ParseInteger(const std::string& where, const std::string& text, int64_t low,
                         int64_t high, int64_t* out) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    return where + ": '" + text + "' is not an integer";
  }
  if (value < low || value > high) {
    return where + ": " + text + " is outside " + std::to_string(low) + ".." + std::to_string(high);
  }
  *out = value;
  return "";
}

// An integer option stored in `member`, within [low, high].
Option IntegerOption(const char* flag, const char* key, const char* value_name, const char* help,
                     int64_t ServerConfig::*member, int64_t low, int64_t high) {
  return Option{
      flag,
      key,
      value_name,
      help,
      [member, low, high](ServerConfig& o, const std::string& v, const std::string& where) {
        return ParseInteger(where, v, low, high, &(o.*member));
      },
      [member](const ServerConfig& o) { return std::to_string(o.*member); }};
}

// Seconds with decimals in `member`: 0 (when `zero_allowed`) or from `low` to 86400.
Option SecondsOption(const char* flag, const char* key, const char* help,
                     double ServerConfig::*member, double low, bool zero_allowed) {
  return Option{
      flag,
      key,
      "SECONDS",
      help,
      [member, low, zero_allowed](ServerConfig& o, const std::string& v, const std::string& where) {
        char* end = nullptr;
        const double seconds = std::strtod(v.c_str(), &end);
        if (v.empty() || *end != '\0' || !(seconds >= 0) || seconds > 86400 ||
            (seconds < low && !(zero_allowed && seconds == 0))) {
          char range[96];
          std::snprintf(range, sizeof(range), "%sfrom %g to 86400", zero_allowed ? "0, or " : "",
                        low);
          return where + ": '" + v + "' is not a number of seconds " + range;
        }
        o.*member = seconds;
        return std::string();
      },
      [member](const ServerConfig& o) {
        char text[32];
        std::snprintf(text, sizeof(text), "%g", o.*member);
        return std::string(text);
      }};
}

// An object-store URI in `member` ("" shows as none).
Option UriOption(const char* flag, const char* key, const char* help,
                 std::string ServerConfig::*member) {
  return Option{flag,
                key,
                "URI",
                help,
                [member](ServerConfig& o, const std::string& v, const std::string& where) {
                  if (v.empty()) return where + ": the URI is empty";
                  o.*member = v;
                  return std::string();
                },
                [member](const ServerConfig& o) {
                  return (o.*member).empty() ? std::string("none") : o.*member;
                }};
}

// A size in bytes stored in `member`, within [low, high], read as Redis reads sizes
// (common/byte_size.h: 64m is 64,000,000 bytes, 64mb is 64 MiB).
Option SizeOption(const char* flag, const char* key, const char* help,
                  int64_t ServerConfig::*member, int64_t low, int64_t high) {
  return Option{
      flag,
      key,
      "BYTES",
      help,
      [member, low, high](ServerConfig& o, const std::string& v, const std::string& where) {
        uint64_t bytes = 0;
        if (!ParseByteSize(v, &bytes)) {
          return where + ": '" + v +
                 "' is not a size (bytes, or a number with k, m, g for 10^3, 10^6, "
                 "10^9 or kb, mb, gb for 2^10, 2^20, 2^30)";
        }
        if (bytes < static_cast<uint64_t>(low) || bytes > static_cast<uint64_t>(high)) {
          return where + ": " + v + " is outside " + std::to_string(low) + ".." +
                 std::to_string(high) + " bytes";
        }
        o.*member = static_cast<int64_t>(bytes);
        return std::string();
      },
      [member](const ServerConfig& o) { return std::to_string(o.*member); }};
}

// A true/false option stored in `member`; the flag alone means true.
Option SwitchOption(const char* flag, const char* key, const char* help,
                    bool ServerConfig::*member) {
  return Option{
      flag,
      key,
      "",
      help,
      [member](ServerConfig& o, const std::string& v, const std::string& where) {
        if (v == "true" || v == "1" || v == "yes") {
          o.*member = true;
        } else if (v == "false" || v == "0" || v == "no") {
          o.*member = false;
        } else {
          return where + ": '" + v + "' is not true or false";
        }
        return std::string();
      },
      [member](const ServerConfig& o) { return std::string(o.*member ? "true" : "false"); },
      true};
}

const std::vector<Option>& AllOptions() {
  static const std::vector<Option> options = {
      {"--bind", "server.bind", "ADDR", "IP address to listen on",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (v.empty()) return where + ": the address is empty";
         o.bind = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.bind; }},
      IntegerOption("--http-port", "http.port", "N", "HTTP port (0: any free port)",
                    &ServerConfig::http_port, 0, 65535),
      IntegerOption("--flight-port", "flight.port", "N", "Arrow Flight port (0: any free port)",
                    &ServerConfig::flight_port, 0, 65535),
      IntegerOption("--resp-port", "resp.port", "N",
                    "Redis protocol (RESP) port (0: any free port)", &ServerConfig::resp_port, 0,
                    65535),
      IntegerOption("--resp-threads", "resp.threads", "N", "RESP threads, one io_context each",
                    &ServerConfig::resp_threads, 1, 256),
      {"--requirepass", "resp.requirepass", "PASSWORD",
       "RESP clients must AUTH with this password first (empty: no password)",
       [](ServerConfig& o, const std::string& v, const std::string&) {
         o.requirepass = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.requirepass.empty() ? std::string("none") : "set"; }},
      {"--resp-table-separator", "resp.table_separator", "TEXT",
       "HGETALL <table><TEXT><key> over RESP reads a row of a feature table",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (v.empty()) return where + ": the separator is empty";
         o.resp_table_separator = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.resp_table_separator; }},
      SizeOption("--maxmemory", "maxmemory",
                 "memory limit of the feature tables and the key-value keyspace together (0: "
                 "none); CONFIG SET maxmemory changes it at run time",
                 &ServerConfig::maxmemory, 0, int64_t{1} << 50),
      {"--maxmemory-clients", "maxmemory_clients", "BYTES",
       "memory of all client buffers together (RESP requests and replies, HTTP bodies being "
       "read); past it the RESP clients holding the most are closed and HTTP bodies refused "
       "(auto: 128mb while --maxmemory is set, else none; 0: none)",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (v == "auto") {
           o.maxmemory_clients = -1;
           return std::string();
         }
         uint64_t bytes = 0;
         if (!ParseByteSize(v, &bytes) || bytes > (uint64_t{1} << 50)) {
           return where + ": '" + v + "' is not a size or auto";
         }
         o.maxmemory_clients = static_cast<int64_t>(bytes);
         return std::string();
       },
       [](const ServerConfig& o) {
         return o.maxmemory_clients < 0 ? std::string("auto") : std::to_string(o.maxmemory_clients);
       }},
      SizeOption("--client-query-buffer-limit", "resp.client_query_buffer_limit",
                 "a RESP client whose unparsed request grows past this is closed",
                 &ServerConfig::query_buffer_limit, 1 << 20, int64_t{1} << 40),
      {"--client-output-buffer-limit", "resp.client_output_buffer_limit", "'HARD SOFT SECONDS'",
       "a RESP client whose unsent replies pass HARD bytes, or stay over SOFT bytes for SECONDS, "
       "is closed (0: no limit)",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (!resp::ParseOutputBufferLimit(v, &o.output_hard_limit, &o.output_soft_limit,
                                           &o.output_soft_seconds)) {
           return where + ": '" + v + "' is not 'HARD SOFT SECONDS' (e.g. '1gb 256mb 60')";
         }
         return std::string();
       },
       [](const ServerConfig& o) {
         return std::to_string(o.output_hard_limit) + " " + std::to_string(o.output_soft_limit) +
                " " + std::to_string(o.output_soft_seconds);
       }},
      {"--maxmemory-policy", "maxmemory_policy", "POLICY",
       "what happens at the memory limit: noeviction (writes fail), allkeys-lru, allkeys-lfu, "
       "allkeys-random, volatile-lru, volatile-lfu, volatile-random or volatile-ttl",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (!kv::ParsePolicy(v)) {
           return where + ": '" + v +
                  "' is not one of noeviction, allkeys-lru, allkeys-lfu, allkeys-random, "
                  "volatile-lru, volatile-lfu, volatile-random, volatile-ttl";
         }
         o.maxmemory_policy = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.maxmemory_policy; }},
      {"--data-dir", "data_dir", "DIR",
       "data directory (tables, write-ahead log, snapshots), created when missing",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (v.empty()) return where + ": the path is empty";
         o.data_dir = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.data_dir; }},
      {"--tier-dir", "tier.dir", "DIR",
       "a disk tier for every table there (created when missing; emptied at start): rows the "
       "memory limit takes move to disk instead of being dropped (docs/tiering.md)",
       [](ServerConfig& o, const std::string& v, const std::string&) {
         o.tier_dir = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.tier_dir.empty() ? std::string("none") : o.tier_dir; }},
      {"--tier-io", "tier.io", "MODE",
       "how the tier reads: auto (io_uring where the kernel allows it, else pread), uring or "
       "pread",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (v != "auto" && v != "uring" && v != "pread") {
           return where + ": '" + v + "' is not one of auto, uring, pread";
         }
         o.tier_io = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.tier_io; }},
      IntegerOption("--threads", "server.threads", "N", "HTTP threads, one io_context each",
                    &ServerConfig::threads, 1, 256),
      {"--log-level", "log.level", "LEVEL", "debug, info, warn or error",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         LogLevel level;
         if (!ParseLogLevel(v, &level)) {
           return where + ": '" + v + "' is not one of debug, info, warn, error";
         }
         o.log_level = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.log_level; }},
      SizeOption("--max-request-bytes", "http.max_request_bytes", "largest request body accepted",
                 &ServerConfig::max_request_bytes, 1, int64_t{1} << 40),
      SizeOption("--max-decode-bytes", "max_decode_bytes",
                 "memory decoding one write's Arrow IPC or Parquet body may take, and all bodies "
                 "being decoded at once together (--maxmemory when that is less)",
                 &ServerConfig::max_decode_bytes, 1 << 20, int64_t{1} << 40),
      IntegerOption("--header-timeout", "http.header_timeout", "SECONDS",
                    "close a connection whose request headers (or next request) take longer",
                    &ServerConfig::header_timeout, 1, 86400),
      IntegerOption("--body-timeout", "http.body_timeout", "SECONDS",
                    "close a connection whose request body takes longer",
                    &ServerConfig::body_timeout, 1, 86400),
      IntegerOption("--max-connections", "http.max_connections", "N",
                    "HTTP connections at most; at the limit a new one closes the oldest that "
                    "sent no request yet (else one idle between requests), or is answered 503",
                    &ServerConfig::max_connections, 1, 1000000),
      IntegerOption("--maxclients", "resp.maxclients", "N",
                    "RESP connections at most; at the limit a new one closes the oldest that "
                    "sent nothing yet, or is refused (ERR max number of clients reached)",
                    &ServerConfig::resp_max_clients, 1, 1000000),
      IntegerOption("--busy-poll-us", "server.busy_poll_us", "MICROSECONDS",
                    "after each request an io thread polls this long before it sleeps, which "
                    "saves the wake-up on the next request at the price of a busy CPU (0: off)",
                    &ServerConfig::busy_poll_us, 0, 1000000),
      SwitchOption("--access-log", "log.access", "log one line per request (true or false)",
                   &ServerConfig::access_log),
      {"--fsync", "fsync", "POLICY",
       "when a write is synced to disk: always (before it is acknowledged), everysec (once a "
       "second) or no (left to the OS)",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         storage::FsyncPolicy policy;
         if (!storage::ParseFsyncPolicy(v, &policy)) {
           return where + ": '" + v + "' is not one of always, everysec, no";
         }
         o.fsync = v;
         return std::string();
       },
       [](const ServerConfig& o) { return o.fsync; }},
      SizeOption("--snapshot-wal-bytes", "snapshot.wal_bytes",
                 "snapshot the tables once the log grew this much (0: never)",
                 &ServerConfig::snapshot_wal_bytes, 0, int64_t{1} << 50),
      IntegerOption("--snapshot-interval", "snapshot.interval", "SECONDS",
                    "snapshot changed tables this often (0: never)",
                    &ServerConfig::snapshot_interval, 0, int64_t{10} * 365 * 86400),
      SizeOption("--wal-segment-bytes", "wal.segment_bytes",
                 "start a new log segment once one is this long", &ServerConfig::wal_segment_bytes,
                 4096, int64_t{1} << 40),
      SwitchOption("--wal-truncate-corrupt", "wal.truncate_corrupt",
                   "start even when the write-ahead log is corrupt, dropping the corrupt record "
                   "and everything after it (an operator's decision, for one start)",
                   &ServerConfig::wal_truncate_corrupt),
      SwitchOption("--accept-data-loss", "recovery.accept_data_loss",
                   "start even when recovery finds data lost (a missing catalog, missing log "
                   "segments) or a corrupt log, with what is there (implies "
                   "--wal-truncate-corrupt; an operator's decision, for one start)",
                   &ServerConfig::accept_data_loss),
      SwitchOption("--kv-memory-only", "kv.memory_only",
                   "keep the key-value keyspace (RESP) in memory only: not logged, not "
                   "snapshotted, empty at each start (a pure cache; tables stay durable)",
                   &ServerConfig::kv_memory_only),
      {"--shm-socket", "shm.socket", "PATH",
       "Unix socket through which local processes map the tables read-only (docs/shm.md); "
       "'off': tables are not published",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         if (v.empty()) return where + ": the path is empty (use 'off' to publish nothing)";
         o.shm_socket = v;
         return std::string();
       },
       [](const ServerConfig& o) {
         return o.shm_socket.empty() ? std::string("<data-dir>/quiver.sock") : o.shm_socket;
       }},
      {"--shm-socket-mode", "shm.socket_mode", "MODE",
       "permissions of the shared-memory socket, octal: who may read the tables",
       [](ServerConfig& o, const std::string& v, const std::string& where) {
         char* end = nullptr;
         const long mode = std::strtol(v.c_str(), &end, 8);
         if (v.empty() || *end != '\0' || mode < 0 || mode > 0777) {
           return where + ": '" + v + "' is not an octal mode such as 0600 or 0660";
         }
         o.shm_socket_mode = mode;
         return std::string();
       },
       [](const ServerConfig& o) {
         char text[8];
         std::snprintf(text, sizeof(text), "0%03o", static_cast<unsigned>(o.shm_socket_mode));
         return std::string(text);
       }},
      IntegerOption("--shm-lease-seconds", "shm.lease_seconds", "SECONDS",
                    "a shared-memory reader that keeps memory the tables freed this long "
                    "without a call is disconnected (its next call maps afresh)",
                    &ServerConfig::shm_lease_seconds, 1, 86400),
      UriOption("--object-store", "object_store.uri",
                "back the data directory up to s3://bucket/prefix (Arrow's S3 query options: "
                "?endpoint_override=HOST:PORT&scheme=http&region=...) or file:///path, and "
                "restore it from there when it is empty (docs/object-storage.md)",
                &ServerConfig::object_store),
      SecondsOption("--upload-interval", "object_store.upload_interval",
                    "upload the changes to the object store this often (decimals allowed): the "
                    "most a node's death loses; 0: only when a log segment fills and after "
                    "snapshots",
                    &ServerConfig::upload_interval, 0.05, /*zero_allowed=*/true),
      UriOption("--follow", "follow.uri",
                "serve, read-only, the backups another node uploads to this object-store prefix "
                "(same URI forms as --object-store), applying its new log segments as they "
                "appear; the data directory is rebuilt from the store at each start",
                &ServerConfig::follow),
      SecondsOption("--follow-interval", "follow.interval",
                    "how often a follower looks for new backups (decimals allowed)",
                    &ServerConfig::follow_interval, 0.05, /*zero_allowed=*/false),
      UriOption("--history", "history.uri",
                "also write every table change (upserts, deletes, drops, with the time each was "
                "made and its event time) to a Parquet dataset under this URI (same forms as "
                "--object-store), partitioned by table and hour, for point-in-time training "
                "reads (quiver.offline)",
                &ServerConfig::history),
      SecondsOption("--history-interval", "history.interval",
                    "write the changes to the history this often (decimals allowed); a filled "
                    "log segment is written at once",
                    &ServerConfig::history_interval, 0.05, /*zero_allowed=*/false),
      IntegerOption("--object-store-keep-manifests", "object_store.keep_manifests", "N",
                    "manifests kept in the object store (older ones, and objects only they "
                    "name, are deleted): a follower may miss this many uploads and catch up",
                    &ServerConfig::object_store_keep_manifests, 1, 100000),
      IntegerOption("--object-store-lease-seconds", "object_store.lease_seconds", "SECONDS",
                    "a leader of the object-store prefix not heard of for this long may be "
                    "replaced by a node restoring from it",
                    &ServerConfig::object_store_lease_seconds, 1, 86400),
  };
  return options;
}

const Option* FindOption(std::string_view name, bool by_key) {
  for (const Option& option : AllOptions()) {
    if ((by_key ? option.key : option.flag) == name) return &option;
  }
  return nullptr;
}

// One line of --help: the option, padded, and its text.
std::string Line(const std::string& left, const std::string& text) {
  std::string line = "  " + left;
  line.resize(std::max<size_t>(line.size() + 1, 29), ' ');
  return line + text + "\n";
}

}  // namespace

std::string ShmSocketPath(const ServerConfig& config) {
  if (config.shm_socket == "off") return "";
  if (!config.shm_socket.empty()) return config.shm_socket;
  return (std::filesystem::path(config.data_dir) / "quiver.sock").string();
}

std::string ServerConfigHelp() {
  const ServerConfig defaults;
  std::string out =
      "usage: quiverd [--config FILE] [OPTION]...\n\n"
      "Serves Quiver's feature tables over HTTP and Arrow Flight, and its key-value keyspace\n"
      "(and the tables, read-only) over the Redis protocol.\n"
      "Sizes (BYTES) are read as Redis reads them: 64m is 64,000,000 bytes, 64mb is 64 MiB.\n"
      "Settings come from the YAML file, then QUIVER_* environment variables, then flags, each\n"
      "overriding the one before (docs/operations.md).\n\n";
  out += Line("--config FILE", "YAML configuration file");
  for (const Option& option : AllOptions()) {
    const std::string left =
        std::string(option.flag) + (option.is_switch ? "" : " " + std::string(option.value_name));
    out += Line(left, std::string(option.help) + " (default: " + option.show(defaults) + "; " +
                          option.key + ", " + EnvName(option.key) + ")");
  }
  out += Line("--help", "print this help and exit");
  out += Line("--version", "print the version and exit");
  return out;
}

namespace {

// "" unless two front ends were given the same port.
std::string PortClash(const ServerConfig& options) {
  const std::pair<const char*, int64_t> ports[] = {{"http.port", options.http_port},
                                                   {"flight.port", options.flight_port},
                                                   {"resp.port", options.resp_port}};
  for (size_t i = 0; i < std::size(ports); ++i) {
    for (size_t j = i + 1; j < std::size(ports); ++j) {
      if (ports[i].second != 0 && ports[i].second == ports[j].second) {
        return std::string(ports[i].first) + " and " + ports[j].first + " are both " +
               std::to_string(ports[i].second) + "; each front end needs a port of its own";
      }
    }
  }
  return "";
}

// Applies the YAML mapping `node` (at `prefix`) to `options`.
std::string ApplyYaml(const YAML::Node& node, const std::string& prefix, const std::string& file,
                      ServerConfig* options) {
  if (!node.IsMap()) {
    return "config " + file + ": " + (prefix.empty() ? "the document" : prefix) +
           " must be a mapping of keys";
  }
  for (const auto& entry : node) {
    const std::string name = entry.first.as<std::string>();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& value = entry.second;
    if (value.IsMap()) {
      bool known_section = false;
      for (const Option& option : AllOptions()) {
        known_section |= std::string_view(option.key).rfind(key + ".", 0) == 0;
      }
      if (!known_section) return "config " + file + ": unknown key '" + key + "'";
      if (std::string error = ApplyYaml(value, key, file, options); !error.empty()) return error;
      continue;
    }
    const Option* option = FindOption(key, /*by_key=*/true);
    if (option == nullptr) return "config " + file + ": unknown key '" + key + "'";
    if (!value.IsScalar()) {
      return "config " + file + ": " + key + ": expected a single value";
    }
    if (std::string error = option->set(*options, value.Scalar(), "config " + file + ": " + key);
        !error.empty()) {
      return error;
    }
  }
  if (std::string clash = PortClash(*options); !clash.empty()) return clash;
  return "";
}

std::string ApplyConfigFile(const std::string& file, ServerConfig* options) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::BadFile&) {
    return "--config: cannot read '" + file + "'";
  } catch (const YAML::Exception& e) {
    return "config " + file + ": not valid YAML (" + e.what() + ")";
  }
  if (root.IsNull()) return "";  // an empty file
  try {
    return ApplyYaml(root, "", file, options);
  } catch (const YAML::Exception& e) {
    return "config " + file + ": " + e.what();
  }
}

// Variables a client may set beside a server; quiverd leaves them alone.
constexpr std::string_view kClientVariables[] = {"QUIVER_URL"};

std::string ApplyEnvironment(const std::vector<std::string>& environment, ServerConfig* options) {
  for (const std::string& entry : environment) {
    const std::string_view text(entry);
    if (text.rfind("QUIVER_", 0) != 0) continue;
    const size_t equals = text.find('=');
    const std::string name(text.substr(0, equals));
    const std::string value(equals == std::string_view::npos ? "" : text.substr(equals + 1));
    if (std::find(std::begin(kClientVariables), std::end(kClientVariables), name) !=
        std::end(kClientVariables)) {
      continue;
    }
    const Option* match = nullptr;
    for (const Option& option : AllOptions()) {
      if (EnvName(option.key) == name) match = &option;
    }
    if (match == nullptr) return "unknown environment variable " + name + " (see --help)";
    if (std::string error = match->set(*options, value, name); !error.empty()) return error;
  }
  return "";
}

// Empty on success, else what is wrong. Layers: defaults, the --config file, QUIVER_* variables,
// flags.
std::string ParseLayers(const std::vector<std::string>& args,
                        const std::vector<std::string>& environment, ServerConfig* options,
                        ConfigRequest* request) {
  *request = ConfigRequest::kRun;
  std::vector<std::pair<const Option*, std::string>> flags;
  std::string config_file;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--help" || arg == "-h") {
      *request = ConfigRequest::kHelp;
      return "";
    }
    if (arg == "--version") {
      *request = ConfigRequest::kVersion;
      return "";
    }
    std::string value;
    bool has_value = false;
    if (const size_t equals = arg.find('='); equals != std::string::npos) {
      value = arg.substr(equals + 1);
      arg = arg.substr(0, equals);
      has_value = true;
    }
    const Option* option = FindOption(arg, /*by_key=*/false);
    if (option == nullptr && arg != "--config") return "unknown option '" + arg + "' (see --help)";
    if (!has_value && option != nullptr && option->is_switch) {
      value = "true";
    } else if (!has_value) {
      if (i + 1 >= args.size()) return arg + " needs a value";
      value = args[++i];
    }
    if (option == nullptr) {
      config_file = value;
    } else {
      flags.emplace_back(option, value);
    }
  }
  if (!config_file.empty()) {
    if (std::string error = ApplyConfigFile(config_file, options); !error.empty()) return error;
  }
  if (std::string error = ApplyEnvironment(environment, options); !error.empty()) return error;
  for (const auto& [option, value] : flags) {
    if (std::string error = option->set(*options, value, option->flag); !error.empty()) {
      return error;
    }
  }
  if (std::string clash = PortClash(*options); !clash.empty()) return clash;
  if (!options->object_store.empty() && !options->follow.empty()) {
    return "--object-store and --follow: a node either backs its data up to an object store or "
           "follows one, not both";
  }
  if (!options->history.empty() && !options->follow.empty()) {
    return "--history and --follow: a follower keeps no change history (its changes are its "
           "leader's: give --history to the leader)";
  }
  return "";
}

}  // namespace

Status ParseServerConfig(const std::vector<std::string>& args,
                         const std::vector<std::string>& environment, ServerConfig* config,
                         ConfigRequest* request) {
  std::string error = ParseLayers(args, environment, config, request);
  if (!error.empty()) return Status::InvalidArgument(std::move(error));
  return Status::OK();
}

}  // namespace quiver
