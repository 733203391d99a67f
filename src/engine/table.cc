#include "engine/table.h"

#include <arrow/api.h>
#include <arrow/compute/cast.h>
#include <arrow/compute/initialize.h>
#include <arrow/util/bit_util.h>
#include <arrow/util/bitmap_ops.h>
#include <arrow/util/byte_size.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <limits>
#include <optional>
#include <string>

#include "common/arrow_status.h"
#include "common/hash.h"
#include "engine/row_copy.h"

namespace quiver {
namespace {

Status InitializeCompute() {
  static const arrow::Status status = arrow::compute::Initialize();
  return FromArrow(status);
}

// The bytes of key i of a normalized key array (utf8 or int64), for hashing and comparing.
class KeyColumn {
 public:
  explicit KeyColumn(const arrow::Array& keys) {
    const arrow::ArrayData& data = *keys.data();
    if (keys.type_id() == arrow::Type::STRING) {
      offsets_ = data.GetValues<int32_t>(1);
      bytes_ = data.buffers[2] ? data.buffers[2]->data() : nullptr;
    } else {
      ints_ = data.GetValues<int64_t>(1);
    }
  }
  [[gnu::always_inline]] std::string_view Bytes(int64_t i) const {
    if (ints_ != nullptr) return {reinterpret_cast<const char*>(ints_ + i), sizeof(int64_t)};
    return {reinterpret_cast<const char*>(bytes_) + offsets_[i],
            static_cast<size_t>(offsets_[i + 1] - offsets_[i])};
  }

 private:
  const int32_t* offsets_ = nullptr;
  const uint8_t* bytes_ = nullptr;
  const int64_t* ints_ = nullptr;
};

std::string KeyForMessage(std::string_view bytes, bool is_string) {
  if (!is_string) {
    int64_t value;
    std::memcpy(&value, bytes.data(), sizeof(value));
    return std::to_string(value);
  }
  std::string out = "'";
  out += bytes.size() > 64 ? std::string(bytes.substr(0, 64)) + "..." : std::string(bytes);
  return out + "'";
}

int64_t FirstNull(const arrow::Array& array) {
  for (int64_t i = 0; i < array.length(); ++i) {
    if (array.IsNull(i)) return i;
  }
  return -1;
}

bool IsStringLike(arrow::Type::type id) {
  return id == arrow::Type::STRING || id == arrow::Type::LARGE_STRING ||
         id == arrow::Type::STRING_VIEW;
}
bool IsBinaryLike(arrow::Type::type id) {
  return IsStringLike(id) || id == arrow::Type::BINARY || id == arrow::Type::LARGE_BINARY ||
         id == arrow::Type::BINARY_VIEW || id == arrow::Type::FIXED_SIZE_BINARY;
}
bool IsListLike(arrow::Type::type id) {
  return id == arrow::Type::LIST || id == arrow::Type::LARGE_LIST ||
         id == arrow::Type::FIXED_SIZE_LIST || id == arrow::Type::LIST_VIEW;
}

// Implicit conversions stay inside a family (numbers, strings, times, lists of numbers); the
// cast itself is "safe": it fails on overflow, truncation and lost precision.
bool ConversionAllowed(const arrow::DataType& from, const arrow::DataType& to) {
  const arrow::Type::type source = from.id();
  switch (to.id()) {
    case arrow::Type::STRING:
      return IsStringLike(source);
    case arrow::Type::BINARY:
      return IsBinaryLike(source);
    case arrow::Type::BOOL:
      return source == arrow::Type::BOOL;
    case arrow::Type::TIMESTAMP:
      return source == arrow::Type::TIMESTAMP;
    case arrow::Type::DATE32:
      return source == arrow::Type::DATE32 || source == arrow::Type::DATE64;
    case arrow::Type::LIST:
    case arrow::Type::FIXED_SIZE_LIST:
      return IsListLike(source) && arrow::is_numeric(from.field(0)->type()->id());
    default:
      return arrow::is_numeric(to.id()) && arrow::is_numeric(source);
  }
}

// The heap reference a value's VarRef holds (when its length is over kVarInlineBytes).
inline HeapRef HeapRefOf(const VarRef& ref) {
  HeapRef heap_ref;
  std::memcpy(&heap_ref, ref.payload, sizeof(heap_ref));
  return heap_ref;
}

// Equality of two byte strings of `size` <= 8 bytes, without a call to memcmp.
inline bool ShortBytesEqual(const void* a, const void* b, size_t size) {
  const auto* x = static_cast<const uint8_t*>(a);
  const auto* y = static_cast<const uint8_t*>(b);
  if (size >= 4) {  // the first and the last 4 bytes (they overlap when size < 8)
    uint32_t x_head, y_head, x_tail, y_tail;
    std::memcpy(&x_head, x, 4), std::memcpy(&y_head, y, 4);
    std::memcpy(&x_tail, x + size - 4, 4), std::memcpy(&y_tail, y + size - 4, 4);
    return x_head == y_head && x_tail == y_tail;
  }
  for (size_t i = 0; i < size; ++i) {
    if (x[i] != y[i]) return false;
  }
  return true;
}

// Whether `row` holds `key`. For readers, meaningful only once their seqlock check passed; the
// writer calls it on rows only it changes.
[[gnu::always_inline]] inline bool KeyMatches(const std::byte* row, const ColumnLayout& layout,
                                              std::string_view key, const Heap& heap) {
  if (layout.physical == Physical::kFixed) {
    uint8_t stored[8];
    CopyFromRow(stored, row + layout.offset, sizeof(stored));
    return std::memcmp(stored, key.data(), sizeof(stored)) == 0;
  }
  const VarRef ref = LoadVarRef(row + layout.offset, layout.width);
  if (ref.length != key.size()) return false;
  if (ref.length <= kVarInlineBytes) return ShortBytesEqual(ref.payload, key.data(), ref.length);
  // A torn reference may point anywhere: View() checks bounds, and heap bytes are immutable.
  const std::byte* stored = heap.View(HeapRefOf(ref), ref.length);
  return stored != nullptr && std::memcmp(stored, key.data(), ref.length) == 0;
}

// The key bytes a row holds, as KeyColumn::Bytes gives them (the writer's, on its own rows).
std::string StoredKey(const std::byte* row, const ColumnLayout& layout, const Heap& heap) {
  if (layout.physical == Physical::kFixed) {
    std::string key(sizeof(int64_t), '\0');
    CopyFromRow(key.data(), row + layout.offset, sizeof(int64_t));
    return key;
  }
  const VarRef ref = LoadVarRef(row + layout.offset, layout.width);
  if (ref.length <= kVarInlineBytes) {
    return std::string(reinterpret_cast<const char*>(ref.payload), ref.length);
  }
  return std::string(reinterpret_cast<const char*>(heap.View(HeapRefOf(ref), ref.length)),
                     ref.length);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Gather: builds output columns (Arrow buffers allocated once) from rows copied under their
// seqlocks. Fixed-width values go straight to their final place; variable-length values are
// first collected as VarRefs and copied by Finish, once every row was validated.

class Table::Gather {
 public:
  Gather(const Table& table, const std::vector<int>& columns, int64_t capacity)
      : table_(table),
        capacity_(capacity),
        bitmap_bytes_(table.layout_.bitmap_bytes()),
        bitmap_stride_((bitmap_bytes_ + 7) / 8 * 8) {
    int var_slots = 0;
    for (int index : columns) {
      Output out;
      out.schema_index = index;
      out.layout = &table.layout_.column(index);
      out.type = table.schema_.columns()[index].type;
      if (out.layout->physical == Physical::kBytes || out.layout->physical == Physical::kList) {
        out.var_slot = var_slots++;
      }
      outputs_.push_back(std::move(out));
    }
    var_slots_ = var_slots;
  }

  Status Init() {
    const int64_t bitmap_bytes = arrow::bit_util::BytesForBits(capacity_);
    // Fixed-width columns share one allocation, each starting on a 64-byte boundary: columns of
    // one type then lie at a constant stride, so a reader can view them as one 2-D matrix without
    // copying (the Python package's to_numpy does).
    int64_t fixed_bytes = 0;
    bool any_fixed = false;
    for (const Output& out : outputs_) {
      if (out.layout->physical != Physical::kFixed) continue;
      any_fixed = true;
      fixed_bytes += arrow::bit_util::RoundUpToMultipleOf64(capacity_ * out.layout->width);
    }
    std::shared_ptr<arrow::Buffer> fixed_block;
    if (any_fixed) {
      QUIVER_ASSIGN_OR_RETURN_ARROW(fixed_block, arrow::AllocateBuffer(fixed_bytes));
    }
    int64_t fixed_offset = 0;
    for (Output& out : outputs_) {
      const ColumnLayout& layout = *out.layout;
      if (layout.physical == Physical::kFixed) {
        const int64_t bytes = capacity_ * layout.width;
        out.values = arrow::SliceMutableBuffer(fixed_block, fixed_offset, bytes);
        fixed_offset += arrow::bit_util::RoundUpToMultipleOf64(bytes);
      } else if (layout.physical == Physical::kBool) {
        QUIVER_ASSIGN_OR_RETURN_ARROW(out.values, arrow::AllocateBuffer(bitmap_bytes));
        std::memset(out.values->mutable_data(), 0, bitmap_bytes);
      }
      uint8_t* values = out.values ? out.values->mutable_data() : nullptr;
      // Plans by kind, so the per-row loop is a few moves per column and no branches on types.
      switch (layout.physical) {
        case Physical::kFixed:
          (layout.width == 4   ? fixed4_
           : layout.width == 8 ? fixed8_
                               : fixed_other_)
              .push_back(FixedCopy{layout.offset, layout.width, values});
          break;
        case Physical::kBool:
          bools_.push_back(FixedCopy{layout.offset, 1, values});
          break;
        case Physical::kBytes:
        case Physical::kList:
          vars_.push_back(FixedCopy{layout.offset, layout.width, nullptr});
          break;
      }
    }
    // Not zero-filled: Copy or SetMissing writes every position before Finish reads it.
    refs_.reset(new VarRef[static_cast<size_t>(capacity_) * var_slots_]);
    row_bitmaps_.reset(new uint8_t[static_cast<size_t>(capacity_) * bitmap_stride_]);
    return Status::OK();
  }

  // Inside a seqlock read of `row`: copies the row's values to position i. Validity is derived
  // from the copied row bitmaps in Finish.
  void Copy(const std::byte* row, int64_t i) {
    // Whole 8-byte words: constant-size copies, no memcpy call. Reading past the bitmap stays in
    // the row (a key of at least 8 bytes follows it).
    uint8_t* bitmap = row_bitmaps_.get() + static_cast<size_t>(i) * bitmap_stride_;
    for (uint32_t word = 0; word < bitmap_stride_; word += 8) {
      CopyFromRow(bitmap + word, row + kRowHeaderBytes + word, 8);
    }
    for (const FixedCopy& copy : fixed4_) {
      CopyFromRow(copy.destination + i * 4, row + copy.row_offset, 4);
    }
    for (const FixedCopy& copy : fixed8_) {
      CopyFromRow(copy.destination + i * 8, row + copy.row_offset, 8);
    }
    for (const FixedCopy& copy : fixed_other_) {
      CopyFromRow(copy.destination + i * copy.width, row + copy.row_offset, copy.width);
    }
    for (const FixedCopy& copy : bools_) {
      arrow::bit_util::SetBitTo(copy.destination, i,
                                LoadFromRow<uint8_t>(row + copy.row_offset) != 0);
    }
    VarRef* refs = refs_.get() + static_cast<size_t>(i) * var_slots_;
    for (size_t slot = 0; slot < vars_.size(); ++slot) {
      refs[slot] = LoadVarRef(row + vars_[slot].row_offset, vars_[slot].width);
    }
  }

  void SetMissing(int64_t i) {
    std::memset(row_bitmaps_.get() + static_cast<size_t>(i) * bitmap_stride_, 0, bitmap_stride_);
    for (const auto* plan : {&fixed4_, &fixed8_, &fixed_other_}) {
      for (const FixedCopy& copy : *plan)
        std::memset(copy.destination + i * copy.width, 0, copy.width);
    }
    for (const FixedCopy& copy : bools_) arrow::bit_util::ClearBit(copy.destination, i);
    for (int slot = 0; slot < var_slots_; ++slot) {
      refs_[static_cast<size_t>(i) * var_slots_ + slot] = VarRef{0, {}};
    }
  }

  // Variable-length bytes referenced by position i (after it was validated).
  uint64_t VarBytes(int64_t i) const {
    uint64_t total = 0;
    for (int slot = 0; slot < var_slots_; ++slot) {
      total += refs_[static_cast<size_t>(i) * var_slots_ + slot].length;
    }
    return total;
  }

  // Builds the arrays for positions [0, length); `present` (nullptr: all) tells which positions
  // hold a row. Call inside the ReaderGate section.
  Result<arrow::ArrayVector> Finish(int64_t length, const uint8_t* present) {
    // Bits set in every present row's bitmap: those columns hold no null, and their validity is
    // just `present`.
    all_valid_.assign(bitmap_bytes_, 0xFF);
    for (int64_t i = 0; i < length; ++i) {
      if (present != nullptr && !arrow::bit_util::GetBit(present, i)) continue;
      const uint8_t* bitmap = row_bitmaps_.get() + static_cast<size_t>(i) * bitmap_stride_;
      for (uint32_t b = 0; b < bitmap_bytes_; ++b) all_valid_[b] &= bitmap[b];
    }
    arrow::ArrayVector arrays;
    for (Output& out : outputs_) {
      QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Buffer> validity,
                              Validity(*out.layout, length, present));
      const int64_t null_count =
          validity ? length - arrow::internal::CountSetBits(validity->data(), 0, length) : 0;
      if (null_count == 0) validity = nullptr;
      std::shared_ptr<arrow::ArrayData> data;
      const auto& type = out.type;
      switch (out.layout->physical) {
        case Physical::kFixed:
          if (validity) FillNullFloats(out, length, validity->data());
          if (type->id() == arrow::Type::FIXED_SIZE_LIST) {
            const auto& fsl = static_cast<const arrow::FixedSizeListType&>(*type);
            auto child = arrow::ArrayData::Make(fsl.value_type(), length * fsl.list_size(),
                                                {nullptr, out.values}, 0);
            data = arrow::ArrayData::Make(type, length, {validity}, {child}, null_count);
          } else {
            data = arrow::ArrayData::Make(type, length, {validity, out.values}, null_count);
          }
          break;
        case Physical::kBool:
          data = arrow::ArrayData::Make(type, length, {validity, out.values}, null_count);
          break;
        case Physical::kBytes:
        case Physical::kList: {
          QUIVER_ASSIGN_OR_RETURN(data, FinishVar(out, length, validity, null_count));
          break;
        }
      }
      arrays.push_back(arrow::MakeArray(data));
    }
    return arrays;
  }

 private:
  struct Output {
    int schema_index = 0;
    const ColumnLayout* layout = nullptr;
    std::shared_ptr<arrow::DataType> type;
    std::shared_ptr<arrow::Buffer> values;
    int var_slot = -1;
  };
  struct FixedCopy {
    uint32_t row_offset;
    uint32_t width;
    uint8_t* destination;
  };

  // Float values under nulls become NaN (Arrow leaves them undefined; missing rows were zeroed),
  // so a NumPy view of the values reads NaN for a null without looking at the validity bitmap.
  static void FillNullFloats(const Output& out, int64_t length, const uint8_t* validity) {
    const arrow::DataType* value_type = out.type.get();
    int64_t per_row = 1;
    if (value_type->id() == arrow::Type::FIXED_SIZE_LIST) {
      const auto& fsl = static_cast<const arrow::FixedSizeListType&>(*value_type);
      per_row = fsl.list_size();
      value_type = fsl.value_type().get();
    }
    uint8_t* values = out.values->mutable_data();
    if (value_type->id() == arrow::Type::FLOAT) {
      FillNulls<float>(reinterpret_cast<float*>(values), per_row, length, validity);
    } else if (value_type->id() == arrow::Type::DOUBLE) {
      FillNulls<double>(reinterpret_cast<double*>(values), per_row, length, validity);
    }
  }

  template <typename T>
  static void FillNulls(T* values, int64_t per_row, int64_t length, const uint8_t* validity) {
    for (int64_t i = 0; i < length; ++i) {
      if (!arrow::bit_util::GetBit(validity, i)) {
        std::fill_n(values + i * per_row, per_row, std::numeric_limits<T>::quiet_NaN());
      }
    }
  }

  // The validity bitmap of one output column, or nullptr when every position is valid.
  Result<std::shared_ptr<arrow::Buffer>> Validity(const ColumnLayout& layout, int64_t length,
                                                  const uint8_t* present) {
    const bool no_nulls_stored =
        layout.valid_bit < 0 || (all_valid_[layout.valid_bit / 8] >> (layout.valid_bit % 8)) & 1;
    if (no_nulls_stored && present == nullptr) return std::shared_ptr<arrow::Buffer>();
    const int64_t bytes = arrow::bit_util::BytesForBits(length);
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> validity,
                                  arrow::AllocateBuffer(bytes));
    uint8_t* bits = validity->mutable_data();
    if (no_nulls_stored) {
      std::memcpy(bits, present, bytes);
      return validity;
    }
    std::memset(bits, 0, bytes);
    const uint8_t* source = row_bitmaps_.get() + layout.valid_bit / 8;
    const int shift = layout.valid_bit % 8;
    // A missing row's bitmap copy is zero, so `present` needs no second look here.
    for (int64_t i = 0; i < length; ++i) {
      bits[i / 8] |= static_cast<uint8_t>(((source[i * bitmap_stride_] >> shift) & 1) << (i % 8));
    }
    return validity;
  }

