// Leveled, structured log lines on stderr in logfmt: `ts=... level=info msg="..." key=value ...`
// (docs/operations.md). Values with spaces, quotes or '=' are quoted and escaped.
//
//   QUIVER_LOG(kInfo, "listening", {{"addr", "127.0.0.1:8080"}});
//
// Thread safety: every function may be called from any thread; one line is written with one
// write(2), so lines of concurrent threads do not interleave.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace quiver {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn", "error"; false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel* level);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

using LogField = std::pair<std::string_view, std::string>;
void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {},
         uint64_t repeated = 0);

// One call site's budget of lines: at most one per interval. The lines it held back are counted
// and reported by the next line it lets through (field `repeated`: lines like this one not
// written since the last). A loop that fails thousands of times a second writes one line a
// second, not gigabytes.
class LogRateLimiter {
 public:
  explicit LogRateLimiter(int64_t interval_ms) : interval_ms_(interval_ms) {}
  // True when a line may be written now; then *repeated is the count held back before it.
  bool Allow(uint64_t* repeated);

 private:
  const int64_t interval_ms_;
  std::atomic<int64_t> next_ms_{0};
  std::atomic<uint64_t> held_back_{0};
};

}  // namespace quiver

#define QUIVER_LOG(level, ...)                               \
  do {                                                       \
    if (::quiver::LogEnabled(::quiver::LogLevel::level)) {   \
      ::quiver::Log(::quiver::LogLevel::level, __VA_ARGS__); \
    }                                                        \
  } while (false)

// QUIVER_LOG with fields, at most once a second from this call site: for a line that may repeat
// on every failed request, accept or read.
#define QUIVER_LOG_EVERY_SECOND(level, message, ...)                                          \
  do {                                                                                        \
    if (::quiver::LogEnabled(::quiver::LogLevel::level)) {                                    \
      static ::quiver::LogRateLimiter quiver_log_limiter_(1000);                              \
      uint64_t quiver_log_repeated_ = 0;                                                      \
      if (quiver_log_limiter_.Allow(&quiver_log_repeated_)) {                                 \
        ::quiver::Log(::quiver::LogLevel::level, message, __VA_ARGS__, quiver_log_repeated_); \
      }                                                                                       \
    }                                                                                         \
  } while (false)
