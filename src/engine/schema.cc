#include "engine/schema.h"

#include <arrow/api.h>
#include <arrow/util/key_value_metadata.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "common/json_shape.h"
#include "engine/dtype.h"

namespace quiver {
namespace {

using Json = nlohmann::ordered_json;

// A dtype usable as a list or embedding element (the numbers).
bool IsElement(const arrow::DataType& type) {
  const Dtype* dtype = FindDtype(type.id());
  return dtype != nullptr && dtype->element;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// "name[args]" -> args, or nullopt when `spelling` is not of that form.
std::optional<std::string_view> Bracketed(std::string_view spelling, std::string_view name) {
  if (spelling.size() < name.size() + 2 || spelling.substr(0, name.size()) != name ||
      spelling[name.size()] != '[' || spelling.back() != ']') {
    return std::nullopt;
  }
  return spelling.substr(name.size() + 1, spelling.size() - name.size() - 2);
}

Result<std::shared_ptr<arrow::DataType>> ParseElement(std::string_view name) {
  const Dtype* dtype = FindScalarDtype(name);
  if (dtype != nullptr && dtype->element) return dtype->make();
  std::string numbers;
  for (const Dtype& each : Dtypes()) {
    if (each.element) numbers += (numbers.empty() ? "" : ", ") + std::string(each.name);
  }
  return Status::InvalidArgument("'" + std::string(name) + "' is not a numeric dtype (" + numbers +
                                 ")");
}

Status CheckColumnName(std::string_view name) {
  if (name.empty()) return Status::InvalidArgument("a column name is empty");
  if (name.size() > 255) {
    return Status::InvalidArgument("column name '" + std::string(name.substr(0, 32)) +
                                   "...' is longer than 255 bytes");
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20) {
      return Status::InvalidArgument("column name '" + std::string(name) +
                                     "' contains a control character");
    }
  }
  return Status::OK();
}

// `scalar` as `type`, by the write rules (engine/write_cast.h, "safe").
Result<std::shared_ptr<arrow::Scalar>> CastScalar(const arrow::Scalar& scalar,
                                                  const std::shared_ptr<arrow::DataType>& type) {
  auto array = arrow::MakeArrayFromScalar(scalar, 1);
  if (!array.ok()) return Status::InvalidArgument(array.status().message());
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> cast,
                          CastForWrite(*array, type, CastMode::kSafe, "the default"));
  auto value = cast->GetScalar(0);
  if (!value.ok()) return Status::InvalidArgument(value.status().message());
  return *value;
}

}  // namespace

Result<std::shared_ptr<arrow::Scalar>> ParseDefault(std::string_view text,
                                                    const std::shared_ptr<arrow::DataType>& type,
                                                    std::string_view column) {
  const std::string context = "column '" + std::string(column) + "': default ";
  Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return Status::InvalidArgument(context + "is not valid JSON");
  if (value.is_null()) return std::shared_ptr<arrow::Scalar>();
  const Dtype* dtype = FindDtype(type->id());
  const std::string shown = Excerpt(value.dump(), 64);
  std::shared_ptr<arrow::Scalar> given;
  switch (dtype == nullptr ? CastFamily::kList : dtype->family) {
    case CastFamily::kBool:
      if (!value.is_boolean()) return Status::InvalidArgument(context + "must be true or false");
      given = std::make_shared<arrow::BooleanScalar>(value.get<bool>());
      break;
    case CastFamily::kNumber:
      if (value.is_number_unsigned()) {
        given = std::make_shared<arrow::UInt64Scalar>(value.get<uint64_t>());
      } else if (value.is_number_integer()) {
        given = std::make_shared<arrow::Int64Scalar>(value.get<int64_t>());
      } else if (value.is_number_float()) {
        given = std::make_shared<arrow::DoubleScalar>(value.get<double>());
      } else {
        return Status::InvalidArgument(context + "must be a number, not " + shown);
      }
      break;
    case CastFamily::kString:
    case CastFamily::kBinary:
      if (!value.is_string()) return Status::InvalidArgument(context + "must be a string");
      given = std::make_shared<arrow::StringScalar>(value.get<std::string>());
      break;
    case CastFamily::kDate:
    case CastFamily::kTimestamp:
      if (value.is_string()) {
        given = std::make_shared<arrow::StringScalar>(value.get<std::string>());
      } else if (value.is_number_integer() && type->id() == arrow::Type::DATE32 &&
                 value.get<int64_t>() == static_cast<int32_t>(value.get<int64_t>())) {
        // Days or units since the epoch are the value itself, not a conversion.
        return std::shared_ptr<arrow::Scalar>(
            std::make_shared<arrow::Date32Scalar>(static_cast<int32_t>(value.get<int64_t>())));
      } else if (value.is_number_integer() && type->id() == arrow::Type::TIMESTAMP) {
        return std::shared_ptr<arrow::Scalar>(
            std::make_shared<arrow::TimestampScalar>(value.get<int64_t>(), type));
      } else {
        return Status::InvalidArgument(context + "must be an ISO-8601 string or an integer, not " +
                                       shown);
      }
      break;
    case CastFamily::kList:
      return Status::InvalidArgument(context + "is supported for scalar dtypes only, not " +
                                     DtypeName(*type));
  }
  auto cast = CastScalar(*given, type);
  if (!cast.ok()) {
    return Status::InvalidArgument(context + shown + " does not fit " + DtypeName(*type) + ": " +
                                   cast.status().message());
  }
  return cast;
}