  Result<std::shared_ptr<arrow::ArrayData>> FinishVar(
      const Output& out, int64_t length, const std::shared_ptr<arrow::Buffer>& validity,
      int64_t null_count) {
    const bool is_list = out.layout->physical == Physical::kList;
    const uint32_t element_width = is_list ? out.layout->element_width : 1;
    const uint8_t* valid = validity ? validity->data() : nullptr;
    auto ref_at = [&](int64_t i) -> const VarRef& {
      return refs_[static_cast<size_t>(i) * var_slots_ + out.var_slot];
    };
    auto length_at = [&](int64_t i) -> uint32_t {
      return valid && !arrow::bit_util::GetBit(valid, i) ? 0 : ref_at(i).length;
    };
    uint64_t total = 0;
    for (int64_t i = 0; i < length; ++i) total += length_at(i);
    if (total / element_width > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      return Status::LimitExceeded("table '" + table_.name_ + "' column '" +
                                   table_.schema_.columns()[out.schema_index].name +
                                   "': the result holds more than 2 GiB; read fewer keys");
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> offsets,
                                  arrow::AllocateBuffer((length + 1) * sizeof(int32_t)));
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> bytes,
                                  arrow::AllocateBuffer(static_cast<int64_t>(total)));
    auto* offset_data = reinterpret_cast<int32_t*>(offsets->mutable_data());
    uint8_t* out_bytes = bytes->mutable_data();
    uint64_t position = 0;
    for (int64_t i = 0; i < length; ++i) {
      offset_data[i] = static_cast<int32_t>(position / element_width);
      const uint32_t size = length_at(i);
      if (size == 0) continue;
      const VarRef& ref = ref_at(i);
      if (size <= kVarInlineBytes) {
        std::memcpy(out_bytes + position, ref.payload, size);
      } else {
        const std::byte* source = table_.heap_.View(HeapRefOf(ref), size);
        if (source == nullptr) {
          return Status::Internal("table '" + table_.name_ +
                                  "': a validated value reference "
                                  "points outside the heap");
        }
        std::memcpy(out_bytes + position, source, size);
      }
      position += size;
    }
    offset_data[length] = static_cast<int32_t>(position / element_width);
    if (!is_list) {
      return arrow::ArrayData::Make(out.type, length, {validity, offsets, bytes}, null_count);
    }
    const auto& list_type = static_cast<const arrow::ListType&>(*out.type);
    auto child =
        arrow::ArrayData::Make(list_type.value_type(),
                               static_cast<int64_t>(position / element_width), {nullptr, bytes}, 0);
    return arrow::ArrayData::Make(out.type, length, {validity, offsets}, {child}, null_count);
  }

