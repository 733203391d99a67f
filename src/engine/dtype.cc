#include "engine/dtype.h"

#include <arrow/api.h>
#include <arrow/util/float16.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace quiver {
namespace {

// Arrow's parametric types have no factory without parameters.
constexpr const std::shared_ptr<arrow::DataType>& (*kParametric)() = nullptr;

using P = Physical;
using F = CastFamily;
using V = ValueFormat;

// The table. Scalar rows first, in the order of docs/schema.md.
constexpr Dtype kDtypes[] = {
    // spelling, Arrow type, type id, width, physical, element, cast family, text format
    {"bool", arrow::boolean, arrow::Type::BOOL, 1, P::kBool, false, F::kBool, V::kBool},
    {"int8", arrow::int8, arrow::Type::INT8, 1, P::kFixed, true, F::kNumber, V::kInteger},
    {"int16", arrow::int16, arrow::Type::INT16, 2, P::kFixed, true, F::kNumber, V::kInteger},
    {"int32", arrow::int32, arrow::Type::INT32, 4, P::kFixed, true, F::kNumber, V::kInteger},
    {"int64", arrow::int64, arrow::Type::INT64, 8, P::kFixed, true, F::kNumber, V::kInteger},
    {"uint8", arrow::uint8, arrow::Type::UINT8, 1, P::kFixed, true, F::kNumber, V::kInteger},
    {"uint16", arrow::uint16, arrow::Type::UINT16, 2, P::kFixed, true, F::kNumber, V::kInteger},
    {"uint32", arrow::uint32, arrow::Type::UINT32, 4, P::kFixed, true, F::kNumber, V::kInteger},
    {"uint64", arrow::uint64, arrow::Type::UINT64, 8, P::kFixed, true, F::kNumber, V::kInteger},
    {"float16", arrow::float16, arrow::Type::HALF_FLOAT, 2, P::kFixed, true, F::kNumber,
     V::kHalfFloat},
    {"float32", arrow::float32, arrow::Type::FLOAT, 4, P::kFixed, true, F::kNumber, V::kFloat},
    {"float64", arrow::float64, arrow::Type::DOUBLE, 8, P::kFixed, true, F::kNumber, V::kFloat},
    {"utf8", arrow::utf8, arrow::Type::STRING, 0, P::kBytes, false, F::kString, V::kString},
    {"binary", arrow::binary, arrow::Type::BINARY, 0, P::kBytes, false, F::kBinary, V::kBinary},
    {"date32", arrow::date32, arrow::Type::DATE32, 4, P::kFixed, false, F::kDate, V::kInteger},
    // Parametric: timestamp[unit(, tz=zone)], list[<element>], fixed_size_list[<element>, <n>]
    // (a fixed_size_list's width is its elements').
    {"timestamp", kParametric, arrow::Type::TIMESTAMP, 8, P::kFixed, false, F::kTimestamp,
     V::kInteger},
    {"list", kParametric, arrow::Type::LIST, 0, P::kList, false, F::kList, V::kList},
    {"fixed_size_list", kParametric, arrow::Type::FIXED_SIZE_LIST, 0, P::kFixed, false, F::kList,
     V::kList},
};

// Packed little-endian elements [begin, end) of a list's values (a fixed-width type).
void AppendPacked(std::string& out, const arrow::Array& values, int64_t begin, int64_t end) {
  const auto& fixed = static_cast<const arrow::FixedWidthType&>(*values.type());
  const int64_t width = fixed.bit_width() / 8;
  const uint8_t* data = values.data()->GetValues<uint8_t>(1, 0);
  out.append(reinterpret_cast<const char*>(data) + (values.offset() + begin) * width,
             static_cast<size_t>((end - begin) * width));
}

template <typename T>
void AppendNumber(std::string& out, T value) {
  char buffer[32];
  out.append(buffer, std::to_chars(buffer, buffer + sizeof(buffer), value).ptr);
}

template <typename ArrayType>
void AppendInteger(std::string& out, const arrow::Array& array, int64_t i) {
  AppendNumber(out, static_cast<const ArrayType&>(array).Value(i));
}

}  // namespace

std::span<const Dtype> Dtypes() { return kDtypes; }

const Dtype* FindDtype(arrow::Type::type id) {
  // Indexed by type id: the JSON writer looks a dtype up for every value it writes.
  static const auto kById = [] {
    std::array<const Dtype*, arrow::Type::MAX_ID> by_id{};
    for (const Dtype& dtype : kDtypes) by_id[dtype.id] = &dtype;
    return by_id;
  }();
  return id >= 0 && id < arrow::Type::MAX_ID ? kById[id] : nullptr;
}

