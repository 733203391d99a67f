#include "server/resp/tables.h"

#include <arrow/api.h>
#include <arrow/util/utf8.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

#include "common/arrow_status.h"
#include "engine/dtype.h"
#include "engine/keys.h"
#include "engine/write_cast.h"
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

// The table a RESP key names ("<table><separator><row key>") and the row key's text; nullopt
// when the part before the first separator names no table.
std::optional<std::pair<std::shared_ptr<Table>, std::string_view>> SplitRowKey(
    const Catalog& catalog, std::string_view separator, std::string_view key) {
  const size_t at = separator.empty() ? std::string_view::npos : key.find(separator);
  if (at == std::string_view::npos) return std::nullopt;
  auto table = catalog.GetTable(key.substr(0, at));
  if (!table.ok()) return std::nullopt;
  return std::make_pair(std::move(table).value(), key.substr(at + separator.size()));
}

// The row key's columns (the key column, or a composite key's), one value each, for a write.
Result<std::vector<std::pair<std::string, std::shared_ptr<arrow::Array>>>> KeyColumns(
    const Table& table, std::string_view text, std::string_view separator) {
  const TableSchema& schema = table.schema();
  std::vector<std::string_view> parts = {text};
  if (schema.composite_key()) parts = SplitParts(text, separator, schema.key_columns().size());
  if (parts.size() != schema.key_columns().size()) {
    return Status::InvalidArgument(
        "key '" + std::string(text.substr(0, 128)) + "' of table '" + table.name() +
        "': the key has " + std::to_string(schema.key_columns().size()) + " columns (" +
        schema.KeyNames() + "), joined by '" + std::string(separator) + "'");
  }
  std::vector<std::pair<std::string, std::shared_ptr<arrow::Array>>> columns;
  for (size_t p = 0; p < parts.size(); ++p) {
    const ColumnSpec& column = schema.columns()[schema.key_columns()[p]];
    if (column.type->id() == arrow::Type::INT64) {
      int64_t value = 0;
      const char* end = parts[p].data() + parts[p].size();
      if (parts[p].empty() || std::from_chars(parts[p].data(), end, value).ptr != end) {
        return Status::InvalidArgument(
            "key column '" + column.name + "' of table '" + table.name() + "' is int64: '" +
            std::string(parts[p].substr(0, 128)) + "' is not an integer");
      }
      columns.emplace_back(column.name,
                           arrow::MakeArrayFromScalar(arrow::Int64Scalar(value), 1).ValueOrDie());
    } else {
      columns.emplace_back(
          column.name,
          arrow::MakeArrayFromScalar(arrow::StringScalar(std::string(parts[p])), 1).ValueOrDie());
    }
  }
  return columns;
}