  const Table& table_;
  const int64_t capacity_;
  const uint32_t bitmap_bytes_;
  const uint32_t bitmap_stride_;  // bytes per position in row_bitmaps_: a multiple of 8
  std::vector<Output> outputs_;
  std::vector<FixedCopy> fixed4_, fixed8_, fixed_other_, bools_, vars_;
  int var_slots_ = 0;
  std::unique_ptr<VarRef[]> refs_;
  std::unique_ptr<uint8_t[]> row_bitmaps_;
  std::vector<uint8_t> all_valid_;
};

// ---------------------------------------------------------------------------------------------
// Upsert input: each batch column validated, cast to the stored type and reduced to raw pointers.

struct Table::PreparedBatch {
  struct Input {
    int schema_index = 0;
    const ColumnLayout* layout = nullptr;
    std::shared_ptr<arrow::Array> array;  // keeps the buffers below alive
    const uint8_t* validity = nullptr;    // nullptr: all valid
    int64_t offset = 0;                   // array offset, for bitmaps
    const uint8_t* fixed = nullptr;       // kFixed: value i at fixed + i * width; kBool: bitmap
    const int32_t* offsets = nullptr;     // kBytes / kList: offsets[i]..offsets[i+1]
    const uint8_t* var = nullptr;         // kBytes: bytes; kList: child elements

    bool IsValid(int64_t i) const {
      return validity == nullptr || arrow::bit_util::GetBit(validity, offset + i);
    }
  };
  int64_t length = 0;
  std::shared_ptr<arrow::Array> keys;
  std::vector<Input> inputs;
  int event_time_input = -1;     // index into inputs
  std::string missing_required;  // a non-nullable value column the batch lacks
  size_t heap_bytes = 0;         // upper bound of heap appends
  size_t heap_largest = 0;       // the largest of them

  void AddHeapValue(size_t size) {
    if (size <= kVarInlineBytes) return;
    heap_bytes += size;
    heap_largest = std::max(heap_largest, size);
  }
};

Table::Table(std::string name, TableSchema schema, EngineLimits limits, RegionBacking backing,
             uint64_t id, Journal* journal)
    : name_(std::move(name)),
      id_(id),
      journal_(journal),
      schema_(std::move(schema)),
      limits_(limits),
      layout_(schema_),
      rows_(layout_.row_width(), backing),
      heap_(backing) {}

Table::~Table() { AttachMemoryLimit(nullptr); }

Result<std::shared_ptr<Table>> Table::Make(std::string name, TableSchema schema,
                                           EngineLimits limits, RegionBacking backing, uint64_t id,
                                           Journal* journal) {
  QUIVER_RETURN_NOT_OK(CheckTableName(name));
  QUIVER_RETURN_NOT_OK(InitializeCompute());
  limits.max_key_bytes = std::min(limits.max_key_bytes, kMaxKeyBytes);  // KeyRef length is 16-bit
  std::shared_ptr<Table> table(
      new Table(std::move(name), std::move(schema), limits, backing, id, journal));
  QUIVER_ASSIGN_OR_RETURN(table->index_, HashIndex::Create(backing));
  table->FinishWrite();
  return table;
}

Result<std::vector<int>> Table::ResolveColumns(const std::vector<std::string>& columns) const {
  std::vector<int> indices;
  if (columns.empty()) {
    for (int i = 0; i < schema_.num_columns(); ++i) {
      if (i != schema_.key_index()) indices.push_back(i);
    }
    return indices;
  }
  for (const std::string& name : columns) {
    int index = schema_.FindColumn(name);
    if (index < 0) {
      return Status::NotFound("table '" + name_ + "' has no column '" + name + "'");
    }
    indices.push_back(index);
  }
  return indices;
}

Result<std::shared_ptr<arrow::Schema>> Table::ReadSchema(
    const std::vector<std::string>& columns) const {
  QUIVER_ASSIGN_OR_RETURN(std::vector<int> indices, ResolveColumns(columns));
  arrow::FieldVector fields;
  for (int index : indices) {
    const ColumnSpec& spec = schema_.columns()[index];
    fields.push_back(arrow::field(spec.name, spec.type, /*nullable=*/true));
  }
  return arrow::schema(std::move(fields));
}

Result<std::shared_ptr<arrow::Array>> Table::NormalizeKeys(const arrow::Array& keys,
                                                           std::string_view what) const {
  const auto& key_type = schema_.key().type;
  std::shared_ptr<arrow::Array> normalized = arrow::MakeArray(keys.data());
  if (!keys.type()->Equals(*key_type)) {
    const bool integer_keys =
        arrow::is_integer(keys.type_id()) && key_type->id() == arrow::Type::INT64;
    const bool string_keys = IsStringLike(keys.type_id()) && key_type->id() == arrow::Type::STRING;
    arrow::Result<std::shared_ptr<arrow::Array>> cast =
        arrow::Status::TypeError("keys of another family");
    if (integer_keys || string_keys) {
      cast = arrow::compute::Cast(keys, key_type, arrow::compute::CastOptions::Safe());
    }
    if (!cast.ok()) {
      return Status::InvalidArgument("table '" + name_ + "': " + std::string(what) +
                                     " keys must be " + DtypeName(*key_type) + ", not " +
                                     keys.type()->ToString());
    }
    normalized = *cast;
  }
  if (normalized->null_count() > 0) {
    return Status::InvalidArgument("table '" + name_ + "': " + std::string(what) +
                                   " key at position " + std::to_string(FirstNull(*normalized)) +
                                   " is null");
  }
  return normalized;
}

