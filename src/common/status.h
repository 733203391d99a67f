// Status: the outcome of an operation that can fail, with a machine-readable code and a message
// for people. Result<T> (result.h) carries a value or a Status.
//
// The engine and storage layers report every failure through Status / Result; no exception
// leaves them. Protocol front ends map StatusCode to their own error space (HTTP status, Flight
// status, RESP error) at the edge, and nowhere else.
//
// Thread safety: a Status is an immutable value; distinct objects may be used from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace quiver {

enum class StatusCode : uint8_t {
  kOk = 0,
  kInvalidArgument,  // malformed request, type mismatch, null in a non-nullable column, ...
  kNotFound,         // unknown table or column
  kAlreadyExists,    // table exists
  kLimitExceeded,    // a value or request over a configured size limit
  kOutOfMemory,      // memory could not be allocated, or a memory limit was reached
  kIOError,          // the operating system reported an error
  kCorruption,       // stored bytes failed a check
  kNotImplemented,
  kInternal,  // a bug: an invariant did not hold
  kReadOnly,  // a change sent to a node that only reads (a follower)
};

// A message holds at most this many bytes; a longer one is cut (at a UTF-8 character boundary)
// and says how long it was. Messages echo a client's input (a name, a value), and an error about
// a 50 MB name must not send 50 MB back.
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// `text` as it goes into a message that echoes input: whole when it is at most `max_bytes`
// long, else its first `max_bytes` (cut at a character boundary) and "... (N bytes)".
std::string Excerpt(std::string_view text, size_t max_bytes = 200);

// The stable spelling of a code, used in logs and as the machine code of API errors
// ("INVALID_ARGUMENT", "NOT_FOUND", ...).
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  // A message longer than kMaxStatusMessageBytes is cut.
  Status(StatusCode code, std::string message);

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string message) {
    return Status(StatusCode::kInvalidArgument, std::move(message));
  }
  static Status NotFound(std::string message) {
    return Status(StatusCode::kNotFound, std::move(message));
  }
  static Status AlreadyExists(std::string message) {
    return Status(StatusCode::kAlreadyExists, std::move(message));
  }
  static Status LimitExceeded(std::string message) {
    return Status(StatusCode::kLimitExceeded, std::move(message));
  }
  static Status OutOfMemory(std::string message) {
    return Status(StatusCode::kOutOfMemory, std::move(message));
  }
  static Status IOError(std::string message) {
    return Status(StatusCode::kIOError, std::move(message));
  }
  static Status Corruption(std::string message) {
    return Status(StatusCode::kCorruption, std::move(message));
  }
  static Status NotImplemented(std::string message) {
    return Status(StatusCode::kNotImplemented, std::move(message));
  }
  static Status Internal(std::string message) {
    return Status(StatusCode::kInternal, std::move(message));
  }
  static Status ReadOnly(std::string message) {
    return Status(StatusCode::kReadOnly, std::move(message));
  }

  bool ok() const { return state_ == nullptr; }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  // Empty for OK.
  const std::string& message() const;
  // "NOT_FOUND: table 'x' does not exist", or "OK".
  std::string ToString() const;

  // A copy whose message is `prefix + ": " + message()`; OK stays OK.
  Status WithContext(std::string_view prefix) const;

 private:
  struct State {
    StatusCode code;
    std::string message;
  };
  // Shared and immutable: copying a Status is one reference count, and OK costs nothing.
  std::shared_ptr<const State> state_;
};

}  // namespace quiver

#define QUIVER_CONCAT_IMPL(a, b) a##b
#define QUIVER_CONCAT(a, b) QUIVER_CONCAT_IMPL(a, b)

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define QUIVER_RETURN_NOT_OK(expr)                   \
  do {                                               \
    ::quiver::Status _quiver_status = (expr);        \
    if (!_quiver_status.ok()) return _quiver_status; \
  } while (false)
