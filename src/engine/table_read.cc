#include <arrow/api.h>
#include <arrow/util/bit_util.h>
#include <arrow/util/bitmap_ops.h>

#include <algorithm>
#include <limits>
#include <memory>

#include "common/arrow_status.h"
#include "common/hash.h"
#include "engine/row_gather.h"
#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {

// Reads and scans: rows copied under their seqlocks into Arrow arrays (engine/row_gather.h).

namespace {

HeapResolver HeapOf(const Heap& heap) {
  return HeapResolver{&heap, [](const void* context, HeapRef ref, size_t size) {
                        return static_cast<const Heap*>(context)->View(ref, size);
                      }};
}

}  // namespace

std::vector<GatherColumn> Table::GatherColumns(const std::vector<int>& columns) const {
  std::vector<GatherColumn> out;
  out.reserve(columns.size());
  for (int index : columns) {
    const ColumnSpec& spec = schema_.columns()[index];
    out.push_back(GatherColumn{&layout_.column(index), spec.type, spec.name});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reads.

Result<ReadResult> Table::Read(const arrow::Array& keys_in, const std::vector<std::string>& columns,
                               const ReadOptions& options) const {
  QUIVER_ASSIGN_OR_RETURN(std::vector<int> indices, ResolveColumns(columns));
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> keys,
                          NormalizeKeys(schema_, keys_in, name_, "read"));
  const int64_t n = keys->length();
  KeyColumn key_column(*keys);
  RowGather gather(GatherColumns(indices), layout_.bitmap_bytes(), n, HeapOf(heap_), name_,
                   &layout_.sparse_widths());
  QUIVER_RETURN_NOT_OK(gather.Init());
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> found_bits,
                                arrow::AllocateBuffer(arrow::bit_util::BytesForBits(n)));
  uint8_t* found = found_bits->mutable_data();
  std::memset(found, 0, found_bits->size());
  const uint32_t row_width = layout_.row_width();

  // Scratch, not zero-filled: every element is written before it is read.
  std::unique_ptr<uint64_t[]> hashes(new uint64_t[n]);
  int64_t found_count = 0;
  const int64_t now = clock_();
  // With options.with_ttl: each found row's expiry (0: never).
  std::vector<int64_t> expiry(options.with_ttl ? static_cast<size_t>(n) : 0);
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
      int64_t expire_at = 0;
      const std::byte* hit = nullptr;
      // Stop at the first row holding the key: probing on would touch more index lines.
      for (std::byte* row = first_row[i]; row != nullptr;) {
        uint32_t sequence;
        do {
          sequence = SeqlockReadBegin(row);
          matched = (sequence & kSeqLive) && KeyMatches(row, layout_, key, heap_);
          expire_at = matched ? ExpiryOf(row) : 0;
          expired = IsDue(expire_at, now);  // passive expiry
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
        if (options.with_ttl) expiry[static_cast<size_t>(i)] = expire_at;
      } else {
        gather.SetMissing(i);
      }
    }
    QUIVER_ASSIGN_OR_RETURN(arrays, gather.Finish(n, found));
  }
  ReadResult result;
  result.batch = arrow::RecordBatch::Make(ReadSchemaOf(indices), n, std::move(arrays));
  result.found = std::make_shared<arrow::BooleanArray>(n, found_bits);
  result.found_count = found_count;
  if (options.with_ttl) {
    arrow::Int64Builder ttl;
    QUIVER_RETURN_NOT_OK_ARROW(ttl.Reserve(n));
    for (const int64_t at : expiry) at == 0 ? ttl.UnsafeAppendNull() : ttl.UnsafeAppend(at - now);
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> array, ttl.Finish());
    result.ttl_ms = std::static_pointer_cast<arrow::Int64Array>(array);
  }
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
    RowGather gather(table_->GatherColumns(columns_), table_->layout_.bitmap_bytes(),
                     max_batch_rows_, HeapOf(table_->heap_), table_->name_,
                     &table_->layout_.sparse_widths());
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

uint32_t Table::ScanKeys(uint32_t cursor, size_t count, std::vector<std::string>* keys) const {
  std::lock_guard<std::mutex> lock(write_mutex_);
  const int64_t now = clock_();
  uint32_t position = cursor;
  for (size_t visited = 0; position < next_row_ && visited < count; ++position, ++visited) {
    std::byte* row = rows_.Row(position);
    if (!RowLiveForWriter(row) || IsDue(ExpiryOf(row), now)) continue;
    keys->push_back(StoredKey(row, layout_, heap_));
  }
  return position >= next_row_ ? 0 : position;
}

Result<std::shared_ptr<arrow::RecordBatchReader>> Table::Scan(int64_t max_batch_rows,
                                                              bool with_expiry) const {
  if (max_batch_rows <= 0) {
    return Status::InvalidArgument("scan batch size must be positive");
  }
  return std::shared_ptr<arrow::RecordBatchReader>(
      std::make_shared<Scanner>(shared_from_this(), max_batch_rows, with_expiry));
}

}  // namespace quiver
