// Result<T>: either a value of type T or a non-OK Status. Returned by static factories and by
// every fallible engine operation, in place of exceptions or out-parameters.
//
// Thread safety: like T.
#pragma once

#include <cassert>
#include <utility>
#include <variant>

#include "common/status.h"

namespace quiver {

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : storage_(std::in_place_index<1>, std::move(value)) {}        // NOLINT: implicit
  Result(Status status) : storage_(std::in_place_index<0>, std::move(status)) {  // NOLINT
    assert(!std::get<0>(storage_).ok() && "Result built from an OK Status");
  }

  bool ok() const { return storage_.index() == 1; }
  // OK when a value is held.
  Status status() const { return ok() ? Status::OK() : std::get<0>(storage_); }

  // Precondition: ok().
  T& value() & { return std::get<1>(storage_); }
  const T& value() const& { return std::get<1>(storage_); }
  T&& value() && { return std::get<1>(std::move(storage_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> storage_;
};

}  // namespace quiver

// Evaluates `rexpr` (a Result); returns its Status when not OK, otherwise moves the value into
// `lhs` (which may be a declaration: `QUIVER_ASSIGN_OR_RETURN(auto x, MakeX())`).
#define QUIVER_ASSIGN_OR_RETURN(lhs, rexpr) \
  QUIVER_ASSIGN_OR_RETURN_IMPL(QUIVER_CONCAT(_quiver_result_, __LINE__), lhs, rexpr)
#define QUIVER_ASSIGN_OR_RETURN_IMPL(result, lhs, rexpr) \
  auto result = (rexpr);                                 \
  if (!result.ok()) return result.status();              \
  lhs = std::move(result).value()
