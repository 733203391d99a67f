#include "engine/write_cast.h"

#include <arrow/api.h>
#include <arrow/compute/cast.h>

#include <cmath>

#include "engine/dtype.h"
#include "engine/schema.h"

namespace quiver {

bool IsStringLike(arrow::Type::type id) {
  return id == arrow::Type::STRING || id == arrow::Type::LARGE_STRING ||
         id == arrow::Type::STRING_VIEW;
}

namespace {

bool IsBinaryLike(arrow::Type::type id) {
  return IsStringLike(id) || id == arrow::Type::BINARY || id == arrow::Type::LARGE_BINARY ||
         id == arrow::Type::BINARY_VIEW || id == arrow::Type::FIXED_SIZE_BINARY;
}
bool IsListLike(arrow::Type::type id) {
  return id == arrow::Type::LIST || id == arrow::Type::LARGE_LIST ||
         id == arrow::Type::FIXED_SIZE_LIST || id == arrow::Type::LIST_VIEW;
}

// The column's family (dtype.h) takes values of `from` under "safe".
bool FamilyTakes(const arrow::DataType& from, const arrow::DataType& to) {
  const arrow::Type::type source = from.id();
  if (source == arrow::Type::NA) return true;  // nulls only (pandas' column of None)
  switch (FindDtype(to.id())->family) {        // the schema holds dtypes only
    case CastFamily::kString:
      return IsStringLike(source);
    case CastFamily::kBinary:
      return IsBinaryLike(source);
    case CastFamily::kBool:
      return source == arrow::Type::BOOL;
    case CastFamily::kTimestamp:
      return source == arrow::Type::TIMESTAMP || source == arrow::Type::DATE32 ||
             source == arrow::Type::DATE64 || IsStringLike(source);
    case CastFamily::kDate:
      return source == arrow::Type::DATE32 || source == arrow::Type::DATE64 || IsStringLike(source);
    case CastFamily::kList:
      return IsListLike(source) && arrow::is_numeric(from.field(0)->type()->id());
    case CastFamily::kNumber:
      return arrow::is_numeric(source);
  }
  return false;
}

// Equal for "strict": list types whose elements are equal count as equal (Parquet calls the
// child "element", Arrow "item").
bool SameType(const arrow::DataType& from, const arrow::DataType& to) {
  if (from.Equals(to, /*check_metadata=*/false)) return true;
  if (from.id() != to.id() || !IsListLike(from.id())) return false;
  if (from.id() == arrow::Type::FIXED_SIZE_LIST &&
      static_cast<const arrow::FixedSizeListType&>(from).list_size() !=
          static_cast<const arrow::FixedSizeListType&>(to).list_size()) {
    return false;
  }
  return from.field(0)->type()->Equals(*to.field(0)->type());
}

std::string ValueText(const arrow::Array& array, int64_t row) {
  auto scalar = array.GetScalar(row);
  return scalar.ok() ? Excerpt((*scalar)->ToString(), 64) : "the value";
}

Result<std::shared_ptr<arrow::Array>> Cast(const arrow::Array& array,
                                           const std::shared_ptr<arrow::DataType>& type) {
  auto cast = arrow::compute::Cast(array, type, arrow::compute::CastOptions::Safe());
  if (!cast.ok()) return Status::InvalidArgument(cast.status().message());
  return *cast;
}

// The first row of `array` that does not cast to `type` (a cast of the whole failed): the first
// k for which rows [0, k] fail, by halving.
int64_t FirstFailingRow(const arrow::Array& array, const std::shared_ptr<arrow::DataType>& type) {
  int64_t good = 0, bad = array.length();  // rows [0, good) cast; [0, bad) do not
  while (bad - good > 1) {
    const int64_t middle = good + (bad - good) / 2;
    if (Cast(*array.Slice(0, middle), type).ok()) {
      good = middle;
    } else {
      bad = middle;
    }
  }
  return bad - 1;
}

bool IsInfinite(const arrow::Array& values, int64_t i) {
  switch (values.type_id()) {
    case arrow::Type::HALF_FLOAT:
      return std::isinf(
          arrow::util::Float16::FromBits(static_cast<const arrow::HalfFloatArray&>(values).Value(i))
              .ToFloat());
    case arrow::Type::FLOAT:
      return std::isinf(static_cast<const arrow::FloatArray&>(values).Value(i));
    case arrow::Type::DOUBLE:
      return std::isinf(static_cast<const arrow::DoubleArray&>(values).Value(i));
    default:
      return false;
  }
}

// The child values of a list array, and where row `row`'s are among them; false for another type.
bool ListValues(const arrow::Array& array, int64_t row, const arrow::Array** values, int64_t* begin,
                int64_t* end) {
  switch (array.type_id()) {
    case arrow::Type::LIST: {
      const auto& list = static_cast<const arrow::ListArray&>(array);
      *values = list.values().get();
      *begin = list.value_offset(row);
      *end = list.value_offset(row + 1);
      return true;
    }
    case arrow::Type::LARGE_LIST: {
      const auto& list = static_cast<const arrow::LargeListArray&>(array);
      *values = list.values().get();
      *begin = list.value_offset(row);
      *end = list.value_offset(row + 1);
      return true;
    }
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& list = static_cast<const arrow::FixedSizeListArray&>(array);
      *values = list.values().get();
      *begin = list.value_offset(row);
      *end = list.value_offset(row + 1);
      return true;
    }
    default:
      return false;
  }
}

// A cast to a narrower float never overflows to infinity silently: the first value finite before
// and infinite after is an error.
Status CheckNoOverflow(const arrow::Array& input, const arrow::Array& output,
                       const std::shared_ptr<arrow::DataType>& type, const std::string& what) {
  const bool list = IsListLike(type->id());
  const arrow::Type::type target = list ? type->field(0)->type()->id() : type->id();
  if (target != arrow::Type::HALF_FLOAT && target != arrow::Type::FLOAT) return Status::OK();
  const auto overflow = [&](int64_t row, const arrow::Array& before, int64_t i,
                            const arrow::Array& after, int64_t j) -> Status {
    if (after.IsNull(j) || !IsInfinite(after, j) || IsInfinite(before, i)) return Status::OK();
    return Status::InvalidArgument(what + " row " + std::to_string(row) + ": " +
                                   ValueText(before, i) + " is out of range for " +
                                   DtypeName(*type));
  };
  if (!list && input.type_id() == arrow::Type::DOUBLE && target == arrow::Type::FLOAT) {
    // The common case (pandas' float64 into float32 columns), without a call per value.
    const double* before = static_cast<const arrow::DoubleArray&>(input).raw_values();
    const float* after = static_cast<const arrow::FloatArray&>(output).raw_values();
    for (int64_t row = 0; row < output.length(); ++row) {
      if (std::isinf(after[row]) && !std::isinf(before[row]) && output.IsValid(row)) {
        return overflow(row, input, row, output, row);
      }
    }
    return Status::OK();
  }
  for (int64_t row = 0; row < output.length(); ++row) {
    if (output.IsNull(row)) continue;
    if (!list) {
      QUIVER_RETURN_NOT_OK(overflow(row, input, row, output, row));
      continue;
    }
    const arrow::Array *before, *after;
    int64_t b1, e1, b2, e2;
    if (!ListValues(input, row, &before, &b1, &e1) || !ListValues(output, row, &after, &b2, &e2)) {
      return Status::OK();
    }
    for (int64_t k = 0; k < e2 - b2 && k < e1 - b1; ++k) {
      QUIVER_RETURN_NOT_OK(overflow(row, *before, b1 + k, *after, b2 + k));
    }
  }
  return Status::OK();
}

}  // namespace

