// ServerConfig: the layers (defaults, file, environment, flags), every spelling of an option, and
// the errors that make quiverd exit 2, without starting a server.
#include "app/server_config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace quiver {
namespace {

struct Parsed {
  Status status;
  ServerConfig config;
  ConfigRequest request = ConfigRequest::kRun;
};

Parsed Parse(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  Parsed parsed;
  parsed.status = ParseServerConfig(args, env, &parsed.config, &parsed.request);
  return parsed;
}

void ExpectError(const std::vector<std::string>& args, const std::string& message,
                 const std::vector<std::string>& env = {}) {
  const Parsed parsed = Parse(args, env);
  ASSERT_FALSE(parsed.status.ok()) << args.front();
  EXPECT_EQ(parsed.status.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(parsed.status.message(), message);
}

// A YAML file for --config, removed with the object.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text) {
    char pattern[] = "/tmp/quiver-config-XXXXXX";
    const int fd = mkstemp(pattern);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = pattern;
    std::ofstream(path_) << text;
  }
  ~ConfigFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ServerConfigTest, DefaultsThenFileThenEnvironmentThenFlags) {
  const Parsed defaults = Parse({});
  ASSERT_TRUE(defaults.status.ok());
  EXPECT_EQ(defaults.config.http_port, 8080);
  EXPECT_EQ(defaults.config.data_dir, "./quiver-data");
  ConfigFile file("http:\n  port: 9000\nresp:\n  port: 9001\nmaxmemory: 1mb\n");
  const Parsed layered =
      Parse({"--config", file.path(), "--resp-port=9003"},
            {"QUIVER_RESP_PORT=9002", "QUIVER_MAXMEMORY=2m", "PATH=/bin", "QUIVER_URL=x"});
  ASSERT_TRUE(layered.status.ok()) << layered.status.ToString();
  EXPECT_EQ(layered.config.http_port, 9000);       // the file
  EXPECT_EQ(layered.config.resp_port, 9003);       // a flag over the variable over the file
  EXPECT_EQ(layered.config.maxmemory, 2'000'000);  // the variable over the file; m = 10^6
  EXPECT_EQ(Parse({"--maxmemory", "1mb"}).config.maxmemory, 1 << 20);
  EXPECT_TRUE(Parse({"--kv-memory-only"}).config.kv_memory_only);  // a switch alone is true
  EXPECT_FALSE(Parse({"--kv-memory-only=false"}).config.kv_memory_only);
  EXPECT_EQ(Parse({"--client-output-buffer-limit", "2mb 1mb 5"}).config.output_soft_seconds, 5);
  EXPECT_EQ(Parse({"--maxmemory-clients", "auto"}).config.maxmemory_clients, -1);
}

TEST(ServerConfigTest, HelpAndVersionStopTheParse) {
  EXPECT_EQ(Parse({"--help", "--no-such"}).request, ConfigRequest::kHelp);
  EXPECT_EQ(Parse({"-h"}).request, ConfigRequest::kHelp);
  EXPECT_EQ(Parse({"--version"}).request, ConfigRequest::kVersion);
  const std::string help = ServerConfigHelp();
  EXPECT_NE(help.find("  --http-port N              HTTP port (0: any free port) (default: 8080; "
                      "http.port, QUIVER_HTTP_PORT)\n"),
            std::string::npos)
      << help;
  EXPECT_NE(help.find("--kv-memory-only"), std::string::npos);
}

TEST(ServerConfigTest, BadSettingsAreNamed) {
  ExpectError({"--no-such"}, "unknown option '--no-such' (see --help)");
  ExpectError({"--http-port"}, "--http-port needs a value");
  ExpectError({"--http-port", "eighty"}, "--http-port: 'eighty' is not an integer");
  ExpectError({"--http-port", "70000"}, "--http-port: 70000 is outside 0..65535");
  ExpectError({"--maxmemory", "lots"},
              "--maxmemory: 'lots' is not a size (bytes, or a number with k, m, g for 10^3, "
              "10^6, 10^9 or kb, mb, gb for 2^10, 2^20, 2^30)");
  ExpectError({"--maxmemory-policy", "lru"},
              "--maxmemory-policy: 'lru' is not one of noeviction, allkeys-lru, allkeys-lfu, "
              "allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl");
  ExpectError({"--fsync", "sometimes"}, "--fsync: 'sometimes' is not one of always, everysec, no");
  ExpectError({"--access-log=maybe"}, "--access-log: 'maybe' is not true or false");
  ExpectError({"--http-port", "7000", "--resp-port", "7000"},
              "http.port and resp.port are both 7000; each front end needs a port of its own");
  ExpectError({}, "unknown environment variable QUIVER_NO_SUCH (see --help)", {"QUIVER_NO_SUCH=1"});
  ExpectError({}, "QUIVER_SERVER_THREADS: 0 is outside 1..256", {"QUIVER_SERVER_THREADS=0"});
  ExpectError({"--config", "/nonexistent/quiver.yaml"},
              "--config: cannot read '/nonexistent/quiver.yaml'");
  ConfigFile unknown("http:\n  prot: 1\n");
  ExpectError({"--config", unknown.path()},
              "config " + unknown.path() + ": unknown key 'http.prot'");
  ConfigFile list("http:\n  port: [1, 2]\n");
  ExpectError({"--config", list.path()},
              "config " + list.path() + ": http.port: expected a single value");
  ConfigFile scalar("just text\n");
  ExpectError({"--config", scalar.path()},
              "config " + scalar.path() + ": the document must be a mapping of keys");
}

}  // namespace
}  // namespace quiver
