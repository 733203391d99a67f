// RowLayout: where each column of a table lives inside a row, and the row header.
//
// Row (row_width bytes, a multiple of 8; rows are contiguous in RowStore chunks):
//
//   offset 0   uint64 meta     bits 0..43: expiry, ms since the Unix epoch, 0 = never (for TTL;
//                              44 bits reach the year 2527); bits 44..63: access clock (for
//                              eviction): seconds mod 2^20 of the last access (LRU), or Redis's
//                              LFU word with 12 bits of minutes and the 8-bit counter (LFU).
//                              Accessed atomically: readers update the clock (RowMeta).
//   offset 8   uint32 seq      seqlock word: bit 0 = write in progress, bit 1 = live,
//                              bits 2..31 = version
//   offset 12  validity bitmap one bit per nullable value column, 1 = valid (Arrow convention)
//   then       key             int64: 8 bytes; utf8: KeyRef
//   then       value columns   in schema order: fixed-width bytes, or a VarRef
//
//   VarRef (12 bytes) = uint32 length in bytes, then 8 bytes: the value itself when length <= 8,
//                       otherwise the HeapRef of its bytes in the table's Heap.
//   KeyRef (10 bytes) = the same with a uint16 length (keys are at most 65535 bytes).
//
// So 10 float32 columns with an 8-byte utf8 key make a 64-byte row: one cache line per lookup.
// Values are stored unaligned (copied with memcpy); meta and seq are naturally aligned.
//
// Seqlock protocol. Writer (one per table): seq |= 1, release fence, write, then seq = next
// version | live flag, with release. Reader: s1 = seq (acquire), retry while odd; copy; acquire
// fence; retry if seq != s1. A reader acts on nothing it copied (a heap reference, a length)
// before the check passed; liveness comes from s1 itself. The meta word is the exception to
// "only the writer writes a row": under an LRU or LFU memory policy a reader stamps the access
// clock with a compare-and-swap, at most once per second per row for LRU (the writer's stores
// may overwrite such a stamp; the clock is approximate by design).
//
// Thread safety: RowLayout is immutable.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/dtype.h"
#include "engine/row_copy.h"
#include "engine/schema.h"

namespace quiver {

struct ColumnLayout {
  Physical physical = Physical::kFixed;
  uint32_t offset = 0;         // byte offset in the row
  uint32_t width = 0;          // bytes in the row
  int32_t valid_bit = -1;      // bit in the validity bitmap; -1: not nullable (always valid)
  uint32_t element_width = 0;  // kList / fixed_size_list: bytes of one element
};

inline constexpr uint32_t kRowMetaOffset = 0;
inline constexpr uint32_t kRowSeqOffset = 8;
inline constexpr uint32_t kRowHeaderBytes = 12;
inline constexpr uint32_t kSeqWriting = 1;
inline constexpr uint32_t kSeqLive = 2;
inline constexpr uint32_t kSeqVersionStep = 4;
inline constexpr uint32_t kVarRefBytes = 12;
inline constexpr uint32_t kKeyRefBytes = 10;
inline constexpr uint32_t kVarInlineBytes = 8;
inline constexpr size_t kMaxKeyBytes = 65535;

// A VarRef or KeyRef as copied out of a row.
struct VarRef {
  uint32_t length;
  uint8_t payload[kVarInlineBytes];
};

// Copies the reference of `width` bytes (kVarRefBytes or kKeyRefBytes) at `source`.
inline VarRef LoadVarRef(const std::byte* source, uint32_t width) {
  VarRef ref;
  if (width == kVarRefBytes) {
    CopyFromRow(&ref.length, source, 4);
    CopyFromRow(ref.payload, source + 4, kVarInlineBytes);
  } else {
    uint16_t length;
    CopyFromRow(&length, source, 2);
    ref.length = length;
    CopyFromRow(ref.payload, source + 2, kVarInlineBytes);
  }
  return ref;
}
inline void StoreVarRef(std::byte* destination, uint32_t width, const VarRef& ref) {
  if (width == kVarRefBytes) {
    CopyToRow(destination, &ref.length, 4);
    CopyToRow(destination + 4, ref.payload, kVarInlineBytes);
  } else {
    const auto length = static_cast<uint16_t>(ref.length);
    CopyToRow(destination, &length, 2);
    CopyToRow(destination + 2, ref.payload, kVarInlineBytes);
  }
}

class RowLayout {
 public:
  explicit RowLayout(const TableSchema& schema);