Result<CastMode> ParseCastMode(std::string_view text) {
  if (text == "safe") return CastMode::kSafe;
  if (text == "strict") return CastMode::kStrict;
  return Status::InvalidArgument("cast '" + Excerpt(text, 32) + "' is not one of safe, strict");
}

std::string_view CastModeName(CastMode mode) {
  return mode == CastMode::kStrict ? "strict" : "safe";
}

Result<std::shared_ptr<arrow::Array>> CastForWrite(const std::shared_ptr<arrow::Array>& array,
                                                   const std::shared_ptr<arrow::DataType>& type,
                                                   CastMode mode, const std::string& what) {
  if (array->type()->Equals(*type, /*check_metadata=*/false)) return array;
  const bool same = SameType(*array->type(), *type);
  // A column of nulls only (Arrow's null type) holds no value to convert.
  if (mode == CastMode::kStrict && !same && array->type_id() != arrow::Type::NA) {
    return Status::InvalidArgument(what + ": " + DtypeName(*array->type()) +
                                   " given for a column of " + DtypeName(*type) +
                                   " (cast=strict takes the column's type only; cast=safe "
                                   "converts what it can without loss)");
  }
  if (!same && !FamilyTakes(*array->type(), *type)) {
    return Status::InvalidArgument(what + ": cannot store " + DtypeName(*array->type()) + " as " +
                                   DtypeName(*type));
  }
  Result<std::shared_ptr<arrow::Array>> cast = Cast(*array, type);
  if (!cast.ok()) {
    const int64_t row = FirstFailingRow(*array, type);
    return Status::InvalidArgument(what + " row " + std::to_string(row) + ": cannot store " +
                                   ValueText(*array, row) + " as " + DtypeName(*type) + " (" +
                                   cast.status().message() + ")");
  }
  QUIVER_RETURN_NOT_OK(CheckNoOverflow(*array, **cast, type, what));
  return cast;
}

}  // namespace quiver
