// quiver._quiver.feast_values: the columns of a read as Feast's `RepeatedValue`, serialized, so
// that quiver.feast builds a read's Feast Values with one protobuf parse instead of a Python
// object per value (docs/feast.md "Reads").
//
// Protobuf wire format (https://protobuf.dev/programming-guides/encoding/): a RepeatedValue is
// field 1 (length-delimited) repeated, one `feast.types.Value` each; a Value sets one field of
// its oneof: a varint (int32_val 3, int64_val 4, bool_val 7, unix_timestamp_val 8), a fixed64
// (double_val 5), a fixed32 (float_val 6), bytes (bytes_val 1, string_val 2), or a list message
// (int32_list_val 13, int64_list_val 14, double_list_val 15, float_list_val 16,
// unix_timestamp_list_val 18) whose field 1 holds the elements packed. A null is an empty Value.
// Column `i` of the input gives rows [i * n, (i + 1) * n) of the output's Values.
#include <arrow/api.h>
#include <arrow/c/abi.h>
#include <arrow/c/bridge.h>
#include <nanobind/nanobind.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bindings.h"
#include "common/arrow_status.h"
#include "common/result.h"
#include "common/status.h"

namespace quiver::python {
namespace {

constexpr int kVarint = 0;
constexpr int kFixed64 = 1;
constexpr int kLengthDelimited = 2;
constexpr int kFixed32 = 5;

// Value's oneof fields that a column can fill; 0: the column holds serialized Values.
enum ValueField : int {
  kSerialized = 0,
  kBytes = 1,
  kString = 2,
  kInt32 = 3,
  kInt64 = 4,
  kDouble = 5,
  kFloat = 6,
  kBool = 7,
  kUnixTimestamp = 8,
  kInt32List = 13,
  kInt64List = 14,
  kDoubleList = 15,
  kFloatList = 16,
  kUnixTimestampList = 18,
};

size_t VarintSize(uint64_t value) {
  return value < 0x80 ? 1 : (70 - std::countl_zero(value)) / 7;  // 7 bits a byte
}

void PutVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void PutTag(int field, int wire_type, std::string* out) {
  PutVarint((static_cast<uint64_t>(field) << 3) | wire_type, out);
}

size_t TagSize(int field) { return VarintSize(static_cast<uint64_t>(field) << 3); }

template <typename T>
void PutFixed(T value, std::string* out) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian hosts only, as Arrow's IPC here
  out->append(bytes, sizeof(T));
}

// A Value (one RepeatedValue entry) of `size` bytes follows.
void OpenValue(size_t size, std::string* out) {
  out->push_back(0x0A);
  PutVarint(size, out);
}

// What an element of a numeric column is as the Value field asks: int32 as protobuf sign-extends
// it, timestamps in whole seconds (floored, as Python's // does).
class NumericReader {
 public:
  static Result<NumericReader> Make(const arrow::Array& values, ValueField field,
                                    std::string_view what) {
    NumericReader reader;
    reader.type_ = values.type_id();
    reader.data_ = values.data()->GetValues<uint8_t>(1, 0);
    reader.offset_ = values.offset();
    if (reader.type_ == arrow::Type::TIMESTAMP) {
      switch (static_cast<const arrow::TimestampType&>(*values.type()).unit()) {
        case arrow::TimeUnit::SECOND:
          reader.per_second_ = 1;
          break;
        case arrow::TimeUnit::MILLI:
          reader.per_second_ = 1000;
          break;
        case arrow::TimeUnit::MICRO:
          reader.per_second_ = int64_t{1000} * 1000;
          break;
        case arrow::TimeUnit::NANO:
          reader.per_second_ = int64_t{1000} * 1000 * 1000;
          break;
      }
    }
    bool is_float = reader.type_ == arrow::Type::FLOAT || reader.type_ == arrow::Type::DOUBLE;
    bool is_integer = arrow::is_integer(reader.type_) && reader.type_ != arrow::Type::UINT64;
    bool fits = false;
    switch (field) {
      case kFloat:
      case kDouble:
      case kFloatList:
      case kDoubleList:
        fits = is_float || is_integer;
        break;
      case kInt32:
      case kInt64:
      case kInt32List:
      case kInt64List:
        fits = is_integer;
        break;
      case kBool:
        fits = reader.type_ == arrow::Type::BOOL || is_integer;
        break;
      case kUnixTimestamp:
      case kUnixTimestampList:
        fits = reader.type_ == arrow::Type::TIMESTAMP || reader.type_ == arrow::Type::INT64;
        break;
      default:
        break;
    }
    if (!fits) {
      return Status::InvalidArgument(std::string(what) + ": a " + values.type()->ToString() +
                                     " column cannot give Feast Value field " +
                                     std::to_string(field));
    }
    return reader;
  }

