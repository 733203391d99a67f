// The conversions a write may make, one set of rules for every front end (docs/schema.md,
// "Casts on write"): Table::Prepare applies them to every write (HTTP's JSON, Arrow IPC and
// Parquet bodies, Flight, RESP, the embedded engine), the JSON codec to the values it parses, and
// the Python package to the columns it sends (so that they travel in the table's types).
//
//   strict  the input's type must be the column's (list types whose elements are equal count as
//           equal, whatever their child field is called);
//   safe    (the default) a value of the column's dtype family (dtype.h: CastFamily) converted
//           when nothing is lost: integers within the column's range, no fraction dropped from
//           a float made an integer, floats within the column's range (rounded to the nearest
//           float as Arrow's cast does, never overflowing to infinity), timestamps to a coarser
//           unit only when exact, ISO-8601 strings parsed into dates and timestamps, list
//           elements by the same rules.
//
// A value that does not convert is an error naming the column and its row; nothing is written.
//
// Thread safety: functions.
#pragma once

#include <arrow/type_fwd.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace quiver {

enum class CastMode : uint8_t { kSafe, kStrict };

// utf8, large_utf8 or utf8_view.
bool IsStringLike(arrow::Type::type id);

// "safe" or "strict"; InvalidArgument naming the accepted spellings otherwise.
Result<CastMode> ParseCastMode(std::string_view text);
std::string_view CastModeName(CastMode mode);

// `array` as `type` (a column's dtype) under `mode`; `what` names the column in errors ("table
// 't' column 'x'"). The array itself when its type is already `type`.
Result<std::shared_ptr<arrow::Array>> CastForWrite(const std::shared_ptr<arrow::Array>& array,
                                                   const std::shared_ptr<arrow::DataType>& type,
                                                   CastMode mode, const std::string& what);

}  // namespace quiver