std::string DefaultJson(const arrow::Scalar& value) {
  const auto number = [&](const std::shared_ptr<arrow::DataType>& as) {
    auto cast = CastScalar(value, as);
    return cast.ok() ? *cast : nullptr;
  };
  Json json;
  switch (value.type->id()) {
    case arrow::Type::BOOL:
      json = static_cast<const arrow::BooleanScalar&>(value).value;
      break;
    case arrow::Type::STRING:
    case arrow::Type::BINARY:
      json = std::string(static_cast<const arrow::BaseBinaryScalar&>(value).view());
      break;
    case arrow::Type::UINT64:
      json = static_cast<const arrow::UInt64Scalar&>(value).value;
      break;
    case arrow::Type::HALF_FLOAT:
    case arrow::Type::FLOAT:
    case arrow::Type::DOUBLE:
      if (auto d = number(arrow::float64())) {
        json = static_cast<const arrow::DoubleScalar&>(*d).value;
      }
      break;
    case arrow::Type::DATE32:
      json = static_cast<const arrow::Date32Scalar&>(value).value;
      break;
    case arrow::Type::TIMESTAMP:
      json = static_cast<const arrow::TimestampScalar&>(value).value;
      break;
    default:  // the other integers
      if (auto i = number(arrow::int64())) json = static_cast<const arrow::Int64Scalar&>(*i).value;
      break;
  }
  return json.dump();
}

std::string DtypeName(const arrow::DataType& type) {
  const Dtype* dtype = FindDtype(type.id());
  if (dtype != nullptr && dtype->make != nullptr) return std::string(dtype->name);
  switch (type.id()) {
    case arrow::Type::TIMESTAMP: {
      const auto& ts = static_cast<const arrow::TimestampType&>(type);
      static const char* kUnits[] = {"s", "ms", "us", "ns"};
      std::string out = "timestamp[";
      out += kUnits[static_cast<int>(ts.unit())];
      if (!ts.timezone().empty()) out += ", tz=" + ts.timezone();
      return out + "]";
    }
    case arrow::Type::LIST:
      return "list[" + DtypeName(*static_cast<const arrow::ListType&>(type).value_type()) + "]";
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& fsl = static_cast<const arrow::FixedSizeListType&>(type);
      return "fixed_size_list[" + DtypeName(*fsl.value_type()) + ", " +
             std::to_string(fsl.list_size()) + "]";
    }
    default:
      return type.ToString();
  }
}

