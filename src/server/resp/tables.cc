#include "server/resp/tables.h"

#include <arrow/api.h>

#include <charconv>
#include <cstring>

#include "common/arrow_status.h"
#include "engine/dtype.h"
#include "engine/keys.h"
#include "server/codec/codec.h"

namespace quiver::resp {
namespace {

// A composite key's text split into its parts: at the first separators, the last part taking
// the rest (so only the last part may hold the separator).
std::vector<std::string_view> SplitParts(std::string_view text, std::string_view separator,
                                         size_t parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts && !separator.empty()) {
    const size_t at = text.find(separator);
    if (at == std::string_view::npos) break;
    out.push_back(text.substr(0, at));
    text.remove_prefix(at + separator.size());
  }
  out.push_back(text);
  return out;
}

// The keys as an array of the table's key type (a composite key's encoded: its parts joined by
// `separator`); the error names the first key that is not.
Result<std::shared_ptr<arrow::Array>> KeyArray(const Table& table,
                                               const std::vector<std::string_view>& keys,
                                               std::string_view separator) {
  const TableSchema& schema = table.schema();
  if (schema.composite_key()) {
    arrow::BinaryBuilder builder;
    for (std::string_view text : keys) {
      Result<std::string> key =
          EncodeTextKey(schema, SplitParts(text, separator, schema.key_columns().size()));
      if (!key.ok()) {
        return Status::InvalidArgument("key '" + std::string(text.substr(0, 128)) + "' of table '" +
                                       table.name() + "': " + key.status().message() +
                                       " (parts joined by '" + std::string(separator) + "')");
      }
      QUIVER_RETURN_NOT_OK_ARROW(builder.Append(*key));
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> array, builder.Finish());
    return array;
  }
  const ColumnSpec& key = schema.key();
  if (key.type->id() == arrow::Type::INT64) {
    arrow::Int64Builder builder;
    QUIVER_RETURN_NOT_OK_ARROW(builder.Reserve(static_cast<int64_t>(keys.size())));
    for (std::string_view text : keys) {
      int64_t value = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
        return Status::InvalidArgument("key '" + std::string(text.substr(0, 128)) +
                                       "' is not an int64, the key type of table '" + table.name() +
                                       "'");
      }
      builder.UnsafeAppend(value);
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> array, builder.Finish());
    return array;
  }
  arrow::StringBuilder builder;
  for (std::string_view text : keys) QUIVER_RETURN_NOT_OK_ARROW(builder.Append(text));
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> array, builder.Finish());
  return array;
}

// A hash field's text: the dtype's (engine/dtype.h): numbers as decimals, lists packed.
std::string ValueText(const arrow::Array& array, int64_t i) {
  std::string out;
  AppendValueText(out, array, i);
  return out;
}

}  // namespace

std::optional<TableRow> ReadTableRow(const Catalog& catalog, std::string_view separator,
                                     std::string_view key) {
  const size_t at = separator.empty() ? std::string_view::npos : key.find(separator);
  if (at == std::string_view::npos) return std::nullopt;
  auto table = catalog.GetTable(key.substr(0, at));
  if (!table.ok()) return std::nullopt;
  auto keys = KeyArray(**table, {key.substr(at + separator.size())}, separator);
  if (!keys.ok()) return std::nullopt;
  auto read = (*table)->Read(**keys);
  if (!read.ok() || !read->found->Value(0)) return std::nullopt;
  TableRow row;
  const arrow::RecordBatch& batch = *read->batch;
  row.fields.reserve(static_cast<size_t>(batch.num_columns()));
  for (int c = 0; c < batch.num_columns(); ++c) {
    const arrow::Array& column = *batch.column(c);
    if (!column.IsNull(0))
      row.fields.emplace_back(batch.schema()->field(c)->name(), ValueText(column, 0));
  }
  return row;
}

Result<std::string> FetchTableIpc(const Catalog& catalog, std::string_view table_name,
                                  const std::vector<std::string_view>& keys,
                                  const std::vector<std::string>& columns, bool found_column,
                                  std::string_view separator) {
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, catalog.GetTable(table_name));
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> key_array,
                          KeyArray(*table, keys, separator));
  QUIVER_ASSIGN_OR_RETURN(ReadResult read, table->Read(*key_array, columns));
  return codec::FetchResultToIpc(read, found_column);
}

}  // namespace quiver::resp
