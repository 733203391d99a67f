#include "server/codec/codec.h"

#include <arrow/api.h>
#include <arrow/compute/exec.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/reader.h>
#include <arrow/ipc/writer.h>
#include <arrow/json/from_string.h>
#include <arrow/util/float16.h>
#include <parquet/arrow/reader.h>

#include <charconv>
#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

#include "common/arrow_status.h"
#include "common/byte_size.h"
#include "common/decode_memory.h"
#include "common/json_shape.h"
#include "engine/dtype.h"
#include "server/codec/fetch_scanner.h"

namespace quiver::codec {
namespace {

using Json = nlohmann::json;

Result<Json> ParseJsonBody(std::string_view body) {
  JsonShape shape;
  QUIVER_RETURN_NOT_OK(CheckJsonShape(body, "the request body", kJsonLimits, &shape));
  // A document takes far more than its text (a 64 MB body of small numbers, about 600 MB): it
  // is held to the caller's decode budget before it is built.
  if (DecodeMemory::Scope* scope = DecodeMemory::CurrentScope();
      scope != nullptr && shape.DocumentBytes() > scope->limit()) {
    scope->MarkExceeded();
    return Status::LimitExceeded("the JSON body would take about " +
                                 FormatBytes(shape.DocumentBytes()) + " to parse");
  }
  Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Status::InvalidArgument("the request body is not valid JSON");
  if (!json.is_object()) return Status::InvalidArgument("the request body must be a JSON object");
  return json;
}

std::shared_ptr<arrow::Buffer> WrapBody(std::string_view body) {
  return std::make_shared<arrow::Buffer>(reinterpret_cast<const uint8_t*>(body.data()),
                                         static_cast<int64_t>(body.size()));
}

std::string RowContext(const std::string& what, size_t row) {
  return what + " row " + std::to_string(row);
}

// Keys come as utf8 or int64 arrays; these two convert straight from the parsed document
// instead of printing it and parsing it again.
Result<std::shared_ptr<arrow::Array>> StringArrayFromJson(const Json& values,
                                                          const std::string& what) {
  arrow::StringBuilder builder;
  QUIVER_RETURN_NOT_OK_ARROW(builder.Reserve(static_cast<int64_t>(values.size())));
  for (size_t i = 0; i < values.size(); ++i) {
    const Json& value = values[i];
    if (value.is_null()) {
      QUIVER_RETURN_NOT_OK_ARROW(builder.AppendNull());
    } else if (value.is_string()) {
      QUIVER_RETURN_NOT_OK_ARROW(builder.Append(value.get_ref<const std::string&>()));
    } else {
      return Status::InvalidArgument(RowContext(what, i) + ": " + value.dump() +
                                     " is not a utf8 value (a JSON string)");
    }
  }
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto array, builder.Finish());
  return array;
}

Result<std::shared_ptr<arrow::Array>> Int64ArrayFromJson(const Json& values,
                                                         const std::string& what) {
  arrow::Int64Builder builder;
  QUIVER_RETURN_NOT_OK_ARROW(builder.Reserve(static_cast<int64_t>(values.size())));
  for (size_t i = 0; i < values.size(); ++i) {
    const Json& value = values[i];
    if (value.is_null()) {
      builder.UnsafeAppendNull();
    } else if (value.is_number_integer()) {
      // nlohmann keeps integers above INT64_MAX as unsigned.
      if (value.is_number_unsigned() &&
          value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Status::InvalidArgument(RowContext(what, i) + ": " + value.dump() +
                                       " is out of range for int64");
      }
      builder.UnsafeAppend(value.get<int64_t>());
    } else if (value.is_number_float() && std::abs(value.get<double>()) >= 0x1p63) {
      // ... and integers above UINT64_MAX as doubles.
      return Status::InvalidArgument(RowContext(what, i) + ": " + value.dump() +
                                     " is out of range for int64");
    } else {
      return Status::InvalidArgument(RowContext(what, i) + ": " + value.dump() +
                                     " is not an int64 value (a JSON integer)");
    }
  }
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto array, builder.Finish());
  return array;
}