Result<std::shared_ptr<arrow::DataType>> ParseDtype(std::string_view spelling) {
  spelling = Trim(spelling);
  if (const Dtype* dtype = FindScalarDtype(spelling)) return dtype->make();
  if (auto args = Bracketed(spelling, "timestamp")) {
    std::string_view unit = *args, tz;
    if (size_t comma = args->find(','); comma != std::string_view::npos) {
      unit = Trim(args->substr(0, comma));
      tz = Trim(args->substr(comma + 1));
      if (tz.substr(0, 3) != "tz=" || tz.size() == 3) {
        return Status::InvalidArgument("dtype '" + std::string(spelling) +
                                       "': expected timestamp[<unit>, tz=<zone>]");
      }
      tz.remove_prefix(3);
    }
    arrow::TimeUnit::type time_unit;
    if (unit == "s")
      time_unit = arrow::TimeUnit::SECOND;
    else if (unit == "ms")
      time_unit = arrow::TimeUnit::MILLI;
    else if (unit == "us")
      time_unit = arrow::TimeUnit::MICRO;
    else if (unit == "ns")
      time_unit = arrow::TimeUnit::NANO;
    else {
      return Status::InvalidArgument("dtype '" + std::string(spelling) +
                                     "': the timestamp unit must be s, ms, us or ns");
    }
    return arrow::timestamp(time_unit, std::string(tz));
  }
  if (auto args = Bracketed(spelling, "list")) {
    auto element = ParseElement(Trim(*args));
    if (!element.ok()) return element.status().WithContext("dtype '" + std::string(spelling) + "'");
    return arrow::list(*element);
  }
  if (auto args = Bracketed(spelling, "fixed_size_list")) {
    size_t comma = args->find(',');
    if (comma == std::string_view::npos) {
      return Status::InvalidArgument("dtype '" + std::string(spelling) +
                                     "': expected fixed_size_list[<numeric>, <length>]");
    }
    auto element = ParseElement(Trim(args->substr(0, comma)));
    if (!element.ok()) return element.status().WithContext("dtype '" + std::string(spelling) + "'");
    std::string_view length_text = Trim(args->substr(comma + 1));
    int32_t length = 0;
    auto [end, ec] =
        std::from_chars(length_text.data(), length_text.data() + length_text.size(), length);
    if (ec != std::errc() || end != length_text.data() + length_text.size() || length <= 0) {
      return Status::InvalidArgument("dtype '" + std::string(spelling) +
                                     "': the length must be a positive integer");
    }
    return arrow::fixed_size_list(*element, length);
  }
  return Status::InvalidArgument("unknown dtype '" + std::string(spelling) +
                                 "'; accepted: " + AcceptedDtypes());
}

// A time zone Arrow and its clients can convert with: "UTC", an offset "+HH:MM" / "-HH:MM", or an
// IANA name from the system's time zone database (/usr/share/zoneinfo, Debian's tzdata, which
// pyarrow and pandas read too).
bool KnownTimeZone(std::string_view zone) {
  if (zone == "UTC" || zone == "Z") return true;
  if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    return digit(zone[1]) && digit(zone[2]) && digit(zone[4]) && digit(zone[5]) &&
           (zone[1] - '0') * 10 + (zone[2] - '0') <= 23 && zone[4] <= '5';
  }
  if (zone.empty() || zone.size() > 64 || zone.front() == '/' ||
      zone.find("..") != std::string_view::npos) {
    return false;
  }
  for (char c : zone) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '_' || c == '-' || c == '+';
    if (!ok) return false;
  }
  std::error_code error;
  return std::filesystem::is_regular_file("/usr/share/zoneinfo/" + std::string(zone), error);
}

Status CheckValueType(const arrow::DataType& type, const EngineLimits& limits) {
  if (FindDtype(type.id()) == nullptr) {
    return Status::InvalidArgument("type " + type.ToString() +
                                   " is not supported; accepted: " + AcceptedDtypes());
  }
  switch (type.id()) {
    case arrow::Type::LIST: {
      const auto& list = static_cast<const arrow::ListType&>(type);
      if (!IsElement(*list.value_type())) {
        return Status::InvalidArgument("list elements must be numeric, not " +
                                       list.value_type()->ToString());
      }
      return Status::OK();
    }
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& fsl = static_cast<const arrow::FixedSizeListType&>(type);
      if (!IsElement(*fsl.value_type())) {
        return Status::InvalidArgument("fixed_size_list elements must be numeric, not " +
                                       fsl.value_type()->ToString());
      }
      if (fsl.list_size() <= 0 || fsl.list_size() > limits.max_embedding_elements) {
        return Status::InvalidArgument("fixed_size_list length " + std::to_string(fsl.list_size()) +
                                       " is outside 1.." +
                                       std::to_string(limits.max_embedding_elements));
      }
      return Status::OK();
    }
    default:
      return Status::OK();
  }
}

