// Bridges between Arrow's Status / Result and Quiver's, for code that calls Arrow.
// Thread safety: pure functions.
#pragma once

#include <arrow/result.h>
#include <arrow/status.h>

#include "common/result.h"
#include "common/status.h"

namespace quiver {

// Maps an Arrow failure to the closest Quiver code, keeping Arrow's message.
Status FromArrow(const arrow::Status& status);

}  // namespace quiver

// Like QUIVER_RETURN_NOT_OK / QUIVER_ASSIGN_OR_RETURN, for an arrow::Status / arrow::Result.
#define QUIVER_RETURN_NOT_OK_ARROW(expr)                \
  do {                                                  \
    ::arrow::Status _quiver_arrow_status = (expr);      \
    if (!_quiver_arrow_status.ok()) {                   \
      return ::quiver::FromArrow(_quiver_arrow_status); \
    }                                                   \
  } while (false)
#define QUIVER_ASSIGN_OR_RETURN_ARROW(lhs, rexpr) \
  QUIVER_ASSIGN_OR_RETURN_ARROW_IMPL(QUIVER_CONCAT(_quiver_arrow_result_, __LINE__), lhs, rexpr)
#define QUIVER_ASSIGN_OR_RETURN_ARROW_IMPL(result, lhs, rexpr)   \
  auto result = (rexpr);                                         \
  if (!result.ok()) return ::quiver::FromArrow(result.status()); \
  lhs = std::move(result).ValueUnsafe()