Status Table::Prepare(const arrow::RecordBatch& batch, PreparedBatch* prepared) const {
  prepared->length = batch.num_rows();
  const auto& batch_schema = *batch.schema();
  std::vector<bool> seen(schema_.num_columns(), false);
  int key_column = -1;
  for (int c = 0; c < batch.num_columns(); ++c) {
    const std::string& column_name = batch_schema.field(c)->name();
    int index = schema_.FindColumn(column_name);
    if (index < 0) {
      return Status::NotFound("table '" + name_ + "' has no column '" + column_name + "'");
    }
    if (seen[index]) {
      return Status::InvalidArgument("table '" + name_ + "': column '" + column_name +
                                     "' appears twice in the batch");
    }
    seen[index] = true;
    if (index == schema_.key_index()) key_column = c;
  }
  if (key_column < 0) {
    return Status::InvalidArgument("table '" + name_ + "': the batch has no key column '" +
                                   schema_.key().name + "'");
  }
  for (int i = 0; i < schema_.num_columns(); ++i) {
    if (!seen[i] && !schema_.columns()[i].nullable && prepared->missing_required.empty()) {
      prepared->missing_required = schema_.columns()[i].name;
    }
  }

  // Keys: type, nulls, size.
  {
    auto keys = NormalizeKeys(*batch.column(key_column), "batch");
    if (!keys.ok()) return keys.status();
    prepared->keys = *keys;
    if (prepared->keys->type_id() == arrow::Type::STRING) {
      const auto& strings = static_cast<const arrow::StringArray&>(*prepared->keys);
      for (int64_t i = 0; i < strings.length(); ++i) {
        const int64_t size = strings.value_length(i);
        if (static_cast<size_t>(size) > limits_.max_key_bytes) {
          return Status::LimitExceeded("table '" + name_ + "' row " + std::to_string(i) +
                                       ": key of " + std::to_string(size) +
                                       " bytes is over the limit of " +
                                       std::to_string(limits_.max_key_bytes));
        }
        prepared->AddHeapValue(static_cast<size_t>(size));
      }
    }
  }

  for (int c = 0; c < batch.num_columns(); ++c) {
    if (c == key_column) continue;
    const int index = schema_.FindColumn(batch_schema.field(c)->name());
    const ColumnSpec& spec = schema_.columns()[index];
    const std::string where = "table '" + name_ + "' column '" + spec.name + "'";
    std::shared_ptr<arrow::Array> array = batch.column(c);

    // A list of the wrong length would fail the cast below without naming the row.
    if (spec.type->id() == arrow::Type::FIXED_SIZE_LIST && array->type_id() == arrow::Type::LIST) {
      const int32_t want = static_cast<const arrow::FixedSizeListType&>(*spec.type).list_size();
      const auto& list = static_cast<const arrow::ListArray&>(*array);
      for (int64_t i = 0; i < list.length(); ++i) {
        if (list.IsValid(i) && list.value_length(i) != want) {
          return Status::InvalidArgument(where + " row " + std::to_string(i) + ": embedding has " +
                                         std::to_string(list.value_length(i)) +
                                         " elements, expected " + std::to_string(want));
        }
      }
    }
    if (!array->type()->Equals(*spec.type, /*check_metadata=*/false)) {
      if (!ConversionAllowed(*array->type(), *spec.type)) {
        return Status::InvalidArgument(where + ": cannot store " + array->type()->ToString() +
                                       " as " + DtypeName(*spec.type));
      }
      auto cast = arrow::compute::Cast(*array, spec.type, arrow::compute::CastOptions::Safe());
      if (!cast.ok()) {
        return Status::InvalidArgument(where + ": cannot store " + array->type()->ToString() +
                                       " as " + DtypeName(*spec.type) + " (" +
                                       cast.status().message() + ")");
      }
      array = *cast;
    }
    if (!spec.nullable && array->null_count() > 0) {
      return Status::InvalidArgument(where + " row " + std::to_string(FirstNull(*array)) +
                                     ": null in a non-nullable column");
    }

    PreparedBatch::Input input;
    input.schema_index = index;
    input.layout = &layout_.column(index);
    input.array = array;
    const arrow::ArrayData& data = *array->data();
    input.offset = data.offset;
    input.validity = data.null_count != 0 && data.buffers[0] ? data.buffers[0]->data() : nullptr;
    switch (input.layout->physical) {
      case Physical::kFixed:
        if (spec.type->id() == arrow::Type::FIXED_SIZE_LIST) {
          const auto& child = *data.child_data[0];
          const uint32_t element_width = input.layout->element_width;
          const int32_t list_size =
              static_cast<const arrow::FixedSizeListType&>(*spec.type).list_size();
          if (child.GetNullCount() > 0) {
            for (int64_t i = 0; i < data.length; ++i) {
              if (!input.IsValid(i)) continue;
              int64_t first = child.offset + (data.offset + i) * list_size;
              if (arrow::internal::CountSetBits(child.buffers[0]->data(), first, list_size) !=
                  list_size) {
                return Status::InvalidArgument(where + " row " + std::to_string(i) +
                                               ": embedding elements must not be null");
              }
            }
          }
          input.fixed =
              child.buffers[1]->data() + (child.offset + data.offset * list_size) * element_width;
        } else {
          input.fixed = data.buffers[1]->data() + data.offset * input.layout->width;
        }
        break;
      case Physical::kBool:
        input.fixed = data.buffers[1]->data();
        break;
      case Physical::kBytes: {
        input.offsets = data.GetValues<int32_t>(1);
        input.var = data.buffers[2] ? data.buffers[2]->data() : nullptr;
        for (int64_t i = 0; i < data.length; ++i) {
          if (!input.IsValid(i)) continue;
          const size_t size = static_cast<size_t>(input.offsets[i + 1] - input.offsets[i]);
          if (size > limits_.max_value_bytes) {
            return Status::LimitExceeded(where + " row " + std::to_string(i) + ": value of " +
                                         std::to_string(size) + " bytes is over the limit of " +
                                         std::to_string(limits_.max_value_bytes));
          }
          prepared->AddHeapValue(size);
        }
        break;
      }
      case Physical::kList: {
        const auto& child = *data.child_data[0];
        const uint32_t element_width = input.layout->element_width;
        input.offsets = data.GetValues<int32_t>(1);
        input.var =
            child.buffers[1] ? child.buffers[1]->data() + child.offset * element_width : nullptr;
        const bool child_nulls = child.GetNullCount() > 0;
        for (int64_t i = 0; i < data.length; ++i) {
          if (!input.IsValid(i)) continue;
          const int64_t elements = input.offsets[i + 1] - input.offsets[i];
          const size_t size = static_cast<size_t>(elements) * element_width;
          if (size > limits_.max_value_bytes) {
            return Status::LimitExceeded(where + " row " + std::to_string(i) + ": list of " +
                                         std::to_string(size) + " bytes is over the limit of " +
                                         std::to_string(limits_.max_value_bytes));
          }
          if (child_nulls && elements > 0 &&
              arrow::internal::CountSetBits(child.buffers[0]->data(),
                                            child.offset + input.offsets[i],
                                            elements) != elements) {
            return Status::InvalidArgument(where + " row " + std::to_string(i) +
                                           ": list elements must not be null");
          }
          prepared->AddHeapValue(size);
        }
        break;
      }
    }
    if (index == schema_.event_time_index()) {
      prepared->event_time_input = static_cast<int>(prepared->inputs.size());
    }
    prepared->inputs.push_back(std::move(input));
  }
  return Status::OK();
}

uint32_t Table::FindRowForWriter(uint64_t hash, std::string_view key) const {
  const HashIndex::Array& index = *index_->current();
  const ColumnLayout& key_layout = layout_.column(schema_.key_index());
  size_t position = HashIndex::Home(index, hash);
  for (uint32_t row = HashIndex::NextCandidate(index, hash, &position); row != HashIndex::kNoRow;
       row = HashIndex::NextCandidate(index, hash, &position)) {
    if (KeyMatches(rows_.Row(row), key_layout, key, heap_)) return row;
  }
  return HashIndex::kNoRow;
}

namespace {

// Writes a VarRef / KeyRef of `width` bytes (and, for values over 8 bytes, appends them to the
// heap).
void WriteVarRef(std::byte* destination, uint32_t width, const void* bytes, size_t size,
                 Heap& heap) {
  VarRef ref{static_cast<uint32_t>(size), {}};
  if (size <= kVarInlineBytes) {
    if (size > 0) std::memcpy(ref.payload, bytes, size);
  } else {
    HeapRef heap_ref = heap.Append(bytes, size);
    std::memcpy(ref.payload, &heap_ref, sizeof(heap_ref));
  }
  StoreVarRef(destination, width, ref);
}

void ReleaseVarRef(const std::byte* source, uint32_t width, Heap& heap) {
  const VarRef ref = LoadVarRef(source, width);
  if (ref.length > kVarInlineBytes) heap.Release(HeapRefOf(ref), ref.length);
}

}  // namespace

namespace {

int64_t ExpiryOf(const std::byte* row) {
  return static_cast<int64_t>(RowMeta(row).load(std::memory_order_relaxed) & kRowExpiryMask);
}

bool IsDue(int64_t expire_at, int64_t now) { return expire_at != 0 && expire_at <= now; }

// The row's access clock after an access at `now_ms` (row_layout.h): seconds for LRU (and when
// no policy needs one), Redis's LFU word under an LFU policy (`fresh`: a new row's).
uint32_t AccessAfter(uint64_t meta, bool lfu, bool fresh, int64_t now_ms) {
  if (!lfu) return static_cast<uint32_t>(now_ms / 1000) & kRowAccessMask;
  return (fresh ? LfuNew(now_ms, kRowLfuMinuteBits)
                : LfuTouched(static_cast<uint32_t>(meta >> kRowAccessShift), now_ms,
                             kRowLfuMinuteBits)) &
         kRowAccessMask;
}

// A reader's access: stamps the clock unless it already says so (LRU: once per second per row).
// A lost race (the writer or another reader changed the word) leaves the stamp out.
void TouchRow(const std::byte* row, bool lfu, int64_t now_ms) {
  std::atomic<uint64_t>& meta = RowMeta(row);
  uint64_t word = meta.load(std::memory_order_relaxed);
  const uint64_t access = AccessAfter(word, lfu, /*fresh=*/false, now_ms);
  if (access == (word >> kRowAccessShift)) return;
  meta.compare_exchange_strong(word, (word & kRowExpiryMask) | access << kRowAccessShift,
                               std::memory_order_relaxed);
}

// Index bytes per row, about (8-byte slots at a load of at most 3/4).
constexpr uint64_t kIndexBytesPerRow = 11;

// An integer of schema metadata (a logged write's clock or expiry); 0 when absent.
int64_t MetadataInt(const arrow::Schema& schema, std::string_view key) {
  if (schema.metadata() == nullptr) return 0;
  auto value = schema.metadata()->Get(std::string(key));
  int64_t number = 0;
  if (value.ok()) std::from_chars(value->data(), value->data() + value->size(), number);
  return number;
}

bool IsExpiryField(const arrow::Field& field) {
  return field.metadata() != nullptr &&
         field.metadata()->Get(std::string(kExpireAtMetadata)).ValueOr("") == "true";
}

}  // namespace

int64_t UnixMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool Table::ExpiredAt(uint32_t row_id, int64_t now) const {
  return now != 0 && IsDue(ExpiryOf(rows_.Row(row_id)), now);
}

void Table::TrackExpiry(uint32_t row_id, bool expires) {
  if (expires) {
    if (expiring_slot_.size() <= row_id) expiring_slot_.resize(size_t{row_id} + 1);
    if (expiring_slot_[row_id] == 0) {
      expiring_.push_back(row_id);
      expiring_slot_[row_id] = static_cast<uint32_t>(expiring_.size());
    }
  } else if (row_id < expiring_slot_.size() && expiring_slot_[row_id] != 0) {
    const uint32_t slot = expiring_slot_[row_id] - 1;
    const uint32_t last = expiring_.back();
    expiring_[slot] = last;
    expiring_slot_[last] = slot + 1;
    expiring_.pop_back();
    expiring_slot_[row_id] = 0;
  }
}

void Table::Reclaim(uint32_t row_id, uint64_t hash) {
  std::byte* row = rows_.Row(row_id);
  const uint32_t sequence = SeqlockWriteBegin(row);
  ReleaseVarValues(row);
  SeqlockWriteEnd(row, sequence, /*live=*/false);
  index_->Erase(hash, row_id);
  free_rows_.push_back(row_id);
  row_count_.fetch_sub(1, std::memory_order_relaxed);
  TrackExpiry(row_id, false);
}

void Table::ReleaseVarValues(const std::byte* row) {
  for (int i = 0; i < schema_.num_columns(); ++i) {
    const ColumnLayout& layout = layout_.column(i);
    if (layout.physical == Physical::kBytes || layout.physical == Physical::kList) {
      ReleaseVarRef(row + layout.offset, layout.width, heap_);
    }
  }
}