namespace {

Status CheckSparse(const ColumnSpec& column) {
  const std::string where = "sparse column '" + column.name + "'";
  const arrow::Type::type id = column.type->id();
  if (id == arrow::Type::LIST || id == arrow::Type::FIXED_SIZE_LIST) {
    return Status::InvalidArgument(where + ": a sparse column holds a scalar dtype, not " +
                                   DtypeName(*column.type));
  }
  if (!column.nullable) {
    return Status::InvalidArgument(where + " must be nullable (a null is what it leaves out)");
  }
  if (column.default_value != nullptr) {
    return Status::InvalidArgument(where + " cannot have a default");
  }
  return Status::OK();
}

}  // namespace

Status CheckTimeZones(const TableSchema& schema) {
  for (const ColumnSpec& column : schema.columns()) {
    if (column.type->id() != arrow::Type::TIMESTAMP) continue;
    const std::string& zone = static_cast<const arrow::TimestampType&>(*column.type).timezone();
    if (!zone.empty() && !KnownTimeZone(zone)) {
      return Status::InvalidArgument("column '" + column.name + "': unknown time zone '" +
                                     Excerpt(zone, 64) +
                                     "' (an IANA name like Europe/Paris, UTC, or an offset "
                                     "like +02:00)");
    }
  }
  return Status::OK();
}

Status CheckTableName(std::string_view name) {
  if (name.empty() || name.size() > 128) {
    return Status::InvalidArgument("table name must be 1 to 128 characters long");
  }
  if (name[0] == '.' || name[0] == '-') {
    return Status::InvalidArgument("table name '" + std::string(name) +
                                   "' must not start with '.' or '-'");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) {
      return Status::InvalidArgument("table name '" + std::string(name) +
                                     "' may only contain letters, digits, '_', '.' and '-'");
    }
  }
  return Status::OK();
}

Result<TableSchema> TableSchema::Make(std::vector<ColumnSpec> columns, std::string_view key,
                                      std::string_view event_time, const EngineLimits& limits) {
  if (key.empty()) return Make(std::move(columns), std::vector<std::string>{}, event_time, limits);
  return Make(std::move(columns), std::vector<std::string>{std::string(key)}, event_time, limits);
}

