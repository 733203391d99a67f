// Request and response bodies of the HTTP table routes (docs/http.md) and Flight tickets
// (docs/flight.md): murr's JSON shapes, Arrow IPC
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

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/decode_memory.h"
#include "common/eviction.h"
#include "common/result.h"
#include "engine/schema.h"
#include "engine/table.h"
#include "engine/write_cast.h"

namespace quiver::codec {

inline constexpr std::string_view kJsonType = "application/json";
inline constexpr std::string_view kArrowStreamType = "application/vnd.apache.arrow.stream";
inline constexpr std::string_view kParquetType = "application/vnd.apache.parquet";

struct FetchRequest {
  std::shared_ptr<arrow::Array> keys;
  std::vector<std::string> columns;  // empty: all value columns
};

// {"keys": [...], "columns": [...]} ("columns" optional). A composite key's keys are one array
// per key column: {"keys": {"user_id": [...], "item_id": [...]}} (a struct array results).
Result<FetchRequest> ParseJsonFetch(std::string_view body, const TableSchema& schema);
// murr's Flight ticket, {"table": "...", "keys": [...], "columns": [...]}, plus Quiver's optional
// "found": true (add a "_found" column). Without "keys" (or with null) it names the whole table.
// `find_table` resolves the table (its error is returned as it is).
struct FetchTicket {
  std::shared_ptr<Table> table;
  std::shared_ptr<arrow::Array> keys;  // null: every row
  std::vector<std::string> columns;    // empty: all value columns
  bool found_column = false;
  bool with_ttl = false;         // "with_ttl": true: a "_ttl_ms" column (each row's remaining TTL)
  int64_t ttl_ms = 0;            // "ttl" (seconds): the written rows' TTL (DoPut); 0: the table's
  std::optional<CastMode> cast;  // "cast": how a write's columns convert (DoPut); none: the table's
};
// A TTL given as text, in seconds ("60", "0.5"), as milliseconds. InvalidArgument naming the
// value unless it is a number of seconds from 0.001 to 100 years.
Result<int64_t> ParseTtl(std::string_view seconds);
// `what` names the bytes in errors: "the ticket", or a descriptor's command.
Result<FetchTicket> ParseFetchTicket(
    std::string_view body,
    const std::function<Result<std::shared_ptr<Table>>(std::string_view)>& find_table,
    std::string_view what = "the ticket");
// {"keys": [...]}.
Result<std::shared_ptr<arrow::Array>> ParseJsonKeys(std::string_view body,
                                                    const TableSchema& schema);
// An Arrow IPC stream whose batches hold the keys: one column, or one per key column of a
// composite key (by name; KeysFromColumns).
Result<std::shared_ptr<arrow::Array>> ParseIpcKeys(std::string_view body,
                                                   const TableSchema& schema);
// Keys given as Arrow columns: the key column, or a composite key's columns as one struct array
// (by name, any order; Table::Read checks them). `what` names them in errors ("the body").
Result<std::shared_ptr<arrow::Array>> KeysFromColumns(const arrow::ArrayVector& columns,
                                                      const arrow::FieldVector& fields,
                                                      const TableSchema& schema,
                                                      std::string_view what);
// {"columns": {name: [values], ...}}: the key column and any value columns, equal lengths, each
// in its column's type by the write rules (engine/write_cast.h) under `cast` (none: the
// table's).
Result<std::shared_ptr<arrow::RecordBatch>> ParseJsonWrite(std::string_view body,
                                                           const TableSchema& schema,
                                                           std::optional<CastMode> cast = {});
// Every batch of an Arrow IPC stream / every row group of a Parquet file, as one table. Both
// decode into DecodeMemory::pool(): within the caller's DecodeMemory::Scope, if it opened one.
Result<std::shared_ptr<arrow::Table>> ParseIpcTable(std::string_view body);
Result<std::shared_ptr<arrow::Table>> ParseParquetTable(std::string_view body);

// {"columns": {name: [values]}, "found": [bool, ...]}, plus "ttl_ms": [ms or null, ...] with a
// ttl_ms array (ReadOptions::with_ttl).
std::string FetchResultToJson(const ReadResult& result);
// The result batch; with a ttl_ms array (ReadOptions::with_ttl), plus an int64 column "_ttl_ms";
// with `found_column`, plus a last non-nullable boolean column "_found".
inline constexpr std::string_view kFoundColumn = "_found";
inline constexpr std::string_view kTtlColumn = "_ttl_ms";
Result<std::shared_ptr<arrow::RecordBatch>> FetchResultBatch(const ReadResult& result,
                                                             bool found_column);
// The schema FetchResultBatch gives for results of `schema` (Table::ReadSchema).
Result<std::shared_ptr<arrow::Schema>> FetchResultSchema(std::shared_ptr<arrow::Schema> schema,
                                                         bool found_column,
                                                         bool ttl_column = false);
// An Arrow IPC stream of FetchResultBatch.
Result<std::string> FetchResultToIpc(const ReadResult& result, bool found_column);

namespace internal {
// ParseJsonFetch without its fast path (fetch_scanner.h), for checks that the two agree.
Result<FetchRequest> ParseJsonFetchGeneral(std::string_view body, const TableSchema& schema);
}  // namespace internal

// A snapshot request: {} or empty (every table) or {"tables": [NAME, ...]}.
Result<std::vector<std::string>> ParseSnapshotRequest(std::string_view body);

// A table described (HTTP's GET /api/v1/table/{name}, Flight's "describe_table", RESP's
// QUIVER.DESCRIBE): {"name", "id", "key", "rows", "bytes", "ttl" (seconds, null: none),
// "event_time" (null: none), "columns": [{"name", "dtype", "nullable", "default" (when set)}, ...]
// (schema order), "schema": the table's schema JSON (engine/schema.h), "memory": {"row_bytes",
// "index_bytes", "heap_bytes", "heap_garbage_bytes", "row_width", "rows_with_ttl", "expired",
// "evicted"}}.
std::string TableInfoToJson(const Table& table);

// How much decoding one write body may allocate: max_decode_bytes, or maxmemory when that is
// less.
struct DecodeLimit {
  uint64_t bytes = 0;
  bool memory_bound = false;  // `bytes` is maxmemory
};
DecodeLimit WriteDecodeLimit(uint64_t max_decode_bytes, const MemoryLimit& memory);
// `status` of a decode run in `scope`; when the scope's limit made it fail, the error names the
// limit instead: LIMIT_EXCEEDED for max_decode_bytes, OUT_OF_MEMORY for maxmemory's room or for
// all requests' decoding together.
Status DecodeFailure(const Status& status, const DecodeMemory::Scope& scope,
                     const DecodeLimit& limit);

// Base64 (RFC 4648, with padding), for binary values in JSON.
std::string Base64Encode(std::string_view bytes);
Result<std::string> Base64Decode(std::string_view text);

}  // namespace quiver::codec