// A JSON array of values as an Arrow array of `type`; binary values are base64 strings.
Result<std::shared_ptr<arrow::Array>> ArrayFromJson(const Json& values,
                                                    const std::shared_ptr<arrow::DataType>& type,
                                                    const std::string& what) {
  if (!values.is_array()) return Status::InvalidArgument(what + " must be a JSON array");
  if (type->id() == arrow::Type::BINARY) {
    arrow::BinaryBuilder builder;
    for (size_t i = 0; i < values.size(); ++i) {
      const Json& value = values[i];
      if (value.is_null()) {
        QUIVER_RETURN_NOT_OK_ARROW(builder.AppendNull());
        continue;
      }
      if (!value.is_string()) {
        return Status::InvalidArgument(RowContext(what, i) + ": binary values are base64 strings");
      }
      auto bytes = Base64Decode(value.get_ref<const std::string&>());
      if (!bytes.ok()) return bytes.status().WithContext(RowContext(what, i));
      QUIVER_RETURN_NOT_OK_ARROW(builder.Append(*bytes));
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(auto array, builder.Finish());
    return array;
  }
  if (type->id() == arrow::Type::STRING) return StringArrayFromJson(values, what);
  if (type->id() == arrow::Type::INT64) return Int64ArrayFromJson(values, what);
  auto array = arrow::json::ArrayFromJSONString(type, values.dump());
  if (!array.ok()) {
    return Status::InvalidArgument(what + ": not " + DtypeName(*type) + " values (" +
                                   array.status().message() + ")");
  }
  return *array;
}

// A column's JSON values as the column's type, by the write rules (engine/write_cast.h): JSON has
// no types of its own, so a number goes into any numeric column it fits exactly (in range, no
// fraction dropped, no overflow to infinity), an integer into a date or timestamp column as days
// or units since the epoch; ISO-8601 strings into dates and timestamps are a conversion, which
// cast=strict refuses.
Result<std::shared_ptr<arrow::Array>> ColumnFromJson(const Json& values,
                                                     const std::shared_ptr<arrow::DataType>& type,
                                                     CastMode mode, const std::string& what) {
  if (!values.is_array()) return Status::InvalidArgument(what + " must be a JSON array");
  const Dtype* dtype = FindDtype(type->id());
  const CastFamily family = dtype == nullptr ? CastFamily::kBinary : dtype->family;
  if (family == CastFamily::kNumber) {
    bool floats = false, unsigned_big = false;
    for (size_t i = 0; i < values.size(); ++i) {
      const Json& value = values[i];
      if (value.is_null()) continue;
      if (!value.is_number()) {
        return Status::InvalidArgument(RowContext(what, i) + ": " + Excerpt(value.dump(), 64) +
                                       " is not a number");
      }
      floats |= value.is_number_float();
      unsigned_big |=
          value.is_number_unsigned() && value.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX);
    }
    std::shared_ptr<arrow::DataType> natural = floats         ? arrow::float64()
                                               : unsigned_big ? arrow::uint64()
                                                              : arrow::int64();
    auto array = arrow::json::ArrayFromJSONString(natural, values.dump());
    if (!array.ok()) return Status::InvalidArgument(what + ": " + array.status().message());
    return CastForWrite(*array, type, CastMode::kSafe, what);
  }
  if (family == CastFamily::kDate || family == CastFamily::kTimestamp) {
    bool strings = false, numbers = false;
    for (size_t i = 0; i < values.size(); ++i) {
      const Json& value = values[i];
      if (value.is_null()) continue;
      if (value.is_string()) {
        strings = true;
      } else if (value.is_number_integer()) {
        numbers = true;
      } else {
        return Status::InvalidArgument(RowContext(what, i) + ": " + Excerpt(value.dump(), 64) +
                                       " is not an ISO-8601 string or an integer");
      }
    }
    if (strings) {
      // The strings parsed by the rules, the integers as they are, each row from its own.
      Json text = Json::array(), integers = Json::array();
      for (const Json& value : values) {
        text.push_back(value.is_string() ? value : Json());
        integers.push_back(value.is_string() ? Json() : value);
      }
      QUIVER_ASSIGN_OR_RETURN(auto parsed, StringArrayFromJson(text, what));
      QUIVER_ASSIGN_OR_RETURN(parsed, CastForWrite(parsed, type, mode, what));
      if (!numbers) return parsed;
      QUIVER_ASSIGN_OR_RETURN(auto counted, ArrayFromJson(integers, type, what));
      auto merged = arrow::compute::CallFunction("coalesce", {parsed, counted});
      if (!merged.ok()) return Status::InvalidArgument(what + ": " + merged.status().message());
      return merged->make_array();
    }
  }
  if (family == CastFamily::kList && arrow::is_floating(type->field(0)->type()->id())) {
    // Elements parsed as float64, then narrowed by the rules (no overflow to infinity).
    const auto wide =
        type->id() == arrow::Type::FIXED_SIZE_LIST
            ? arrow::fixed_size_list(
                  arrow::float64(), static_cast<const arrow::FixedSizeListType&>(*type).list_size())
            : arrow::list(arrow::float64());
    auto array = arrow::json::ArrayFromJSONString(wide, values.dump());
    if (!array.ok()) {
      return Status::InvalidArgument(what + ": not " + DtypeName(*type) + " values (" +
                                     array.status().message() + ")");
    }
    return CastForWrite(*array, type, CastMode::kSafe, what);
  }
  return ArrayFromJson(values, type, what);
}

