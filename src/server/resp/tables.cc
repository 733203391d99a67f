#include "server/resp/tables.h"

#include <arrow/api.h>

#include <charconv>
#include <cstring>

#include "common/arrow_status.h"
#include "server/codec/codec.h"

namespace quiver::resp {
namespace {

// The keys as an array of the table's key type; the error names the first key that is not.
Result<std::shared_ptr<arrow::Array>> KeyArray(const Table& table,
                                               const std::vector<std::string_view>& keys) {
  const ColumnSpec& key = table.schema().key();
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

// Packed little-endian elements [begin, end) of a list's values (a fixed-width type).
void AppendPacked(std::string& out, const arrow::Array& values, int64_t begin, int64_t end) {
  const auto& fixed = static_cast<const arrow::FixedWidthType&>(*values.type());
  const int64_t width = fixed.bit_width() / 8;
  const uint8_t* data = values.data()->GetValues<uint8_t>(1, 0);
  out.append(reinterpret_cast<const char*>(data) + (values.offset() + begin) * width,
             static_cast<size_t>((end - begin) * width));
}

std::string ValueText(const arrow::Array& array, int64_t i) {
  std::string out;
  switch (array.type_id()) {
    case arrow::Type::BOOL:
      return static_cast<const arrow::BooleanArray&>(array).Value(i) ? "true" : "false";
    case arrow::Type::STRING:
      return std::string(static_cast<const arrow::StringArray&>(array).GetView(i));
    case arrow::Type::BINARY:
      return std::string(static_cast<const arrow::BinaryArray&>(array).GetView(i));
    case arrow::Type::LIST: {
      const auto& list = static_cast<const arrow::ListArray&>(array);
      AppendPacked(out, *list.values(), list.value_offset(i), list.value_offset(i + 1));
      return out;
    }
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& list = static_cast<const arrow::FixedSizeListArray&>(array);
      AppendPacked(out, *list.values(), list.value_offset(i), list.value_offset(i + 1));
      return out;
    }
    default:
      codec::AppendNumberText(out, array, i);  // numbers, date32, timestamps
      return out;
  }
}

}  // namespace

std::optional<TableRow> ReadTableRow(const Catalog& catalog, std::string_view separator,
                                     std::string_view key) {
  const size_t at = separator.empty() ? std::string_view::npos : key.find(separator);
  if (at == std::string_view::npos) return std::nullopt;
  auto table = catalog.GetTable(key.substr(0, at));
  if (!table.ok()) return std::nullopt;
  auto keys = KeyArray(**table, {key.substr(at + separator.size())});
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
                                  const std::vector<std::string>& columns, bool found_column) {
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, catalog.GetTable(table_name));
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> key_array, KeyArray(*table, keys));
  QUIVER_ASSIGN_OR_RETURN(ReadResult read, table->Read(*key_array, columns));
  return codec::FetchResultToIpc(read, found_column);
}

}  // namespace quiver::resp