  const ColumnLayout& column(int schema_index) const { return columns_[schema_index]; }
  uint32_t row_width() const { return row_width_; }
  uint32_t bitmap_offset() const { return kRowHeaderBytes; }
  uint32_t bitmap_bytes() const { return bitmap_bytes_; }

 private:
  std::vector<ColumnLayout> columns_;
  uint32_t row_width_ = 0;
  uint32_t bitmap_bytes_ = 0;
};

inline constexpr int kRowAccessShift = 44;
inline constexpr uint64_t kRowExpiryMask = (uint64_t{1} << kRowAccessShift) - 1;
inline constexpr uint32_t kRowAccessMask = (uint32_t{1} << (64 - kRowAccessShift)) - 1;
inline constexpr int kRowLfuMinuteBits = 64 - kRowAccessShift - 8;

inline std::atomic<uint64_t>& RowMeta(const std::byte* row) {
  return *reinterpret_cast<std::atomic<uint64_t>*>(const_cast<std::byte*>(row) + kRowMetaOffset);
}

inline std::atomic<uint32_t>& RowSeq(std::byte* row) {
  return *reinterpret_cast<std::atomic<uint32_t>*>(row + kRowSeqOffset);
}

// The seqlock protocol above, in one place. Under ThreadSanitizer (which does not model fences)
// the fences become read-modify-writes with the same ordering; elsewhere readers never write the
// row's cache line.

// Writer: marks the row as changing; returns the sequence to pass to SeqlockWriteEnd.
inline uint32_t SeqlockWriteBegin(std::byte* row) {
  std::atomic<uint32_t>& seq = RowSeq(row);
  const uint32_t sequence = seq.load(std::memory_order_relaxed);
#if defined(QUIVER_TSAN)
  seq.fetch_or(kSeqWriting, std::memory_order_acq_rel);
#else
  seq.store(sequence | kSeqWriting, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
#endif
  return sequence;
}
// Writer: publishes the row with a new version, live or not.
inline void SeqlockWriteEnd(std::byte* row, uint32_t sequence, bool live) {
  const uint32_t version = (sequence & ~(kSeqWriting | kSeqLive)) + kSeqVersionStep;
  RowSeq(row).store(version | (live ? kSeqLive : 0), std::memory_order_release);
}
// The writer's view of a row's liveness (no concurrent change possible).
inline bool RowLiveForWriter(std::byte* row) {
  return RowSeq(row).load(std::memory_order_relaxed) & kSeqLive;
}
// Reader: waits until no write is in progress; returns the sequence to validate against.
inline uint32_t SeqlockReadBegin(std::byte* row) {
  for (;;) {
    const uint32_t sequence = RowSeq(row).load(std::memory_order_acquire);
    if ((sequence & kSeqWriting) == 0) return sequence;
    __builtin_ia32_pause();
  }
}
// Reader: true when nothing changed the row since SeqlockReadBegin returned `sequence`.
inline bool SeqlockReadValidate(std::byte* row, uint32_t sequence) {
#if defined(QUIVER_TSAN)
  return RowSeq(row).fetch_add(0, std::memory_order_acq_rel) == sequence;
#else
  std::atomic_thread_fence(std::memory_order_acquire);
  return RowSeq(row).load(std::memory_order_relaxed) == sequence;
#endif
}

}  // namespace quiver
