// The dtype registry: every type a feature table's column may have, in one table that each place
// handling a dtype reads: its spelling (TableSchema JSON, docs/schema.md), its Arrow type, how a
// row stores it (RowLayout), what it may be converted from on write (Table::Prepare), and how its
// values are written as text (JSON answers, RESP's hash fields). The Python package gets the
// spellings from here too (quiver._quiver.dtypes()).
//
// Scalar dtypes have a row each. Three are made of parameters or of other dtypes:
// timestamp[unit(, tz=zone)], list[<element>] and fixed_size_list[<element>, <n>], whose element
// is a scalar dtype marked `element` (the numbers).
//
// Adding a scalar dtype: a row in kDtypes (dtype.cc), and where its ValueFormat is new, its case
// in the functions that switch on it (AppendValueText, the JSON writer); docs/development.md.
//
// Thread safety: immutable.
#pragma once

#include <arrow/type_fwd.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "engine/row_format.h"

namespace quiver {

// What a write may convert to a dtype (a "safe" cast: overflow, truncation and lost precision
// fail): the values of its family.
enum class CastFamily : uint8_t {
  kNumber,     // any integer or floating-point type
  kBool,       // bool only
  kString,     // utf8, large_utf8, utf8_view
  kBinary,     // the string types and binary, large_binary, binary_view, fixed_size_binary
  kDate,       // date32, date64
  kTimestamp,  // any timestamp
  kList,       // list-like types (list, large_list, fixed_size_list, list_view) of numbers
};

// How one value is written as text (JSON numbers and strings, RESP hash fields).
enum class ValueFormat : uint8_t {
  kInteger,    // decimal (date32: days since the epoch; timestamps: units since it)
  kFloat,      // shortest round-trip decimal; not finite: null in JSON, nan / inf in text
  kHalfFloat,  // as kFloat, the shortest decimal that reads back as the same float16
  kBool,       // true / false
  kString,     // its bytes (a JSON string)
  kBinary,     // its bytes (base64 in JSON)
  kList,       // JSON: an array of its elements; text: the elements packed little-endian
};

struct Dtype {
  std::string_view name;  // the spelling: "float16"; "timestamp" for the parametric ones
  // The Arrow type of a scalar dtype; null for the parametric ones.
  const std::shared_ptr<arrow::DataType>& (*make)();
  arrow::Type::type id;
  uint32_t width;  // bytes in a row, kFixed and kBool (a fixed_size_list: its elements')
  Physical physical;
  bool element;  // may be the element of a list or fixed_size_list
  CastFamily family;
  ValueFormat format;
};

// Every dtype: the scalar ones in the order docs list them, then timestamp, list and
// fixed_size_list.
std::span<const Dtype> Dtypes();
// The row of an Arrow type id; null when no dtype has it.
const Dtype* FindDtype(arrow::Type::type id);
// The row of a scalar spelling ("float16"); null when none has it.
const Dtype* FindScalarDtype(std::string_view name);
// "bool, int8, ..., fixed_size_list[<numeric>, <n>]": what an error lists as accepted.
const std::string& AcceptedDtypes();

// Appends value i of `array` (of a dtype's Arrow type, not null) as text in its format: a list
// as its elements packed little-endian, a float's non-finite values as nan / inf / -inf. False,
// appending nothing, for a type that is no dtype.
bool AppendValueText(std::string& out, const arrow::Array& array, int64_t i);

// The shortest decimal (std::to_chars' general form) that reads back as the float16 `bits`.
std::string HalfFloatText(uint16_t bits);

}  // namespace quiver