const Dtype* FindScalarDtype(std::string_view name) {
  for (const Dtype& dtype : kDtypes) {
    if (dtype.make != nullptr && dtype.name == name) return &dtype;
  }
  return nullptr;
}

const std::string& AcceptedDtypes() {
  static const std::string text = [] {
    std::string out;
    for (const Dtype& dtype : kDtypes) {
      if (dtype.make != nullptr) out += std::string(dtype.name) + ", ";
    }
    return out +
           "timestamp[s|ms|us|ns] (optionally timestamp[ms, tz=UTC]), list[<numeric>], "
           "fixed_size_list[<numeric>, <n>]";
  }();
  return text;
}

std::string HalfFloatText(uint16_t bits) {
  const float value = arrow::util::Float16::FromBits(bits).ToFloat();
  char buffer[32];
  const auto text = [&](const char* end) {
    return std::string(buffer, static_cast<size_t>(end - buffer));
  };
  // The float's own shortest text ("65504"; for 0.1, stored as 0.0999755859375, "0.099975586").
  std::string shortest = text(std::to_chars(buffer, buffer + sizeof(buffer), value).ptr);
  if (!std::isfinite(value)) return shortest;
  // Fewer digits may read back as the same float16 (3 to 4 significant digits is its precision):
  // the shortest text that does wins ("0.1").
  for (int precision = 1; precision <= 5; ++precision) {
    std::string candidate = text(
        std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::general, precision)
            .ptr);
    if (candidate.size() < shortest.size() &&
        arrow::util::Float16::FromFloat(std::strtof(candidate.c_str(), nullptr)).bits() == bits) {
      shortest = std::move(candidate);
    }
  }
  return shortest;
}

bool AppendValueText(std::string& out, const arrow::Array& array, int64_t i) {
  switch (array.type_id()) {
    case arrow::Type::BOOL:
      out += static_cast<const arrow::BooleanArray&>(array).Value(i) ? "true" : "false";
      return true;
    case arrow::Type::INT8:
      AppendInteger<arrow::Int8Array>(out, array, i);
      return true;
    case arrow::Type::INT16:
      AppendInteger<arrow::Int16Array>(out, array, i);
      return true;
    case arrow::Type::INT32:
      AppendInteger<arrow::Int32Array>(out, array, i);
      return true;
    case arrow::Type::INT64:
      AppendInteger<arrow::Int64Array>(out, array, i);
      return true;
    case arrow::Type::UINT8:
      AppendInteger<arrow::UInt8Array>(out, array, i);
      return true;
    case arrow::Type::UINT16:
      AppendInteger<arrow::UInt16Array>(out, array, i);
      return true;
    case arrow::Type::UINT32:
      AppendInteger<arrow::UInt32Array>(out, array, i);
      return true;
    case arrow::Type::UINT64:
      AppendInteger<arrow::UInt64Array>(out, array, i);
      return true;
    case arrow::Type::HALF_FLOAT:
      out += HalfFloatText(static_cast<const arrow::HalfFloatArray&>(array).Value(i));
      return true;
    case arrow::Type::FLOAT:
      AppendNumber(out, static_cast<const arrow::FloatArray&>(array).Value(i));
      return true;
    case arrow::Type::DOUBLE:
      AppendNumber(out, static_cast<const arrow::DoubleArray&>(array).Value(i));
      return true;
    case arrow::Type::DATE32:
      AppendInteger<arrow::Date32Array>(out, array, i);
      return true;
    case arrow::Type::TIMESTAMP:
      AppendInteger<arrow::TimestampArray>(out, array, i);
      return true;
    case arrow::Type::STRING:
      out += static_cast<const arrow::StringArray&>(array).GetView(i);
      return true;
    case arrow::Type::BINARY:
      out += static_cast<const arrow::BinaryArray&>(array).GetView(i);
      return true;
    case arrow::Type::LIST: {
      const auto& list = static_cast<const arrow::ListArray&>(array);
      AppendPacked(out, *list.values(), list.value_offset(i), list.value_offset(i + 1));
      return true;
    }
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& list = static_cast<const arrow::FixedSizeListArray&>(array);
      AppendPacked(out, *list.values(), list.value_offset(i), list.value_offset(i + 1));
      return true;
    }
    default:
      return false;
  }
}

}  // namespace quiver
