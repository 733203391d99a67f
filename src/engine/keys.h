// Keys as callers give them, normalized to what the index hashes and rows hold (KeyColumn,
// engine/key_column.h): a single key column's values as int64 or utf8; a composite key's as one
// byte string each.
//
// Composite keys: a key of several columns (TableSchema::key_columns) is stored, hashed and
// compared as one byte string, its parts encoded in key order:
//
//   int64 part   8 bytes, little-endian (as a single int64 key's)
//   utf8 part    its bytes, preceded by their length as a uint16 (little-endian), except the
//                last part, whose bytes run to the end
//
// So the encoding is one-to-one for a given schema, and a key of one utf8 part would be its bytes
// alone, as a single utf8 key's. docs/schema.md ("Composite keys") and docs/shm.md specify it;
// readers in other processes encode their keys the same way.
//
// Thread safety: pure functions.
#pragma once

#include <arrow/type_fwd.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "engine/schema.h"

namespace quiver {

// A key column's values as the index takes them: integers as int64 and strings as utf8 (when
// `type`, the column's, is one of those and the cast loses nothing), no nulls. Errors name the
// table, `what` ("read", "delete", ...) keys and the position.
Result<std::shared_ptr<arrow::Array>> NormalizeKeyArray(const arrow::Array& keys,
                                                        const arrow::DataType& type,
                                                        std::string_view table,
                                                        std::string_view what);

// `keys` as the index of a table of `schema` takes them: a single key's normalized
// (NormalizeKeyArray), a composite key's (a struct array of its columns, KeyPartsFromStruct, or
// encoded already: binary) encoded. The engine's reads, writes and deletes and the shared-memory
// readers take keys through it.
Result<std::shared_ptr<arrow::Array>> NormalizeKeys(const TableSchema& schema,
                                                    const arrow::Array& keys,
                                                    std::string_view table, std::string_view what);

// The encoded keys (a binary array, no nulls) of `parts`: one normalized array per key column in
// key order (int64 or utf8 as the schema has it), equally long, without nulls.
Result<std::shared_ptr<arrow::Array>> EncodeKeyParts(const TableSchema& schema,
                                                     const arrow::ArrayVector& parts);

// Keys as a caller gives them for a composite-key table: a struct array (or the columns of a
// record batch) with one field per key column, by name, in any order. Each part is normalized
// (integers to int64, strings to utf8) and checked (no nulls); errors name the table, the
// column and the position. Returns the parts in key order.
Result<arrow::ArrayVector> KeyPartsFromStruct(const TableSchema& schema, const arrow::Array& keys,
                                              std::string_view table, std::string_view what);

// One encoded key split into its parts' bytes (an int64 part: its 8 bytes); InvalidArgument when
// `encoded` is not a key of `schema`.
Result<std::vector<std::string_view>> SplitKey(const TableSchema& schema, std::string_view encoded);

// A stored key's bytes (KeyColumn's) as a message shows them: 42, 'abc', or (42, 'abc') for a
// composite key; long strings cut.
std::string KeyForMessage(const TableSchema& schema, std::string_view bytes);

// The key parts of encoded keys (a binary array), one array per key column in key order.
Result<arrow::ArrayVector> DecodeKeys(const TableSchema& schema, const arrow::Array& encoded);

// The encoded key of one key given as text parts (RESP's "table:1:abc" split at the separator):
// int64 parts parse as decimal integers. Errors name the column.
Result<std::string> EncodeTextKey(const TableSchema& schema,
                                  const std::vector<std::string_view>& parts);

}  // namespace quiver