Result<TableSchema> TableSchema::Make(std::vector<ColumnSpec> columns,
                                      const std::vector<std::string>& key,
                                      std::string_view event_time, const EngineLimits& limits) {
  if (columns.empty()) return Status::InvalidArgument("a schema needs at least its key column");
  if (static_cast<int>(columns.size()) > limits.max_columns) {
    return Status::LimitExceeded("a table has at most " + std::to_string(limits.max_columns) +
                                 " columns, the schema has " + std::to_string(columns.size()));
  }
  if (key.empty()) return Status::InvalidArgument("the schema names no key column");
  if (key.size() > kMaxKeyParts) {
    return Status::InvalidArgument("a composite key has at most " + std::to_string(kMaxKeyParts) +
                                   " columns, not " + std::to_string(key.size()));
  }
  TableSchema schema;
  schema.key_columns_.assign(key.size(), -1);
  std::set<std::string_view> names;
  for (size_t i = 0; i < columns.size(); ++i) {
    const ColumnSpec& column = columns[i];
    QUIVER_RETURN_NOT_OK(CheckColumnName(column.name));
    if (!names.insert(column.name).second) {
      return Status::InvalidArgument("column '" + column.name + "' appears twice");
    }
    if (!column.type) return Status::InvalidArgument("column '" + column.name + "' has no type");
    const auto part = std::find(key.begin(), key.end(), column.name);
    if (part != key.end()) {
      schema.key_columns_[part - key.begin()] = static_cast<int>(i);
      auto id = column.type->id();
      if (id != arrow::Type::STRING && id != arrow::Type::INT64) {
        return Status::InvalidArgument("key column '" + column.name +
                                       "' must be utf8 or int64, not " + DtypeName(*column.type));
      }
      if (column.nullable) {
        return Status::InvalidArgument("key column '" + column.name + "' cannot be nullable");
      }
      if (column.default_value != nullptr) {
        return Status::InvalidArgument("key column '" + column.name + "' cannot have a default");
      }
      if (column.sparse) {
        return Status::InvalidArgument("key column '" + column.name + "' cannot be sparse");
      }
    } else {
      Status type_ok = CheckValueType(*column.type, limits);
      if (!type_ok.ok()) return type_ok.WithContext("column '" + column.name + "'");
      if (column.sparse) QUIVER_RETURN_NOT_OK(CheckSparse(column));
      if (column.default_value != nullptr && !column.default_value->type->Equals(*column.type)) {
        return Status::InvalidArgument("column '" + column.name + "': default of type " +
                                       column.default_value->type->ToString() + ", not " +
                                       DtypeName(*column.type));
      }
    }
    if (!event_time.empty() && column.name == event_time) {
      schema.event_time_index_ = static_cast<int>(i);
      if (column.type->id() != arrow::Type::TIMESTAMP) {
        return Status::InvalidArgument("event-time column '" + column.name +
                                       "' must be a timestamp, not " + DtypeName(*column.type));
      }
      if (column.nullable) {
        return Status::InvalidArgument("event-time column '" + column.name +
                                       "' must not be nullable");
      }
    }
  }
  for (size_t p = 0; p < key.size(); ++p) {
    if (std::find(key.begin(), key.begin() + static_cast<std::ptrdiff_t>(p), key[p]) !=
        key.begin() + static_cast<std::ptrdiff_t>(p)) {
      return Status::InvalidArgument("key column '" + key[p] + "' is named twice in the key");
    }
    if (schema.key_columns_[p] < 0) {
      return Status::InvalidArgument("key column '" + key[p] + "' is not among the columns");
    }
  }
  schema.key_index_ = key.size() == 1 ? schema.key_columns_[0] : -1;
  if (!event_time.empty() && schema.event_time_index_ < 0) {
    return Status::InvalidArgument("event-time column '" + std::string(event_time) +
                                   "' is not among the columns");
  }
  if (schema.event_time_index_ >= 0 && schema.IsKeyColumn(schema.event_time_index_)) {
    return Status::InvalidArgument("the key column cannot be the event-time column");
  }
  schema.columns_ = std::move(columns);
  return schema;
}