void Table::WriteRow(uint32_t row_id, bool is_new, const PreparedBatch& batch, int64_t i,
                     std::string_view key, int64_t expire_at, const WriteClock& clock) {
  std::byte* row = rows_.Row(row_id);
  const uint32_t sequence = SeqlockWriteBegin(row);
  std::atomic<uint64_t>& meta = RowMeta(row);
  const uint64_t access =
      AccessAfter(meta.load(std::memory_order_relaxed), clock.lfu, is_new, clock.now_ms);
  // An expiry past the meta word's range (a damaged snapshot) is kept as the furthest it holds.
  const uint64_t expiry = expire_at <= 0 ? 0 : std::min<uint64_t>(expire_at, kRowExpiryMask);
  meta.store(expiry | access << kRowAccessShift, std::memory_order_relaxed);
  if (is_new) {
    ZeroRow(row + kRowHeaderBytes, layout_.row_width() - kRowHeaderBytes);
    const ColumnLayout& key_layout = layout_.column(schema_.key_index());
    if (key_layout.physical == Physical::kFixed) {
      CopyToRow(row + key_layout.offset, key.data(), sizeof(int64_t));
    } else {
      WriteVarRef(row + key_layout.offset, key_layout.width, key.data(), key.size(), heap_);
    }
  }

  std::byte* bitmap = row + kRowHeaderBytes;
  for (const PreparedBatch::Input& input : batch.inputs) {
    const ColumnLayout& layout = *input.layout;
    const bool valid = input.IsValid(i);
    if (layout.valid_bit >= 0) {
      std::byte* byte = bitmap + layout.valid_bit / 8;
      uint8_t bits = LoadFromRow<uint8_t>(byte);
      const uint8_t mask = static_cast<uint8_t>(1u << (layout.valid_bit % 8));
      StoreToRow<uint8_t>(byte, valid ? (bits | mask) : (bits & ~mask));
    }
    std::byte* destination = row + layout.offset;
    switch (layout.physical) {
      case Physical::kFixed:
        if (valid) CopyToRow(destination, input.fixed + i * layout.width, layout.width);
        break;
      case Physical::kBool:
        StoreToRow<uint8_t>(destination,
                            valid && arrow::bit_util::GetBit(input.fixed, input.offset + i));
        break;
      case Physical::kBytes:
      case Physical::kList: {
        if (!is_new) ReleaseVarRef(destination, layout.width, heap_);
        if (!valid) {
          WriteVarRef(destination, layout.width, nullptr, 0, heap_);
          break;
        }
        const int64_t begin = input.offsets[i];
        const int64_t count = input.offsets[i + 1] - begin;
        const uint32_t element_width =
            layout.physical == Physical::kList ? layout.element_width : 1;
        WriteVarRef(destination, layout.width, input.var + begin * element_width,
                    static_cast<size_t>(count) * element_width, heap_);
        break;
      }
    }
  }
  SeqlockWriteEnd(row, sequence, /*live=*/true);
  TrackExpiry(row_id, expire_at != 0);
}

Result<UpsertResult> Table::Upsert(const arrow::Table& table, const WriteOptions& options) {
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::RecordBatch> batch,
                                table.CombineChunksToBatch());
  return Upsert(*batch, options);
}

template <typename T, typename Locked>
Result<T> Table::Journaled(Locked locked) {
  uint64_t lsn = 0;
  Result<T> result = [&] {
    std::lock_guard<std::mutex> lock(write_mutex_);
    return locked(WriteMode::kJournaled, &lsn);
  }();
  if (result.ok() && lsn != 0) QUIVER_RETURN_NOT_OK(journal_->Commit(lsn));
  return result;
}

template <typename T, typename Locked>
Result<T> Table::Replayed(uint64_t lsn, Locked locked) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  uint64_t unused = 0;
  Result<T> result = locked(WriteMode::kReplay, &unused);
  if (result.ok()) applied_lsn_.store(lsn, std::memory_order_release);
  return result;
}

Result<UpsertResult> Table::Upsert(const arrow::RecordBatch& batch, const WriteOptions& options) {
  QUIVER_RETURN_NOT_OK(MakeRoomFor(batch));
  return Journaled<UpsertResult>(
      [&](WriteMode mode, uint64_t* lsn) { return UpsertLocked(batch, mode, lsn, options); });
}

std::pair<uint64_t, uint64_t> Table::QuiescedLsn(const std::function<uint64_t()>& position) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  return {applied_lsn_.load(std::memory_order_acquire), position()};
}

Result<UpsertResult> Table::Replay(const arrow::RecordBatch& batch, uint64_t lsn) {
  return Replayed<UpsertResult>(lsn, [&](WriteMode mode, uint64_t* unused) {
    return UpsertLocked(batch, mode, unused, WriteOptions{});
  });
}

Result<UpsertResult> Table::UpsertLocked(const arrow::RecordBatch& input, WriteMode mode,
                                         uint64_t* lsn, const WriteOptions& options) {
  // The write's clock (for the expiry of stored rows) and the written rows' expiry: now, or as
  // logged when replaying; a snapshot's batch carries each row's expiry in a last column.
  int64_t now = 0, expire_at = 0;
  const arrow::RecordBatch* batch_pointer = &input;
  std::shared_ptr<arrow::RecordBatch> without_expiry;
  std::shared_ptr<arrow::Int64Array> row_expiry;
  if (mode == WriteMode::kJournaled) {
    if (options.ttl_ms < 0 || options.ttl_ms > kMaxTtlMs) {
      return Status::InvalidArgument("table '" + name_ +
                                     "': a write's TTL must be from 1 ms to 100 years, not " +
                                     std::to_string(options.ttl_ms) + " ms");
    }
    now = UnixMillis();
    const int64_t ttl = options.ttl_ms != 0 ? options.ttl_ms : schema_.ttl_ms();
    if (ttl != 0) expire_at = now + ttl;
  } else {
    now = MetadataInt(*input.schema(), kLoggedNowMetadata);
    expire_at = MetadataInt(*input.schema(), kLoggedExpireAtMetadata);
    const int last = input.num_columns() - 1;
    if (last > 0 && IsExpiryField(*input.schema()->field(last))) {
      if (input.column(last)->type_id() != arrow::Type::INT64) {
        return Status::Corruption("table '" + name_ + "': the expiry column is not int64");
      }
      row_expiry = std::static_pointer_cast<arrow::Int64Array>(input.column(last));
      QUIVER_ASSIGN_OR_RETURN_ARROW(without_expiry, input.RemoveColumn(last));
      batch_pointer = without_expiry.get();
    }
  }
  const arrow::RecordBatch& batch = *batch_pointer;
  const MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  const WriteClock clock{limit != nullptr && IsLfu(limit->Policy()), UnixMillis()};
  const auto expiry_of = [&](int64_t i) {
    return row_expiry == nullptr ? expire_at : row_expiry->IsNull(i) ? 0 : row_expiry->Value(i);
  };
  PreparedBatch prepared;
  QUIVER_RETURN_NOT_OK(Prepare(batch, &prepared));
  const int64_t n = prepared.length;
  KeyColumn key_column(*prepared.keys);
  const bool string_keys = prepared.keys->type_id() == arrow::Type::STRING;

  // Pass 1 (changes nothing): which keys exist, so that every check and allocation happens
  // before the first row changes.
  constexpr int64_t kAhead = 16;
  std::vector<uint64_t> hashes(n);
  std::vector<uint32_t> existing(n);
  for (int64_t i = 0; i < n; ++i) hashes[i] = HashBytes(key_column.Bytes(i));
  size_t new_keys = 0;
  {
    const HashIndex::Array& index = *index_->current();
    for (int64_t i = 0; i < n; ++i) {
      if (i + kAhead < n) HashIndex::Prefetch(index, hashes[i + kAhead]);
      existing[i] = FindRowForWriter(hashes[i], key_column.Bytes(i));
      // An expired row is gone: its key is written as a new one (pass 2 reclaims the row).
      if (existing[i] == HashIndex::kNoRow || ExpiredAt(existing[i], now)) {
        if (!prepared.missing_required.empty() && mode == WriteMode::kJournaled) {
          return Status::InvalidArgument(
              "table '" + name_ + "' row " + std::to_string(i) + ": new key " +
              KeyForMessage(key_column.Bytes(i), string_keys) +
              " has no value for non-nullable column '" + prepared.missing_required + "'");
        }
        ++new_keys;
      }
    }
  }
  const size_t reused = std::min(free_rows_.size(), new_keys);
  QUIVER_RETURN_NOT_OK(rows_.Reserve(size_t{next_row_} + (new_keys - reused)));
  QUIVER_RETURN_NOT_OK(index_->Reserve(new_keys));
  QUIVER_RETURN_NOT_OK(heap_.Reserve(prepared.heap_bytes, prepared.heap_largest));
  if (expire_at != 0 || row_expiry != nullptr) {
    try {  // so that pass 2 allocates nothing
      expiring_slot_.resize(std::max(expiring_slot_.size(), size_t{next_row_} + new_keys));
      expiring_.reserve(expiring_.size() + static_cast<size_t>(n));
    } catch (const std::bad_alloc&) {
      return Status::OutOfMemory("table '" + name_ + "': no memory for the TTL index");
    }
  }
  if (journal_ != nullptr && mode == WriteMode::kJournaled && n > 0) {
    const std::shared_ptr<const arrow::KeyValueMetadata>& given = batch.schema()->metadata();
    const auto reserved = [](const std::string& key) {
      return key == kLoggedNowMetadata || key == kLoggedExpireAtMetadata;
    };
    const bool spoofed =
        given != nullptr && std::any_of(given->keys().begin(), given->keys().end(), reserved);
    if (expire_at != 0 || !expiring_.empty() || spoofed) {
      // Replay decides expiry with the writer's clock, and gives the rows this expiry; what a
      // client put under those keys is not kept.
      auto metadata = std::make_shared<arrow::KeyValueMetadata>();
      for (int64_t k = 0; given != nullptr && k < given->size(); ++k) {
        if (!reserved(given->key(k))) metadata->Append(given->key(k), given->value(k));
      }
      if (expire_at != 0 || !expiring_.empty()) {
        metadata->Append(std::string(kLoggedNowMetadata), std::to_string(now));
        metadata->Append(std::string(kLoggedExpireAtMetadata), std::to_string(expire_at));
      }
      QUIVER_ASSIGN_OR_RETURN(*lsn,
                              journal_->LogUpsert(id_, *batch.ReplaceSchemaMetadata(metadata)));
    } else {
      QUIVER_ASSIGN_OR_RETURN(*lsn, journal_->LogUpsert(id_, batch));
    }
  }

  // Pass 2: apply, row after row. Nothing below can fail.
  UpsertResult result;
  const PreparedBatch::Input* event_time =
      prepared.event_time_input >= 0 ? &prepared.inputs[prepared.event_time_input] : nullptr;
  const HashIndex::Array& index = *index_->current();
  const ColumnLayout& key_layout = layout_.column(schema_.key_index());
  for (int64_t i = 0; i < n; ++i) {
    if (i + kAhead < n) {
      if (existing[i + kAhead] != HashIndex::kNoRow) {
        __builtin_prefetch(rows_.Row(existing[i + kAhead]), 1);
      } else {
        HashIndex::Prefetch(index, hashes[i + kAhead]);
      }
    }
    uint32_t row_id = existing[i];
    size_t insert_at = 0;
    if (row_id != HashIndex::kNoRow && ExpiredAt(row_id, now)) {
      // Freed and, below, taken again at once for this key (the last free row is reused first),
      // so a later row of the batch with this key still finds it at existing[].
      Reclaim(row_id, hashes[i]);
      stat_expired_.fetch_add(1, std::memory_order_relaxed);
      row_id = HashIndex::kNoRow;
    }
    if (row_id == HashIndex::kNoRow) {
      // Absent before the batch, but an earlier row of this batch may have inserted it; the same
      // walk finds where to insert it otherwise.
      const std::string_view key = key_column.Bytes(i);
      row_id = index_->FindForInsert(
          hashes[i],
          [&](uint32_t candidate) {
            return KeyMatches(rows_.Row(candidate), key_layout, key, heap_);
          },
          &insert_at);
    }
    if (row_id != HashIndex::kNoRow) {
      if (event_time != nullptr) {
        const std::byte* row = rows_.Row(row_id);
        int64_t stored, incoming;
        std::memcpy(&stored, row + event_time->layout->offset, sizeof(stored));
        std::memcpy(&incoming, event_time->fixed + i * sizeof(int64_t), sizeof(incoming));
        if (incoming < stored) {
          ++result.rows_skipped;
          continue;
        }
      }
      WriteRow(row_id, /*is_new=*/false, prepared, i, key_column.Bytes(i), expiry_of(i), clock);
    } else {
      if (!free_rows_.empty()) {
        row_id = free_rows_.back();
        free_rows_.pop_back();
      } else {
        row_id = next_row_++;
      }
      WriteRow(row_id, /*is_new=*/true, prepared, i, key_column.Bytes(i), expiry_of(i), clock);
      index_->InsertAt(insert_at, hashes[i], row_id);
      row_count_.fetch_add(1, std::memory_order_relaxed);
    }
    ++result.rows_written;
  }
  if (*lsn != 0) applied_lsn_.store(*lsn, std::memory_order_release);
  FinishWrite();
  return result;
}

