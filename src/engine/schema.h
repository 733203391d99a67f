// TableSchema: the columns of a feature table (one key column, typed value columns), with its
// conversions to and from arrow::Schema and murr's JSON shape:
//
//   {"key": "doc_id",
//    "columns": {"doc_id": {"dtype": "utf8", "nullable": false},
//                "score":  {"dtype": "float32"}},
//    "event_time": "updated_at"}                        <- optional (Quiver extension)
//
// A composite key names its columns in key order: "key": ["user_id", "item_id"] (Quiver
// extension; each part utf8 or int64, non-nullable; rows are found by all parts together).
//
// A value column may give "default": a value (docs/schema.md).
//
// dtype spellings (docs/schema.md): bool int8 int16 int32 int64 uint8 uint16 uint32 uint64
// float32 float64 utf8 binary date32 timestamp[s|ms|us|ns] timestamp[ms, tz=Europe/Paris]
// list[float32] fixed_size_list[float32, 128]. "nullable" defaults to true for value columns and
// to false for the key, which may not be nullable.
//
// In an arrow::Schema the key field carries metadata {"quiver.key": "true"} (a composite key's
// fields: their part numbers "1", "2", ...) and the event-time field {"quiver.event_time":
// "true"}.
//
// Thread safety: immutable after construction.
#pragma once

#include <arrow/type_fwd.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "engine/limits.h"
#include "engine/write_cast.h"

namespace quiver {

inline constexpr std::string_view kKeyMetadata = "quiver.key";
// The most columns a composite key has.
inline constexpr size_t kMaxKeyParts = 8;
inline constexpr std::string_view kEventTimeMetadata = "quiver.event_time";
// Schema metadata: the table's default TTL in milliseconds.
inline constexpr std::string_view kTtlMetadata = "quiver.ttl_ms";
// Schema metadata: "strict" when writes take the columns' types only (absent: "safe").
inline constexpr std::string_view kCastMetadata = "quiver.cast";

// Field metadata holding a column's default value (its JSON text).
inline constexpr std::string_view kDefaultMetadata = "quiver.default";
// Field metadata marking a sparse column ("true").
inline constexpr std::string_view kSparseMetadata = "quiver.sparse";

struct ColumnSpec {
  std::string name;
  std::shared_ptr<arrow::DataType> type;
  bool nullable = true;
  // What a new row holds when its write leaves the column out (JSON "default": a scalar dtype's
  // value); null: nothing (the column is null, and a write of a new key must give a non-nullable
  // one).
  std::shared_ptr<arrow::Scalar> default_value;
  // JSON "sparse": true: a null costs the row nothing (the set values of all sparse columns share
  // one heap value per row: engine/row_layout.h). Nullable, no default, a scalar dtype.
  bool sparse = false;
};

// A column's default from its JSON value: a boolean, number or string (dates and timestamps: an
// ISO-8601 string or the integer count of days / units since the epoch) converted to `type`
// without loss; null gives none. Errors name the column.
Result<std::shared_ptr<arrow::Scalar>> ParseDefault(std::string_view json_value,
                                                    const std::shared_ptr<arrow::DataType>& type,
                                                    std::string_view column);
// The JSON text of a default (as ParseDefault reads it).
std::string DefaultJson(const arrow::Scalar& value);

class TableSchema {
 public:
  // Validates: unique non-empty names, a utf8 or int64 non-nullable key (or 1 to kMaxKeyParts of
  // them, in key order), supported value types, an event-time column (if named) that is a
  // non-nullable timestamp and not a key column. Errors name the column.
  static Result<TableSchema> Make(std::vector<ColumnSpec> columns, std::string_view key,
                                  std::string_view event_time = {},
                                  const EngineLimits& limits = {});
  static Result<TableSchema> Make(std::vector<ColumnSpec> columns,
                                  const std::vector<std::string>& key,
                                  std::string_view event_time = {},
                                  const EngineLimits& limits = {});
  static Result<TableSchema> FromJson(std::string_view json, const EngineLimits& limits = {});
  // The key is the field marked with quiver.key metadata, or `key` when given.
  static Result<TableSchema> FromArrow(const arrow::Schema& schema, std::string_view key = {},
                                       const EngineLimits& limits = {});

  std::string ToJson() const;
  std::shared_ptr<arrow::Schema> ToArrow() const;

  const std::vector<ColumnSpec>& columns() const { return columns_; }
  int num_columns() const { return static_cast<int>(columns_.size()); }
  // The key column's index; -1 when the key is composite (key_columns() then lists its parts).
  int key_index() const { return key_index_; }
  // The key column (the first part of a composite key).
  const ColumnSpec& key() const { return columns_[key_columns_[0]]; }
  // The key's columns in key order (one unless composite).
  const std::vector<int>& key_columns() const { return key_columns_; }
  bool composite_key() const { return key_columns_.size() > 1; }
  // The position of column `index` in the key; -1 when it is not a key column.
  int KeyPartOf(int index) const;
  bool IsKeyColumn(int index) const { return KeyPartOf(index) >= 0; }
  // The key's column names, ", "-separated, for messages.
  std::string KeyNames() const;
  // -1 when the table has no event-time guard.
  int event_time_index() const { return event_time_index_; }
  // -1 when absent.
  int FindColumn(std::string_view name) const;
  // The table's default time to live of a written row, in milliseconds (0: rows never expire).
  int64_t ttl_ms() const { return ttl_ms_; }
  // This schema with a default TTL (0: none); InvalidArgument outside 0..kMaxTtlMs.
  Result<TableSchema> WithTtl(int64_t ttl_ms) const;
  // How writes convert their columns unless they say (JSON "cast": "safe", the default, or
  // "strict"; engine/write_cast.h).
  CastMode cast_mode() const { return cast_mode_; }
  TableSchema WithCastMode(CastMode mode) const;

  bool Equals(const TableSchema& other) const;

 private:
  TableSchema() = default;
  std::vector<ColumnSpec> columns_;
  std::vector<int> key_columns_;
  int key_index_ = -1;
  int event_time_index_ = -1;
  int64_t ttl_ms_ = 0;
  CastMode cast_mode_ = CastMode::kSafe;
};

// The longest TTL, of a table or a write: 100 years.
inline constexpr int64_t kMaxTtlMs = int64_t{100} * 365 * 24 * 3600 * 1000;
// Seconds (JSON, Python: a number, fractions allowed) as TTL milliseconds; InvalidArgument
// naming `what` unless 0 < seconds and the TTL is at most kMaxTtlMs.
Result<int64_t> TtlFromSeconds(double seconds, std::string_view what);

// The canonical dtype spelling of a supported type ("float32", "timestamp[ms, tz=UTC]", ...).
std::string DtypeName(const arrow::DataType& type);
// Parses a dtype spelling; the error lists the accepted spellings.
Result<std::shared_ptr<arrow::DataType>> ParseDtype(std::string_view name);
// OK when `type` may be a value column; otherwise says why.
Status CheckValueType(const arrow::DataType& type, const EngineLimits& limits = {});
// OK when every timestamp column's time zone is UTC, an offset (+02:00) or a name in the
// system's time zone database (/usr/share/zoneinfo). Checked where a client creates a table
// (Catalog::CreateTable), not where a stored schema is read back: a directory written before
// the check, or on a machine with another database, still opens.
Status CheckTimeZones(const TableSchema& schema);
// A table name: 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'.
Status CheckTableName(std::string_view name);

}  // namespace quiver
