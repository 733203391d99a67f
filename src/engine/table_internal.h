// What the files of Table share (table.cc, table_ingest.cc, table_write.cc, table_compaction.cc,
// table_expiry.cc, table_read.cc): the key and row helpers and a write's prepared batch. Only
// those files include it.
#pragma once

#include <arrow/array.h>
#include <arrow/util/bit_util.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/eviction.h"
#include "engine/heap.h"
#include "engine/key_column.h"
#include "engine/keys.h"
#include "engine/row_copy.h"
#include "engine/row_gather.h"
#include "engine/row_layout.h"
#include "engine/sparse_row.h"
#include "engine/table.h"
#include "engine/tier_format.h"

namespace quiver {

// The bytes behind the heap references of rows that may be records read from the disk tier
// (engine/tier_format.h): a reference with kTierRefBit is buffer << 48 | offset into one of
// `buffers`, which a read filled; any other is the table's heap's.
struct ColdHeap {
  const Heap* heap;
  std::vector<std::pair<const std::byte*, size_t>> buffers;

  static constexpr int kBufferShift = 48;
  static HeapRef Ref(size_t buffer, size_t offset) {
    return kTierRefBit | uint64_t{buffer} << kBufferShift | offset;
  }
  const std::byte* View(HeapRef ref, size_t size) const {
    if ((ref & kTierRefBit) == 0) return heap->View(ref, size);
    const size_t buffer = (ref & ~kTierRefBit) >> kBufferShift;
    const size_t offset = ref & ((uint64_t{1} << kBufferShift) - 1);
    if (buffer >= buffers.size()) return nullptr;
    const auto& [base, bytes] = buffers[buffer];
    if (offset > bytes || size > bytes - offset) return nullptr;
    return base + offset;
  }
  HeapResolver Resolver() const {
    return HeapResolver{this, [](const void* context, HeapRef ref, size_t size) {
                          return static_cast<const ColdHeap*>(context)->View(ref, size);
                        }};
  }
};

// A record's row image (engine/tier_format.h) made readable in place: each heap reference of
// over 8 bytes, relative to the record's start, becomes ColdHeap::Ref(buffer, its offset in
// that buffer). `record` begins at `offset` in buffer `buffer`.
inline void RebaseRecord(std::byte* record, const RowLayout& layout, size_t buffer, size_t offset) {
  std::byte* image = record + kTierRecordHeaderBytes;
  for (const ColumnLayout& slot : layout.var_slots()) {
    VarRef ref = LoadVarRef(image + slot.offset, slot.width);
    if (ref.length <= kVarInlineBytes) continue;
    const HeapRef relative = HeapRefOf(ref) & ~kTierRefBit;
    const HeapRef absolute = ColdHeap::Ref(buffer, offset + relative);
    std::memcpy(ref.payload, &absolute, sizeof(absolute));
    StoreVarRef(image + slot.offset, slot.width, ref);
  }
}

// The header fields of a record.
inline uint32_t RecordLength(const std::byte* record) {
  uint32_t length;
  std::memcpy(&length, record + 4, sizeof(length));
  return length;
}
inline uint64_t RecordHash(const std::byte* record) {
  uint64_t hash;
  std::memcpy(&hash, record + 8, sizeof(hash));
  return hash;
}

inline int64_t FirstNull(const arrow::Array& array) {
  for (int64_t i = 0; i < array.length(); ++i) {
    if (array.IsNull(i)) return i;
  }
  return -1;
}

// Whether the key column at `layout` of `row` holds `key` (an int64's 8 bytes, or a string's).
// For readers, meaningful only once their seqlock check passed; the writer calls it on rows only
// it changes.
template <typename Heap>
[[gnu::always_inline]] inline bool ColumnHolds(const std::byte* row, const ColumnLayout& layout,
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

// Whether `row` holds `key`: a single key column's bytes, or a composite key's encoded bytes,
// each part compared with its column (ColumnHolds's conditions apply).
template <typename Heap>
[[gnu::always_inline]] inline bool KeyMatches(const std::byte* row, const RowLayout& layout,
                                              std::string_view key, const Heap& heap) {
  if (!layout.composite_key()) [[likely]] {
    return ColumnHolds(row, layout.key(), key, heap);
  }
  const std::vector<ColumnLayout>& parts = layout.key_parts();
  return ForEachKeyPart(parts, key, [&](size_t i, std::string_view bytes) {
    return ColumnHolds(row, parts[i], bytes, heap);
  });
}

// The bytes of the key column at `layout` of `row` (the writer's, on its own rows).
template <typename Heap>
std::string_view ColumnBytes(const std::byte* row, const ColumnLayout& layout, const Heap& heap,
                             VarRef* scratch) {
  if (layout.physical == Physical::kFixed) {
    CopyFromRow(scratch->payload, row + layout.offset, sizeof(int64_t));
    return {reinterpret_cast<const char*>(scratch->payload), sizeof(int64_t)};
  }
  *scratch = LoadVarRef(row + layout.offset, layout.width);
  if (scratch->length <= kVarInlineBytes) {
    return {reinterpret_cast<const char*>(scratch->payload), scratch->length};
  }
  return {reinterpret_cast<const char*>(heap.View(HeapRefOf(*scratch), scratch->length)),
          scratch->length};
}

// The key bytes a row holds, as KeyColumn::Bytes gives them: a composite key's parts encoded
// (engine/keys.h). The writer's, on its own rows.
template <typename Heap>
std::string StoredKey(const std::byte* row, const RowLayout& layout, const Heap& heap) {
  VarRef scratch;
  if (!layout.composite_key()) return std::string(ColumnBytes(row, layout.key(), heap, &scratch));
  std::string key;
  const std::vector<ColumnLayout>& parts = layout.key_parts();
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string_view bytes = ColumnBytes(row, parts[i], heap, &scratch);
    if (parts[i].physical != Physical::kFixed && i + 1 < parts.size()) {
      const auto length = static_cast<uint16_t>(bytes.size());
      key.append(reinterpret_cast<const char*>(&length), sizeof(length));
    }
    key.append(bytes);
  }
  return key;
}

// StoredKey for a reader, inside its seqlock read: false when a (torn) reference does not
// resolve; the seqlock check then fails and the reader retries.
template <typename Heap>
bool ReaderStoredKey(const std::byte* row, const RowLayout& layout, const Heap& heap,
                     std::string* key) {
  key->clear();
  const std::vector<ColumnLayout>& parts = layout.key_parts();
  for (size_t i = 0; i < parts.size(); ++i) {
    const ColumnLayout& part = parts[i];
    if (part.physical == Physical::kFixed) {
      char bytes[sizeof(int64_t)];
      CopyFromRow(bytes, row + part.offset, sizeof(bytes));
      key->append(bytes, sizeof(bytes));
      continue;
    }
    const VarRef ref = LoadVarRef(row + part.offset, part.width);
    if (ref.length > kMaxKeyBytes) return false;
    if (layout.composite_key() && i + 1 < parts.size()) {
      const auto length = static_cast<uint16_t>(ref.length);
      key->append(reinterpret_cast<const char*>(&length), sizeof(length));
    }
    if (ref.length <= kVarInlineBytes) {
      key->append(reinterpret_cast<const char*>(ref.payload), ref.length);
      continue;
    }
    const std::byte* bytes = heap.View(HeapRefOf(ref), ref.length);
    if (bytes == nullptr) return false;
    key->append(reinterpret_cast<const char*>(bytes), ref.length);
  }
  return true;
}

inline int64_t ExpiryOf(const std::byte* row) {
  return static_cast<int64_t>(RowMeta(row).load(std::memory_order_relaxed) & kRowExpiryMask);
}

inline bool IsDue(int64_t expire_at, int64_t now) { return expire_at != 0 && expire_at <= now; }

// The row's access clock after an access at `now_ms` (row_layout.h): seconds for LRU (and when
// no policy needs one), Redis's LFU word under an LFU policy (`fresh`: a new row's).
inline uint32_t AccessAfter(uint64_t meta, bool lfu, bool fresh, int64_t now_ms) {
  if (!lfu) return static_cast<uint32_t>(now_ms / 1000) & kRowAccessMask;
  return (fresh ? LfuNew(now_ms, kRowLfuMinuteBits)
                : LfuTouched(static_cast<uint32_t>(meta >> kRowAccessShift), now_ms,
                             kRowLfuMinuteBits)) &
         kRowAccessMask;
}

// A reader's access: stamps the clock unless it already says so (LRU: once per second per row).
// A lost race (the writer or another reader changed the word) leaves the stamp out.
inline void TouchRow(const std::byte* row, bool lfu, int64_t now_ms) {
  std::atomic<uint64_t>& meta = RowMeta(row);
  uint64_t word = meta.load(std::memory_order_relaxed);
  const uint64_t access = AccessAfter(word, lfu, /*fresh=*/false, now_ms);
  if (access == (word >> kRowAccessShift)) return;
  meta.compare_exchange_strong(word, (word & kRowExpiryMask) | access << kRowAccessShift,
                               std::memory_order_relaxed);
}

// Index bytes per row, about (8-byte slots at a load of at most 3/4).
constexpr uint64_t kIndexBytesPerRow = 11;

// ---------------------------------------------------------------------------------------------
// Upsert input: each batch column validated, cast to the stored type and reduced to raw pointers
// (Table::Prepare, table_ingest.cc).

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
  // The defaults of the columns the batch leaves out (engine/schema.h), for its new rows: one
  // value each (at position 0).
  std::vector<Input> defaults;
  int event_time_input = -1;     // index into inputs
  std::string missing_required;  // a non-nullable value column the batch lacks
  size_t heap_bytes = 0;         // upper bound of heap appends
  size_t heap_largest = 0;       // the largest of them
  // Sparse columns (engine/sparse_row.h): their inputs (indexes into inputs, by sparse id), and
  // per row the bytes their values add to the row's blob (with its count); empty without any.
  std::vector<int> sparse_inputs;
  std::vector<size_t> sparse_bytes;

  void AddHeapValue(size_t size) {
    if (size <= kVarInlineBytes) return;
    heap_bytes += size;  // a default's, once for each row
    heap_largest = std::max(heap_largest, size);
  }
};

// ---------------------------------------------------------------------------------------------
// Writes under the write lock (table.h).

template <typename T, typename Locked, typename Forward>
Result<T> Table::Journaled(Locked locked, Forward forward) {
  uint64_t lsn = 0;
  std::shared_ptr<Table> successor;
  Result<T> result = [&]() -> Result<T> {
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (successor_ != nullptr) {
      successor = successor_;
      return Status::Internal("replaced");  // the successor answers instead
    }
    return locked(WriteMode::kJournaled, &lsn);
  }();
  if (successor != nullptr) return forward(*successor);
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

}  // namespace quiver