Result<int64_t> Table::Delete(const arrow::Array& keys) {
  return Journaled<int64_t>(
      [&](WriteMode mode, uint64_t* lsn) { return DeleteLocked(keys, mode, lsn); });
}

Result<int64_t> Table::ReplayDelete(const arrow::Array& keys, uint64_t lsn) {
  return Replayed<int64_t>(
      lsn, [&](WriteMode mode, uint64_t* unused) { return DeleteLocked(keys, mode, unused); });
}

Result<int64_t> Table::DeleteLocked(const arrow::Array& keys_in, WriteMode mode, uint64_t* lsn) {
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> keys, NormalizeKeys(keys_in, "delete"));
  if (journal_ != nullptr && mode == WriteMode::kJournaled && keys->length() > 0) {
    QUIVER_ASSIGN_OR_RETURN(*lsn, journal_->LogDelete(id_, *keys));
  }
  KeyColumn key_column(*keys);
  // Replay only needs the state right, not the count: it never sees a row as expired.
  const int64_t now = mode == WriteMode::kJournaled ? UnixMillis() : 0;
  int64_t deleted = 0;
  for (int64_t i = 0; i < keys->length(); ++i) {
    const uint64_t hash = HashBytes(key_column.Bytes(i));
    const uint32_t row_id = FindRowForWriter(hash, key_column.Bytes(i));
    if (row_id == HashIndex::kNoRow) continue;
    if (!ExpiredAt(row_id, now)) ++deleted;  // an expired row was gone already
    Reclaim(row_id, hash);
  }
  if (*lsn != 0) applied_lsn_.store(*lsn, std::memory_order_release);
  FinishWrite();
  return deleted;
}

Status Table::MoveHeapValues(const std::vector<bool>& victims) {
  std::vector<int> var_columns;
  for (int c = 0; c < schema_.num_columns(); ++c) {
    const Physical physical = layout_.column(c).physical;
    if (physical == Physical::kBytes || physical == Physical::kList) var_columns.push_back(c);
  }
  // Whether a value's bytes are in a chunk being emptied (chunks opened by the move are not).
  const auto in_victim = [&victims](const VarRef& ref) {
    if (ref.length <= kVarInlineBytes) return false;
    const size_t chunk = Heap::ChunkOf(HeapRefOf(ref));
    return chunk < victims.size() && victims[chunk];
  };
  for (uint32_t id = 0; id < next_row_; ++id) {
    std::byte* row = rows_.Row(id);
    if (!RowLiveForWriter(row)) continue;
    size_t bytes = 0, largest = 0;
    for (int c : var_columns) {
      const ColumnLayout& layout = layout_.column(c);
      const VarRef ref = LoadVarRef(row + layout.offset, layout.width);
      if (!in_victim(ref)) continue;
      bytes += ref.length;
      largest = std::max<size_t>(largest, ref.length);
    }
    if (bytes == 0) continue;
    QUIVER_RETURN_NOT_OK(heap_.Reserve(bytes, largest));
    const uint32_t sequence = SeqlockWriteBegin(row);
    for (int c : var_columns) {
      const ColumnLayout& layout = layout_.column(c);
      VarRef ref = LoadVarRef(row + layout.offset, layout.width);
      if (!in_victim(ref)) continue;
      const HeapRef heap_ref = HeapRefOf(ref);
      const HeapRef moved = heap_.Append(heap_.View(heap_ref, ref.length), ref.length);
      std::memcpy(ref.payload, &moved, sizeof(moved));
      StoreVarRef(row + layout.offset, layout.width, ref);
      heap_.Release(heap_ref, ref.length);  // the old copy: freed with its chunk
      heap_moved_bytes_ += ref.length;
    }
    SeqlockWriteEnd(row, sequence, /*live=*/true);
  }
  return Status::OK();
}

void Table::FinishWrite() {
  // Chunks holding only garbage are freed at once (free of copying). Past that, the heap's
  // garbage stays under its live bytes (the heap within about twice them: when garbage is spread
  // evenly, a byte copied per byte given back), or a quarter of them under a memory limit (whose
  // accounting leaves garbage out: four bytes copied per byte then); and at least the configured
  // minimum and 2 bytes a row, as a compaction visits every row.
  const MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  const uint64_t garbage_divisor = limit != nullptr && limit->MaxMemory() != 0 ? 4 : 1;
  const uint64_t garbage_threshold =
      std::max({uint64_t{limits_.heap_compaction_min_garbage}, uint64_t{next_row_} * 2,
                heap_.live_bytes() / garbage_divisor});
  std::vector<bool> victims;
  if (heap_.CompactionDue(garbage_threshold)) {
    victims = heap_.ChooseVictims(garbage_threshold);
    // On failure (no memory for a moved value) every row is still valid, a moved value's old
    // copy is garbage of its chunk, and a later write tries again.
    if (heap_.LiveBytesIn(victims) > 0 && !MoveHeapValues(victims).ok()) victims.clear();
  }
  const bool compacted = std::find(victims.begin(), victims.end(), true) != victims.end();
  if (compacted || index_->has_retired() || rows_.regions().has_retired() ||
      heap_.regions().has_retired()) {
    gate_.Synchronize();  // from here no reader holds a pointer or reference to what goes below
    index_->FreeRetired();
    rows_.regions().FreeRetired();
    heap_.regions().FreeRetired();
    if (compacted) {
      heap_.FreeChunks(victims);
      ++heap_compactions_;
    }
  }
  scan_limit_.store(next_row_, std::memory_order_release);
  stat_row_bytes_.store(rows_.bytes(), std::memory_order_relaxed);
  stat_index_bytes_.store(index_->bytes(), std::memory_order_relaxed);
  stat_heap_bytes_.store(heap_.bytes(), std::memory_order_relaxed);
  stat_heap_garbage_.store(heap_.garbage_bytes(), std::memory_order_relaxed);
  stat_heap_live_.store(heap_.live_bytes(), std::memory_order_relaxed);
  stat_row_capacity_.store(rows_.capacity(), std::memory_order_relaxed);
  stat_heap_compactions_.store(heap_compactions_, std::memory_order_relaxed);
  stat_heap_moved_.store(heap_moved_bytes_, std::memory_order_relaxed);
  stat_expiring_.store(static_cast<int64_t>(expiring_.size()), std::memory_order_relaxed);
}