// One value of `type` from a hash field's text, as ReadTableRow writes it (docs/resp.md):
// integers and floats as decimals, bool as true/false (or 1/0), dates as days and timestamps as
// integers of their unit (or ISO-8601 text), utf8 and binary as their bytes, lists and embeddings
// as their elements packed little-endian. Converted by the write rules (engine/write_cast.h);
// errors name the column (`where`).
Result<std::shared_ptr<arrow::Array>> ValueFromText(std::string_view text,
                                                    const std::shared_ptr<arrow::DataType>& type,
                                                    const std::string& where) {
  const auto fail = [&](const std::string& why) {
    return Status::InvalidArgument(where + ": '" + std::string(text.substr(0, 64)) + "' " + why);
  };
  int64_t integer = 0;
  const char* end = text.data() + text.size();
  const bool is_integer = !text.empty() && std::from_chars(text.data(), end, integer).ptr == end;
  std::shared_ptr<arrow::Array> input;
  switch (type->id()) {
    case arrow::Type::STRING:
      if (!arrow::util::ValidateUTF8(text)) return fail("is not valid UTF-8");
      return arrow::MakeArrayFromScalar(arrow::StringScalar(std::string(text)), 1).ValueOrDie();
    case arrow::Type::BINARY:
      return arrow::MakeArrayFromScalar(arrow::BinaryScalar(std::string(text)), 1).ValueOrDie();
    case arrow::Type::BOOL:
      if (text != "true" && text != "false" && text != "1" && text != "0") {
        return fail("is not a bool (true, false, 1 or 0)");
      }
      return arrow::MakeArrayFromScalar(arrow::BooleanScalar(text == "true" || text == "1"), 1)
          .ValueOrDie();
    case arrow::Type::LIST:
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& element = type->field(0)->type();
      const auto width = static_cast<size_t>(element->byte_width());
      if (width == 0 || text.size() % width != 0) {
        return fail("is not packed " + element->ToString() + " elements (" +
                    std::to_string(text.size()) + " bytes)");
      }
      const auto count = static_cast<int64_t>(text.size() / width);
      auto values = arrow::MakeArray(arrow::ArrayData::Make(
          element, count, {nullptr, arrow::Buffer::FromString(std::string(text))}, 0));
      if (type->id() == arrow::Type::LIST) {
        const int32_t bounds[2] = {0, static_cast<int32_t>(count)};
        auto offset_buffer = arrow::Buffer::FromString(
            std::string(reinterpret_cast<const char*>(bounds), sizeof(bounds)));
        return arrow::MakeArray(
            arrow::ArrayData::Make(type, 1, {nullptr, offset_buffer}, {values->data()}, 0));
      }
      const int32_t size = static_cast<const arrow::FixedSizeListType&>(*type).list_size();
      if (count != size) {
        return fail("has " + std::to_string(count) + " elements, the embedding " +
                    std::to_string(size));
      }
      return arrow::MakeArray(arrow::ArrayData::Make(type, 1, {nullptr}, {values->data()}, 0));
    }
    case arrow::Type::DATE32:
    case arrow::Type::TIMESTAMP:
      if (is_integer) {
        if (type->id() == arrow::Type::DATE32 && (integer < std::numeric_limits<int32_t>::min() ||
                                                  integer > std::numeric_limits<int32_t>::max())) {
          return fail("is out of range for date32 (days since 1970-01-01)");
        }
        auto scalar = arrow::MakeScalar(type, integer);
        if (!scalar.ok()) return fail("is not a " + DtypeName(*type));
        return arrow::MakeArrayFromScalar(**scalar, 1).ValueOrDie();
      }
      input = arrow::MakeArrayFromScalar(arrow::StringScalar(std::string(text)), 1).ValueOrDie();
      break;
    default: {  // numbers
      if (is_integer) {
        input = arrow::MakeArrayFromScalar(arrow::Int64Scalar(integer), 1).ValueOrDie();
        break;
      }
      uint64_t unsigned_value = 0;
      if (!text.empty() && std::from_chars(text.data(), end, unsigned_value).ptr == end) {
        input = arrow::MakeArrayFromScalar(arrow::UInt64Scalar(unsigned_value), 1).ValueOrDie();
        break;
      }
      double real = 0;
      const auto parsed = std::from_chars(text.data(), end, real);
      if (text.empty() || parsed.ptr != end || parsed.ec != std::errc()) {
        return fail("is not a number");
      }
      input = arrow::MakeArrayFromScalar(arrow::DoubleScalar(real), 1).ValueOrDie();
    }
  }
  return CastForWrite(input, type, CastMode::kSafe, where);
}

// The table and the one-key array a RESP key names; nullopt when it names no table, or a key
// that is not of the table's key type.
std::optional<std::pair<std::shared_ptr<Table>, std::shared_ptr<arrow::Array>>> RowOf(
    const Catalog& catalog, std::string_view separator, std::string_view key) {
  auto named = SplitRowKey(catalog, separator, key);
  if (!named) return std::nullopt;
  auto keys = KeyArray(*named->first, {named->second}, separator);
  if (!keys.ok()) return std::nullopt;
  return std::make_pair(std::move(named->first), std::move(keys).value());
}

}  // namespace

