#include <arrow/api.h>
#include <arrow/util/bit_util.h>
#include <arrow/util/bitmap_ops.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "common/arrow_status.h"
#include "common/hash.h"
#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {

// Reads and scans: rows copied under their seqlocks into Arrow arrays.

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
    switch (FindDtype(value_type->id())->format) {
      case ValueFormat::kHalfFloat:
        FillNulls<uint16_t>(reinterpret_cast<uint16_t*>(values), per_row, length, validity,
                            kHalfFloatNaN);
        break;
      case ValueFormat::kFloat:
        if (value_type->id() == arrow::Type::FLOAT) {
          FillNulls<float>(reinterpret_cast<float*>(values), per_row, length, validity,
                           std::numeric_limits<float>::quiet_NaN());
        } else {
          FillNulls<double>(reinterpret_cast<double*>(values), per_row, length, validity,
                            std::numeric_limits<double>::quiet_NaN());
        }
        break;
      default:
        break;
    }
  }

  static constexpr uint16_t kHalfFloatNaN = 0x7e00;  // float16's quiet NaN

  template <typename T>
  static void FillNulls(T* values, int64_t per_row, int64_t length, const uint8_t* validity,
                        T nan) {
    for (int64_t i = 0; i < length; ++i) {
      if (!arrow::bit_util::GetBit(validity, i)) std::fill_n(values + i * per_row, per_row, nan);
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
  const int64_t now = clock_();
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
    const int64_t now = table_->clock_();
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
