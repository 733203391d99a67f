// Heap: the variable-length bytes of a table (utf8, binary and list values longer than a row's
// inline room), appended into chunks of a RegionList and referenced from rows by a HeapRef.
//
//   HeapRef (64 bits) = chunk number << 32 | byte offset in the chunk
//   chunk             = [uint64 chunk size][value bytes ...]   (values start at offset 8)
//
// Bytes are immutable once appended: an update appends the new value and the old one becomes
// garbage of its chunk. So a reader that validated a reference under its row's seqlock may copy
// the bytes after leaving the row, for as long as it stays in the owner's ReaderGate section.
//
// Compaction frees chunks one at a time, as a log-structured store cleans its segments: the
// owner (Table::FinishWrite) asks ChooseVictims() which chunks to empty, moves the live values
// out of them (re-appending each, swapping the row's reference under its seqlock, releasing the
// old copy), and after ReaderGate::Synchronize() unmaps them with FreeChunks(). A chunk left
// holding only garbage (its rows evicted, expired, deleted or rewritten: under LRU eviction the
// oldest chunks) is freed without copying anything. Once the garbage reaches the owner's
// threshold, the chunks with the most garbage for their size are emptied first, so each byte
// copied gives back the most, and a compaction never holds the live values twice at once.
//
// Thread safety: View() from any thread inside the owner's ReaderGate section; the rest from the
// owner's single writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/result.h"
#include "engine/region_list.h"
#include "engine/row_format.h"

namespace quiver {

class Heap {
 public:
  static constexpr size_t kMinChunkBytes = 64 << 10;
  static constexpr size_t kMaxChunkBytes = 4 << 20;

  explicit Heap(RegionBacking backing = RegionBacking::kAnonymous) : regions_(backing) {}

  // Writer: makes sure that appends totalling `bytes`, none over `largest` bytes, fit without
  // allocating, so that a batch can allocate everything before it changes anything. A value
  // never spans chunks; a batch may.
  Status Reserve(size_t bytes, size_t largest);
  // Writer: copies the bytes into the chunk taking appends, or the next one reserved when they
  // do not fit in its rest (which becomes garbage). Precondition: Reserve covered these bytes.
  HeapRef Append(const void* data, size_t size);
  // Writer: the `size` bytes at `ref` are no longer referenced.
  void Release(HeapRef ref, size_t size);

  // Address of `size` bytes at `ref`, or nullptr when they are not inside a chunk (possible only
  // for a torn reference read optimistically).
  const std::byte* View(HeapRef ref, size_t size) const {
    size_t chunk = ChunkOf(ref);
    size_t offset = static_cast<uint32_t>(ref);
    const std::byte* base = regions_.Base(chunk);
    if (base == nullptr) return nullptr;
    uint64_t chunk_size;
    std::memcpy(&chunk_size, base, sizeof(chunk_size));  // written before the chunk was published
    if (offset < kChunkHeaderBytes || offset + size > chunk_size) return nullptr;
    return base + offset;
  }
  static size_t ChunkOf(HeapRef ref) { return HeapChunkOf(ref); }

  // Writer: whether a compaction is due: a chunk holds only garbage, or the heap holds
  // `garbage_threshold` bytes of it.
  bool CompactionDue(uint64_t garbage_threshold) const {
    return dead_chunks_ > 0 || garbage_bytes_ >= garbage_threshold;
  }
  // Writer: the chunks to empty, marked by chunk number: every chunk holding only garbage; and,
  // when the heap holds `garbage_threshold` bytes of garbage, the chunks with the most garbage
  // for their size until at most half the threshold is left elsewhere. Choosing the chunk taking
  // appends closes it (later appends open a fresh one).
  std::vector<bool> ChooseVictims(uint64_t garbage_threshold);
  // Writer: live bytes in the chunks marked.
  uint64_t LiveBytesIn(const std::vector<bool>& victims) const;
  // Writer: unmaps the chunks marked. Precondition: every value in them was released (moved or
  // dead) and the owner's ReaderGate was synchronized since.
  void FreeChunks(const std::vector<bool>& victims);

  RegionList& regions() { return regions_; }
  uint64_t bytes() const { return regions_.bytes(); }
  uint64_t garbage_bytes() const { return garbage_bytes_; }
  uint64_t used_bytes() const { return used_bytes_; }
  // Bytes of values still referenced.
  uint64_t live_bytes() const { return used_bytes_ - garbage_bytes_; }

 private:
  static constexpr size_t kChunkHeaderBytes = kHeapChunkHeaderBytes;
  struct Chunk {
    uint64_t used = 0;     // bytes appended, and the unused tail once it stopped taking appends
    uint64_t garbage = 0;  // of those, no longer referenced
  };
  // Writer: the chunk receiving appends stops taking them; its unused tail becomes garbage.
  void CloseCurrent();
  bool Dead(size_t n) const {
    return (n != current_ || current_size_ == 0) && chunks_[n].used != 0 &&
           chunks_[n].garbage == chunks_[n].used;
  }

  struct Spare {
    size_t chunk;
    size_t size;
  };

  RegionList regions_;
  std::vector<Spare> spare_;    // chunks reserved to take appends next, in order
  std::vector<Chunk> chunks_;   // by chunk number; freed ones are all zero
  size_t current_ = 0;          // chunk receiving appends
  size_t current_used_ = 0;     // bytes used in it, header included
  size_t current_size_ = 0;     // its size (0: none, the next Reserve opens one)
  uint64_t used_bytes_ = 0;     // sum of the mapped chunks' used
  uint64_t garbage_bytes_ = 0;  // sum of their garbage
  size_t dead_chunks_ = 0;      // chunks not taking appends, holding only garbage
};

}  // namespace quiver
