// RowLayout: where each column of a table lives inside a row, and the row header.
//
// Row (row_width bytes, a multiple of 8; rows are contiguous in RowStore chunks):
//
//   offset 0   uint32 seq      seqlock: odd while the writer changes the row
//   offset 4   uint32 state    bit 31: live; bits 0..23: access clock (reserved for eviction)
//   offset 8   int64  expiry   ms since the Unix epoch, 0 = never (reserved for TTL)
//   offset 16  validity bitmap one bit per nullable value column, 1 = valid (Arrow convention)
//   then       key             int64: 8 bytes; utf8: VarRef
//   then       value columns   in schema order: fixed-width bytes, or a VarRef
//
//   VarRef (12 bytes) = uint32 length in bytes, then 8 bytes: the value itself when length <= 8,
//                       otherwise the HeapRef of its bytes in the table's Heap.
//
// Values are stored unaligned (copied with memcpy); the header is 8-byte aligned.
//
// Seqlock protocol. Writer (one per table): seq += 1 (odd), release fence, write, seq += 1 with
// release. Reader: s1 = seq (acquire), retry while odd; copy; acquire fence; retry if seq != s1.
// A reader acts on nothing it copied (a heap reference, a length) before the check passed.
//
// Thread safety: RowLayout is immutable.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/schema.h"

namespace quiver {

enum class Physical : uint8_t {
  kFixed,  // numbers, dates, timestamps, fixed_size_list: `width` bytes in the row
  kBool,   // one byte in the row, bit-packed in Arrow
  kBytes,  // utf8 / binary: VarRef
  kList,   // list<numeric>: VarRef over element bytes
};

struct ColumnLayout {
  Physical physical = Physical::kFixed;
  uint32_t offset = 0;         // byte offset in the row
  uint32_t width = 0;          // bytes in the row
  int32_t valid_bit = -1;      // bit in the validity bitmap; -1: not nullable (always valid)
  uint32_t element_width = 0;  // kList / fixed_size_list: bytes of one element
};

inline constexpr uint32_t kRowSeqOffset = 0;
inline constexpr uint32_t kRowStateOffset = 4;
inline constexpr uint32_t kRowExpiryOffset = 8;
inline constexpr uint32_t kRowHeaderBytes = 16;
inline constexpr uint32_t kRowLive = 1u << 31;
inline constexpr uint32_t kVarRefBytes = 12;
inline constexpr uint32_t kVarInlineBytes = 8;

class RowLayout {
 public:
  explicit RowLayout(const TableSchema& schema);

  const ColumnLayout& column(int schema_index) const { return columns_[schema_index]; }
  uint32_t row_width() const { return row_width_; }
  uint32_t bitmap_offset() const { return kRowHeaderBytes; }

 private:
  std::vector<ColumnLayout> columns_;
  uint32_t row_width_ = 0;
};

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
  seq.fetch_add(1, std::memory_order_acq_rel);
#else
  seq.store(sequence + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
#endif
  return sequence;
}
inline void SeqlockWriteEnd(std::byte* row, uint32_t sequence) {
  RowSeq(row).store(sequence + 2, std::memory_order_release);
}
// Reader: waits until no write is in progress; returns the sequence to validate against.
inline uint32_t SeqlockReadBegin(std::byte* row) {
  for (;;) {
    const uint32_t sequence = RowSeq(row).load(std::memory_order_acquire);
    if ((sequence & 1) == 0) return sequence;
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
inline std::atomic<uint32_t>& RowState(std::byte* row) {
  return *reinterpret_cast<std::atomic<uint32_t>*>(row + kRowStateOffset);
}

}  // namespace quiver
