#include <arrow/api.h>

#include <algorithm>
#include <string>
#include <unordered_set>

#include "common/crc32c.h"
#include "common/hash.h"
#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {

// The disk tier (docs/tiering.md): rows moved to a TierFile when the memory limit wants room
// (Demote), and back when a write touches them or a read asked (PromoteKeys, PromoteQueued).
// Reads and scans of cold rows are in table_read.cc.

namespace {

// The most a queue of rows to promote holds: past it, reads' requests are dropped (a later read
// of the row asks again).
constexpr size_t kPromoteQueueBytes = 4 << 20;

}  // namespace

Table::ScansLocked::ScansLocked(const Table& table) : table_(table), registry_(table.scans_mutex_) {
  locks_.reserve(table.scans_.size());
  for (ScanState* scan : table.scans_) locks_.emplace_back(scan->mutex);
}

template <typename Each>
void Table::ScansLocked::PassedTier(uint32_t location, Each&& each) {
  if (table_.scans_.empty()) return;
  const uint32_t segment = TierSegmentOf(location);
  const uint64_t sequence = table_.tier()->SequenceOf(segment);
  const uint64_t offset = TierOffset(location) - uint64_t{segment} * kTierSegmentBytes;
  for (ScanState* scan : table_.scans_) {
    if (sequence < scan->tier_sequence ||
        (sequence == scan->tier_sequence && offset < scan->tier_position)) {
      each(*scan);
    }
  }
}

Status Table::AttachTier(const TierOptions& options) {
  std::lock_guard lock(write_mutex_);
  if (tier_owner_ != nullptr) {
    return Status::InvalidArgument("table '" + name_ + "' has a disk tier already");
  }
  QUIVER_ASSIGN_OR_RETURN(
      tier_owner_, TierFile::Create(options, name_ + "." + std::to_string(id_) + ".tier", name_));
  tier_options_ = options;
  tier_.store(tier_owner_.get(), std::memory_order_release);
  return Status::OK();
}

uint32_t Table::ExpectedRecordBytes() const {
  const uint32_t fixed = kTierRecordHeaderBytes + layout_.row_width();
  if (layout_.var_slots().empty()) return fixed;
  // A quarter more than the average record demoted: most are read in one go, a longer one again.
  const uint64_t records = stat_demoted_.load(std::memory_order_relaxed);
  const uint64_t bytes = record_bytes_sum_.load(std::memory_order_relaxed);
  const uint64_t average = records == 0 ? fixed : bytes / records;
  return static_cast<uint32_t>(std::min<uint64_t>(average + average / 4, kTierSegmentBytes));
}

