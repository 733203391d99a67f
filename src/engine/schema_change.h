// SchemaChange: an online change of a table's schema, in the schema's own JSON terms; any subset
// of the parts, applied together (docs/schema.md, "Changing a schema"):
//
//   {"add":    {"g": {"dtype": "float32"}, "h": {"dtype": "int32", "nullable": false,
//                                                "default": 0}},
//    "drop":   ["x"],
//    "rename": {"a": "b"},
//    "alter":  {"c": {"dtype": "int64"}, "d": {"nullable": true}, "e": {"default": 1.5}},
//    "ttl":    3600,                                   <- seconds; 0 or null: rows never expire
//    "cast":   "strict"}                               <- how writes convert (write_cast.h)
//
// drop, rename and alter name the columns as they are; add names them as they will be. Added
// columns come last, in the order given; the others keep their places. An alter widens a type
// so that every value converts exactly (IsWidening), makes a column nullable, or sets its default.
// A change that the table cannot take (a dropped key or event-time column, a name taken twice, a
// narrowing, a non-nullable column added without a default) is refused as a whole.
//
// Thread safety: immutable after construction.
#pragma once

#include <arrow/type_fwd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "engine/limits.h"
#include "engine/schema.h"

namespace quiver {

struct SchemaChange {
  struct Alter {
    std::string name;
    std::shared_ptr<arrow::DataType> type;  // null: kept
    std::optional<bool> nullable;
    bool set_default = false;  // default_value replaces the column's default (null: none)
    std::shared_ptr<arrow::Scalar> default_value;
    std::optional<bool> sparse;  // "sparse": the column becomes sparse or dense
  };

  std::vector<ColumnSpec> add;
  std::vector<std::string> drop;
  std::vector<std::pair<std::string, std::string>> rename;  // from, to
  std::vector<Alter> alter;
  std::optional<int64_t> ttl_ms;  // the table's new default TTL; 0: none
  std::optional<CastMode> cast;   // the table's new cast mode

  // Parses the JSON above; InvalidArgument naming what is wrong (an empty change included).
  static Result<SchemaChange> FromJson(std::string_view json, const EngineLimits& limits = {});
  // The same change as JSON (FromJson reads it back); the journal records this.
  std::string ToJson() const;
};

struct ChangedSchema {
  TableSchema schema;
  // For each column of `schema`: the index of the column it was in the old schema (-1: added).
  std::vector<int> sources;
};

// The schema `schema` becomes under `change`. NotFound for a column that does not exist;
// InvalidArgument for a change the table cannot take; the message names the column.
Result<ChangedSchema> ApplySchemaChange(const TableSchema& schema, const SchemaChange& change,
                                        const EngineLimits& limits = {});

// Whether every value of `from` converts to `to` exactly: integers to wider integers (signed from
// unsigned of a smaller width too), floats to wider floats, integers to a float whose precision
// holds them (int8/uint8 to float16, up to 16 bits to float32, up to 32 bits to float64), lists and
// fixed-size lists (same length) whose element widens.
bool IsWidening(const arrow::DataType& from, const arrow::DataType& to);

}  // namespace quiver
