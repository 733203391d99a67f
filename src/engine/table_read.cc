#include <arrow/api.h>
#include <arrow/util/bit_util.h>
#include <arrow/util/bitmap_ops.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <memory>
#include <unordered_map>

#include "common/arrow_status.h"
#include "common/crc32c.h"
#include "common/hash.h"
#include "engine/row_gather.h"
#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {

// Reads and scans: rows copied under their seqlocks into Arrow arrays (engine/row_gather.h).

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
  // Heap references resolve into the heap, or into the records cold rows were read into.
  ColdHeap cold_heap{&heap_, {}};
  std::vector<std::unique_ptr<AlignedBuffer>> cold_buffers;
  RowGather gather(GatherColumns(indices), layout_.bitmap_bytes(), n, cold_heap.Resolver(), name_,
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
  TierFile* const tier = this->tier();
  // Under noeviction a tiered table still keeps the clock: it picks the rows to move to disk.
  const bool touch =
      IsLru(policy) || IsLfu(policy) || (tier != nullptr && policy == EvictionPolicy::kNoEviction);
  const bool lfu = IsLfu(policy);
  // Keys whose candidate is a cold row, for the disk reads.
  struct Cold {
    int64_t i;
    uint32_t location;
    size_t position;  // the probe position after it
  };
  std::vector<Cold> cold;
  arrow::ArrayVector arrays;
  // Records read from disk, by location (rebased: their references resolve through cold_heap).
  std::unordered_map<uint32_t, const std::byte*> records;
  // Reads the records of `cold`'s locations not read yet into a new buffer of cold_heap.
  const auto fetch = [&](const std::vector<Cold>& wanted) -> Status {
    std::vector<uint32_t> locations;
    for (const Cold& c : wanted) {
      if (records.count(c.location) == 0) locations.push_back(c.location);
    }
    std::sort(locations.begin(), locations.end());
    locations.erase(std::unique(locations.begin(), locations.end()), locations.end());
    if (locations.empty()) return Status::OK();
    auto& buffer = cold_buffers.emplace_back(std::make_unique<AlignedBuffer>());
    std::vector<size_t> offsets;
    const auto started = std::chrono::steady_clock::now();
    QUIVER_RETURN_NOT_OK(tier->Read(locations.data(), locations.size(), ExpectedRecordBytes(),
                                    row_width, buffer.get(), &offsets));
    cold_read_seconds_.Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    const size_t number = cold_heap.buffers.size();
    cold_heap.buffers.emplace_back(buffer->data(), buffer->capacity());
    for (size_t k = 0; k < locations.size(); ++k) {
      std::byte* record = buffer->data() + offsets[k];
      RebaseRecord(record, layout_, number, offsets[k]);
      records[locations[k]] = record;
    }
    return Status::OK();
  };
  // One pass over the keys inside a reader section: rows in memory are copied; a cold row is
  // copied from its record when `records` has it, else its key goes to `cold`.
  // `resolve`: cold rows not in `records` are read inside the section, not left in `cold`.
  const auto pass = [&](const HashIndex::Array& index, bool resolve) -> Status {
    // Key i from the rows among its candidates, starting with `candidate` and going on from
    // probe `position`: found (copied), missing, or deferred to the cold rows' read.
    const auto lookup = [&](int64_t i, uint32_t candidate, size_t position) {
      const std::string_view key = key_column.Bytes(i);
      bool matched = false, expired = false;
      int64_t expire_at = 0;
      const std::byte* hit = nullptr;
      // Stop at the first row holding the key: probing on would touch more index lines.
      while (candidate != HashIndex::kNoRow) {
        if (IsColdRow(candidate)) {
          const auto record = records.find(ColdLocation(candidate));
          if (record == records.end()) {
            cold.push_back(Cold{i, ColdLocation(candidate), position});
            return;
          }
          const std::byte* image = record->second + kTierRecordHeaderBytes;
          if (RecordHash(record->second) == hashes[i] &&
              KeyMatches(image, layout_, key, cold_heap)) {
            uint64_t meta;
            std::memcpy(&meta, image, sizeof(meta));
            expire_at = static_cast<int64_t>(meta & kRowExpiryMask);
            expired = IsDue(expire_at, now);
            matched = true;
            if (!expired) {
              gather.Copy(image, i);
              if (touch && promotion_door_.Admit(hashes[i])) QueuePromotion(std::string(key));
            }
            break;
          }
          candidate = HashIndex::NextCandidate(index, hashes[i], &position);
          continue;
        }
        std::byte* row = rows_.Row(candidate);
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
        candidate = HashIndex::NextCandidate(index, hashes[i], &position);
      }
      if (matched && !expired) {
        arrow::bit_util::SetBit(found, i);
        ++found_count;
        if (touch && hit != nullptr) TouchRow(hit, lfu, now);
        if (options.with_ttl) expiry[static_cast<size_t>(i)] = expire_at;
      } else {
        gather.SetMissing(i);
      }
    };
    // A software pipeline keeps a steady number of cache misses in flight: key i is hashed and
    // its index slot prefetched, key i - kDistance has its slot read and its row prefetched, and
    // key i - 2 * kDistance is copied.
    constexpr int64_t kDistance = 12;
    std::unique_ptr<uint32_t[]> first_candidate(new uint32_t[n]);
    std::unique_ptr<size_t[]> next_position(new size_t[n]);  // probe position after it
    for (int64_t step = 0; step < n + 2 * kDistance; ++step) {
      if (step < n) {
        hashes[step] = HashBytes(key_column.Bytes(step));
        HashIndex::Prefetch(index, hashes[step]);
      }
      if (const int64_t i = step - kDistance; i >= 0 && i < n) {
        size_t position = HashIndex::Home(index, hashes[i]);
        const uint32_t candidate = HashIndex::NextCandidate(index, hashes[i], &position);
        next_position[i] = position;
        first_candidate[i] = candidate;
        if (candidate != HashIndex::kNoRow && !IsColdRow(candidate)) {
          std::byte* row = rows_.Row(candidate);
          __builtin_prefetch(row);
          __builtin_prefetch(row + row_width - 1);
        }
      }
      const int64_t i = step - 2 * kDistance;
      if (i < 0) continue;
      // Copy key i from the first row that holds it, while that row is in L1.
      lookup(i, first_candidate[i], next_position[i]);
    }
    if (!resolve) return Status::OK();
    // Keys sent on to more cold rows: read inside the section (rare: rows moved to disk since
    // the first pass, or a record of another key with the same tag).
    while (!cold.empty()) {
      std::vector<Cold> round;
      round.swap(cold);
      QUIVER_RETURN_NOT_OK(fetch(round));
      for (const Cold& c : round) lookup(c.i, ColdRow(c.location), c.position);
    }
    return Status::OK();
  };
  // Reads of cold rows happen outside the reader section, so that a writer freeing memory never
  // waits for a disk: a first pass finds the cold keys, their records are read, and a second
  // pass reads every key again, taking cold rows from those records.
  bool first = true;
  if (tier != nullptr) {
    ReaderGate::Section section = gate_.Enter();
    QUIVER_RETURN_NOT_OK(pass(*index_->current(), /*resolve=*/false));
    if (cold.empty()) {
      QUIVER_ASSIGN_OR_RETURN(arrays, gather.Finish(n, found));
      first = false;
    }
  }
  if (tier == nullptr || first) {
    if (!cold.empty()) {
      QUIVER_RETURN_NOT_OK(fetch(cold));
      cold.clear();
      std::memset(found, 0, found_bits->size());
      found_count = 0;
      std::fill(expiry.begin(), expiry.end(), 0);
    }
    ReaderGate::Section section = gate_.Enter();
    QUIVER_RETURN_NOT_OK(pass(*index_->current(), /*resolve=*/true));
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

// A scan meets every row that lives from its start to its end, though rows move between memory
// and the disk tier meanwhile: each batch reads the tier's records from where the last stopped to
// its end, then the rows in memory likewise. A row moves only ahead of both positions: demoted
// rows are appended to the tier; promoted rows take fresh row positions while a scan runs; the
// tier's records keep their order (segments are read in the order they were filled). A tiered
// table's scan ends only once, under the write lock (nothing moving), both positions are at the
// end. A row may be met twice (in memory, then on disk): the same values, or a later write's,
// which the journal replays after a snapshot anyway.
class Table::Scanner : public arrow::RecordBatchReader {
 public:
  Scanner(std::shared_ptr<const Table> table, int64_t max_batch_rows, bool with_expiry)
      : table_(std::move(table)),
        schema_(table_->schema_.ToArrow()),
        max_batch_rows_(max_batch_rows),
        with_expiry_(with_expiry),
        tier_(table_->tier()) {
    for (int i = 0; i < table_->schema_.num_columns(); ++i) columns_.push_back(i);
    if (with_expiry) {
      schema_ = *schema_->AddField(
          schema_->num_fields(),
          arrow::field("quiver_expire_at_ms", arrow::int64(), /*nullable=*/true,
                       arrow::key_value_metadata({std::string(kExpireAtMetadata)}, {"true"})));
    }
    if (tier_ != nullptr) {
      std::lock_guard lock(table_->scans_mutex_);
      table_->scans_.push_back(&state_);
      table_->active_scans_.fetch_add(1, std::memory_order_acq_rel);
    }
  }
  ~Scanner() override {
    if (tier_ == nullptr) return;
    std::lock_guard lock(table_->scans_mutex_);
    auto& scans = table_->scans_;
    scans.erase(std::find(scans.begin(), scans.end(), &state_));
    table_->active_scans_.fetch_sub(1, std::memory_order_acq_rel);
  }

  std::shared_ptr<arrow::Schema> schema() const override { return schema_; }

  arrow::Status ReadNext(std::shared_ptr<arrow::RecordBatch>* batch) override {
    *batch = nullptr;
    while (!done_) {
      ARROW_RETURN_NOT_OK(Produce(batch));
      if (*batch != nullptr) return arrow::Status::OK();
      if (tier_ == nullptr) {
        done_ = true;
      } else {
        // The end, unless rows moved ahead meanwhile: judged with nothing moving.
        std::lock_guard<std::mutex> lock(table_->write_mutex_);
        done_ = cursor_ >= table_->next_row_ && TierAtEnd();
      }
    }
    return arrow::Status::OK();
  }

 private:
  // Variable-length bytes per batch, about.
  static constexpr uint64_t kMaxBatchVarBytes = 64 << 20;
  // What one batch reads of the tier at most (more for a longer record).
  static constexpr size_t kTierChunkBytes = 4 << 20;

  // One batch of what lies between the positions and the ends now; none when nothing does.
  // With a tier, under the scan's mutex: no row moves meanwhile, and the positions it reaches
  // are what the writer sees.
  arrow::Status Produce(std::shared_ptr<arrow::RecordBatch>* batch) {
    if (tier_ == nullptr) return ProduceLocked(batch);
    std::lock_guard lock(state_.mutex);
    arrow::Status status = ProduceLocked(batch);
    state_.cursor = cursor_;
    state_.tier_sequence = sequence_;
    state_.tier_position = position_;
    return status;
  }

  // Whether a row (or record) of stored key `key` found at index entry `row` of `hash` is met
  // here: the index still points at it, and no move put it here after it was met elsewhere.
  bool Meets(const HashIndex::Array& index, const std::string& key, uint32_t row) const {
    return HashIndex::Contains(index, HashBytes(key), row) &&
           (state_.skip.empty() || state_.skip.count(key) == 0);
  }

  arrow::Status ProduceLocked(std::shared_ptr<arrow::RecordBatch>* batch) {
    buffers_.clear();  // the last batch's, copied into it
    const uint32_t limit = table_->scan_limit_.load(std::memory_order_acquire);
    ColdHeap cold_heap{&table_->heap_, {}};
    RowGather gather(table_->GatherColumns(columns_), table_->layout_.bitmap_bytes(),
                     max_batch_rows_, cold_heap.Resolver(), table_->name_,
                     &table_->layout_.sparse_widths());
    Status init = gather.Init();
    if (!init.ok()) return arrow::Status::OutOfMemory(init.message());
    int64_t produced = 0;
    uint64_t var_bytes = 0;
    arrow::ArrayVector arrays;
    const int64_t now = table_->clock_();
    std::vector<int64_t> expiry;
    if (with_expiry_) expiry.resize(static_cast<size_t>(max_batch_rows_));
    const auto emit = [&](const std::byte* row, int64_t expire_at) {
      gather.Copy(row, produced);
      if (with_expiry_) expiry[static_cast<size_t>(produced)] = expire_at;
      var_bytes += gather.VarBytes(produced++);
    };
    const auto full = [&] { return produced >= max_batch_rows_ || var_bytes >= kMaxBatchVarBytes; };
    {
      ReaderGate::Section section = table_->gate_.Enter();
      if (tier_ != nullptr) {
        const Status read = ReadTier(emit, full, now, &cold_heap);
        if (!read.ok()) return arrow::Status::IOError(read.message());
      }
      // Stretches of deleted rows produce nothing: go on until a row is live or the end.
      const HashIndex::Array& index = *table_->index_->current();
      std::string key;
      while (cursor_ < limit && !full()) {
        const uint32_t row_id = cursor_++;
        std::byte* row = table_->rows_.Row(row_id);
        bool live;
        int64_t expire_at;
        uint32_t sequence;
        do {
          sequence = SeqlockReadBegin(row);
          expire_at = ExpiryOf(row);
          live = (sequence & kSeqLive) && !IsDue(expire_at, now);
          // With a tier, a row being moved to disk is met there instead.
          if (live && tier_ != nullptr) {
            live = ReaderStoredKey(row, table_->layout_, table_->heap_, &key) &&
                   Meets(index, key, row_id);
          }
          if (live) gather.Copy(row, produced);
        } while (!SeqlockReadValidate(row, sequence));
        if (!live) continue;
        if (with_expiry_) expiry[static_cast<size_t>(produced)] = expire_at;
        var_bytes += gather.VarBytes(produced++);
      }
      if (produced == 0) return arrow::Status::OK();
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

  // The segment the tier position is in, or the next one filled after it; false at the end.
  bool TierSegment(TierFile::SegmentInfo* out) const {
    for (const TierFile::SegmentInfo& segment : tier_->Segments()) {
      if (segment.sequence < sequence_) continue;
      if (segment.sequence == sequence_ && segment.fill <= position_) continue;
      *out = segment;
      return true;
    }
    return false;
  }
  bool TierAtEnd() const {
    TierFile::SegmentInfo unused;
    return !TierSegment(&unused);
  }

  // Inside the gate: the live records from the tier position on, until `full()`. Records stay
  // readable while the section lasts; a record is live when the index points at it.
  template <typename Emit, typename Full>
  Status ReadTier(const Emit& emit, const Full& full, int64_t now, ColdHeap* cold_heap) {
    const HashIndex::Array& index = *table_->index_->current();
    const uint32_t width = table_->layout_.row_width();
    TierFile::SegmentInfo segment;
    while (!full() && TierSegment(&segment)) {
      if (segment.sequence != sequence_) {
        sequence_ = segment.sequence;
        position_ = 0;
      }
      const uint64_t base = uint64_t{segment.number} * kTierSegmentBytes;
      const uint64_t begin = position_ / TierFile::kBlockBytes * TierFile::kBlockBytes;
      uint64_t end = std::min<uint64_t>(segment.fill, begin + kTierChunkBytes);
      end = (end + TierFile::kBlockBytes - 1) / TierFile::kBlockBytes * TierFile::kBlockBytes;
      auto& buffer = buffers_.emplace_back(std::make_unique<AlignedBuffer>());
      QUIVER_RETURN_NOT_OK(tier_->ReadRange(base + begin, end - begin, buffer.get()));
      cold_heap->buffers.emplace_back(buffer->data(), end - begin);
      const uint64_t first = position_;
      while (position_ < segment.fill && !full()) {
        const size_t at = position_ - begin;
        if (end - begin - at < kTierRecordHeaderBytes) break;
        std::byte* record = buffer->data() + at;
        const uint32_t length = RecordLength(record);
        if (length < kTierRecordHeaderBytes + width || length > kTierSegmentBytes) {
          return Status::Corruption("table '" + table_->name_ + "': tier file " + tier_->path() +
                                    ": no record at " + std::to_string(base + position_));
        }
        if (at + length > end - begin) {
          if (position_ > first) break;  // the next chunk starts with it
          // Longer than a chunk: read whole, alone.
          const uint64_t span = (at + length + TierFile::kBlockBytes - 1) / TierFile::kBlockBytes *
                                TierFile::kBlockBytes;
          QUIVER_RETURN_NOT_OK(tier_->ReadRange(base + begin, span, buffer.get()));
          cold_heap->buffers.back() = {buffer->data(), span};
          EmitRecord(buffer->data() + at, base, length, index, now, *cold_heap, emit);
          break;
        }
        EmitRecord(record, base, length, index, now, *cold_heap, emit);
      }
    }
    return corrupt_;
  }

  // A record at the tier position, if it is live and not expired; moves the position past it.
  template <typename Emit>
  void EmitRecord(std::byte* record, uint64_t base, uint32_t length, const HashIndex::Array& index,
                  int64_t now, const ColdHeap& cold_heap, const Emit& emit) {
    const auto location = static_cast<uint32_t>((base + position_) / kTierUnitBytes);
    position_ += uint64_t{TierUnits(length)} * kTierUnitBytes;
    // Live when the index points at it (the key's hash is in the record: its key is read below,
    // once the record is known whole).
    if (!HashIndex::Contains(index, RecordHash(record), ColdRow(location))) return;
    uint32_t crc;
    std::memcpy(&crc, record, sizeof(crc));
    if (Crc32c(record + 4, length - 4) != crc) {
      corrupt_ = Status::Corruption("table '" + table_->name_ + "': tier file " + tier_->path() +
                                    ": the record at " + std::to_string(TierOffset(location)) +
                                    " fails its checksum");
      return;
    }
    RebaseRecord(record, table_->layout_, cold_heap.buffers.size() - 1,
                 static_cast<size_t>(record - cold_heap.buffers.back().first));
    const std::byte* image = record + kTierRecordHeaderBytes;
    if (!state_.skip.empty() &&
        state_.skip.count(StoredKey(image, table_->layout_, cold_heap)) != 0) {
      return;  // met before it moved here
    }
    uint64_t meta;
    std::memcpy(&meta, image, sizeof(meta));
    const auto expire_at = static_cast<int64_t>(meta & kRowExpiryMask);
    if (!IsDue(expire_at, now)) emit(image, expire_at);
  }

  std::shared_ptr<const Table> table_;
  std::shared_ptr<arrow::Schema> schema_;
  std::vector<int> columns_;
  int64_t max_batch_rows_;
  bool with_expiry_;
  TierFile* const tier_;
  uint32_t cursor_ = 0;  // the next row position in memory
  // The tier position: the segment filled `sequence_`-th, `position_` bytes into it.
  uint64_t sequence_ = 0, position_ = 0;
  std::vector<std::unique_ptr<AlignedBuffer>> buffers_;  // the batch's tier reads
  ScanState state_;                                      // with a tier: registered with the table
  Status corrupt_;  // a record that failed its checksum: the scan fails
  bool done_ = false;
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
