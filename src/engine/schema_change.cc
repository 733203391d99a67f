#include "engine/schema_change.h"

#include <arrow/api.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/json_shape.h"

namespace quiver {
namespace {

using Json = nlohmann::ordered_json;

// Bits of an integer type (0: not an integer), and whether it is signed.
int IntegerBits(const arrow::DataType& type, bool* is_signed) {
  *is_signed = arrow::is_signed_integer(type.id());
  return arrow::is_integer(type.id()) ? type.byte_width() * 8 : 0;
}

// Mantissa bits (the integers a float holds exactly are those of this many bits).
int FloatPrecision(arrow::Type::type id) {
  switch (id) {
    case arrow::Type::HALF_FLOAT:
      return 11;
    case arrow::Type::FLOAT:
      return 24;
    case arrow::Type::DOUBLE:
      return 53;
    default:
      return 0;
  }
}

Status Refused(const std::string& column, const std::string& why) {
  return Status::InvalidArgument("column '" + column + "': " + why);
}

Result<std::shared_ptr<arrow::DataType>> DtypeOf(const Json& spec, const std::string& column) {
  auto it = spec.find("dtype");
  if (it == spec.end() || !it->is_string()) return Refused(column, "\"dtype\" must be a string");
  auto type = ParseDtype(it->get<std::string>());
  if (!type.ok()) return type.status().WithContext("column '" + column + "'");
  return type;
}

Status CheckFields(const Json& spec, const std::string& column,
                   std::initializer_list<std::string_view> allowed, std::string_view listed) {
  if (!spec.is_object()) return Refused(column, "expected an object like {\"dtype\": ...}");
  for (const auto& [field, value] : spec.items()) {
    if (std::find(allowed.begin(), allowed.end(), field) == allowed.end()) {
      return Refused(column,
                     "unknown field '" + field + "' (expected " + std::string(listed) + ")");
    }
  }
  return Status::OK();
}

}  // namespace

bool IsWidening(const arrow::DataType& from, const arrow::DataType& to) {
  if (from.Equals(to)) return true;
  if ((from.id() == arrow::Type::LIST && to.id() == arrow::Type::LIST) ||
      (from.id() == arrow::Type::FIXED_SIZE_LIST && to.id() == arrow::Type::FIXED_SIZE_LIST)) {
    if (from.id() == arrow::Type::FIXED_SIZE_LIST &&
        static_cast<const arrow::FixedSizeListType&>(from).list_size() !=
            static_cast<const arrow::FixedSizeListType&>(to).list_size()) {
      return false;
    }
    return IsWidening(*from.field(0)->type(), *to.field(0)->type());
  }
  bool from_signed, to_signed;
  const int from_bits = IntegerBits(from, &from_signed);
  const int to_bits = IntegerBits(to, &to_signed);
  if (from_bits > 0 && to_bits > 0) {
    if (from_signed == to_signed) return to_bits > from_bits;
    return !from_signed && to_signed && to_bits > from_bits;  // uint8 -> int16, ...
  }
  const int to_precision = FloatPrecision(to.id());
  if (from_bits > 0 && to_precision > 0) return from_bits - (from_signed ? 1 : 0) <= to_precision;
  const int from_precision = FloatPrecision(from.id());
  return from_precision > 0 && to_precision > from_precision;
}

Result<SchemaChange> SchemaChange::FromJson(std::string_view text, const EngineLimits& limits) {
  const JsonShapeLimits shape_limits{.max_object_members = static_cast<size_t>(limits.max_columns)};
  QUIVER_RETURN_NOT_OK(CheckJsonShape(text, "schema change", shape_limits));
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return Status::InvalidArgument("the schema change is not valid JSON");
  if (!json.is_object()) {
    return Status::InvalidArgument(
        "a schema change must be a JSON object of add, drop, rename, alter, ttl");
  }
  SchemaChange change;
  bool any = false;
  for (const auto& [part, value] : json.items()) {
    if (part == "add") {
      if (!value.is_object()) {
        return Status::InvalidArgument("\"add\" must be an object of column name -> {\"dtype\"}");
      }
      for (const auto& [name, spec] : value.items()) {
        QUIVER_RETURN_NOT_OK(CheckFields(spec, name, {"dtype", "nullable", "default", "sparse"},
                                         "dtype, nullable, default, sparse"));
        ColumnSpec column{name, nullptr, true, nullptr};
        QUIVER_ASSIGN_OR_RETURN(column.type, DtypeOf(spec, name));
        if (auto it = spec.find("nullable"); it != spec.end()) {
          if (!it->is_boolean()) return Refused(name, "\"nullable\" must be true or false");
          column.nullable = it->get<bool>();
        }
        if (auto it = spec.find("default"); it != spec.end()) {
          QUIVER_ASSIGN_OR_RETURN(column.default_value,
                                  ParseDefault(it->dump(), column.type, name));
        }
        if (auto it = spec.find("sparse"); it != spec.end()) {
          if (!it->is_boolean()) return Refused(name, "\"sparse\" must be true or false");
          column.sparse = it->get<bool>();
        }
        change.add.push_back(std::move(column));
        any = true;
      }
    } else if (part == "drop") {
      if (!value.is_array()) return Status::InvalidArgument("\"drop\" must be a list of columns");
      for (const Json& name : value) {
        if (!name.is_string()) return Status::InvalidArgument("\"drop\" must list column names");
        change.drop.push_back(name.get<std::string>());
        any = true;
      }
    } else if (part == "rename") {
      if (!value.is_object()) {
        return Status::InvalidArgument("\"rename\" must be an object of old name -> new name");
      }
      for (const auto& [from, to] : value.items()) {
        if (!to.is_string()) return Refused(from, "the new name must be a string");
        change.rename.emplace_back(from, to.get<std::string>());
        any = true;
      }
    } else if (part == "alter") {
      if (!value.is_object()) {
        return Status::InvalidArgument("\"alter\" must be an object of column name -> changes");
      }
      for (const auto& [name, spec] : value.items()) {
        QUIVER_RETURN_NOT_OK(CheckFields(spec, name, {"dtype", "nullable", "default", "sparse"},
                                         "dtype, nullable, default, sparse"));
        if (spec.empty()) return Refused(name, "\"alter\" gives no change");
        Alter alter{name, nullptr, std::nullopt, false, nullptr, std::nullopt};
        if (spec.contains("dtype")) {
          QUIVER_ASSIGN_OR_RETURN(alter.type, DtypeOf(spec, name));
        }
        if (auto it = spec.find("nullable"); it != spec.end()) {
          if (!it->is_boolean()) return Refused(name, "\"nullable\" must be true or false");
          alter.nullable = it->get<bool>();
        }
        if (auto it = spec.find("sparse"); it != spec.end()) {
          if (!it->is_boolean()) return Refused(name, "\"sparse\" must be true or false");
          alter.sparse = it->get<bool>();
        }
        if (spec.contains("default")) {
          // Parsed against the column's type once it is known (ApplySchemaChange); kept as text.
          alter.set_default = true;
          if (!spec["default"].is_null()) {
            alter.default_value = std::make_shared<arrow::StringScalar>(spec["default"].dump());
          }
        }
        change.alter.push_back(std::move(alter));
        any = true;
      }
    } else if (part == "ttl") {
      if (value.is_null() || (value.is_number() && value.get<double>() == 0)) {
        change.ttl_ms = 0;
      } else if (value.is_number()) {
        QUIVER_ASSIGN_OR_RETURN(int64_t ttl_ms, TtlFromSeconds(value.get<double>(), "\"ttl\""));
        change.ttl_ms = ttl_ms;
      } else {
        return Status::InvalidArgument("\"ttl\" must be a number of seconds (0 or null: none)");
      }
      any = true;
    } else if (part == "cast") {
      if (!value.is_string()) return Status::InvalidArgument("\"cast\" must be safe or strict");
      QUIVER_ASSIGN_OR_RETURN(CastMode mode, ParseCastMode(value.get<std::string>()));
      change.cast = mode;
      any = true;
    } else {
      return Status::InvalidArgument("a schema change has unknown part '" + part +
                                     "' (expected add, drop, rename, alter, ttl, cast)");
    }
  }
  if (!any) return Status::InvalidArgument("the schema change changes nothing");
  return change;
}

std::string SchemaChange::ToJson() const {
  Json json = Json::object();
  if (!drop.empty()) json["drop"] = drop;
  if (!rename.empty()) {
    Json renames = Json::object();
    for (const auto& [from, to] : rename) renames[from] = to;
    json["rename"] = std::move(renames);
  }
  if (!alter.empty()) {
    Json alters = Json::object();
    for (const Alter& each : alter) {
      Json spec = Json::object();
      if (each.type != nullptr) spec["dtype"] = DtypeName(*each.type);
      if (each.nullable) spec["nullable"] = *each.nullable;
      if (each.sparse) spec["sparse"] = *each.sparse;
      if (each.set_default) {
        spec["default"] =
            each.default_value == nullptr
                ? Json()
                : Json::parse(static_cast<const arrow::StringScalar&>(*each.default_value).view());
      }
      alters[each.name] = std::move(spec);
    }
    json["alter"] = std::move(alters);
  }
  if (!add.empty()) {
    Json adds = Json::object();
    for (const ColumnSpec& column : add) {
      Json spec{{"dtype", DtypeName(*column.type)}, {"nullable", column.nullable}};
      if (column.default_value != nullptr) {
        spec["default"] = Json::parse(DefaultJson(*column.default_value));
      }
      if (column.sparse) spec["sparse"] = true;
      adds[column.name] = std::move(spec);
    }
    json["add"] = std::move(adds);
  }
  if (ttl_ms) json["ttl"] = static_cast<double>(*ttl_ms) / 1000;
  if (cast) json["cast"] = std::string(CastModeName(*cast));
  return json.dump();
}

Result<ChangedSchema> ApplySchemaChange(const TableSchema& schema, const SchemaChange& change,
                                        const EngineLimits& limits) {
  const int n = schema.num_columns();
  const auto is_key = [&schema](const std::string& name) {
    const int index = schema.FindColumn(name);
    return index >= 0 && schema.IsKeyColumn(index);
  };
  const std::string event_time =
      schema.event_time_index() >= 0 ? schema.columns()[schema.event_time_index()].name : "";
  std::vector<ColumnSpec> columns = schema.columns();
  std::vector<bool> dropped(n, false);
  const auto find = [&](const std::string& name, std::string_view part) -> Result<int> {
    const int index = schema.FindColumn(name);
    if (index < 0) {
      return Status::NotFound("the table has no column '" + name + "' (in \"" + std::string(part) +
                              "\")");
    }
    return index;
  };

  for (const std::string& name : change.drop) {
    QUIVER_ASSIGN_OR_RETURN(int index, find(name, "drop"));
    if (is_key(name)) return Refused(name, "a key column cannot be dropped");
    if (name == event_time) {
      return Refused(name, "the event-time column cannot be dropped (it guards the writes)");
    }
    if (dropped[index]) return Refused(name, "dropped twice");
    dropped[index] = true;
  }
  for (const SchemaChange::Alter& alter : change.alter) {
    QUIVER_ASSIGN_OR_RETURN(int index, find(alter.name, "alter"));
    if (dropped[index]) return Refused(alter.name, "both dropped and altered");
    ColumnSpec& column = columns[index];
    if (alter.type != nullptr && !alter.type->Equals(*column.type)) {
      if (is_key(alter.name)) return Refused(alter.name, "a key column's dtype cannot change");
      if (alter.name == event_time) {
        return Refused(alter.name, "the event-time column's dtype cannot change");
      }
      if (!IsWidening(*column.type, *alter.type)) {
        return Refused(alter.name, "cannot change " + DtypeName(*column.type) + " to " +
                                       DtypeName(*alter.type) +
                                       " online: only widenings that keep every value exactly "
                                       "(int8 -> int16 -> int32 -> int64, uint likewise, float16 "
                                       "-> float32 -> float64, int -> float64 for up to 32 bits, "
                                       "list and embedding elements likewise)");
      }
      column.type = alter.type;
    }
    if (alter.nullable) {
      if (!*alter.nullable && column.nullable) {
        return Refused(alter.name,
                       "cannot be made non-nullable online (rows may hold nulls); "
                       "add a non-nullable column with a default instead");
      }
      if (*alter.nullable && (is_key(alter.name) || alter.name == event_time)) {
        return Refused(alter.name, "the key and event-time columns cannot be nullable");
      }
      column.nullable = *alter.nullable;
    }
    if (alter.sparse) {
      if (is_key(alter.name)) return Refused(alter.name, "a key column cannot be sparse");
      column.sparse = *alter.sparse;
    }
    if (alter.set_default) {
      column.default_value = nullptr;
      if (alter.default_value != nullptr) {
        QUIVER_ASSIGN_OR_RETURN(
            column.default_value,
            ParseDefault(static_cast<const arrow::StringScalar&>(*alter.default_value).view(),
                         column.type, alter.name));
      }
    } else if (column.default_value != nullptr &&
               !column.default_value->type->Equals(*column.type)) {
      // A widened column keeps its default, widened.
      QUIVER_ASSIGN_OR_RETURN(column.default_value, ParseDefault(DefaultJson(*column.default_value),
                                                                 column.type, alter.name));
    }
  }
  std::vector<std::string> new_key;
  for (int index : schema.key_columns()) new_key.push_back(schema.columns()[index].name);
  std::string new_event_time = event_time;
  std::set<int> renamed;
  for (const auto& [from, to] : change.rename) {
    QUIVER_ASSIGN_OR_RETURN(int index, find(from, "rename"));
    if (dropped[index]) return Refused(from, "both dropped and renamed");
    if (!renamed.insert(index).second) return Refused(from, "renamed twice");
    columns[index].name = to;
    if (const int part = schema.KeyPartOf(index); part >= 0) new_key[part] = to;
    if (from == event_time) new_event_time = to;
  }

  ChangedSchema changed{schema, {}};
  std::vector<ColumnSpec> result;
  std::set<std::string> names;
  for (int i = 0; i < n; ++i) {
    if (dropped[i]) continue;
    if (!names.insert(columns[i].name).second) {
      return Refused(columns[i].name, "the name is taken by another column after the change");
    }
    result.push_back(columns[i]);
    changed.sources.push_back(i);
  }
  for (const ColumnSpec& column : change.add) {
    if (!names.insert(column.name).second) {
      return Refused(column.name, "cannot be added: the table has a column of that name");
    }
    if (!column.nullable && column.default_value == nullptr) {
      return Refused(column.name,
                     "a non-nullable column needs a \"default\" for the rows already stored");
    }
    result.push_back(column);
    changed.sources.push_back(-1);
  }
  QUIVER_ASSIGN_OR_RETURN(TableSchema made,
                          TableSchema::Make(std::move(result), new_key, new_event_time, limits));
  QUIVER_ASSIGN_OR_RETURN(made, made.WithTtl(change.ttl_ms.value_or(schema.ttl_ms())));
  changed.schema = made.WithCastMode(change.cast.value_or(schema.cast_mode()));
  QUIVER_RETURN_NOT_OK(CheckTimeZones(changed.schema));
  return changed;
}

}  // namespace quiver