  int64_t Integer(int64_t i) const {
    int64_t at = offset_ + i;
    switch (type_) {
      case arrow::Type::BOOL:
        return arrow::bit_util::GetBit(data_, at) ? 1 : 0;
      case arrow::Type::INT8:
        return Load<int8_t>(at);
      case arrow::Type::INT16:
        return Load<int16_t>(at);
      case arrow::Type::INT32:
        return Load<int32_t>(at);
      case arrow::Type::UINT8:
        return Load<uint8_t>(at);
      case arrow::Type::UINT16:
        return Load<uint16_t>(at);
      case arrow::Type::UINT32:
        return Load<uint32_t>(at);
      case arrow::Type::TIMESTAMP: {
        int64_t ticks = Load<int64_t>(at);
        int64_t seconds = ticks / per_second_;
        return seconds - (ticks % per_second_ < 0 ? 1 : 0);
      }
      default:
        return Load<int64_t>(at);
    }
  }

  double Real(int64_t i) const {
    int64_t at = offset_ + i;
    if (type_ == arrow::Type::DOUBLE) return Load<double>(at);
    if (type_ == arrow::Type::FLOAT) return Load<float>(at);
    return static_cast<double>(Integer(i));
  }

 private:
  template <typename T>
  T Load(int64_t at) const {
    T value;
    std::memcpy(&value, data_ + at * sizeof(T), sizeof(T));
    return value;
  }

  arrow::Type::type type_ = arrow::Type::NA;
  const uint8_t* data_ = nullptr;
  int64_t offset_ = 0;
  int64_t per_second_ = 1;
};

uint64_t VarintOf(ValueField field, int64_t value) {
  // int32 fields encode negatives as the 64-bit two's complement, as int64 does.
  if (field == kInt32 || field == kInt32List) value = static_cast<int32_t>(value);
  if (field == kBool) value = value != 0 ? 1 : 0;
  return static_cast<uint64_t>(value);
}

ValueField ElementField(ValueField list_field) {
  switch (list_field) {
    case kInt32List:
      return kInt32;
    case kInt64List:
      return kInt64;
    case kDoubleList:
      return kDouble;
    case kFloatList:
      return kFloat;
    default:
      return kUnixTimestamp;
  }
}

// Appends the packed elements [begin, end) of a list's values.
void PutPacked(const NumericReader& reader, ValueField element, int64_t begin, int64_t end,
               std::string* payload) {
  for (int64_t j = begin; j < end; ++j) {
    if (element == kFloat) {
      PutFixed(static_cast<float>(reader.Real(j)), payload);
    } else if (element == kDouble) {
      PutFixed(reader.Real(j), payload);
    } else {
      PutVarint(VarintOf(element, reader.Integer(j)), payload);
    }
  }
}

// ListType: arrow::ListArray, LargeListArray or FixedSizeListArray (the same accessors).
template <typename ListType>
Status AppendListsOf(const ListType& column, ValueField field, std::string_view what,
                     std::string* out) {
  const arrow::Array& values = *column.values();
  ValueField element = ElementField(field);
  QUIVER_ASSIGN_OR_RETURN(NumericReader reader, NumericReader::Make(values, field, what));
  std::string payload;
  for (int64_t i = 0; i < column.length(); ++i) {
    if (column.IsNull(i)) {
      OpenValue(0, out);
      continue;
    }
    const int64_t begin = column.value_offset(i);
    const int64_t end = begin + column.value_length(i);
    if (values.null_count() != 0) {
      for (int64_t j = begin; j < end; ++j) {
        if (values.IsNull(j)) {
          return Status::InvalidArgument(std::string(what) + ": row " + std::to_string(i) +
                                         " holds a null element; a Feast list cannot");
        }
      }
    }
    payload.clear();
    PutPacked(reader, element, begin, end, &payload);
    // The list message: its packed field 1, omitted when empty.
    size_t list_size = payload.empty() ? 0 : 1 + VarintSize(payload.size()) + payload.size();
    OpenValue(TagSize(field) + VarintSize(list_size) + list_size, out);
    PutTag(field, kLengthDelimited, out);
    PutVarint(list_size, out);
    if (!payload.empty()) {
      PutTag(1, kLengthDelimited, out);
      PutVarint(payload.size(), out);
      out->append(payload);
    }
  }
  return Status::OK();
}

Status AppendLists(const arrow::Array& column, ValueField field, std::string_view what,
                   std::string* out) {
  switch (column.type_id()) {
    case arrow::Type::LIST:
      return AppendListsOf(static_cast<const arrow::ListArray&>(column), field, what, out);
    case arrow::Type::LARGE_LIST:
      return AppendListsOf(static_cast<const arrow::LargeListArray&>(column), field, what, out);
    case arrow::Type::FIXED_SIZE_LIST:
      return AppendListsOf(static_cast<const arrow::FixedSizeListArray&>(column), field, what, out);
    default:
      return Status::InvalidArgument(std::string(what) + ": a " + column.type()->ToString() +
                                     " column cannot give a Feast list value");
  }
}

Status AppendBinary(const arrow::Array& column, ValueField field, std::string_view what,
                    std::string* out) {
  if (!arrow::is_base_binary_like(column.type_id())) {
    return Status::InvalidArgument(std::string(what) + ": a " + column.type()->ToString() +
                                   " column cannot give Feast Value field " +
                                   std::to_string(field));
  }
  const auto& binary = static_cast<const arrow::BinaryArray&>(column);
  const auto& large = static_cast<const arrow::LargeBinaryArray&>(column);
  bool is_large = column.type_id() == arrow::Type::LARGE_BINARY ||
                  column.type_id() == arrow::Type::LARGE_STRING;
  for (int64_t i = 0; i < column.length(); ++i) {
    if (column.IsNull(i)) {
      OpenValue(0, out);
      continue;
    }
    std::string_view bytes = is_large ? large.GetView(i) : binary.GetView(i);
    if (field == kSerialized) {
      OpenValue(bytes.size(), out);
    } else {
      OpenValue(TagSize(field) + VarintSize(bytes.size()) + bytes.size(), out);
      PutTag(field, kLengthDelimited, out);
      PutVarint(bytes.size(), out);
    }
    out->append(bytes);
  }
  return Status::OK();
}

Status AppendScalars(const arrow::Array& column, ValueField field, std::string_view what,
                     std::string* out) {
  QUIVER_ASSIGN_OR_RETURN(NumericReader reader, NumericReader::Make(column, field, what));
  size_t tag_size = TagSize(field);
  for (int64_t i = 0; i < column.length(); ++i) {
    if (column.IsNull(i)) {
      OpenValue(0, out);
    } else if (field == kFloat) {
      OpenValue(tag_size + 4, out);
      PutTag(field, kFixed32, out);
      PutFixed(static_cast<float>(reader.Real(i)), out);
    } else if (field == kDouble) {
      OpenValue(tag_size + 8, out);
      PutTag(field, kFixed64, out);
      PutFixed(reader.Real(i), out);
    } else {
      uint64_t value = VarintOf(field, reader.Integer(i));
      OpenValue(tag_size + VarintSize(value), out);
      PutTag(field, kVarint, out);
      PutVarint(value, out);
    }
  }
  return Status::OK();
}

}  // namespace