// "keys": an array of keys, or a composite key's object of one array per key column.
Result<std::shared_ptr<arrow::Array>> KeysArrayFromJson(const Json& keys,
                                                        const TableSchema& schema) {
  if (!schema.composite_key()) return ArrayFromJson(keys, schema.key().type, "\"keys\"");
  if (!keys.is_object()) {
    return Status::InvalidArgument(
        "\"keys\" must be an object of one array per key column (the key is " + schema.KeyNames() +
        "), like {\"" + schema.key().name + "\": [...], ...}");
  }
  arrow::ArrayVector parts;
  std::vector<std::string> names;
  for (const auto& [name, values] : keys.items()) {
    const int index = schema.FindColumn(name);
    if (index < 0 || !schema.IsKeyColumn(index)) {
      return Status::InvalidArgument("\"keys\" has '" + Excerpt(name, 64) +
                                     "', which is not a key column (the key is " +
                                     schema.KeyNames() + ")");
    }
    QUIVER_ASSIGN_OR_RETURN(
        std::shared_ptr<arrow::Array> part,
        ArrayFromJson(values, schema.columns()[index].type, "\"keys\" '" + name + "'"));
    if (!parts.empty() && part->length() != parts[0]->length()) {
      return Status::InvalidArgument("\"keys\": '" + name + "' has " +
                                     std::to_string(part->length()) + " values, '" + names[0] +
                                     "' " + std::to_string(parts[0]->length()));
    }
    parts.push_back(std::move(part));
    names.push_back(name);
  }
  if (parts.empty()) {
    return Status::InvalidArgument("\"keys\" names no key column (the key is " + schema.KeyNames() +
                                   ")");
  }
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> structs,
                                arrow::StructArray::Make(parts, names));
  return structs;
}

Result<std::shared_ptr<arrow::Array>> KeysFromJson(const Json& json, const TableSchema& schema) {
  auto keys = json.find("keys");
  if (keys == json.end()) return Status::InvalidArgument("the request body has no \"keys\"");
  return KeysArrayFromJson(*keys, schema);
}

Status ValidateUntrusted(const arrow::RecordBatch& batch) {
  arrow::Status status = batch.ValidateFull();
  if (!status.ok()) return Status::InvalidArgument("invalid Arrow data: " + status.message());
  return Status::OK();
}

// JSON text of one value of `array`.
void AppendJsonValue(std::string& out, const arrow::Array& array, int64_t i);

void AppendJsonString(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out += escaped;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void AppendJsonList(std::string& out, const arrow::Array& values, int64_t begin, int64_t end) {
  out += '[';
  for (int64_t j = begin; j < end; ++j) {
    if (j > begin) out += ',';
    AppendJsonValue(out, values, j);
  }
  out += ']';
}

void AppendJsonValue(std::string& out, const arrow::Array& array, int64_t i) {
  const Dtype* dtype = FindDtype(array.type_id());
  if (array.IsNull(i) || dtype == nullptr) {  // no other type is ever stored
    out += "null";
    return;
  }
  switch (dtype->format) {
    case ValueFormat::kString:
      AppendJsonString(out, static_cast<const arrow::StringArray&>(array).GetView(i));
      return;
    case ValueFormat::kBinary:
      AppendJsonString(out, Base64Encode(static_cast<const arrow::BinaryArray&>(array).GetView(i)));
      return;
    case ValueFormat::kList:
      if (array.type_id() == arrow::Type::LIST) {
        const auto& list = static_cast<const arrow::ListArray&>(array);
        AppendJsonList(out, *list.values(), list.value_offset(i), list.value_offset(i + 1));
      } else {
        const auto& list = static_cast<const arrow::FixedSizeListArray&>(array);
        AppendJsonList(out, *list.values(), list.value_offset(i), list.value_offset(i + 1));
      }
      return;
    case ValueFormat::kFloat:
    case ValueFormat::kHalfFloat: {
      const bool finite =
          array.type_id() == arrow::Type::HALF_FLOAT
              ? arrow::util::Float16::FromBits(
                    static_cast<const arrow::HalfFloatArray&>(array).Value(i))
                    .is_finite()
          : array.type_id() == arrow::Type::FLOAT
              ? std::isfinite(static_cast<const arrow::FloatArray&>(array).Value(i))
              : std::isfinite(static_cast<const arrow::DoubleArray&>(array).Value(i));
      if (!finite) {  // JSON has no NaN or infinity
        out += "null";
        return;
      }
      AppendValueText(out, array, i);
      return;
    }
    case ValueFormat::kBool:
    case ValueFormat::kInteger:
      AppendValueText(out, array, i);
      return;
  }
}

}  // namespace

