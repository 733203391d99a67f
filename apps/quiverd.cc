// quiverd: the Quiver server. Serves the catalog over HTTP (docs/http.md) until SIGTERM or SIGINT,
// then stops accepting, finishes the requests in flight and exits 0.
//
//   quiverd [--bind ADDR] [--http-port N] [--flight-port N] [--data-dir DIR] [--threads N]
//           [--log-level LEVEL] [--max-request-bytes N] [--help] [--version]
//
// Exit status: 0 after a signal; 2 for a bad flag or value (the message names it); 1 when the
// server cannot start (for example, a port in use).
#include <arrow/config.h>
#include <pthread.h>
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <string>

#include "common/log.h"
#include "engine/catalog.h"
#include "server/http/http_server.h"

namespace quiver {
namespace {

struct Options {
  std::string bind = "127.0.0.1";
  int64_t http_port = 8080;
  int64_t flight_port = 8081;
  std::string data_dir = "./quiver-data";
  int64_t threads = 2;
  std::string log_level = "info";
  int64_t max_request_bytes = 64 << 20;
  int64_t header_timeout = 30;
  int64_t body_timeout = 60;
  int64_t max_connections = 1024;
};

struct Flag {
  const char* name;
  const char* value_name;
  const char* help;
  std::function<std::string(Options&, const std::string&)> set;  // returns an error or ""
  std::function<std::string(const Options&)> show;               // the default
};

std::string ParseInteger(const std::string& flag, const std::string& text, int64_t low,
                         int64_t high, int64_t* out) {
  int64_t value = 0;
  int64_t multiplier = 1;
  std::string_view digits = text;
  if (!digits.empty() && (digits.back() == 'k' || digits.back() == 'K')) multiplier = 1 << 10;
  if (!digits.empty() && (digits.back() == 'm' || digits.back() == 'M')) multiplier = 1 << 20;
  if (!digits.empty() && (digits.back() == 'g' || digits.back() == 'G')) multiplier = 1 << 30;
  if (multiplier != 1) digits.remove_suffix(1);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
    return flag + ": '" + text + "' is not an integer";
  }
  value *= multiplier;
  if (value < low || value > high) {
    return flag + ": " + text + " is outside " + std::to_string(low) + ".." + std::to_string(high);
  }
  *out = value;
  return "";
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      {"--bind", "ADDR", "IP address to listen on",
       [](Options& o, const std::string& v) {
         o.bind = v;
         return std::string();
       },
       [](const Options& o) { return o.bind; }},
      {"--http-port", "N", "HTTP port (0: any free port)",
       [](Options& o, const std::string& v) {
         return ParseInteger("--http-port", v, 0, 65535, &o.http_port);
       },
       [](const Options& o) { return std::to_string(o.http_port); }},
      {"--flight-port", "N", "Arrow Flight port (reserved: Flight is not served yet)",
       [](Options& o, const std::string& v) {
         return ParseInteger("--flight-port", v, 0, 65535, &o.flight_port);
       },
       [](const Options& o) { return std::to_string(o.flight_port); }},
      {"--data-dir", "DIR", "data directory, created when missing (nothing is persisted yet)",
       [](Options& o, const std::string& v) {
         if (v.empty()) return std::string("--data-dir: the path is empty");
         o.data_dir = v;
         return std::string();
       },
       [](const Options& o) { return o.data_dir; }},
      {"--threads", "N", "HTTP threads, one io_context each",
       [](Options& o, const std::string& v) {
         return ParseInteger("--threads", v, 1, 256, &o.threads);
       },
       [](const Options& o) { return std::to_string(o.threads); }},
      {"--log-level", "LEVEL", "debug, info, warn or error",
       [](Options& o, const std::string& v) {
         LogLevel level;
         if (!ParseLogLevel(v, &level)) {
           return "--log-level: '" + v + "' is not one of debug, info, warn, error";
         }
         o.log_level = v;
         return std::string();
       },
       [](const Options& o) { return o.log_level; }},
      {"--max-request-bytes", "N", "largest request body accepted (suffixes k, m, g)",
       [](Options& o, const std::string& v) {
         return ParseInteger("--max-request-bytes", v, 1, int64_t{1} << 40, &o.max_request_bytes);
       },
       [](const Options& o) { return std::to_string(o.max_request_bytes); }},
      {"--header-timeout", "SECONDS",
       "close a connection whose request headers (or next request) take longer",
       [](Options& o, const std::string& v) {
         return ParseInteger("--header-timeout", v, 1, 86400, &o.header_timeout);
       },
       [](const Options& o) { return std::to_string(o.header_timeout); }},
      {"--body-timeout", "SECONDS", "close a connection whose request body takes longer",
       [](Options& o, const std::string& v) {
         return ParseInteger("--body-timeout", v, 1, 86400, &o.body_timeout);
       },
       [](const Options& o) { return std::to_string(o.body_timeout); }},
      {"--max-connections", "N", "connections beyond this are answered 503 and closed",
       [](Options& o, const std::string& v) {
         return ParseInteger("--max-connections", v, 1, 1000000, &o.max_connections);
       },
       [](const Options& o) { return std::to_string(o.max_connections); }},
  };
  return flags;
}

