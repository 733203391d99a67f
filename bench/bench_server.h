// Shared by the benchmarks that measure a running quiverd (http_benchmark, flight_benchmark):
// starting the real server on free loopback ports, the benchmark table's rows, percentiles.
//
// Thread safety: none needed; each benchmark drives these from its main thread.
#pragma once

#include <arrow/api.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <utility>
#include <vector>

extern char** environ;

namespace quiver::bench {

// BENCH_ROWS (default 10,000,000, at least 1000).
inline int64_t EnvRows() {
  const char* text = std::getenv("BENCH_ROWS");
  return text ? std::max<int64_t>(1000, std::atoll(text)) : 10'000'000;
}

// The benchmark table's key of row i: 8 decimal digits.
inline std::string Key(int64_t i) {
  char buffer[24];
  std::snprintf(buffer, sizeof(buffer), "%08lld", static_cast<long long>(i));
  return std::string(buffer, 8);
}

// The TableSchema JSON of the benchmark table: utf8 "key" and float32 f0..f9.
inline std::string TableSchemaJson() {
  std::string schema = R"({"key": "key", "columns": {"key": {"dtype": "utf8"})";
  for (int c = 0; c < 10; ++c)
    schema += R"(, "f)" + std::to_string(c) + R"(": {"dtype": "float32"})";
  return schema + "}}";
}

// Rows [first, first + count) of the benchmark table, values uniform in [0, 1).
inline std::shared_ptr<arrow::RecordBatch> TableRows(int64_t first, int64_t count,
                                                     std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(0, 1);
  arrow::StringBuilder keys;
  for (int64_t i = 0; i < count; ++i) (void)keys.Append(Key(first + i));
  arrow::FieldVector fields = {arrow::field("key", arrow::utf8())};
  arrow::ArrayVector arrays = {keys.Finish().ValueOrDie()};
  for (int c = 0; c < 10; ++c) {
    arrow::FloatBuilder values;
    (void)values.Reserve(count);
    for (int64_t i = 0; i < count; ++i) values.UnsafeAppend(uniform(rng));
    fields.push_back(arrow::field("f" + std::to_string(c), arrow::float32()));
    arrays.push_back(values.Finish().ValueOrDie());
  }
  return arrow::RecordBatch::Make(arrow::schema(fields), count, arrays);
}

// `sets` key sets of `size` random keys of a table of `rows` rows.
inline std::vector<std::vector<std::string>> RandomKeySets(int sets, int size, int64_t rows) {
  std::mt19937_64 pick(7);
  std::vector<std::vector<std::string>> out(sets);
  for (auto& set : out) {
    for (int k = 0; k < size; ++k) set.push_back(Key(static_cast<int64_t>(pick() % rows)));
  }
  return out;
}

inline uint16_t FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    std::perror("free port");
    std::exit(1);
  }
  close(fd);
  return ntohs(address.sin_port);
}

// The real quiverd, on free loopback ports, with a scratch data directory.
class Quiverd {
 public:
  // `binary`: build/quiverd; `extra`: more flags. BENCH_BUSY_POLL_US adds --busy-poll-us.
  Quiverd(const std::string& binary, std::vector<std::string> extra)
      : http_port_(FreePort()),
        flight_port_(FreePort()),
        data_dir_(std::filesystem::temp_directory_path() /
                  ("quiver-bench-" + std::to_string(getpid()))) {
    std::vector<std::string> args = {binary,
                                     "--http-port",
                                     std::to_string(http_port_),
                                     "--flight-port",
                                     std::to_string(flight_port_),
                                     "--resp-port",
                                     "0",
                                     "--data-dir",
                                     data_dir_.string(),
                                     "--log-level",
                                     "warn"};
    if (const char* spin = std::getenv("BENCH_BUSY_POLL_US")) {
      args.push_back("--busy-poll-us");
      args.push_back(spin);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
      std::fprintf(stderr, "cannot start %s\n", binary.c_str());
      std::exit(1);
    }
  }
  // SIGTERM, then waits; true when quiverd exited 0.
  bool Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    std::filesystem::remove_all(data_dir_);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }

  uint16_t http_port() const { return http_port_; }
  uint16_t flight_port() const { return flight_port_; }

 private:
  uint16_t http_port_, flight_port_;
  std::filesystem::path data_dir_;
  pid_t pid_ = 0;
};

// The value of an arrow::Result or a quiver::Result; on an error, prints `what` and the error
// and exits with status 1.
template <typename R>
auto Check(R result, const char* what) {
  if (!result.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, result.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*result);
}

// Sorts `micros` and prints p50 / p99 / p999.
inline void PrintPercentiles(const char* name, std::vector<double>& micros) {
  std::sort(micros.begin(), micros.end());
  auto at = [&](double q) { return micros[static_cast<size_t>(q * (micros.size() - 1))]; };
  std::printf("%-44s p50 %8.1f us   p99 %8.1f us   p999 %8.1f us   (%zu requests)\n", name, at(0.5),
              at(0.99), at(0.999), micros.size());
}

}  // namespace quiver::bench
