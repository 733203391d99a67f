// RowGather: builds Arrow columns from rows copied under their seqlocks, for the engine's reads
// and scans (engine/table_read.cc) and for readers of a published table in other processes
// (src/shm/): one decoder of the row format for both. Output buffers are allocated once;
// fixed-width values go straight to their final place; variable-length values are first
// collected as VarRefs and copied by Finish, once every row was validated.
//
// Thread safety: one gather per read, used by one thread.
#pragma once

#include <arrow/api.h>
#include <arrow/util/bit_util.h>
#include <arrow/util/bitmap_ops.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/arrow_status.h"
#include "common/result.h"
#include "engine/dtype.h"
#include "engine/row_format.h"
#include "engine/row_layout.h"
#include "engine/sparse_row.h"

namespace quiver {

// One output column: its layout in the row, its Arrow type, its name (for errors).
struct GatherColumn {
  const ColumnLayout* layout;
  std::shared_ptr<arrow::DataType> type;
  std::string_view name;
};

// Resolves `size` bytes at a heap reference; nullptr when they are not mapped.
struct HeapResolver {
  const void* context;
  const std::byte* (*resolve)(const void* context, HeapRef ref, size_t size);
};

class RowGather {
 public:
  // `columns`: what to gather, in output order (their layouts must outlive the gather); `heap`:
  // resolves heap references; `table`: the table's name for errors; `sparse_widths`: the table's
  // (RowLayout::sparse_widths), needed when a column is sparse.
  RowGather(const std::vector<GatherColumn>& columns, uint32_t bitmap_bytes, int64_t capacity,
            HeapResolver heap, std::string_view table,
            const std::vector<uint32_t>* sparse_widths = nullptr)
      : heap_(heap),
        table_(table),
        capacity_(capacity),
        bitmap_bytes_(bitmap_bytes),
        bitmap_stride_((bitmap_bytes_ + 7) / 8 * 8),
        sparse_widths_(sparse_widths) {
    int var_slots = 0;
    for (const GatherColumn& column : columns) {
      Output out;
      out.name = column.name;
      out.layout = column.layout;
      out.type = column.type;
      if (out.layout->physical == Physical::kBytes || out.layout->physical == Physical::kList) {
        out.var_slot = var_slots++;
      } else if (out.layout->physical == Physical::kSparse) {
        // Every sparse column reads the one sparse blob.
        if (sparse_slot_ < 0) sparse_slot_ = var_slots++;
        out.var_slot = sparse_slot_;
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
    bool sparse_planned = false;
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
      } else if (layout.physical == Physical::kSparse) {
        if (sparse_widths_ == nullptr) {
          return Status::Internal("table '" + std::string(table_) + "' column '" +
                                  std::string(out.name) + "': a sparse column without its layout");
        }
        if (layout.sparse_physical != Physical::kBytes) {
          const int64_t bytes = layout.sparse_physical == Physical::kBool
                                    ? bitmap_bytes
                                    : capacity_ * layout.element_width;
          QUIVER_ASSIGN_OR_RETURN_ARROW(out.values, arrow::AllocateBuffer(bytes));
        }
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
        case Physical::kSparse:  // the blob's reference, once, in its var slot's place
          if (!sparse_planned) vars_.push_back(FixedCopy{layout.offset, kVarRefBytes, nullptr});
          sparse_planned = true;
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

  // Whether every heap reference of position i (validated) resolves: a reader of another
  // process may not have mapped a heap chunk added since it last looked.
  bool HeapRefsResolve(int64_t i) const {
    const VarRef* refs = refs_.get() + static_cast<size_t>(i) * var_slots_;
    for (int slot = 0; slot < var_slots_; ++slot) {
      const VarRef& ref = refs[slot];
      if (ref.length > kVarInlineBytes &&
          heap_.resolve(heap_.context, HeapRefOf(ref), ref.length) == nullptr) {
        return false;
      }
    }
    return true;
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
    if (sparse_slot_ >= 0) QUIVER_RETURN_NOT_OK(FinishSparse(length, present));
    arrow::ArrayVector arrays;
    for (Output& out : outputs_) {
      if (out.layout->physical == Physical::kSparse) {
        arrays.push_back(
            arrow::MakeArray(sparse_data_[static_cast<size_t>(&out - outputs_.data())]));
        continue;
      }
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
        case Physical::kSparse:  // above
          break;
      }
      arrays.push_back(arrow::MakeArray(data));
    }
    return arrays;
  }

 private:
  struct Output {
    std::string_view name;
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

  // Every sparse output column at once: each present position's blob (sparse_row.h) is walked
  // once, its entries scattered to the outputs that want them; blobs are prefetched ahead.
  // Results go to sparse_data_, by output.
  Status FinishSparse(int64_t length, const uint8_t* present) {
    const std::vector<uint32_t>& widths = *sparse_widths_;
    std::vector<int> output_of(widths.size(), -1);
    struct Target {
      Output* out;
      uint8_t* valid;
      uint8_t* values;
      std::vector<std::string_view> texts;  // kBytes
      int64_t set = 0;
      std::shared_ptr<arrow::Buffer> validity;
    };
    std::vector<Target> targets;
    const int64_t bitmap_bytes = arrow::bit_util::BytesForBits(length);
    for (Output& out : outputs_) {
      if (out.layout->physical != Physical::kSparse) continue;
      Target target{&out, nullptr, nullptr, {}, 0, nullptr};
      QUIVER_ASSIGN_OR_RETURN_ARROW(target.validity, arrow::AllocateBuffer(bitmap_bytes));
      target.valid = target.validity->mutable_data();
      std::memset(target.valid, 0, bitmap_bytes);
      const ColumnLayout& layout = *out.layout;
      if (layout.sparse_physical == Physical::kBytes) {
        target.texts.resize(static_cast<size_t>(length));
      } else {
        // Unset positions read as NaN for floats (as dense columns' nulls do), else 0.
        target.values = out.values->mutable_data();
        if (!arrow::is_floating(out.type->id())) {
          std::memset(target.values, 0,
                      layout.sparse_physical == Physical::kBool ? bitmap_bytes
                                                                : length * layout.element_width);
        }
        switch (out.type->id()) {
          case arrow::Type::FLOAT:
            std::fill_n(reinterpret_cast<float*>(target.values), length,
                        std::numeric_limits<float>::quiet_NaN());
            break;
          case arrow::Type::DOUBLE:
            std::fill_n(reinterpret_cast<double*>(target.values), length,
                        std::numeric_limits<double>::quiet_NaN());
            break;
          case arrow::Type::HALF_FLOAT:
            std::fill_n(reinterpret_cast<uint16_t*>(target.values), length, kHalfFloatNaN);
            break;
          default:
            break;
        }
      }
      output_of[layout.sparse_id] = static_cast<int>(targets.size());
      targets.push_back(std::move(target));
    }
    // First where each blob is, then the walk, with the blobs some positions ahead fetched.
    std::vector<std::string_view> blobs(static_cast<size_t>(length));
    for (int64_t i = 0; i < length; ++i) {
      if (present == nullptr || arrow::bit_util::GetBit(present, i)) {
        blobs[static_cast<size_t>(i)] = BlobAt(i, sparse_slot_);
      }
    }
    constexpr int64_t kAhead = 8;
    for (int64_t i = 0; i < length; ++i) {
      if (i + kAhead < length && !blobs[static_cast<size_t>(i + kAhead)].empty()) {
        __builtin_prefetch(blobs[static_cast<size_t>(i + kAhead)].data());
      }
      // Walked here rather than with ForEachSparseEntry (sparse_row.h), whose callback costs
      // this loop about 15% in BM_ReadSparse10: the same format and the same checks.
      const std::string_view blob = blobs[static_cast<size_t>(i)];
      if (blob.size() < 2) continue;
      uint16_t count;
      std::memcpy(&count, blob.data(), 2);
      size_t at = 2 + size_t{count} * 2;
      if (blob.size() < at) continue;
      for (uint16_t j = 0; j < count; ++j) {
        uint16_t id;
        std::memcpy(&id, blob.data() + 2 + size_t{j} * 2, 2);
        if (id >= widths.size()) break;
        size_t size = widths[id];
        if (size == 0) {
          uint32_t text_length;
          if (blob.size() - at < 4) break;
          std::memcpy(&text_length, blob.data() + at, 4);
          at += 4;
          size = text_length;
        }
        if (blob.size() - at < size) break;
        if (const int t = output_of[id]; t >= 0) {
          Target& target = targets[static_cast<size_t>(t)];
          const ColumnLayout& layout = *target.out->layout;
          arrow::bit_util::SetBit(target.valid, i);
          ++target.set;
          if (layout.sparse_physical == Physical::kBytes) {
            target.texts[static_cast<size_t>(i)] = blob.substr(at, size);
          } else if (layout.sparse_physical == Physical::kBool) {
            if (blob[at] != 0) arrow::bit_util::SetBit(target.values, i);
          } else if (size == 4) {  // constant sizes: no call to memcpy
            std::memcpy(target.values + i * 4, blob.data() + at, 4);
          } else if (size == 8) {
            std::memcpy(target.values + i * 8, blob.data() + at, 8);
          } else {
            std::memcpy(target.values + i * layout.element_width, blob.data() + at, size);
          }
        }
        at += size;
      }
    }
    sparse_data_.assign(outputs_.size(), nullptr);
    for (Target& target : targets) {
      Output& out = *target.out;
      const int64_t null_count = length - target.set;
      std::shared_ptr<arrow::Buffer> validity = null_count == 0 ? nullptr : target.validity;
      std::shared_ptr<arrow::ArrayData> data;
      if (out.layout->sparse_physical != Physical::kBytes) {
        data = arrow::ArrayData::Make(out.type, length, {validity, out.values}, null_count);
      } else {
        uint64_t total = 0;
        for (const std::string_view text : target.texts) total += text.size();
        std::shared_ptr<arrow::Buffer> offsets, bytes;
        QUIVER_RETURN_NOT_OK(AllocateVar(out, length, total, 1, &offsets, &bytes));
        auto* offset_data = reinterpret_cast<int32_t*>(offsets->mutable_data());
        int32_t position = 0;
        for (int64_t i = 0; i < length; ++i) {
          offset_data[i] = position;
          const std::string_view text = target.texts[static_cast<size_t>(i)];
          if (!text.empty())
            std::memcpy(bytes->mutable_data() + position, text.data(), text.size());
          position += static_cast<int32_t>(text.size());
        }
        offset_data[length] = position;
        data = arrow::ArrayData::Make(out.type, length, {validity, offsets, bytes}, null_count);
      }
      sparse_data_[static_cast<size_t>(&out - outputs_.data())] = std::move(data);
    }
    return Status::OK();
  }

  // The offsets and data buffers of a variable-length output of `total` value bytes (elements of
  // `element_width`); LimitExceeded past what int32 offsets address.
  Status AllocateVar(const Output& out, int64_t length, uint64_t total, uint32_t element_width,
                     std::shared_ptr<arrow::Buffer>* offsets,
                     std::shared_ptr<arrow::Buffer>* bytes) {
    if (total / element_width > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
      return Status::LimitExceeded("table '" + std::string(table_) + "' column '" +
                                   std::string(out.name) +
                                   "': the result holds more than 2 GiB; read fewer keys");
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(*offsets, arrow::AllocateBuffer((length + 1) * sizeof(int32_t)));
    QUIVER_ASSIGN_OR_RETURN_ARROW(*bytes, arrow::AllocateBuffer(static_cast<int64_t>(total)));
    return Status::OK();
  }

  // The bytes var slot `slot` of position i refers to (empty when they cannot be resolved).
  std::string_view BlobAt(int64_t i, int slot) const {
    const VarRef& ref = refs_[static_cast<size_t>(i) * var_slots_ + slot];
    if (ref.length <= kVarInlineBytes) {
      return {reinterpret_cast<const char*>(ref.payload), ref.length};
    }
    const std::byte* bytes = heap_.resolve(heap_.context, HeapRefOf(ref), ref.length);
    if (bytes == nullptr) return {};
    return {reinterpret_cast<const char*>(bytes), ref.length};
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
    std::shared_ptr<arrow::Buffer> offsets, bytes;
    QUIVER_RETURN_NOT_OK(AllocateVar(out, length, total, element_width, &offsets, &bytes));
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
        const std::byte* source = heap_.resolve(heap_.context, HeapRefOf(ref), size);
        if (source == nullptr) {
          return Status::Internal("table '" + std::string(table_) +
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

  const HeapResolver heap_;
  const std::string_view table_;
  const int64_t capacity_;
  const uint32_t bitmap_bytes_;
  const uint32_t bitmap_stride_;  // bytes per position in row_bitmaps_: a multiple of 8
  std::vector<Output> outputs_;
  std::vector<FixedCopy> fixed4_, fixed8_, fixed_other_, bools_, vars_;
  int var_slots_ = 0;
  const std::vector<uint32_t>* sparse_widths_;
  int sparse_slot_ = -1;  // the var slot of the sparse blob's reference
  std::vector<std::shared_ptr<arrow::ArrayData>> sparse_data_;  // by output: FinishSparse's
  std::unique_ptr<VarRef[]> refs_;
  std::unique_ptr<uint8_t[]> row_bitmaps_;
  std::vector<uint8_t> all_valid_;
};

}  // namespace quiver