void PrintHelp() {
  const Options defaults;
  std::printf("usage: quiverd [OPTION]...\n\nServes Quiver's feature tables over HTTP.\n\n");
  for (const Flag& flag : Flags()) {
    const std::string left = std::string(flag.name) + " " + flag.value_name;
    std::printf("  %-26s %s (default: %s)\n", left.c_str(), flag.help, flag.show(defaults).c_str());
  }
  std::printf("  %-26s %s\n  %-26s %s\n", "--help", "print this help and exit", "--version",
              "print the version and exit");
}

// Empty on success, else the message for exit status 2.
std::string ParseFlags(int argc, char** argv, Options* options, bool* exit_now) {
  *exit_now = false;
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
    const Flag* flag = nullptr;
    for (const Flag& candidate : Flags()) {
      if (arg == candidate.name) flag = &candidate;
    }
    if (flag == nullptr) return "unknown option '" + arg + "' (see --help)";
    if (!has_value) {
      if (i + 1 >= argc) return std::string(flag->name) + " needs a value";
      value = argv[++i];
    }
    if (std::string error = flag->set(*options, value); !error.empty()) return error;
  }
  return "";
}

int Run(const Options& options) {
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

  // Signals are taken by sigwait below, never by a server thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Catalog catalog;
  http_server::HttpServerOptions http;
  http.bind = options.bind;
  http.port = static_cast<uint16_t>(options.http_port);
  http.threads = static_cast<int>(options.threads);
  http.max_request_bytes = static_cast<size_t>(options.max_request_bytes);
  http.header_timeout_seconds = static_cast<int>(options.header_timeout);
  http.body_timeout_seconds = static_cast<int>(options.body_timeout);
  http.max_connections = static_cast<int>(options.max_connections);
  auto server = http_server::HttpServer::Start(http, catalog);
  if (!server.ok()) {
    QUIVER_LOG(kError, "cannot start", {{"error", server.status().message()}});
    return 1;
  }
  QUIVER_LOG(kInfo, "listening",
             {{"http", options.bind + ":" + std::to_string((*server)->port())},
              {"data_dir", options.data_dir},
              {"threads", std::to_string(options.threads)},
              {"version", QUIVER_VERSION}});
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  QUIVER_LOG(kInfo, "stopping", {{"signal", signal_number == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Stop();
  QUIVER_LOG(kInfo, "stopped");
  return 0;
}

}  // namespace
}  // namespace quiver

int main(int argc, char** argv) {
  quiver::Options options;
  bool exit_now = false;
  const std::string error = quiver::ParseFlags(argc, argv, &options, &exit_now);
  if (!error.empty()) {
    std::fprintf(stderr, "quiverd: %s\n", error.c_str());
    return 2;
  }
  if (exit_now) return 0;
  return quiver::Run(options);
}
