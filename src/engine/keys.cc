#include "engine/keys.h"

#include <arrow/api.h>
#include <arrow/compute/cast.h>

#include <charconv>
#include <cstring>
#include <limits>

#include "common/arrow_status.h"
#include "engine/row_format.h"
#include "engine/write_cast.h"

namespace quiver {

namespace {

int64_t FirstNullOf(const arrow::Array& array) {
  for (int64_t i = 0; i < array.length(); ++i) {
    if (array.IsNull(i)) return i;
  }
  return -1;
}

bool IsInt64Part(const TableSchema& schema, size_t part) {
  return schema.columns()[schema.key_columns()[part]].type->id() == arrow::Type::INT64;
}

}  // namespace

Result<std::shared_ptr<arrow::Array>> NormalizeKeyArray(const arrow::Array& keys,
                                                        const arrow::DataType& type,
                                                        std::string_view table,
                                                        std::string_view what) {
  std::shared_ptr<arrow::Array> normalized = arrow::MakeArray(keys.data());
  if (!keys.type()->Equals(type)) {
    const bool integer_keys = arrow::is_integer(keys.type_id()) && type.id() == arrow::Type::INT64;
    const bool string_keys = IsStringLike(keys.type_id()) && type.id() == arrow::Type::STRING;
    arrow::Result<std::shared_ptr<arrow::Array>> cast =
        arrow::Status::TypeError("keys of another family");
    if (integer_keys || string_keys) {
      cast =
          arrow::compute::Cast(keys, arrow::TypeHolder(&type), arrow::compute::CastOptions::Safe());
    }
    if (!cast.ok()) {
      return Status::InvalidArgument("table '" + std::string(table) + "': " + std::string(what) +
                                     " keys must be " + DtypeName(type) + ", not " +
                                     keys.type()->ToString());
    }
    normalized = *cast;
  }
  if (normalized->null_count() > 0) {
    return Status::InvalidArgument("table '" + std::string(table) + "': " + std::string(what) +
                                   " key at position " + std::to_string(FirstNullOf(*normalized)) +
                                   " is null");
  }
  return normalized;
}

Result<arrow::ArrayVector> KeyPartsFromStruct(const TableSchema& schema, const arrow::Array& keys,
                                              std::string_view table, std::string_view what) {
  const std::string prefix = "table '" + std::string(table) + "': ";
  const std::string expected = " (its key is " + schema.KeyNames() + ")";
  if (keys.type_id() != arrow::Type::STRUCT) {
    return Status::InvalidArgument(prefix + "the key has " +
                                   std::to_string(schema.key_columns().size()) + " columns: give " +
                                   std::string(what) + " keys as one array per key column" +
                                   expected + ", not " + keys.type()->ToString());
  }
  const auto& structs = static_cast<const arrow::StructArray&>(keys);
  if (structs.null_count() > 0) {
    return Status::InvalidArgument(prefix + std::string(what) + " key at position " +
                                   std::to_string(FirstNullOf(structs)) + " is null");
  }
  const arrow::StructType& type = *structs.struct_type();
  for (const auto& field : type.fields()) {
    const int index = schema.FindColumn(field->name());
    if (index < 0 || !schema.IsKeyColumn(index)) {
      return Status::InvalidArgument(prefix + std::string(what) + " keys have column '" +
                                     field->name() + "', which is not a key column" + expected);
    }
    if (type.GetAllFieldIndices(field->name()).size() > 1) {
      return Status::InvalidArgument(prefix + std::string(what) + " keys have column '" +
                                     field->name() + "' twice");
    }
  }
  arrow::ArrayVector parts;
  for (int index : schema.key_columns()) {
    const ColumnSpec& column = schema.columns()[index];
    const int field = type.GetFieldIndex(column.name);
    if (field < 0) {
      return Status::InvalidArgument(prefix + std::string(what) + " keys lack key column '" +
                                     column.name + "'" + expected);
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> values,
                                  structs.GetFlattenedField(field));
    QUIVER_ASSIGN_OR_RETURN(
        std::shared_ptr<arrow::Array> part,
        NormalizeKeyArray(*values, *column.type, table,
                          std::string(what) + " (key column '" + column.name + "')"));
    parts.push_back(std::move(part));
  }
  return parts;
}

Result<std::shared_ptr<arrow::Array>> EncodeKeyParts(const TableSchema& schema,
                                                     const arrow::ArrayVector& parts) {
  const size_t count = schema.key_columns().size();
  if (parts.size() != count) {
    return Status::InvalidArgument("a key of " + std::to_string(count) + " columns, given " +
                                   std::to_string(parts.size()));
  }
  const int64_t n = parts.empty() ? 0 : parts[0]->length();
  int64_t bytes = 0;
  for (size_t p = 0; p < count; ++p) {
    if (parts[p]->length() != n) {
      return Status::InvalidArgument("key columns of different lengths");
    }
    if (IsInt64Part(schema, p)) {
      bytes += n * static_cast<int64_t>(sizeof(int64_t));
    } else {
      const auto& strings = static_cast<const arrow::StringArray&>(*parts[p]);
      bytes += strings.total_values_length() + (p + 1 < count ? n * 2 : 0);
    }
  }
  if (bytes > std::numeric_limits<int32_t>::max()) {
    return Status::LimitExceeded("keys of " + std::to_string(bytes) + " bytes in one request");
  }
  // Written straight into the array's buffers: this is on every read's path.
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::unique_ptr<arrow::Buffer> offsets,
                                arrow::AllocateBuffer((n + 1) * sizeof(int32_t)));
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::unique_ptr<arrow::Buffer> data, arrow::AllocateBuffer(bytes));
  auto* offset = reinterpret_cast<int32_t*>(offsets->mutable_data());
  uint8_t* out = data->mutable_data();
  int32_t at = 0;
  for (int64_t i = 0; i < n; ++i) {
    offset[i] = at;
    for (size_t p = 0; p < count; ++p) {
      if (IsInt64Part(schema, p)) {
        const int64_t value = static_cast<const arrow::Int64Array&>(*parts[p]).Value(i);
        std::memcpy(out + at, &value, sizeof(value));
        at += static_cast<int32_t>(sizeof(value));
        continue;
      }
      const std::string_view value = static_cast<const arrow::StringArray&>(*parts[p]).Value(i);
      if (p + 1 < count) {
        if (value.size() > kMaxKeyBytes) {
          return Status::LimitExceeded("key column '" +
                                       schema.columns()[schema.key_columns()[p]].name + "' row " +
                                       std::to_string(i) + ": " + std::to_string(value.size()) +
                                       " bytes, over " + std::to_string(kMaxKeyBytes));
        }
        const auto length = static_cast<uint16_t>(value.size());
        std::memcpy(out + at, &length, sizeof(length));
        at += static_cast<int32_t>(sizeof(length));
      }
      if (!value.empty()) std::memcpy(out + at, value.data(), value.size());
      at += static_cast<int32_t>(value.size());
    }
  }
  offset[n] = at;
  return std::static_pointer_cast<arrow::Array>(
      std::make_shared<arrow::BinaryArray>(n, std::shared_ptr<arrow::Buffer>(std::move(offsets)),
                                           std::shared_ptr<arrow::Buffer>(std::move(data))));
}

