// Leveled, structured log lines on stderr in logfmt: `ts=... level=info msg="..." key=value ...`
// (docs/operations.md). Values with spaces, quotes or '=' are quoted and escaped.
//
//   QUIVER_LOG(kInfo, "listening", {{"addr", "127.0.0.1:8080"}});
//
// Thread safety: every function may be called from any thread; one line is written with one
// write(2), so lines of concurrent threads do not interleave.
#pragma once

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
void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});

}  // namespace quiver

#define QUIVER_LOG(level, ...)                               \
  do {                                                       \
    if (::quiver::LogEnabled(::quiver::LogLevel::level)) {   \
      ::quiver::Log(::quiver::LogLevel::level, __VA_ARGS__); \
    }                                                        \
  } while (false)
