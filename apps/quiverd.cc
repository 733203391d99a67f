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
#include <yaml-cpp/yaml.h>

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

#include "common/byte_size.h"
#include "common/decode_memory.h"
#include "common/log.h"
#include "kv/keyspace.h"
#include "server/flight/flight_server.h"
#include "server/http/http_server.h"
#include "server/resp/resp_server.h"
#include "storage/database.h"

namespace quiver {
namespace {

struct Options {
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
};

// One option, in its three spellings: a flag (--http-port), a key of the YAML file (http.port)
// and an environment variable (QUIVER_HTTP_PORT, from the key).
struct Option {
  const char* flag;
  const char* key;
  const char* value_name;
  const char* help;
  // Sets the option from text; returns an error (naming `where`) or "".
  std::function<std::string(Options&, const std::string& value, const std::string& where)> set;
  std::function<std::string(const Options&)> show;  // the current value, for --help defaults
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
                     int64_t Options::*member, int64_t low, int64_t high) {
  return Option{flag,
                key,
                value_name,
                help,
                [member, low, high](Options& o, const std::string& v, const std::string& where) {
                  return ParseInteger(where, v, low, high, &(o.*member));
                },
                [member](const Options& o) { return std::to_string(o.*member); }};
}

// A size in bytes stored in `member`, within [low, high], read as Redis reads sizes
// (common/byte_size.h: 64m is 64,000,000 bytes, 64mb is 64 MiB).
Option SizeOption(const char* flag, const char* key, const char* help, int64_t Options::*member,
                  int64_t low, int64_t high) {
  return Option{flag,
                key,
                "BYTES",
                help,
                [member, low, high](Options& o, const std::string& v, const std::string& where) {
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
                [member](const Options& o) { return std::to_string(o.*member); }};
}

// A true/false option stored in `member`; the flag alone means true.
Option SwitchOption(const char* flag, const char* key, const char* help, bool Options::*member) {
  return Option{flag,
                key,
                "",
                help,
                [member](Options& o, const std::string& v, const std::string& where) {
                  if (v == "true" || v == "1" || v == "yes") {
                    o.*member = true;
                  } else if (v == "false" || v == "0" || v == "no") {
                    o.*member = false;
                  } else {
                    return where + ": '" + v + "' is not true or false";
                  }
                  return std::string();
                },
                [member](const Options& o) { return std::string(o.*member ? "true" : "false"); },
                true};
}

const std::vector<Option>& AllOptions() {
  static const std::vector<Option> options = {
      {"--bind", "server.bind", "ADDR", "IP address to listen on",
       [](Options& o, const std::string& v, const std::string& where) {
         if (v.empty()) return where + ": the address is empty";
         o.bind = v;
         return std::string();
       },
       [](const Options& o) { return o.bind; }},
      IntegerOption("--http-port", "http.port", "N", "HTTP port (0: any free port)",
                    &Options::http_port, 0, 65535),
      IntegerOption("--flight-port", "flight.port", "N", "Arrow Flight port (0: any free port)",
                    &Options::flight_port, 0, 65535),
      IntegerOption("--resp-port", "resp.port", "N",
                    "Redis protocol (RESP) port (0: any free port)", &Options::resp_port, 0, 65535),
      IntegerOption("--resp-threads", "resp.threads", "N", "RESP threads, one io_context each",
                    &Options::resp_threads, 1, 256),
      {"--requirepass", "resp.requirepass", "PASSWORD",
       "RESP clients must AUTH with this password first (empty: no password)",
       [](Options& o, const std::string& v, const std::string&) {
         o.requirepass = v;
         return std::string();
       },
       [](const Options& o) { return o.requirepass.empty() ? std::string("none") : "set"; }},
      {"--resp-table-separator", "resp.table_separator", "TEXT",
       "HGETALL <table><TEXT><key> over RESP reads a row of a feature table",
       [](Options& o, const std::string& v, const std::string& where) {
         if (v.empty()) return where + ": the separator is empty";
         o.resp_table_separator = v;
         return std::string();
       },
       [](const Options& o) { return o.resp_table_separator; }},
      SizeOption("--maxmemory", "maxmemory",
                 "memory limit of the feature tables and the key-value keyspace together (0: "
                 "none); CONFIG SET maxmemory changes it at run time",
                 &Options::maxmemory, 0, int64_t{1} << 50),
      {"--maxmemory-clients", "maxmemory_clients", "BYTES",
       "memory of all client buffers together (RESP requests and replies, HTTP bodies being "
       "read); past it the RESP clients holding the most are closed and HTTP bodies refused "
       "(auto: 128mb while --maxmemory is set, else none; 0: none)",
       [](Options& o, const std::string& v, const std::string& where) {
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
       [](const Options& o) {
         return o.maxmemory_clients < 0 ? std::string("auto") : std::to_string(o.maxmemory_clients);
       }},
      SizeOption("--client-query-buffer-limit", "resp.client_query_buffer_limit",
                 "a RESP client whose unparsed request grows past this is closed",
                 &Options::query_buffer_limit, 1 << 20, int64_t{1} << 40),
      {"--client-output-buffer-limit", "resp.client_output_buffer_limit", "'HARD SOFT SECONDS'",
       "a RESP client whose unsent replies pass HARD bytes, or stay over SOFT bytes for SECONDS, "
       "is closed (0: no limit)",
       [](Options& o, const std::string& v, const std::string& where) {
         if (!resp::ParseOutputBufferLimit(v, &o.output_hard_limit, &o.output_soft_limit,
                                           &o.output_soft_seconds)) {
           return where + ": '" + v + "' is not 'HARD SOFT SECONDS' (e.g. '1gb 256mb 60')";
         }
         return std::string();
       },
       [](const Options& o) {
         return std::to_string(o.output_hard_limit) + " " + std::to_string(o.output_soft_limit) +
                " " + std::to_string(o.output_soft_seconds);
       }},
      {"--maxmemory-policy", "maxmemory_policy", "POLICY",
       "what happens at the memory limit: noeviction (writes fail), allkeys-lru, allkeys-lfu, "
       "allkeys-random, volatile-lru, volatile-lfu, volatile-random or volatile-ttl",
       [](Options& o, const std::string& v, const std::string& where) {
         if (!kv::ParsePolicy(v)) {
           return where + ": '" + v +
                  "' is not one of noeviction, allkeys-lru, allkeys-lfu, allkeys-random, "
                  "volatile-lru, volatile-lfu, volatile-random, volatile-ttl";
         }
         o.maxmemory_policy = v;
         return std::string();
       },
       [](const Options& o) { return o.maxmemory_policy; }},
      {"--data-dir", "data_dir", "DIR",
       "data directory (tables, write-ahead log, snapshots), created when missing",
       [](Options& o, const std::string& v, const std::string& where) {
         if (v.empty()) return where + ": the path is empty";
         o.data_dir = v;
         return std::string();
       },
       [](const Options& o) { return o.data_dir; }},
      IntegerOption("--threads", "server.threads", "N", "HTTP threads, one io_context each",
                    &Options::threads, 1, 256),
      {"--log-level", "log.level", "LEVEL", "debug, info, warn or error",
       [](Options& o, const std::string& v, const std::string& where) {
         LogLevel level;
         if (!ParseLogLevel(v, &level)) {
           return where + ": '" + v + "' is not one of debug, info, warn, error";
         }
         o.log_level = v;
         return std::string();
       },
       [](const Options& o) { return o.log_level; }},
      SizeOption("--max-request-bytes", "http.max_request_bytes", "largest request body accepted",
                 &Options::max_request_bytes, 1, int64_t{1} << 40),
      SizeOption("--max-decode-bytes", "max_decode_bytes",
                 "memory decoding one write's Arrow IPC or Parquet body may take, and all bodies "
                 "being decoded at once together (--maxmemory when that is less)",
                 &Options::max_decode_bytes, 1 << 20, int64_t{1} << 40),
      IntegerOption("--header-timeout", "http.header_timeout", "SECONDS",
                    "close a connection whose request headers (or next request) take longer",
                    &Options::header_timeout, 1, 86400),
      IntegerOption("--body-timeout", "http.body_timeout", "SECONDS",
                    "close a connection whose request body takes longer", &Options::body_timeout, 1,
                    86400),
      IntegerOption("--max-connections", "http.max_connections", "N",
                    "HTTP connections at most; at the limit a new one closes the oldest that "
                    "sent no request yet (else one idle between requests), or is answered 503",
                    &Options::max_connections, 1, 1000000),
      IntegerOption("--maxclients", "resp.maxclients", "N",
                    "RESP connections at most; at the limit a new one closes the oldest that "
                    "sent nothing yet, or is refused (ERR max number of clients reached)",
                    &Options::resp_max_clients, 1, 1000000),
      IntegerOption("--busy-poll-us", "server.busy_poll_us", "MICROSECONDS",
                    "after each request an io thread polls this long before it sleeps, which "
                    "saves the wake-up on the next request at the price of a busy CPU (0: off)",
                    &Options::busy_poll_us, 0, 1000000),
      SwitchOption("--access-log", "log.access", "log one line per request (true or false)",
                   &Options::access_log),
      {"--fsync", "fsync", "POLICY",
       "when a write is synced to disk: always (before it is acknowledged), everysec (once a "
       "second) or no (left to the OS)",
       [](Options& o, const std::string& v, const std::string& where) {
         storage::FsyncPolicy policy;
         if (!storage::ParseFsyncPolicy(v, &policy)) {
           return where + ": '" + v + "' is not one of always, everysec, no";
         }
         o.fsync = v;
         return std::string();
       },
       [](const Options& o) { return o.fsync; }},
      SizeOption("--snapshot-wal-bytes", "snapshot.wal_bytes",
                 "snapshot the tables once the log grew this much (0: never)",
                 &Options::snapshot_wal_bytes, 0, int64_t{1} << 50),
      IntegerOption("--snapshot-interval", "snapshot.interval", "SECONDS",
                    "snapshot changed tables this often (0: never)", &Options::snapshot_interval, 0,
                    int64_t{10} * 365 * 86400),
      SizeOption("--wal-segment-bytes", "wal.segment_bytes",
                 "start a new log segment once one is this long", &Options::wal_segment_bytes,
                 4096, int64_t{1} << 40),
      SwitchOption("--wal-truncate-corrupt", "wal.truncate_corrupt",
                   "start even when the write-ahead log is corrupt, dropping the corrupt record "
                   "and everything after it (an operator's decision, for one start)",
                   &Options::wal_truncate_corrupt),
      SwitchOption("--accept-data-loss", "recovery.accept_data_loss",
                   "start even when recovery finds data lost (a missing catalog, missing log "
                   "segments) or a corrupt log, with what is there (implies "
                   "--wal-truncate-corrupt; an operator's decision, for one start)",
                   &Options::accept_data_loss),
      SwitchOption("--kv-memory-only", "kv.memory_only",
                   "keep the key-value keyspace (RESP) in memory only: not logged, not "
                   "snapshotted, empty at each start (a pure cache; tables stay durable)",
                   &Options::kv_memory_only),
  };
  return options;
}

const Option* FindOption(std::string_view name, bool by_key) {
  for (const Option& option : AllOptions()) {
    if ((by_key ? option.key : option.flag) == name) return &option;
  }
  return nullptr;
}

void PrintHelp() {
  const Options defaults;
  std::printf(
      "usage: quiverd [--config FILE] [OPTION]...\n\n"
      "Serves Quiver's feature tables over HTTP and Arrow Flight, and its key-value keyspace\n"
      "(and the tables, read-only) over the Redis protocol.\n"
      "Sizes (BYTES) are read as Redis reads them: 64m is 64,000,000 bytes, 64mb is 64 MiB.\n"
      "Settings come from the YAML file, then QUIVER_* environment variables, then flags, each\n"
      "overriding the one before (docs/operations.md).\n\n");
  std::printf("  %-26s %s\n", "--config FILE", "YAML configuration file");
  for (const Option& option : AllOptions()) {
    const std::string left =
        std::string(option.flag) + (option.is_switch ? "" : " " + std::string(option.value_name));
    std::printf("  %-26s %s (default: %s; %s, %s)\n", left.c_str(), option.help,
                option.show(defaults).c_str(), option.key, EnvName(option.key).c_str());
  }
  std::printf("  %-26s %s\n  %-26s %s\n", "--help", "print this help and exit", "--version",
              "print the version and exit");
}

// "" unless two front ends were given the same port.
std::string PortClash(const Options& options) {
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
                      Options* options) {
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

std::string ApplyConfigFile(const std::string& file, Options* options) {
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

std::string ApplyEnvironment(Options* options) {
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
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

// Empty on success, else the message for exit status 2. Layers: defaults, the --config file,
// QUIVER_* variables, flags.
std::string ParseSettings(int argc, char** argv, Options* options, bool* exit_now) {
  *exit_now = false;
  std::vector<std::pair<const Option*, std::string>> flags;
  std::string config_file;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      PrintHelp();
      *exit_now = true;
      return "";
    }
    if (arg == "--version") {
      std::printf("quiverd %s (Arrow %s)\n", QUIVER_VERSION, ARROW_VERSION_STRING);
      *exit_now = true;
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
      if (i + 1 >= argc) return arg + " needs a value";
      value = argv[++i];
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
  if (std::string error = ApplyEnvironment(options); !error.empty()) return error;
  for (const auto& [option, value] : flags) {
    if (std::string error = option->set(*options, value, option->flag); !error.empty()) {
      return error;
    }
  }
  if (std::string clash = PortClash(*options); !clash.empty()) return clash;
  return "";
}

// Descriptors kept for what is not a client connection: data files, log segments, snapshots
// being written, Flight's connections, the listening sockets.
constexpr int64_t kReservedDescriptors = 256;

// Raises the soft limit on open descriptors to the hard one, then cuts the HTTP and RESP
// connection limits, in proportion, until both fit in it beside kReservedDescriptors: running out
// of descriptors fails accepts, and worse, the log's and snapshots' files.
void FitConnectionsToDescriptors(Options* options) {
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
              {"http_max_connections", std::to_string(options->max_connections) + "->" +
                                           std::to_string(http)},
              {"resp_maxclients",
               std::to_string(options->resp_max_clients) + "->" + std::to_string(resp)}});
  options->max_connections = http;
  options->resp_max_clients = resp;
}

int Run(Options options) {
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

  storage::DatabaseOptions storage;
  storage.data_dir = options.data_dir;
  storage::ParseFsyncPolicy(options.fsync, &storage.fsync);
  storage.snapshot_wal_bytes = static_cast<uint64_t>(options.snapshot_wal_bytes);
  storage.snapshot_interval_seconds = options.snapshot_interval;
  storage.wal_segment_bytes = static_cast<uint64_t>(options.wal_segment_bytes);
  storage.wal_truncate_corrupt = options.wal_truncate_corrupt;
  storage.accept_data_loss = options.accept_data_loss;
  storage.limits.max_decode_bytes = static_cast<uint64_t>(options.max_decode_bytes);
  DecodeMemory::SetProcessLimit(storage.limits.max_decode_bytes);
  storage.keyspace_durable = !options.kv_memory_only;
  QUIVER_LOG(kInfo, "recovering", {{"data_dir", options.data_dir}, {"fsync", options.fsync}});
  auto database = storage::Database::Open(storage);
  if (!database.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", database.status().message()}});
    return 1;
  }
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
  MetricsRegistry metrics;
  // Flight first: once HTTP answers /health, every front end is listening.
  flight_server::FlightServerOptions flight;
  flight.bind = options.bind;
  flight.port = static_cast<uint16_t>(options.flight_port);
  auto flight_server = flight_server::FlightServer::Start(flight, **database, metrics);
  if (!flight_server.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", flight_server.status().message()}});
    return 1;
  }
  kv::Keyspace& keyspace = (*database)->keyspace();
  keyspace.memory_limit().OnSetMaxMemory([](uint64_t bytes) {
    // Under a limit, blocks of 1 MiB and more (request bodies, Flight messages) get their own
    // mapping, returned to the system when freed. glibc's default raises this threshold to the
    // largest block freed so far (up to 32 MiB), after which such blocks are carved from the
    // per-thread arenas, whose memory stays there: some 20 MiB resident past the limit after a
    // burst of 2 MB writes (docs/engine.md#memory-limit). It costs the page faults of a fresh
    // mapping per such block (2 MB writes ~15% slower). The threshold stays fixed once set.
    if (bytes != 0) mallopt(M_MMAP_THRESHOLD, 1 << 20);
  });
  keyspace.SetMaxMemory(static_cast<uint64_t>(options.maxmemory));
  keyspace.SetPolicy(*kv::ParsePolicy(options.maxmemory_policy));
  keyspace.StartActiveExpiry();
  (*database)->catalog().StartActiveExpiry();
  resp::RespServerOptions resp;
  resp.bind = options.bind;
  resp.port = static_cast<uint16_t>(options.resp_port);
  resp.threads = static_cast<int>(options.resp_threads);
  resp.requirepass = options.requirepass;
  resp.table_separator = options.resp_table_separator;
  resp.max_connections = static_cast<size_t>(options.resp_max_clients);
  resp.maxmemory_clients = options.maxmemory_clients;
  resp.query_buffer_limit = static_cast<uint64_t>(options.query_buffer_limit);
  resp.output_hard_limit = options.output_hard_limit;
  resp.output_soft_limit = options.output_soft_limit;
  resp.output_soft_seconds = options.output_soft_seconds;
  auto resp_server = resp::RespServer::Start(resp, keyspace, &(*database)->catalog());
  if (!resp_server.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", resp_server.status().message()}});
    (*flight_server)->Stop();
    return 1;
  }
  auto server = http_server::HttpServer::Start(http, **database, metrics);
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
              {"threads", std::to_string(options.threads)},
              {"version", QUIVER_VERSION}});
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  QUIVER_LOG(kInfo, "stopping", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Stop();
  (*resp_server)->Stop();
  (*flight_server)->Stop();
  (*database)->Close();
  QUIVER_LOG(kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace quiver

int main(int argc, char** argv) {
  quiver::Options options;
  bool exit_now = false;
  const std::string error = quiver::ParseSettings(argc, argv, &options, &exit_now);
  if (!error.empty()) {
    std::fprintf(stderr, "quiverd: %s\n", error.c_str());
    return 2;
  }
  if (exit_now) return 0;
  return quiver::Run(options);
}