Result<TableSchema> TableSchema::FromJson(std::string_view text, const EngineLimits& limits) {
  // Before the parse: an ordered_json object takes time quadratic in its members.
  const JsonShapeLimits shape_limits{.max_object_members = static_cast<size_t>(limits.max_columns)};
  if (Status shape = CheckJsonShape(text, "table schema", shape_limits); !shape.ok()) {
    if (shape.code() != StatusCode::kLimitExceeded) return shape;
    return Status::LimitExceeded("a table has at most " + std::to_string(limits.max_columns) +
                                 " columns; this schema has more");
  }
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Status::InvalidArgument("table schema is not valid JSON");
  if (!json.is_object()) return Status::InvalidArgument("table schema must be a JSON object");
  for (const auto& [field, value] : json.items()) {
    if (field != "key" && field != "columns" && field != "event_time" && field != "ttl" &&
        field != "cast") {
      return Status::InvalidArgument("table schema has unknown field '" + field +
                                     "' (expected key, columns, event_time, ttl, cast)");
    }
  }
  auto key_it = json.find("key");
  std::vector<std::string> key;
  if (key_it != json.end() && key_it->is_string()) {
    key.push_back(key_it->get<std::string>());
  } else if (key_it != json.end() && key_it->is_array() && !key_it->empty() &&
             key_it->size() <= kMaxKeyParts) {
    for (const Json& part : *key_it) {
      if (!part.is_string()) break;
      key.push_back(part.get<std::string>());
    }
  }
  if (key.empty() || (key_it->is_array() && key.size() != key_it->size())) {
    return Status::InvalidArgument(
        "table schema needs \"key\": the name of the key column, or a list of 1 to " +
        std::to_string(kMaxKeyParts) + " names for a composite key");
  }
  auto columns_it = json.find("columns");
  if (columns_it == json.end() || !columns_it->is_object()) {
    return Status::InvalidArgument(
        "table schema needs \"columns\": an object of column name -> {\"dtype\": ...}");
  }
  std::string event_time;
  if (auto it = json.find("event_time"); it != json.end() && !it->is_null()) {
    if (!it->is_string()) return Status::InvalidArgument("\"event_time\" must be a column name");
    event_time = it->get<std::string>();
  }
  std::vector<ColumnSpec> columns;
  for (const auto& [name, spec] : columns_it->items()) {
    if (!spec.is_object()) {
      return Status::InvalidArgument("column '" + name + "': expected {\"dtype\": ...}");
    }
    for (const auto& [field, value] : spec.items()) {
      if (field != "dtype" && field != "nullable" && field != "default" && field != "sparse") {
        return Status::InvalidArgument("column '" + name + "': unknown field '" + field +
                                       "' (expected dtype, nullable, default, sparse)");
      }
    }
    auto dtype_it = spec.find("dtype");
    if (dtype_it == spec.end() || !dtype_it->is_string()) {
      return Status::InvalidArgument("column '" + name + "': \"dtype\" must be a string");
    }
    auto type = ParseDtype(dtype_it->get<std::string>());
    if (!type.ok()) return type.status().WithContext("column '" + name + "'");
    bool nullable = std::find(key.begin(), key.end(), name) == key.end();
    if (auto it = spec.find("nullable"); it != spec.end()) {
      if (!it->is_boolean()) {
        return Status::InvalidArgument("column '" + name + "': \"nullable\" must be true or false");
      }
      nullable = it->get<bool>();
    }
    std::shared_ptr<arrow::Scalar> default_value;
    if (auto it = spec.find("default"); it != spec.end()) {
      QUIVER_ASSIGN_OR_RETURN(default_value, ParseDefault(it->dump(), *type, name));
    }
    bool sparse = false;
    if (auto it = spec.find("sparse"); it != spec.end()) {
      if (!it->is_boolean()) {
        return Status::InvalidArgument("column '" + name + "': \"sparse\" must be true or false");
      }
      sparse = it->get<bool>();
    }
    columns.push_back(ColumnSpec{name, std::move(type).value(), nullable, default_value, sparse});
  }
  int64_t ttl_ms = 0;
  if (auto it = json.find("ttl"); it != json.end() && !it->is_null()) {
    if (!it->is_number()) {
      return Status::InvalidArgument("\"ttl\" must be a number of seconds");
    }
    QUIVER_ASSIGN_OR_RETURN(ttl_ms, TtlFromSeconds(it->get<double>(), "the table's \"ttl\""));
  }
  CastMode cast = CastMode::kSafe;
  if (auto it = json.find("cast"); it != json.end() && !it->is_null()) {
    if (!it->is_string()) return Status::InvalidArgument("\"cast\" must be \"safe\" or \"strict\"");
    QUIVER_ASSIGN_OR_RETURN(cast, ParseCastMode(it->get<std::string>()));
  }
  QUIVER_ASSIGN_OR_RETURN(TableSchema schema, Make(std::move(columns), key, event_time, limits));
  QUIVER_ASSIGN_OR_RETURN(schema, schema.WithTtl(ttl_ms));
  return schema.WithCastMode(cast);
}

TableSchema TableSchema::WithCastMode(CastMode mode) const {
  TableSchema schema = *this;
  schema.cast_mode_ = mode;
  return schema;
}

Result<int64_t> TtlFromSeconds(double seconds, std::string_view what) {
  const double ms = seconds * 1000;
  if (!(ms >= 1) || ms > static_cast<double>(kMaxTtlMs)) {
    char text[32];
    const char* end = std::to_chars(text, text + sizeof(text), seconds).ptr;
    return Status::InvalidArgument(std::string(what) +
                                   " must be a number of seconds from 0.001 to 100 years, not " +
                                   std::string(text, static_cast<size_t>(end - text)));
  }
  return static_cast<int64_t>(std::llround(ms));
}

Result<TableSchema> TableSchema::WithTtl(int64_t ttl_ms) const {
  if (ttl_ms < 0 || ttl_ms > kMaxTtlMs) {
    return Status::InvalidArgument("a table's TTL must be from 1 ms to 100 years, not " +
                                   std::to_string(ttl_ms) + " ms");
  }
  TableSchema schema = *this;
  schema.ttl_ms_ = ttl_ms;
  return schema;
}