namespace {

// "columns" of a fetch body or ticket (absent or null: none named).
Status ColumnsFromJson(const Json& json, std::vector<std::string>* columns) {
  auto names = json.find("columns");
  if (names == json.end() || names->is_null()) return Status::OK();
  if (!names->is_array()) {
    return Status::InvalidArgument("\"columns\" must be an array of column names");
  }
  for (const Json& name : *names) {
    if (!name.is_string()) {
      return Status::InvalidArgument("\"columns\" must be an array of column names");
    }
    columns->push_back(name.get<std::string>());
  }
  return Status::OK();
}

// The keys of a scanned body as an array of the key type; nullopt when they are not of its kind
// (the general parser then names the error).
std::optional<std::shared_ptr<arrow::Array>> ScannedKeys(const ScannedFetch& scanned,
                                                         const arrow::DataType& type) {
  using Kind = ScannedFetch::KeyKind;
  const auto length = static_cast<int64_t>(scanned.key_is_null.size());
  if (type.id() == arrow::Type::STRING && scanned.key_kind != Kind::kInteger) {
    arrow::StringBuilder builder;
    if (!builder.Reserve(length).ok()) return std::nullopt;
    for (int64_t i = 0; i < length; ++i) {
      const bool ok = scanned.key_is_null[i] ? builder.AppendNull().ok()
                                             : builder.Append(scanned.string_keys[i]).ok();
      if (!ok) return std::nullopt;
    }
    auto array = builder.Finish();
    if (!array.ok()) return std::nullopt;
    return *array;
  }
  if (type.id() == arrow::Type::INT64 && scanned.key_kind != Kind::kString) {
    arrow::Int64Builder builder;
    if (!builder.Reserve(length).ok()) return std::nullopt;
    for (int64_t i = 0; i < length; ++i) {
      if (scanned.key_is_null[i]) {
        builder.UnsafeAppendNull();
      } else {
        builder.UnsafeAppend(scanned.integer_keys[i]);
      }
    }
    auto array = builder.Finish();
    if (!array.ok()) return std::nullopt;
    return *array;
  }
  return std::nullopt;
}

}  // namespace

Result<FetchRequest> ParseJsonFetch(std::string_view body, const TableSchema& schema) {
  if (auto scanned = ScanFetchJson(body); scanned && scanned->has_keys && !schema.composite_key()) {
    if (auto keys = ScannedKeys(*scanned, *schema.key().type)) {
      return FetchRequest{std::move(*keys), std::move(scanned->columns)};
    }
  }
  return internal::ParseJsonFetchGeneral(body, schema);
}

namespace internal {

Result<FetchRequest> ParseJsonFetchGeneral(std::string_view body, const TableSchema& schema) {
  QUIVER_ASSIGN_OR_RETURN(Json json, ParseJsonBody(body));
  FetchRequest request;
  QUIVER_ASSIGN_OR_RETURN(request.keys, KeysFromJson(json, schema));
  QUIVER_RETURN_NOT_OK(ColumnsFromJson(json, &request.columns));
  return request;
}

}  // namespace internal