Result<std::shared_ptr<arrow::Array>> NormalizeKeys(const TableSchema& schema,
                                                    const arrow::Array& keys,
                                                    std::string_view table, std::string_view what) {
  if (!schema.composite_key()) return NormalizeKeyArray(keys, *schema.key().type, table, what);
  // Encoded already (the journal's and a schema change's own record of a delete).
  if (keys.type_id() == arrow::Type::BINARY)
    return NormalizeKeyArray(keys, *keys.type(), table, what);
  QUIVER_ASSIGN_OR_RETURN(arrow::ArrayVector parts, KeyPartsFromStruct(schema, keys, table, what));
  return EncodeKeyParts(schema, parts);
}

Result<std::vector<std::string_view>> SplitKey(const TableSchema& schema,
                                               std::string_view encoded) {
  const size_t count = schema.key_columns().size();
  std::vector<std::string_view> parts;
  parts.reserve(count);
  size_t at = 0;
  const auto bad = [] { return Status::InvalidArgument("not an encoded key of this table"); };
  for (size_t p = 0; p < count; ++p) {
    size_t size;
    if (IsInt64Part(schema, p)) {
      size = sizeof(int64_t);
    } else if (p + 1 == count) {
      size = encoded.size() - at;
    } else {
      uint16_t length;
      if (encoded.size() - at < sizeof(length)) return bad();
      std::memcpy(&length, encoded.data() + at, sizeof(length));
      at += sizeof(length);
      size = length;
    }
    if (encoded.size() - at < size) return bad();
    parts.push_back(encoded.substr(at, size));
    at += size;
  }
  if (at != encoded.size()) return bad();
  return parts;
}

