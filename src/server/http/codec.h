// Request and response bodies of the table routes (docs/http.md): murr's JSON shapes, Arrow IPC
// streams and Parquet files, to and from Arrow data for the engine.
//
// Untrusted bytes are fully validated (ValidateFull: offsets in bounds, valid UTF-8) before they
// reach the engine. Errors are InvalidArgument naming what was wrong (or NotFound for an unknown
// column), never an exception.
//
// Thread safety: pure functions. Arrays parsed from a body may point into it: the body must
// outlive them.
#pragma once

#include <arrow/type_fwd.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "engine/schema.h"
#include "engine/table.h"

namespace quiver::http_server {

inline constexpr std::string_view kJsonType = "application/json";
inline constexpr std::string_view kArrowStreamType = "application/vnd.apache.arrow.stream";
inline constexpr std::string_view kParquetType = "application/vnd.apache.parquet";

struct FetchRequest {
  std::shared_ptr<arrow::Array> keys;
  std::vector<std::string> columns;  // empty: all value columns
};

// {"keys": [...], "columns": [...]} ("columns" optional).
Result<FetchRequest> ParseJsonFetch(std::string_view body, const TableSchema& schema);
// {"keys": [...]}.
Result<std::shared_ptr<arrow::Array>> ParseJsonKeys(std::string_view body,
                                                    const TableSchema& schema);
// An Arrow IPC stream whose batches have exactly one column: the keys.
Result<std::shared_ptr<arrow::Array>> ParseIpcKeys(std::string_view body);
// {"columns": {name: [values], ...}}: the key column and any value columns, equal lengths.
Result<std::shared_ptr<arrow::RecordBatch>> ParseJsonWrite(std::string_view body,
                                                           const TableSchema& schema);
// Every batch of an Arrow IPC stream / every row group of a Parquet file, as one table.
Result<std::shared_ptr<arrow::Table>> ParseIpcTable(std::string_view body);
Result<std::shared_ptr<arrow::Table>> ParseParquetTable(std::string_view body);

// {"columns": {name: [values]}, "found": [bool, ...]}.
std::string FetchResultToJson(const ReadResult& result);
// An Arrow IPC stream of the result batch; with `found_column`, a last boolean column "_found".
Result<std::string> FetchResultToIpc(const ReadResult& result, bool found_column);

// Base64 (RFC 4648, with padding), for binary values in JSON.
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view text);

}  // namespace quiver::http_server