Result<FetchTicket> ParseFetchTicket(
    std::string_view body,
    const std::function<Result<std::shared_ptr<Table>>(std::string_view)>& find_table,
    std::string_view what) {
  if (auto scanned = ScanFetchJson(body); scanned && scanned->table) {
    FetchTicket ticket;
    QUIVER_ASSIGN_OR_RETURN(ticket.table, find_table(*scanned->table));
    std::optional<std::shared_ptr<arrow::Array>> keys;
    const TableSchema& schema = ticket.table->schema();
    if (scanned->has_keys && !schema.composite_key()) {
      keys = ScannedKeys(*scanned, *schema.key().type);
    }
    if (!scanned->has_keys || keys) {
      if (keys) ticket.keys = std::move(*keys);
      ticket.columns = std::move(scanned->columns);
      ticket.found_column = scanned->found.value_or(false);
      return ticket;
    }
  }
  QUIVER_RETURN_NOT_OK(CheckJsonShape(body, what));
  Json json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return Status::InvalidArgument(std::string(what) +
                                   " is not a JSON object like {\"table\": ..., \"keys\": [...]}");
  }
  auto table = json.find("table");
  if (table == json.end() || !table->is_string()) {
    return Status::InvalidArgument(std::string(what) + " has no \"table\" (a string)");
  }
  FetchTicket ticket;
  QUIVER_ASSIGN_OR_RETURN(ticket.table, find_table(table->get_ref<const std::string&>()));
  if (auto keys = json.find("keys"); keys != json.end() && !keys->is_null()) {
    QUIVER_ASSIGN_OR_RETURN(ticket.keys, KeysArrayFromJson(*keys, ticket.table->schema()));
  }
  QUIVER_RETURN_NOT_OK(ColumnsFromJson(json, &ticket.columns));
  if (auto found = json.find("found"); found != json.end() && !found->is_null()) {
    if (!found->is_boolean()) return Status::InvalidArgument("\"found\" must be true or false");
    ticket.found_column = found->get<bool>();
  }
  if (auto with_ttl = json.find("with_ttl"); with_ttl != json.end() && !with_ttl->is_null()) {
    if (!with_ttl->is_boolean()) {
      return Status::InvalidArgument("\"with_ttl\" must be true or false");
    }
    ticket.with_ttl = with_ttl->get<bool>();
  }
  if (auto ttl = json.find("ttl"); ttl != json.end() && !ttl->is_null()) {
    if (!ttl->is_number()) return Status::InvalidArgument("ttl must be a number of seconds");
    QUIVER_ASSIGN_OR_RETURN(ticket.ttl_ms, TtlFromSeconds(ttl->get<double>(), "ttl"));
  }
  if (auto cast = json.find("cast"); cast != json.end() && !cast->is_null()) {
    if (!cast->is_string()) return Status::InvalidArgument("cast must be \"safe\" or \"strict\"");
    QUIVER_ASSIGN_OR_RETURN(ticket.cast, ParseCastMode(cast->get<std::string>()));
  }
  return ticket;
}

Result<int64_t> ParseTtl(std::string_view seconds) {
  double value = 0;
  const char* end = seconds.data() + seconds.size();
  auto [stop, error] = std::from_chars(seconds.data(), end, value);
  if (seconds.empty() || error != std::errc() || stop != end) {
    return Status::InvalidArgument("ttl must be a number of seconds, not '" +
                                   std::string(seconds.substr(0, 64)) + "'");
  }
  return TtlFromSeconds(value, "ttl");
}

Result<std::shared_ptr<arrow::Array>> ParseJsonKeys(std::string_view body,
                                                    const TableSchema& schema) {
  if (auto scanned = ScanFetchJson(body); scanned && scanned->has_keys && !schema.composite_key()) {
    if (auto keys = ScannedKeys(*scanned, *schema.key().type)) return std::move(*keys);
  }
  QUIVER_ASSIGN_OR_RETURN(Json json, ParseJsonBody(body));
  return KeysFromJson(json, schema);
}