namespace {

std::string PartForMessage(std::string_view bytes, bool is_int64) {
  if (is_int64) {
    int64_t value;
    std::memcpy(&value, bytes.data(), sizeof(value));
    return std::to_string(value);
  }
  std::string out = "'";
  out += bytes.size() > 64 ? std::string(bytes.substr(0, 64)) + "..." : std::string(bytes);
  return out + "'";
}

}  // namespace

std::string KeyForMessage(const TableSchema& schema, std::string_view bytes) {
  if (!schema.composite_key()) {
    return PartForMessage(bytes, schema.key().type->id() == arrow::Type::INT64);
  }
  Result<std::vector<std::string_view>> parts = SplitKey(schema, bytes);
  if (!parts.ok()) return "(?)";
  std::string out = "(";
  for (size_t p = 0; p < parts->size(); ++p) {
    if (p > 0) out += ", ";
    out += PartForMessage((*parts)[p], IsInt64Part(schema, p));
  }
  return out + ")";
}

Result<arrow::ArrayVector> DecodeKeys(const TableSchema& schema, const arrow::Array& encoded) {
  if (encoded.type_id() != arrow::Type::BINARY) {
    return Status::InvalidArgument("encoded keys must be binary, not " +
                                   encoded.type()->ToString());
  }
  const auto& keys = static_cast<const arrow::BinaryArray&>(encoded);
  const size_t count = schema.key_columns().size();
  std::vector<arrow::Int64Builder> ints(count);
  std::vector<arrow::StringBuilder> strings(count);
  for (int64_t i = 0; i < keys.length(); ++i) {
    QUIVER_ASSIGN_OR_RETURN(std::vector<std::string_view> parts, SplitKey(schema, keys.Value(i)));
    for (size_t p = 0; p < count; ++p) {
      if (IsInt64Part(schema, p)) {
        int64_t value;
        std::memcpy(&value, parts[p].data(), sizeof(value));
        QUIVER_RETURN_NOT_OK_ARROW(ints[p].Append(value));
      } else {
        QUIVER_RETURN_NOT_OK_ARROW(strings[p].Append(parts[p]));
      }
    }
  }
  arrow::ArrayVector out(count);
  for (size_t p = 0; p < count; ++p) {
    QUIVER_RETURN_NOT_OK_ARROW(IsInt64Part(schema, p) ? ints[p].Finish(&out[p])
                                                      : strings[p].Finish(&out[p]));
  }
  return out;
}

Result<std::string> EncodeTextKey(const TableSchema& schema,
                                  const std::vector<std::string_view>& parts) {
  const size_t count = schema.key_columns().size();
  if (parts.size() != count) {
    return Status::InvalidArgument("the key has " + std::to_string(count) + " columns (" +
                                   schema.KeyNames() + "), given " + std::to_string(parts.size()));
  }
  std::string key;
  for (size_t p = 0; p < count; ++p) {
    const std::string& column = schema.columns()[schema.key_columns()[p]].name;
    const std::string_view text = parts[p];
    if (IsInt64Part(schema, p)) {
      int64_t value = 0;
      const char* end = text.data() + text.size();
      if (text.empty() || std::from_chars(text.data(), end, value).ptr != end) {
        return Status::InvalidArgument("key column '" + column + "' is int64: '" +
                                       std::string(text.substr(0, 64)) + "' is not an integer");
      }
      key.append(reinterpret_cast<const char*>(&value), sizeof(value));
      continue;
    }
    if (p + 1 < count) {
      if (text.size() > kMaxKeyBytes) {
        return Status::LimitExceeded("key column '" + column + "': " + std::to_string(text.size()) +
                                     " bytes, over " + std::to_string(kMaxKeyBytes));
      }
      const auto length = static_cast<uint16_t>(text.size());
      key.append(reinterpret_cast<const char*>(&length), sizeof(length));
    }
    key.append(text);
  }
  return key;
}

}  // namespace quiver
