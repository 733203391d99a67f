// The byte formats that readers of a table's memory rely on: the row header and its seqlock,
// value references, heap references, and where a row id lives among the row chunks. The engine
// writes them (RowLayout, RowStore, Heap); readers in other processes (src/shm/) read them from
// shared memory. So this header depends on nothing but the standard library; docs/engine.md
// ("Memory layout") and docs/shm.md specify it.
//
// Row (row_width bytes, a multiple of 8; rows are contiguous in row chunks):
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
//   then       sparse slot     with sparse columns: a VarRef to their set values (sparse_row.h)
//
//   VarRef (12 bytes) = uint32 length in bytes, then 8 bytes: the value itself when length <= 8,
//                       otherwise the HeapRef of its bytes in the table's heap.
//   KeyRef (10 bytes) = the same with a uint16 length (keys are at most 65535 bytes).
//   HeapRef (64 bits) = heap chunk number << 32 | byte offset in the chunk; a heap chunk starts
//                       with its size (uint64), values follow.
//
// Values are stored unaligned (copied with memcpy); meta and seq are naturally aligned.
//
// Seqlock protocol. Writer (one per table): seq |= 1, release fence, write, then seq = next
// version | live flag, with release. Reader: s1 = seq (acquire), retry while odd; copy; acquire
// fence; retry if seq != s1. A reader acts on nothing it copied (a heap reference, a length)
// before the check passed; liveness comes from s1 itself. The meta word is the exception to
// "only the writer writes a row": under an LRU or LFU memory policy an in-process reader stamps
// the access clock with a compare-and-swap, at most once per second per row for LRU (the
// writer's stores may overwrite such a stamp; the clock is approximate by design).
//
// Thread safety: constants and pure functions; the seqlock functions follow the protocol above.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/row_copy.h"

namespace quiver {

// How a row holds a value.
enum class Physical : uint8_t {
  kFixed,   // numbers, dates, timestamps, fixed_size_list: `width` bytes in the row
  kBool,    // one byte in the row, bit-packed in Arrow
  kBytes,   // utf8 / binary: VarRef
  kList,    // list<numeric>: VarRef over element bytes
  kSparse,  // a sparse column: its value, when set, is in the row's sparse blob (sparse_row.h)
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

inline constexpr int kRowAccessShift = 44;
inline constexpr uint64_t kRowExpiryMask = (uint64_t{1} << kRowAccessShift) - 1;
inline constexpr uint32_t kRowAccessMask = (uint32_t{1} << (64 - kRowAccessShift)) - 1;
inline constexpr int kRowLfuMinuteBits = 64 - kRowAccessShift - 8;

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

// Heap references.
using HeapRef = uint64_t;
inline constexpr size_t kHeapChunkHeaderBytes = 8;
inline size_t HeapChunkOf(HeapRef ref) { return static_cast<size_t>(ref >> 32); }
inline size_t HeapOffsetOf(HeapRef ref) { return static_cast<uint32_t>(ref); }
// The heap reference a VarRef holds (when its length is over kVarInlineBytes).
inline HeapRef HeapRefOf(const VarRef& ref) {
  HeapRef heap_ref;
  std::memcpy(&heap_ref, ref.payload, sizeof(heap_ref));
  return heap_ref;
}
// The `size` bytes at `offset` of a heap chunk mapped at `base` (`mapped` bytes), or nullptr when
// they are not inside the chunk: its size word (written before the chunk was published) and the
// mapping both bound them, so a torn or hostile reference cannot reach outside.
inline const std::byte* HeapBytesIn(const std::byte* base, size_t mapped, size_t offset,
                                    size_t size) {
  uint64_t chunk_size;
  std::memcpy(&chunk_size, base, sizeof(chunk_size));
  if (chunk_size > mapped) chunk_size = mapped;
  if (offset < kHeapChunkHeaderBytes || offset > chunk_size || size > chunk_size - offset) {
    return nullptr;
  }
  return base + offset;
}

// Where row ids live among row chunks. Chunk sizes double, then stay fixed: chunk 0 holds ids
// [0, F); chunk k >= 1 of the doubling zone holds [F * 2^(k-1), F * 2^k); past L, chunk D + j
// holds [L * (j + 1), L * (j + 2)), D being the number of doubling chunks. F = 2^first_shift and
// L = 2^large_shift rows.
struct RowChunkGeometry {
  int first_shift = 0;
  int large_shift = 0;

  size_t doubling_chunks() const { return static_cast<size_t>(large_shift - first_shift) + 1; }
  // The chunk holding row `id` and the row's position in it.
  [[gnu::always_inline]] void Locate(uint32_t id, size_t* chunk, size_t* position) const {
    if (id >> large_shift) {
      *chunk = doubling_chunks() + (id >> large_shift) - 1;
      *position = id & ((uint32_t{1} << large_shift) - 1);
    } else if ((id >> first_shift) == 0) {
      *chunk = 0;
      *position = id;
    } else {
      const int bit = 31 - __builtin_clz(id);
      *chunk = static_cast<size_t>(bit - first_shift) + 1;
      *position = id - (uint32_t{1} << bit);
    }
  }
  // Rows in chunk `chunk`.
  size_t ChunkRows(size_t chunk) const {
    if (chunk == 0) return size_t{1} << first_shift;
    if (chunk < doubling_chunks()) return size_t{1} << (first_shift + chunk - 1);
    return size_t{1} << large_shift;
  }
  // Rows addressable by the first `chunks` chunks.
  size_t CapacityOf(size_t chunks) const {
    if (chunks == 0) return 0;
    if (chunks <= doubling_chunks()) return size_t{1} << (first_shift + chunks - 1);
    return (size_t{1} << large_shift) * (chunks - doubling_chunks() + 1);
  }
};

inline std::atomic<uint64_t>& RowMeta(const std::byte* row) {
  return *reinterpret_cast<std::atomic<uint64_t>*>(const_cast<std::byte*>(row) + kRowMetaOffset);
}

inline std::atomic<uint32_t>& RowSeq(const std::byte* row) {
  return *reinterpret_cast<std::atomic<uint32_t>*>(const_cast<std::byte*>(row) + kRowSeqOffset);
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
inline uint32_t SeqlockReadBegin(const std::byte* row) {
  for (;;) {
    const uint32_t sequence = RowSeq(row).load(std::memory_order_acquire);
    if ((sequence & kSeqWriting) == 0) return sequence;
    __builtin_ia32_pause();
  }
}
// Reader: true when nothing changed the row since SeqlockReadBegin returned `sequence`.
inline bool SeqlockReadValidate(const std::byte* row, uint32_t sequence) {
#if defined(QUIVER_TSAN)
  return RowSeq(row).fetch_add(0, std::memory_order_acq_rel) == sequence;
#else
  std::atomic_thread_fence(std::memory_order_acquire);
  return RowSeq(row).load(std::memory_order_relaxed) == sequence;
#endif
}

// Reader of memory it cannot write (another process's, mapped read-only): whether `word` still
// holds `expected` after the loads before it, as SeqlockReadValidate checks a row. ThreadSanitizer
// builds (no fences there, and no read-modify-write on read-only pages) load with acquire; the
// writer is in another process, which ThreadSanitizer does not see anyway.
template <typename T>
inline bool StillEqualShared(const std::atomic<T>& word, T expected) {
#if defined(QUIVER_TSAN)
  return word.load(std::memory_order_acquire) == expected;
#else
  std::atomic_thread_fence(std::memory_order_acquire);
  return word.load(std::memory_order_relaxed) == expected;
#endif
}

}  // namespace quiver