Result<std::shared_ptr<arrow::Table>> ParseIpcTable(std::string_view body) {
  auto input = std::make_shared<arrow::io::BufferReader>(WrapBody(body));
  arrow::ipc::IpcReadOptions options = arrow::ipc::IpcReadOptions::Defaults();
  // Buffer offsets come from the (untrusted) message: copy any misaligned buffer to aligned
  // memory rather than read an int32 offset from an odd address.
  options.ensure_alignment = arrow::ipc::Alignment::kDataTypeSpecificAlignment;
  options.use_threads = false;  // the work stays on the request's thread (and DecodeMemory scope)
  options.memory_pool = DecodeMemory::pool();
  auto opened = arrow::ipc::RecordBatchStreamReader::Open(input, options);
  if (!opened.ok()) {
    return Status::InvalidArgument("the body is not an Arrow IPC stream: " +
                                   opened.status().message());
  }
  arrow::RecordBatchVector batches;
  for (;;) {
    std::shared_ptr<arrow::RecordBatch> batch;
    arrow::Status read = (*opened)->ReadNext(&batch);
    if (!read.ok()) {
      return Status::InvalidArgument("bad Arrow IPC stream: " + read.message());
    }
    if (!batch) break;
    QUIVER_RETURN_NOT_OK(ValidateUntrusted(*batch));
    batches.push_back(std::move(batch));
  }
  auto table = arrow::Table::FromRecordBatches((*opened)->schema(), batches);
  if (!table.ok()) return Status::InvalidArgument(table.status().message());
  return *table;
}

Result<std::shared_ptr<arrow::Array>> ParseIpcKeys(std::string_view body,
                                                   const TableSchema& schema) {
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Table> table, ParseIpcTable(body));
  arrow::ArrayVector columns;
  for (const auto& column : table->columns()) {
    const auto& chunks = column->chunks();
    if (chunks.size() == 1) {
      columns.push_back(chunks[0]);
      continue;
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(auto joined, chunks.empty()
                                                   ? arrow::MakeEmptyArray(column->type())
                                                   : arrow::Concatenate(chunks));
    columns.push_back(std::move(joined));
  }
  return KeysFromColumns(columns, table->schema()->fields(), schema, "an Arrow IPC fetch body");
}

Result<std::shared_ptr<arrow::Array>> KeysFromColumns(const arrow::ArrayVector& columns,
                                                      const arrow::FieldVector& fields,
                                                      const TableSchema& schema,
                                                      std::string_view what) {
  if (!schema.composite_key()) {
    if (columns.size() != 1) {
      return Status::InvalidArgument(std::string(what) + " has exactly one column, the keys; " +
                                     "this one has " + std::to_string(columns.size()));
    }
    return columns[0];
  }
  // One column that is not a key column: the keys of a single key, which Table::Read refuses
  // saying how a composite key's are given.
  if (columns.size() == 1) {
    const int index = schema.FindColumn(fields[0]->name());
    if (index < 0 || !schema.IsKeyColumn(index)) return columns[0];
  }
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> keys,
                                arrow::StructArray::Make(columns, fields));
  return keys;
}

Result<std::shared_ptr<arrow::Table>> ParseParquetTable(std::string_view body) {
  auto input = std::make_shared<arrow::io::BufferReader>(WrapBody(body));
  // Pages, dictionaries and arrays all come from DecodeMemory's pool, on this thread: a file
  // that decodes to more than its scope allows fails at the allocation that goes past it.
  parquet::arrow::FileReaderBuilder builder;
  parquet::ReaderProperties properties(DecodeMemory::pool());
  if (arrow::Status opened = builder.Open(input, properties); !opened.ok()) {
    return Status::InvalidArgument("the body is not a Parquet file: " + opened.message());
  }
  parquet::ArrowReaderProperties arrow_properties;
  arrow_properties.set_use_threads(false);
  std::unique_ptr<parquet::arrow::FileReader> file;
  arrow::Status built =
      builder.memory_pool(DecodeMemory::pool())->properties(arrow_properties)->Build(&file);
  if (!built.ok()) {
    return Status::InvalidArgument("the body is not a Parquet file: " + built.message());
  }
  auto table = file->ReadTable();
  if (!table.ok()) {
    return Status::InvalidArgument("bad Parquet file: " + table.status().message());
  }
  arrow::Status valid = (*table)->ValidateFull();
  if (!valid.ok()) return Status::InvalidArgument("invalid Parquet data: " + valid.message());
  return *table;
}