int64_t Table::Demote(const std::vector<EvictionCandidate>& victims) {
  TierFile& tier = *this->tier();
  const int64_t now = clock_();
  const uint32_t width = layout_.row_width();
  struct Moved {
    uint32_t row;
    uint64_t hash;
    uint32_t location;
    uint32_t bytes;
    const std::string* key;
  };
  std::vector<Moved> moved;
  int64_t reclaimed = 0;
  Status status;
  for (const EvictionCandidate& victim : victims) {
    if (victim.id >= next_row_) continue;
    const auto row_id = static_cast<uint32_t>(victim.id);
    std::byte* row = rows_.Row(row_id);
    // Gone or rewritten since it was sampled (a write is an access: it no longer qualifies).
    if (!RowLiveForWriter(row) || RowSeq(row).load(std::memory_order_relaxed) != victim.version) {
      continue;
    }
    const uint64_t hash = HashBytes(victim.key);
    if (ExpiredAt(row_id, now)) {  // expired meanwhile: reclaimed, as by active expiry
      Reclaim(row_id, hash);
      ++reclaimed;
      continue;
    }
    const uint64_t length = kTierRecordHeaderBytes + width + HeapBytesOf(row);
    if (length > kTierSegmentBytes) continue;  // stays in memory
    uint32_t location = 0;
    Result<std::byte*> space = tier.Add(static_cast<uint32_t>(length), &location);
    if (!space.ok()) {
      status = space.status();
      break;
    }
    std::byte* record = *space;
    std::byte* image = record + kTierRecordHeaderBytes;
    CopyFromRow(image, row, width);
    uint64_t offset = kTierRecordHeaderBytes + width;
    for (const ColumnLayout& slot : layout_.var_slots()) {
      VarRef ref = LoadVarRef(image + slot.offset, slot.width);
      if (ref.length <= kVarInlineBytes) continue;
      std::memcpy(record + offset, heap_.View(HeapRefOf(ref), ref.length), ref.length);
      const HeapRef relative = kTierRefBit | offset;
      std::memcpy(ref.payload, &relative, sizeof(relative));
      StoreVarRef(image + slot.offset, slot.width, ref);
      offset += ref.length;
    }
    const auto bytes = static_cast<uint32_t>(length);
    std::memcpy(record + 4, &bytes, 4);
    std::memcpy(record + 8, &hash, 8);
    std::memcpy(record + 16, &width, 4);
    std::memcpy(record + 20, &kTierRecordMagic, 4);
    const uint32_t crc = Crc32c(record + 4, length - 4);
    std::memcpy(record, &crc, 4);
    moved.push_back(Moved{row_id, hash, location, bytes, &victim.key});
  }
  if (status.ok()) status = tier.Commit();
  if (status.ok() && !moved.empty()) {
    std::lock_guard lock(tier_error_mutex_);
    tier_error_.clear();
  }
  if (!status.ok()) {
    // Nothing moved: the records written are garbage, the rows stay in memory.
    for (const Moved& m : moved) tier.Release(m.location, m.bytes);
    moved.clear();
    std::lock_guard lock(tier_error_mutex_);
    tier_error_ = status.message();
  }
  uint64_t moved_bytes = 0;
  {
    ScansLocked scans(*this);
    for (const Moved& m : moved) {
      scans.PassedResident(m.row, [&](ScanState& scan) { scan.skip.insert(*m.key); });
      index_->Replace(m.hash, m.row, ColdRow(m.location));
      TrackExpiry(m.row, false);
      moved_bytes += m.bytes;
    }
    tier.Publish();  // scans read the records once they are live, never before
  }
  if (!moved.empty()) {
    cold_rows_.fetch_add(static_cast<int64_t>(moved.size()), std::memory_order_relaxed);
    record_bytes_sum_.fetch_add(moved_bytes, std::memory_order_relaxed);
    stat_demoted_.fetch_add(static_cast<int64_t>(moved.size()), std::memory_order_relaxed);
    // A reader that found a row through its old entry still reads it whole: the rows are freed
    // once no such reader is left.
    gate_.Synchronize();
    for (const Moved& m : moved) {
      std::byte* row = rows_.Row(m.row);
      const uint32_t sequence = SeqlockWriteBegin(row);
      ReleaseVarValues(row);
      SeqlockWriteEnd(row, sequence, /*live=*/false);
      free_rows_.push_back(m.row);
    }
  }
  stat_expired_.fetch_add(reclaimed, std::memory_order_relaxed);
  FinishWrite();
  return static_cast<int64_t>(moved.size()) + reclaimed;
}

template <typename Heap>
void Table::InstallRecord(const std::byte* image, const Heap& heap, uint64_t hash,
                          uint32_t location, uint32_t record_bytes) {
  uint32_t row_id;
  if (!free_rows_.empty() && active_scans_.load(std::memory_order_acquire) == 0) {
    row_id = free_rows_.back();
    free_rows_.pop_back();
  } else {
    row_id = next_row_++;
  }
  std::byte* row = rows_.Row(row_id);
  const uint32_t sequence = SeqlockWriteBegin(row);
  uint64_t meta;
  std::memcpy(&meta, image, sizeof(meta));
  // Promoted because it was read or written: an access for the eviction policy's clock.
  const MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  const uint64_t access = AccessAfter(meta, limit != nullptr && IsLfu(limit->Policy()),
                                      /*fresh=*/false, clock_());
  meta = (meta & kRowExpiryMask) | access << kRowAccessShift;
  RowMeta(row).store(meta, std::memory_order_relaxed);
  CopyToRow(row + kRowHeaderBytes, image + kRowHeaderBytes, layout_.row_width() - kRowHeaderBytes);
  for (const ColumnLayout& slot : layout_.var_slots()) {
    VarRef ref = LoadVarRef(row + slot.offset, slot.width);
    if (ref.length <= kVarInlineBytes) continue;
    const HeapRef stored = heap_.Append(heap.View(HeapRefOf(ref), ref.length), ref.length);
    std::memcpy(ref.payload, &stored, sizeof(stored));
    StoreVarRef(row + slot.offset, slot.width, ref);
  }
  SeqlockWriteEnd(row, sequence, /*live=*/true);
  index_->Replace(hash, ColdRow(location), row_id);
  tier()->Release(location, record_bytes);
  cold_rows_.fetch_sub(1, std::memory_order_relaxed);
  stat_promoted_.fetch_add(1, std::memory_order_relaxed);
  TrackExpiry(row_id, (meta & kRowExpiryMask) != 0);
}