int64_t Table::ExpireCycle(int64_t budget_us) {
  constexpr int kSample = 20;
  constexpr int kAcceptablePercent = 25;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us);
  int64_t reclaimed = 0;
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (expiring_.empty()) return 0;
  const int64_t now = UnixMillis();
  for (;;) {
    int sampled = 0, expired = 0;
    for (; sampled < kSample && !expiring_.empty(); ++sampled) {
      sample_state_ ^= sample_state_ << 13;
      sample_state_ ^= sample_state_ >> 7;
      sample_state_ ^= sample_state_ << 17;
      const uint32_t row_id = expiring_[sample_state_ % expiring_.size()];
      if (!ExpiredAt(row_id, now)) continue;
      const std::string key =
          StoredKey(rows_.Row(row_id), layout_.column(schema_.key_index()), heap_);
      Reclaim(row_id, HashBytes(key));
      ++expired;
    }
    reclaimed += expired;
    if (expired * 100 <= sampled * kAcceptablePercent || expiring_.empty() ||
        std::chrono::steady_clock::now() >= deadline) {
      break;
    }
  }
  stat_expired_.fetch_add(reclaimed, std::memory_order_relaxed);
  FinishWrite();
  return reclaimed;
}

TableStats Table::Stats() const {
  TableStats stats;
  stats.rows = row_count_.load(std::memory_order_relaxed);
  stats.row_bytes = stat_row_bytes_.load(std::memory_order_relaxed);
  stats.index_bytes = stat_index_bytes_.load(std::memory_order_relaxed);
  stats.heap_bytes = stat_heap_bytes_.load(std::memory_order_relaxed);
  stats.heap_garbage_bytes = stat_heap_garbage_.load(std::memory_order_relaxed);
  stats.row_capacity = stat_row_capacity_.load(std::memory_order_relaxed);
  stats.heap_compactions = stat_heap_compactions_.load(std::memory_order_relaxed);
  stats.heap_moved_bytes = stat_heap_moved_.load(std::memory_order_relaxed);
  stats.bytes = stats.row_bytes + stats.index_bytes + stats.heap_bytes;
  stats.row_width = layout_.row_width();
  stats.rows_with_ttl = stat_expiring_.load(std::memory_order_relaxed);
  stats.expired = stat_expired_.load(std::memory_order_relaxed);
  stats.evicted = stat_evicted_.load(std::memory_order_relaxed);
  stats.used_bytes = UsedMemory();
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Memory limit and eviction.

void Table::AttachMemoryLimit(MemoryLimit* limit) {
  std::lock_guard lock(limit_mutex_);
  MemoryLimit* old = limit_.exchange(limit, std::memory_order_acq_rel);
  if (old == limit) return;
  if (old != nullptr) old->RemoveSource(this);
  if (limit != nullptr) limit->AddSource(this);
}

uint64_t Table::UsedMemory() const {
  return static_cast<uint64_t>(std::max<int64_t>(0, row_count_.load(std::memory_order_relaxed))) *
             layout_.row_width() +
         stat_index_bytes_.load(std::memory_order_relaxed) +
         stat_heap_live_.load(std::memory_order_relaxed);
}

int64_t Table::EvictableKeys(EvictionPolicy policy) {
  return IsVolatile(policy) ? stat_expiring_.load(std::memory_order_relaxed)
                            : row_count_.load(std::memory_order_relaxed);
}

uint64_t Table::HeapBytesOf(const std::byte* row) const {
  uint64_t bytes = 0;
  for (int c = 0; c < schema_.num_columns(); ++c) {
    const ColumnLayout& layout = layout_.column(c);  // the key's too, when a string
    if (layout.physical != Physical::kBytes && layout.physical != Physical::kList) continue;
    const VarRef ref = LoadVarRef(row + layout.offset, layout.width);
    if (ref.length > kVarInlineBytes) bytes += ref.length;
  }
  return bytes;
}

bool Table::Sample(EvictionPolicy policy, uint64_t random, int64_t now_ms, EvictionCandidate* out) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  uint32_t row_id = HashIndex::kNoRow;
  if (IsVolatile(policy)) {
    if (expiring_.empty()) return false;
    row_id = expiring_[random % expiring_.size()];
  } else {
    if (next_row_ == 0 || row_count_.load(std::memory_order_relaxed) == 0) return false;
    // The first row in use at or after a random row. Rows in use are dense unless many were
    // deleted (their slots are reused first): the walk is 1 / density rows long on average.
    const uint64_t start = random % next_row_;
    for (uint64_t k = 0; k < next_row_; ++k) {
      const auto candidate = static_cast<uint32_t>((start + k) % next_row_);
      if (RowLiveForWriter(rows_.Row(candidate))) {
        row_id = candidate;
        break;
      }
    }
    if (row_id == HashIndex::kNoRow) return false;
  }
  std::byte* row = rows_.Row(row_id);
  const uint64_t meta = RowMeta(row).load(std::memory_order_relaxed);
  const auto expire_at = static_cast<int64_t>(meta & kRowExpiryMask);
  const auto access = static_cast<uint32_t>(meta >> kRowAccessShift);
  if (IsDue(expire_at, now_ms)) {
    out->score = std::numeric_limits<uint64_t>::max();  // gone already: reclaimed first
  } else if (IsLfu(policy)) {
    out->score = 255 - LfuCounter(access, now_ms, kRowLfuMinuteBits);
  } else if (policy == EvictionPolicy::kVolatileTtl) {
    out->score = std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(expire_at);
  } else {
    // Idle milliseconds, comparable with the keyspace's: the clock counts seconds, so the access
    // is taken to be in the middle of its second.
    const auto seconds = static_cast<uint32_t>(now_ms / 1000) & kRowAccessMask;
    const int64_t idle = int64_t{(seconds - access) & kRowAccessMask} * 1000 + now_ms % 1000 - 500;
    out->score = static_cast<uint64_t>(std::max<int64_t>(0, idle));
  }
  out->bytes = layout_.row_width() + kIndexBytesPerRow + HeapBytesOf(row);
  out->id = row_id;
  out->version = RowSeq(row).load(std::memory_order_relaxed);
  out->key = StoredKey(row, layout_.column(schema_.key_index()), heap_);
  return true;
}

int64_t Table::Evict(EvictionPolicy policy, const std::vector<EvictionCandidate>& victims) {
  const bool int_keys = schema_.key().type->id() == arrow::Type::INT64;
  Result<int64_t> evicted = Journaled<int64_t>([&](WriteMode mode,
                                                   uint64_t* lsn) -> Result<int64_t> {
    const int64_t now = UnixMillis();
    arrow::Int64Builder ints;
    arrow::StringBuilder strings;
    int64_t reclaimed = 0;
    for (const EvictionCandidate& victim : victims) {
      if (victim.id >= next_row_) continue;
      const auto row_id = static_cast<uint32_t>(victim.id);
      std::byte* row = rows_.Row(row_id);
      // Gone or rewritten since it was sampled (a write is an access: it no longer qualifies).
      if (!RowLiveForWriter(row) || RowSeq(row).load(std::memory_order_relaxed) != victim.version) {
        continue;
      }
      if (IsVolatile(policy) && ExpiryOf(row) == 0) continue;
      if (ExpiredAt(row_id, now)) {  // expired meanwhile: reclaimed, as by active expiry
        Reclaim(row_id, HashBytes(victim.key));
        ++reclaimed;
        continue;
      }
      if (int_keys) {
        int64_t key;
        std::memcpy(&key, victim.key.data(), sizeof(key));
        QUIVER_RETURN_NOT_OK_ARROW(ints.Append(key));
      } else {
        QUIVER_RETURN_NOT_OK_ARROW(strings.Append(victim.key));
      }
    }
    stat_expired_.fetch_add(reclaimed, std::memory_order_relaxed);
    std::shared_ptr<arrow::Array> keys;
    QUIVER_RETURN_NOT_OK_ARROW(int_keys ? ints.Finish(&keys) : strings.Finish(&keys));
    if (keys->length() == 0) {
      FinishWrite();
      return int64_t{0};
    }
    return DeleteLocked(*keys, mode, lsn);
  });
  if (!evicted.ok()) {
    // The journal refused the delete (changed nothing): the limit sees no room made.
    return 0;
  }
  stat_evicted_.fetch_add(*evicted, std::memory_order_relaxed);
  return *evicted;
}

int64_t Table::CountLive(const arrow::Array& keys) const {
  KeyColumn key_column(keys);
  const ColumnLayout& key_layout = layout_.column(schema_.key_index());
  const int64_t now = UnixMillis();
  ReaderGate::Section section = gate_.Enter();
  const HashIndex::Array& index = *index_->current();
  int64_t live = 0;
  for (int64_t i = 0; i < keys.length(); ++i) {
    const std::string_view key = key_column.Bytes(i);
    const uint64_t hash = HashBytes(key);
    size_t position = HashIndex::Home(index, hash);
    for (uint32_t candidate = HashIndex::NextCandidate(index, hash, &position);
         candidate != HashIndex::kNoRow;
         candidate = HashIndex::NextCandidate(index, hash, &position)) {
      std::byte* row = rows_.Row(candidate);
      bool matched;
      uint32_t sequence;
      do {
        sequence = SeqlockReadBegin(row);
        matched = (sequence & kSeqLive) && KeyMatches(row, key_layout, key, heap_) &&
                  !IsDue(ExpiryOf(row), now);
      } while (!SeqlockReadValidate(row, sequence));
      if (matched) {
        ++live;
        break;
      }
    }
  }
  return live;
}