Result<std::shared_ptr<arrow::RecordBatch>> ParseJsonWrite(std::string_view body,
                                                           const TableSchema& schema,
                                                           std::optional<CastMode> cast) {
  QUIVER_ASSIGN_OR_RETURN(Json json, ParseJsonBody(body));
  auto columns = json.find("columns");
  if (columns == json.end() || !columns->is_object()) {
    return Status::InvalidArgument(
        "the request body needs \"columns\": an object of column name -> [values]");
  }
  arrow::FieldVector fields;
  arrow::ArrayVector arrays;
  for (const auto& [name, values] : columns->items()) {
    const int index = schema.FindColumn(name);
    if (index < 0) return Status::NotFound("the table has no column '" + name + "'");
    const auto& type = schema.columns()[index].type;
    QUIVER_ASSIGN_OR_RETURN(auto array,
                            schema.IsKeyColumn(index)
                                ? ArrayFromJson(values, type, "column '" + name + "'")
                                : ColumnFromJson(values, type, cast.value_or(schema.cast_mode()),
                                                 "column '" + name + "'"));
    if (!arrays.empty() && array->length() != arrays[0]->length()) {
      return Status::InvalidArgument(
          "column '" + name + "' has " + std::to_string(array->length()) + " values, column '" +
          fields[0]->name() + "' has " + std::to_string(arrays[0]->length()));
    }
    fields.push_back(arrow::field(name, type));
    arrays.push_back(std::move(array));
  }
  const int64_t rows = arrays.empty() ? 0 : arrays[0]->length();
  return arrow::RecordBatch::Make(arrow::schema(std::move(fields)), rows, std::move(arrays));
}

std::string FetchResultToJson(const ReadResult& result) {
  const arrow::RecordBatch& batch = *result.batch;
  std::string out = "{\"columns\":{";
  for (int c = 0; c < batch.num_columns(); ++c) {
    if (c > 0) out += ',';
    AppendJsonString(out, batch.schema()->field(c)->name());
    out += ':';
    AppendJsonList(out, *batch.column(c), 0, batch.num_rows());
  }
  out += "},\"found\":[";
  for (int64_t i = 0; i < result.found->length(); ++i) {
    if (i > 0) out += ',';
    out += result.found->Value(i) ? "true" : "false";
  }
  out += ']';
  if (result.ttl_ms != nullptr) {
    out += ",\"ttl_ms\":";
    AppendJsonList(out, *result.ttl_ms, 0, result.ttl_ms->length());
  }
  out += '}';
  return out;
}

Result<std::shared_ptr<arrow::RecordBatch>> FetchResultBatch(const ReadResult& result,
                                                             bool found_column) {
  std::shared_ptr<arrow::RecordBatch> batch = result.batch;
  if (result.ttl_ms != nullptr) {
    QUIVER_ASSIGN_OR_RETURN_ARROW(
        batch, batch->AddColumn(batch->num_columns(),
                                arrow::field(std::string(kTtlColumn), arrow::int64(), true),
                                result.ttl_ms));
  }
  if (found_column) {
    QUIVER_ASSIGN_OR_RETURN_ARROW(
        batch, batch->AddColumn(batch->num_columns(),
                                arrow::field(std::string(kFoundColumn), arrow::boolean(), false),
                                result.found));
  }
  return batch;
}

Result<std::shared_ptr<arrow::Schema>> FetchResultSchema(std::shared_ptr<arrow::Schema> schema,
                                                         bool found_column, bool ttl_column) {
  if (ttl_column) {
    QUIVER_ASSIGN_OR_RETURN_ARROW(
        schema, schema->AddField(schema->num_fields(),
                                 arrow::field(std::string(kTtlColumn), arrow::int64(), true)));
  }
  if (found_column) {
    QUIVER_ASSIGN_OR_RETURN_ARROW(
        schema, schema->AddField(schema->num_fields(),
                                 arrow::field(std::string(kFoundColumn), arrow::boolean(), false)));
  }
  return schema;
}

Result<std::string> FetchResultToIpc(const ReadResult& result, bool found_column) {
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatch> batch,
                          FetchResultBatch(result, found_column));
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto sink, arrow::io::BufferOutputStream::Create());
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto writer, arrow::ipc::MakeStreamWriter(sink, batch->schema()));
  QUIVER_RETURN_NOT_OK_ARROW(writer->WriteRecordBatch(*batch));
  QUIVER_RETURN_NOT_OK_ARROW(writer->Close());
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto buffer, sink->Finish());
  return buffer->ToString();
}

namespace {
constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}  // namespace

Result<std::vector<std::string>> ParseSnapshotRequest(std::string_view body) {
  std::vector<std::string> tables;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return tables;
  QUIVER_RETURN_NOT_OK(CheckJsonShape(body, "the snapshot request"));
  const nlohmann::json json = nlohmann::json::parse(body, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return Status::InvalidArgument("a snapshot request is empty or a JSON object");
  }
  for (const auto& [key, value] : json.items()) {
    if (key != "tables") {
      return Status::InvalidArgument("a snapshot request has no field '" + key +
                                     "' (only \"tables\")");
    }
    if (!value.is_array()) {
      return Status::InvalidArgument("\"tables\" must be a list of table names");
    }
    for (const auto& name : value) {
      if (!name.is_string()) {
        return Status::InvalidArgument("\"tables\" must be a list of table names");
      }
      tables.push_back(name.get<std::string>());
    }
  }
  return tables;
}