std::optional<TableRow> ReadTableRow(const Catalog& catalog, std::string_view separator,
                                     std::string_view key) {
  auto row_of = RowOf(catalog, separator, key);
  if (!row_of) return std::nullopt;
  auto read = row_of->first->Read(*row_of->second);
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

std::optional<int64_t> TableRowTtlMs(const Catalog& catalog, std::string_view separator,
                                     std::string_view key) {
  auto row_of = RowOf(catalog, separator, key);
  if (!row_of) return std::nullopt;
  auto read = row_of->first->Read(*row_of->second, {}, ReadOptions{.with_ttl = true});
  if (!read.ok() || !read->found->Value(0)) return std::nullopt;
  return read->ttl_ms->IsNull(0) ? -1 : read->ttl_ms->Value(0);
}

std::optional<Result<int64_t>> DeleteTableRow(const Catalog& catalog, std::string_view separator,
                                              std::string_view key) {
  auto row_of = RowOf(catalog, separator, key);
  if (!row_of) return std::nullopt;
  return row_of->first->Delete(*row_of->second);
}

std::optional<Result<int64_t>> WriteTableRow(
    const Catalog& catalog, std::string_view separator, std::string_view key,
    const std::vector<std::pair<std::string_view, std::string_view>>& fields) {
  auto named = SplitRowKey(catalog, separator, key);
  if (!named) return std::nullopt;
  const Table& table = *named->first;
  const TableSchema& schema = table.schema();
  auto run = [&]() -> Result<int64_t> {
    QUIVER_ASSIGN_OR_RETURN(auto columns, KeyColumns(table, named->second, separator));
    const size_t key_count = columns.size();
    std::vector<std::string> names;  // the fields' columns, in order, each once (the last wins)
    for (const auto& [field, text] : fields) {
      const int index = schema.FindColumn(field);
      if (index < 0) {
        return Status::NotFound("table '" + table.name() + "' has no column '" +
                                std::string(field.substr(0, 128)) + "'");
      }
      if (schema.IsKeyColumn(index)) {
        return Status::InvalidArgument("column '" + std::string(field) + "' of table '" +
                                       table.name() + "' is the key: the RESP key gives it");
      }
      const ColumnSpec& column = schema.columns()[index];
      QUIVER_ASSIGN_OR_RETURN(
          auto value, ValueFromText(text, column.type,
                                    "table '" + table.name() + "' column '" + column.name + "'"));
      const std::string& name = column.name;
      auto same = std::find_if(columns.begin() + static_cast<std::ptrdiff_t>(key_count),
                               columns.end(), [&](const auto& c) { return c.first == name; });
      if (same != columns.end()) {
        same->second = std::move(value);
      } else {
        columns.emplace_back(column.name, std::move(value));
        names.push_back(column.name);
      }
    }
    // Fields that were not set before (HSET's answer), as read just before the write.
    QUIVER_ASSIGN_OR_RETURN(auto keys, KeyArray(table, {named->second}, separator));
    QUIVER_ASSIGN_OR_RETURN(ReadResult before, table.Read(*keys, names));
    int64_t added = 0;
    for (int c = 0; c < before.batch->num_columns(); ++c) {
      added += before.batch->column(c)->IsNull(0) ? 1 : 0;
    }
    arrow::FieldVector schema_fields;
    arrow::ArrayVector arrays;
    for (auto& [name, array] : columns) {
      schema_fields.push_back(arrow::field(name, array->type()));
      arrays.push_back(std::move(array));
    }
    auto batch = arrow::RecordBatch::Make(arrow::schema(schema_fields), 1, std::move(arrays));
    QUIVER_RETURN_NOT_OK(named->first->Upsert(*batch).status());
    return added;
  };
  return run();
}

std::vector<std::string> TableRowKeys(const Catalog& catalog, std::string_view table_name,
                                      std::string_view separator, uint32_t* cursor, size_t count) {
  std::vector<std::string> keys;
  auto table = catalog.GetTable(table_name);
  if (!table.ok()) {
    *cursor = 0;
    return keys;
  }
  const TableSchema& schema = (*table)->schema();
  std::vector<std::string> stored;
  *cursor = (*table)->ScanKeys(*cursor, count, &stored);
  for (const std::string& bytes : stored) {
    std::string text(table_name);
    text += separator;
    if (!schema.composite_key()) {
      if (schema.key().type->id() == arrow::Type::INT64) {
        int64_t value;
        std::memcpy(&value, bytes.data(), sizeof(value));
        text += std::to_string(value);
      } else {
        text += bytes;
      }
    } else {
      Result<std::vector<std::string_view>> parts = SplitKey(schema, bytes);
      if (!parts.ok()) continue;
      for (size_t p = 0; p < parts->size(); ++p) {
        if (p > 0) text += separator;
        const ColumnSpec& column = schema.columns()[schema.key_columns()[p]];
        if (column.type->id() == arrow::Type::INT64) {
          int64_t value;
          std::memcpy(&value, (*parts)[p].data(), sizeof(value));
          text += std::to_string(value);
        } else {
          text += (*parts)[p];
        }
      }
    }
    keys.push_back(std::move(text));
  }
  return keys;
}

}  // namespace quiver::resp