Status Table::MakeRoomFor(const arrow::RecordBatch& batch) {
  MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  if (limit == nullptr || limit->MaxMemory() == 0) return Status::OK();
  // What the batch may add: each row as a new one, and every variable-length value.
  uint64_t need =
      static_cast<uint64_t>(batch.num_rows()) * (layout_.row_width() + kIndexBytesPerRow);
  for (int c = 0; c < batch.num_columns(); ++c) {
    if (!arrow::is_fixed_width(batch.column(c)->type_id())) {
      need += static_cast<uint64_t>(arrow::util::TotalBufferSize(*batch.column_data(c)));
    }
  }
  if (limit->UsedMemory() + need > limit->MaxMemory()) {
    // Near the limit, only new keys count: rewriting stored rows adds about nothing (a value's
    // old bytes become garbage, which is compacted), so it must not evict.
    // (Bad keys are left for the write itself to report.)
    const std::shared_ptr<arrow::Array> key_column = batch.GetColumnByName(schema_.key().name);
    if (key_column != nullptr && batch.num_rows() > 0) {
      Result<std::shared_ptr<arrow::Array>> keys = NormalizeKeys(*key_column, "write");
      if (keys.ok()) {
        const int64_t fresh = batch.num_rows() - CountLive(**keys);
        need = need * static_cast<uint64_t>(fresh) / static_cast<uint64_t>(batch.num_rows());
      }
    }
  }
  if (limit->MakeRoom(need)) return Status::OK();
  const uint64_t max_memory = limit->MaxMemory();
  std::string message = "table '" + name_ + "': out of memory: this write may add about " +
                        std::to_string(need) + " bytes";
  if (need > max_memory) {
    message += ", more than maxmemory (" + std::to_string(max_memory) +
               " bytes) allows; write smaller batches or raise maxmemory";
  } else {
    message += " and used memory is " + std::to_string(limit->UsedMemory()) + " of maxmemory " +
               std::to_string(max_memory) + " bytes with nothing left to evict (maxmemory-policy " +
               std::string(PolicyName(limit->Policy())) + ")";
  }
  return Status::OutOfMemory(std::move(message));
}

// ---------------------------------------------------------------------------------------------
// Reads.

Result<ReadResult> Table::Read(const arrow::Array& keys_in,
                               const std::vector<std::string>& columns) const {
  QUIVER_ASSIGN_OR_RETURN(std::vector<int> indices, ResolveColumns(columns));
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> keys, NormalizeKeys(keys_in, "read"));
  const int64_t n = keys->length();
  KeyColumn key_column(*keys);
  Gather gather(*this, indices, n);
  QUIVER_RETURN_NOT_OK(gather.Init());
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> found_bits,
                                arrow::AllocateBuffer(arrow::bit_util::BytesForBits(n)));
  uint8_t* found = found_bits->mutable_data();
  std::memset(found, 0, found_bits->size());
  const ColumnLayout& key_layout = layout_.column(schema_.key_index());
  const uint32_t row_width = layout_.row_width();

  // Scratch, not zero-filled: every element is written before it is read.
  std::unique_ptr<uint64_t[]> hashes(new uint64_t[n]);
  int64_t found_count = 0;
  const int64_t now = UnixMillis();
  // Under an LRU or LFU memory policy each row found has its access clock stamped.
  const MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  const EvictionPolicy policy = limit != nullptr ? limit->Policy() : EvictionPolicy::kNoEviction;
  const bool touch = IsLru(policy) || IsLfu(policy), lfu = IsLfu(policy);
  arrow::ArrayVector arrays;
  {
    ReaderGate::Section section = gate_.Enter();
    const HashIndex::Array& index = *index_->current();
    // A software pipeline keeps a steady number of cache misses in flight: key i is hashed and
    // its index slot prefetched, key i - kDistance has its slot read and its row prefetched, and
    // key i - 2 * kDistance is copied.
    constexpr int64_t kDistance = 12;
    std::unique_ptr<std::byte*[]> first_row(new std::byte*[n]);  // nullptr: no candidate
    std::unique_ptr<size_t[]> next_position(new size_t[n]);      // probe position after it
    for (int64_t step = 0; step < n + 2 * kDistance; ++step) {
      if (step < n) {
        hashes[step] = HashBytes(key_column.Bytes(step));
        HashIndex::Prefetch(index, hashes[step]);
      }
      if (const int64_t i = step - kDistance; i >= 0 && i < n) {
        size_t position = HashIndex::Home(index, hashes[i]);
        const uint32_t candidate = HashIndex::NextCandidate(index, hashes[i], &position);
        next_position[i] = position;
        first_row[i] = nullptr;
        if (candidate != HashIndex::kNoRow) {
          std::byte* row = rows_.Row(candidate);
          first_row[i] = row;
          __builtin_prefetch(row);
          __builtin_prefetch(row + row_width - 1);
        }
      }
      const int64_t i = step - 2 * kDistance;
      if (i < 0) continue;
      // Copy key i from the first row that holds it, while that row is in L1.
      const std::string_view key = key_column.Bytes(i);
      size_t position = next_position[i];
      bool matched = false, expired = false;
      const std::byte* hit = nullptr;
      // Stop at the first row holding the key: probing on would touch more index lines.
      for (std::byte* row = first_row[i]; row != nullptr;) {
        uint32_t sequence;
        do {
          sequence = SeqlockReadBegin(row);
          matched = (sequence & kSeqLive) && KeyMatches(row, key_layout, key, heap_);
          expired = matched && IsDue(ExpiryOf(row), now);  // passive expiry
          if (matched && !expired) gather.Copy(row, i);
        } while (!SeqlockReadValidate(row, sequence));
        if (matched) {
          hit = row;
          break;
        }
        const uint32_t next = HashIndex::NextCandidate(index, hashes[i], &position);
        row = next == HashIndex::kNoRow ? nullptr : rows_.Row(next);
      }
      if (matched && !expired) {
        arrow::bit_util::SetBit(found, i);
        ++found_count;
        if (touch) TouchRow(hit, lfu, now);
      } else {
        gather.SetMissing(i);
      }
    }
    QUIVER_ASSIGN_OR_RETURN(arrays, gather.Finish(n, found));
  }
  ReadResult result;
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Schema> schema, ReadSchema(columns));
  result.batch = arrow::RecordBatch::Make(std::move(schema), n, std::move(arrays));
  result.found = std::make_shared<arrow::BooleanArray>(n, found_bits);
  result.found_count = found_count;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Scan.

class Table::Scanner : public arrow::RecordBatchReader {
 public:
  Scanner(std::shared_ptr<const Table> table, int64_t max_batch_rows, bool with_expiry)
      : table_(std::move(table)),
        schema_(table_->schema_.ToArrow()),
        max_batch_rows_(max_batch_rows),
        with_expiry_(with_expiry) {
    for (int i = 0; i < table_->schema_.num_columns(); ++i) columns_.push_back(i);
    if (with_expiry) {
      schema_ = *schema_->AddField(
          schema_->num_fields(),
          arrow::field("quiver_expire_at_ms", arrow::int64(), /*nullable=*/true,
                       arrow::key_value_metadata({std::string(kExpireAtMetadata)}, {"true"})));
    }
  }

  std::shared_ptr<arrow::Schema> schema() const override { return schema_; }

  arrow::Status ReadNext(std::shared_ptr<arrow::RecordBatch>* batch) override {
    *batch = nullptr;
    const uint32_t limit = table_->scan_limit_.load(std::memory_order_acquire);
    if (cursor_ >= limit) return arrow::Status::OK();
    // Batches end at max_batch_rows rows or about 64 MiB of variable-length bytes.
    constexpr uint64_t kMaxBatchVarBytes = 64 << 20;
    Gather gather(*table_, columns_, max_batch_rows_);
    Status init = gather.Init();
    if (!init.ok()) return arrow::Status::OutOfMemory(init.message());
    int64_t produced = 0;
    uint64_t var_bytes = 0;
    arrow::ArrayVector arrays;
    const int64_t now = UnixMillis();
    std::vector<int64_t> expiry;
    if (with_expiry_) expiry.resize(static_cast<size_t>(max_batch_rows_));
    {
      ReaderGate::Section section = table_->gate_.Enter();
      // Stretches of deleted rows produce nothing: go on until a row is live or the end.
      while (cursor_ < limit && produced < max_batch_rows_ && var_bytes < kMaxBatchVarBytes) {
        std::byte* row = table_->rows_.Row(cursor_++);
        bool live;
        int64_t expire_at;
        uint32_t sequence;
        do {
          sequence = SeqlockReadBegin(row);
          expire_at = ExpiryOf(row);
          live = (sequence & kSeqLive) && !IsDue(expire_at, now);
          if (live) gather.Copy(row, produced);
        } while (!SeqlockReadValidate(row, sequence));
        if (!live) continue;
        if (with_expiry_) expiry[static_cast<size_t>(produced)] = expire_at;
        var_bytes += gather.VarBytes(produced++);
      }
      if (produced == 0) return arrow::Status::OK();  // the end
      auto finished = gather.Finish(produced, nullptr);
      if (!finished.ok()) return arrow::Status::Invalid(finished.status().message());
      arrays = std::move(finished).value();
    }
    if (with_expiry_) {
      arrow::Int64Builder builder;
      ARROW_RETURN_NOT_OK(builder.Reserve(produced));
      for (int64_t i = 0; i < produced; ++i) {
        const int64_t at = expiry[static_cast<size_t>(i)];
        at == 0 ? builder.UnsafeAppendNull() : builder.UnsafeAppend(at);
      }
      ARROW_ASSIGN_OR_RAISE(std::shared_ptr<arrow::Array> column, builder.Finish());
      arrays.push_back(std::move(column));
    }
    *batch = arrow::RecordBatch::Make(schema_, produced, std::move(arrays));
    return arrow::Status::OK();
  }

 private:
  std::shared_ptr<const Table> table_;
  std::shared_ptr<arrow::Schema> schema_;
  std::vector<int> columns_;
  int64_t max_batch_rows_;
  bool with_expiry_;
  uint32_t cursor_ = 0;
};

Result<std::shared_ptr<arrow::RecordBatchReader>> Table::Scan(int64_t max_batch_rows,
                                                              bool with_expiry) const {
  if (max_batch_rows <= 0) {
    return Status::InvalidArgument("scan batch size must be positive");
  }
  return std::shared_ptr<arrow::RecordBatchReader>(
      std::make_shared<Scanner>(shared_from_this(), max_batch_rows, with_expiry));
}

}  // namespace quiver