DecodeLimit WriteDecodeLimit(uint64_t max_decode_bytes, const MemoryLimit& memory) {
  DecodeLimit limit{max_decode_bytes, false};
  // Not what is free now: decoding is transient, and a write that only rewrites stored rows
  // needs its batch decoded even at the limit (the engine then admits it, or evicts, or refuses
  // it before it is logged). Decoding is bounded by maxmemory itself, so that resident memory
  // stays under twice maxmemory, and under maxmemory plus the decode budget.
  const uint64_t max_memory = memory.MaxMemory();
  if (max_memory != 0 && max_memory < limit.bytes) limit = DecodeLimit{max_memory, true};
  return limit;
}

Status DecodeFailure(const Status& status, const DecodeMemory::Scope& scope,
                     const DecodeLimit& limit) {
  if (!scope.exceeded()) return status;
  if (scope.process_limit_hit()) {
    return Status::OutOfMemory(
        "decoding the request body would take the memory of all requests being decoded past " +
        FormatBytes(DecodeMemory::ProcessLimit()) + " (--max-decode-bytes); retry later");
  }
  if (limit.memory_bound) {
    return Status::OutOfMemory("decoding the request body needs more than maxmemory (" +
                               FormatBytes(limit.bytes) +
                               "); write less at a time or raise maxmemory");
  }
  return Status::LimitExceeded("the request body decodes to more than " + FormatBytes(limit.bytes) +
                               " (--max-decode-bytes); send smaller batches");
}

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) |
                       (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kBase64[v >> 18];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += kBase64[v & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kBase64[v >> 18];
    out += kBase64[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? kBase64[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0)
    return Status::InvalidArgument("base64 text length is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  auto decode = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (size_t i = 0; i < text.size(); i += 4) {
    int values[4];
    int padding = 0;
    for (int j = 0; j < 4; ++j) {
      const char c = text[i + j];
      if (c == '=' && i + 4 == text.size() && j >= 2) {
        values[j] = 0;
        ++padding;
      } else if (padding > 0 || (values[j] = decode(c)) < 0) {
        return Status::InvalidArgument("invalid base64 text");
      }
    }
    const uint32_t v = (values[0] << 18) | (values[1] << 12) | (values[2] << 6) | values[3];
    out += static_cast<char>(v >> 16);
    if (padding < 2) out += static_cast<char>((v >> 8) & 0xFF);
    if (padding < 1) out += static_cast<char>(v & 0xFF);
  }
  return out;
}

std::string TableInfoToJson(const Table& table) {
  using Json = nlohmann::ordered_json;  // members in the order written
  const TableSchema& schema = table.schema();
  const TableStats stats = table.Stats();
  Json json = {{"name", table.name()},
               {"id", table.id()},
               {"key", schema.composite_key() ? Json::parse(schema.ToJson())["key"]
                                              : Json(schema.key().name)},
               {"rows", stats.rows},
               {"bytes", stats.bytes}};
  json["ttl"] = schema.ttl_ms() == 0 ? Json() : Json(static_cast<double>(schema.ttl_ms()) / 1000);
  json["event_time"] = schema.event_time_index() < 0
                           ? Json()
                           : Json(schema.columns()[schema.event_time_index()].name);
  const Json full = Json::parse(schema.ToJson());
  Json columns = Json::array();
  for (const auto& [name, spec] : full["columns"].items()) {
    Json column = {{"name", name}};
    column.update(spec);
    columns.push_back(std::move(column));
  }
  json["columns"] = std::move(columns);
  json["schema"] = full;
  json["memory"] = {
      {"row_bytes", stats.row_bytes},   {"index_bytes", stats.index_bytes},
      {"heap_bytes", stats.heap_bytes}, {"heap_garbage_bytes", stats.heap_garbage_bytes},
      {"row_width", stats.row_width},   {"rows_with_ttl", stats.rows_with_ttl},
      {"expired", stats.expired},       {"evicted", stats.evicted}};
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace quiver::codec