Status AppendFeastValues(const arrow::Array& column, int field, std::string_view what,
                         std::string* out) {
  switch (field) {
    case kSerialized:
    case kBytes:
    case kString:
      return AppendBinary(column, static_cast<ValueField>(field), what, out);
    case kInt32:
    case kInt64:
    case kDouble:
    case kFloat:
    case kBool:
    case kUnixTimestamp:
      return AppendScalars(column, static_cast<ValueField>(field), what, out);
    case kInt32List:
    case kInt64List:
    case kDoubleList:
    case kFloatList:
    case kUnixTimestampList:
      return AppendLists(column, static_cast<ValueField>(field), what, out);
    default:
      return Status::InvalidArgument(std::string(what) + ": Feast Value field " +
                                     std::to_string(field) + " is not one Quiver encodes");
  }
}

nb::bytes FeastValues(nb::handle stream_capsule, const std::vector<int>& fields) {
  auto* stream = CapsulePointer<ArrowArrayStream>(stream_capsule, "arrow_array_stream");
  std::string out;
  Status status = Status::OK();
  {
    nb::gil_scoped_release release;
    status = [&]() -> Status {
      QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::RecordBatchReader> reader,
                                    arrow::ImportRecordBatchReader(stream));
      QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Table> table, reader->ToTable());
      if (static_cast<size_t>(table->num_columns()) != fields.size()) {
        return Status::InvalidArgument("feast_values: " + std::to_string(table->num_columns()) +
                                       " columns, " + std::to_string(fields.size()) + " fields");
      }
      for (int c = 0; c < table->num_columns(); ++c) {
        std::string what = "column '" + table->field(c)->name() + "'";
        for (const std::shared_ptr<arrow::Array>& chunk : table->column(c)->chunks()) {
          QUIVER_RETURN_NOT_OK(AppendFeastValues(*chunk, fields[c], what, &out));
        }
      }
      return Status::OK();
    }();
  }
  RaiseIfError(status);
  return nb::bytes(out.data(), out.size());
}

}  // namespace quiver::python