Result<TableSchema> TableSchema::FromArrow(const arrow::Schema& schema, std::string_view key,
                                           const EngineLimits& limits) {
  std::vector<ColumnSpec> columns;
  std::string event_time;
  // Key fields: "true" (the key), or a composite key's part numbers "1", "2", ...
  std::vector<std::pair<int, std::string>> parts;
  if (!key.empty()) parts.emplace_back(1, std::string(key));
  for (const auto& field : schema.fields()) {
    const auto& metadata = field->metadata();
    auto flag = [&](std::string_view name) {
      if (!metadata) return false;
      auto value = metadata->Get(std::string(name));
      return value.ok() && *value == "true";
    };
    if (key.empty() && metadata != nullptr) {
      if (auto value = metadata->Get(std::string(kKeyMetadata)); value.ok()) {
        int part = 0;
        const char* end = value->data() + value->size();
        if (*value == "true") {
          part = 1;
        } else if (std::from_chars(value->data(), end, part).ptr != end || part < 1 ||
                   part > static_cast<int>(kMaxKeyParts)) {
          return Status::InvalidArgument(
              "field '" + field->name() + "': metadata " + std::string(kKeyMetadata) +
              " must be \"true\" or a key part number, not '" + *value + "'");
        }
        for (const auto& [number, name] : parts) {
          if (number == part) {
            return Status::InvalidArgument("fields '" + name + "' and '" + field->name() +
                                           "' are both marked as key part " + std::to_string(part));
          }
        }
        parts.emplace_back(part, field->name());
      }
    }
    if (flag(kEventTimeMetadata)) event_time = field->name();
    std::shared_ptr<arrow::Scalar> default_value;
    if (metadata != nullptr) {
      if (auto text = metadata->Get(std::string(kDefaultMetadata)); text.ok()) {
        QUIVER_ASSIGN_OR_RETURN(default_value, ParseDefault(*text, field->type(), field->name()));
      }
    }
    columns.push_back(ColumnSpec{field->name(), field->type(), field->nullable(),
                                 std::move(default_value), flag(kSparseMetadata)});
  }
  if (parts.empty()) {
    return Status::InvalidArgument("no key column: mark one field with metadata {\"" +
                                   std::string(kKeyMetadata) + "\": \"true\"} or name the key");
  }
  std::sort(parts.begin(), parts.end());
  std::vector<std::string> key_names;
  key_names.reserve(parts.size());
  for (auto& [number, name] : parts) key_names.push_back(std::move(name));
  // A key taken from a pyarrow schema is often declared nullable by default; it never holds nulls.
  for (ColumnSpec& column : columns) {
    if (std::find(key_names.begin(), key_names.end(), column.name) != key_names.end()) {
      column.nullable = false;
    }
  }
  QUIVER_ASSIGN_OR_RETURN(TableSchema made,
                          Make(std::move(columns), key_names, event_time, limits));
  int64_t ttl_ms = 0;
  CastMode cast = CastMode::kSafe;
  if (schema.metadata() != nullptr) {
    if (auto ttl = schema.metadata()->Get(std::string(kTtlMetadata)); ttl.ok()) {
      const char* end = ttl->data() + ttl->size();
      if (std::from_chars(ttl->data(), end, ttl_ms).ptr != end) {
        return Status::InvalidArgument("schema metadata " + std::string(kTtlMetadata) +
                                       " must be a number of milliseconds, not '" + *ttl + "'");
      }
    }
    if (auto mode = schema.metadata()->Get(std::string(kCastMetadata)); mode.ok()) {
      QUIVER_ASSIGN_OR_RETURN(cast, ParseCastMode(*mode));
    }
  }
  QUIVER_ASSIGN_OR_RETURN(made, made.WithTtl(ttl_ms));
  return made.WithCastMode(cast);
}

