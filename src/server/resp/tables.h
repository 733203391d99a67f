// Feature tables seen through the Redis protocol: a row read as a hash (HGETALL <table>:<key>),
// and many keys x columns of a table as one Arrow IPC stream (QUIVER.FETCH). docs/resp.md,
// "Feature tables".
//
// A hash value is the column's value as text: integers and floats in their shortest round-trip
// decimal form (as the JSON API writes them), bool as "true"/"false", date32 as days and
// timestamps as integers of their unit since the epoch, utf8 and binary as their bytes, and
// list / fixed_size_list values as their elements packed little-endian (a float32 embedding of
// 128 is 512 bytes, the layout Redis users store vectors in). A null is no field.
//
// Thread safety: pure functions over the thread-safe catalog.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "engine/catalog.h"

namespace quiver::resp {

struct TableRow {
  // The value columns in schema order, as (name, value text); a null value is no field.
  std::vector<std::pair<std::string, std::string>> fields;
};

// The row at `key` = "<table><separator><row key>" when the part before the first `separator`
// names a table of `catalog` and that table holds the row; nullopt otherwise (also for a row key
// that is not of the table's key type). A composite key's row key is its parts joined by
// `separator` (only the last part may hold it).
std::optional<TableRow> ReadTableRow(const Catalog& catalog, std::string_view separator,
                                     std::string_view key);

// The rows of `keys` (texts of the table's key type) as an Arrow IPC stream of one batch, the
// `columns` (all value columns when empty) and, with `found_column`, "_found": the HTTP fetch's
// answer. Errors: NotFound for an unknown table or column, InvalidArgument for a key that is not
// of the key type (naming it). A composite key's keys are their parts joined by `separator`.
Result<std::string> FetchTableIpc(const Catalog& catalog, std::string_view table,
                                  const std::vector<std::string_view>& keys,
                                  const std::vector<std::string>& columns, bool found_column,
                                  std::string_view separator);

// The table view of the generic commands (docs/resp.md, "Feature tables"): each takes a RESP key
// "<table><separator><row key>" and answers nullopt when the part before the first separator
// names no table (the caller then treats the key as the keyspace's); a row key that is not of the
// table's key type is a missing row.

// The row's remaining time to live in milliseconds, -1 when it never expires; nullopt when
// the key names no row (a missing row of a table included).
std::optional<int64_t> TableRowTtlMs(const Catalog& catalog, std::string_view separator,
                                     std::string_view key);
// Deletes the row: 1 when it was present, 0 otherwise.
std::optional<Result<int64_t>> DeleteTableRow(const Catalog& catalog, std::string_view separator,
                                              std::string_view key);
// HSET on a row: writes each field as the table's column of that name (the value's text as
// ReadTableRow gives it, converted by the write rules), creating the row when it is missing.
// Returns how many of the fields were not set (null or no row) before. Errors: an unknown column,
// a key column, a value that does not fit (naming it); nothing is written then.
std::optional<Result<int64_t>> WriteTableRow(
    const Catalog& catalog, std::string_view separator, std::string_view key,
    const std::vector<std::pair<std::string_view, std::string_view>>& fields);
// SCAN over a table's rows: from row position *cursor (0: the start), the RESP keys of the live
// rows among the next `count` positions; *cursor becomes the next position, 0 at the end.
std::vector<std::string> TableRowKeys(const Catalog& catalog, std::string_view table,
                                      std::string_view separator, uint32_t* cursor, size_t count);

}  // namespace quiver::resp