Status Table::PromoteKeys(const KeyColumn& keys, int64_t n, const uint64_t* hashes) {
  TierFile* tier = this->tier();
  if (tier == nullptr || cold_rows_.load(std::memory_order_relaxed) == 0) return Status::OK();
  // Every cold entry whose tag matches a key's (a key appears at most once in the tier).
  std::vector<int64_t> key_of;
  std::vector<uint32_t> locations;
  std::unordered_set<uint32_t> seen;
  {
    const HashIndex::Array& index = *index_->current();
    for (int64_t i = 0; i < n; ++i) {
      size_t position = HashIndex::Home(index, hashes[i]);
      for (uint32_t candidate = HashIndex::NextCandidate(index, hashes[i], &position);
           candidate != HashIndex::kNoRow;
           candidate = HashIndex::NextCandidate(index, hashes[i], &position)) {
        if (!IsColdRow(candidate) || !seen.insert(candidate).second) continue;
        key_of.push_back(i);
        locations.push_back(ColdLocation(candidate));
      }
    }
  }
  if (locations.empty()) return Status::OK();
  AlignedBuffer buffer;
  std::vector<size_t> offsets;
  QUIVER_RETURN_NOT_OK(tier->Read(locations.data(), locations.size(), ExpectedRecordBytes(),
                                  layout_.row_width(), &buffer, &offsets));
  ColdHeap heap{&heap_, {{buffer.data(), buffer.capacity()}}};
  std::vector<size_t> matched;
  size_t value_bytes = 0, largest = 0;
  for (size_t k = 0; k < locations.size(); ++k) {
    std::byte* record = buffer.data() + offsets[k];
    RebaseRecord(record, layout_, 0, offsets[k]);
    const int64_t i = key_of[k];
    if (RecordHash(record) != hashes[i] ||
        !KeyMatches(record + kTierRecordHeaderBytes, layout_, keys.Bytes(i), heap)) {
      continue;  // another key's record, its tag the same
    }
    matched.push_back(k);
    const size_t values = RecordLength(record) - kTierRecordHeaderBytes - layout_.row_width();
    value_bytes += values;
    largest = std::max(largest, values);
  }
  if (matched.empty()) return Status::OK();
  QUIVER_RETURN_NOT_OK(rows_.Reserve(size_t{next_row_} + matched.size()));
  QUIVER_RETURN_NOT_OK(heap_.Reserve(value_bytes, largest));
  ScansLocked scans(*this);
  for (const size_t k : matched) {
    const std::byte* record = buffer.data() + offsets[k];
    scans.PassedTier(locations[k], [&](ScanState& scan) {
      scan.skip.insert(std::string(keys.Bytes(key_of[k])));
    });
    InstallRecord(record + kTierRecordHeaderBytes, heap, RecordHash(record), locations[k],
                  RecordLength(record));
  }
  return Status::OK();
}

int64_t Table::PromoteQueued() {
  std::vector<std::string> queued;
  {
    std::lock_guard lock(promote_mutex_);
    queued.swap(promote_queue_);
    promote_queue_bytes_ = 0;
  }
  // A few at a time, each after making room for them (which may move others out: the limit
  // takes the write lock itself), until room runs out.
  constexpr size_t kChunk = 64;
  int64_t promoted = 0;
  MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  for (size_t first = 0; first < queued.size(); first += kChunk) {
    const size_t count = std::min(kChunk, queued.size() - first);
    if (limit != nullptr &&
        !limit->MakeRoom(count * (layout_.row_width() + ExpectedRecordBytes()))) {
      break;
    }
    std::vector<uint64_t> hashes(count);
    arrow::BinaryBuilder builder;
    for (size_t i = 0; i < count; ++i) {
      hashes[i] = HashBytes(queued[first + i]);
      if (!builder.Append(queued[first + i]).ok()) return promoted;
    }
    std::shared_ptr<arrow::Array> array;
    if (!builder.Finish(&array).ok()) return promoted;
    KeyColumn keys(*array);
    std::lock_guard lock(write_mutex_);
    if (successor_ != nullptr) break;
    const int64_t before = stat_promoted_.load(std::memory_order_relaxed);
    const Status status = PromoteKeys(keys, array->length(), hashes.data());
    FinishWrite();
    promoted += stat_promoted_.load(std::memory_order_relaxed) - before;
    if (!status.ok()) break;
  }
  return promoted;
}

void Table::QueuePromotion(std::string key) const {
  std::lock_guard lock(promote_mutex_);
  if (promote_queue_bytes_ + key.size() > kPromoteQueueBytes) return;
  promote_queue_bytes_ += key.size() + sizeof(std::string);
  promote_queue_.push_back(std::move(key));
}

}  // namespace quiver