std::string TableSchema::ToJson() const {
  Json json;
  if (composite_key()) {
    Json parts = Json::array();
    for (int index : key_columns_) parts.push_back(columns_[index].name);
    json["key"] = std::move(parts);
  } else {
    json["key"] = columns_[key_index_].name;
  }
  Json columns = Json::object();
  for (const ColumnSpec& column : columns_) {
    columns[column.name] = Json{{"dtype", DtypeName(*column.type)}, {"nullable", column.nullable}};
    if (column.sparse) columns[column.name]["sparse"] = true;
    if (column.default_value != nullptr) {
      columns[column.name]["default"] = Json::parse(DefaultJson(*column.default_value));
    }
  }
  json["columns"] = std::move(columns);
  if (event_time_index_ >= 0) json["event_time"] = columns_[event_time_index_].name;
  if (ttl_ms_ != 0) json["ttl"] = static_cast<double>(ttl_ms_) / 1000;
  if (cast_mode_ != CastMode::kSafe) json["cast"] = std::string(CastModeName(cast_mode_));
  return json.dump();
}

std::shared_ptr<arrow::Schema> TableSchema::ToArrow() const {
  arrow::FieldVector fields;
  for (int i = 0; i < num_columns(); ++i) {
    const ColumnSpec& column = columns_[i];
    std::shared_ptr<arrow::KeyValueMetadata> metadata;
    if (const int part = KeyPartOf(i); part >= 0) {
      metadata = arrow::key_value_metadata({std::string(kKeyMetadata)},
                                           {composite_key() ? std::to_string(part + 1) : "true"});
    } else if (i == event_time_index_) {
      metadata = arrow::key_value_metadata({std::string(kEventTimeMetadata)}, {"true"});
    }
    if (column.default_value != nullptr) {
      if (metadata == nullptr) metadata = std::make_shared<arrow::KeyValueMetadata>();
      metadata = metadata->Copy();
      metadata->Append(std::string(kDefaultMetadata), DefaultJson(*column.default_value));
    }
    if (column.sparse) {
      metadata =
          metadata == nullptr ? std::make_shared<arrow::KeyValueMetadata>() : metadata->Copy();
      metadata->Append(std::string(kSparseMetadata), "true");
    }
    fields.push_back(arrow::field(column.name, column.type, column.nullable, metadata));
  }
  std::vector<std::string> keys, values;
  if (ttl_ms_ != 0) {
    keys.emplace_back(kTtlMetadata);
    values.push_back(std::to_string(ttl_ms_));
  }
  if (cast_mode_ != CastMode::kSafe) {
    keys.emplace_back(kCastMetadata);
    values.emplace_back(CastModeName(cast_mode_));
  }
  if (keys.empty()) return arrow::schema(std::move(fields));
  return arrow::schema(std::move(fields), arrow::key_value_metadata(keys, values));
}

int TableSchema::KeyPartOf(int index) const {
  const auto part = std::find(key_columns_.begin(), key_columns_.end(), index);
  return part == key_columns_.end() ? -1 : static_cast<int>(part - key_columns_.begin());
}

std::string TableSchema::KeyNames() const {
  std::string names;
  for (int index : key_columns_) {
    if (!names.empty()) names += ", ";
    names += columns_[index].name;
  }
  return names;
}

int TableSchema::FindColumn(std::string_view name) const {
  for (int i = 0; i < num_columns(); ++i) {
    if (columns_[i].name == name) return i;
  }
  return -1;
}

bool TableSchema::Equals(const TableSchema& other) const {
  if (key_columns_ != other.key_columns_ || event_time_index_ != other.event_time_index_ ||
      ttl_ms_ != other.ttl_ms_ || cast_mode_ != other.cast_mode_ ||
      columns_.size() != other.columns_.size()) {
    return false;
  }
  for (size_t i = 0; i < columns_.size(); ++i) {
    if (columns_[i].name != other.columns_[i].name ||
        columns_[i].nullable != other.columns_[i].nullable ||
        columns_[i].sparse != other.columns_[i].sparse ||
        !columns_[i].type->Equals(*other.columns_[i].type) ||
        (columns_[i].default_value == nullptr) != (other.columns_[i].default_value == nullptr) ||
        (columns_[i].default_value != nullptr &&
         !columns_[i].default_value->Equals(*other.columns_[i].default_value))) {
      return false;
    }
  }
  return true;
}

}  // namespace quiver
