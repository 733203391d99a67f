// Heap: the variable-length bytes of a table (utf8, binary and list values longer than a row's
// inline room), appended into chunks of a RegionList and referenced from rows by a HeapRef.
//
//   HeapRef (64 bits) = chunk number << 32 | byte offset in the chunk
//   chunk             = [uint64 chunk size][value bytes ...]   (values start at offset 8)
//
// Bytes are immutable once appended: an update appends the new value and the old one becomes
// garbage (counted in garbage_bytes()). So a reader that validated a reference under its row's
// seqlock may copy the bytes after leaving the row, for as long as it stays in the owner's
// ReaderGate section.
//
// Compaction (driven by the owner, Table::CompactHeap): BeginCompaction() makes later appends go
// to fresh chunks; the owner re-appends every live value and swaps each row's reference under its
// seqlock; after ReaderGate::Synchronize(), FinishCompaction() unmaps every older chunk.
//
// Thread safety: View() from any thread inside the owner's ReaderGate section; the rest from the
// owner's single writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/result.h"
#include "engine/region_list.h"

namespace quiver {

using HeapRef = uint64_t;

class Heap {
 public:
  static constexpr size_t kMinChunkBytes = 64 << 10;
  static constexpr size_t kMaxChunkBytes = 4 << 20;

  explicit Heap(RegionBacking backing = RegionBacking::kAnonymous) : regions_(backing) {}

  // Writer: makes sure that appends totalling `bytes` fit without allocating, so that a batch
  // can allocate everything before it changes anything.
  Status Reserve(size_t bytes);
  // Writer. Precondition: Reserve covered these bytes.
  HeapRef Append(const void* data, size_t size);
  // Writer: `size` bytes of an old value are no longer referenced.
  void Release(size_t size) { garbage_bytes_ += size; }

  // Address of `size` bytes at `ref`, or nullptr when they are not inside a chunk (possible only
  // for a torn reference read optimistically).
  const std::byte* View(HeapRef ref, size_t size) const {
    size_t chunk = static_cast<size_t>(ref >> 32);
    size_t offset = static_cast<uint32_t>(ref);
    const std::byte* base = regions_.Base(chunk);
    if (base == nullptr) return nullptr;
    uint64_t chunk_size;
    std::memcpy(&chunk_size, base, sizeof(chunk_size));  // written before the chunk was published
    if (offset < kChunkHeaderBytes || offset + size > chunk_size) return nullptr;
    return base + offset;
  }

  // Writer: from now on appends go to chunks numbered >= the returned one.
  size_t BeginCompaction();
  // Writer: every chunk below `first_kept` is no longer referenced and no reader can hold a
  // reference into it: unmap them, and drop their bytes from the accounting. (Moving a value
  // does not Release its old copy: that copy is accounted for here, with its chunk.)
  void FinishCompaction(size_t first_kept);
  // Whether `ref` points into a chunk below `chunk`.
  static bool Before(HeapRef ref, size_t chunk) { return (ref >> 32) < chunk; }

  RegionList& regions() { return regions_; }
  uint64_t bytes() const { return regions_.bytes(); }
  uint64_t garbage_bytes() const { return garbage_bytes_; }
  uint64_t used_bytes() const { return used_bytes_; }
  // Bytes of values still referenced.
  uint64_t live_bytes() const { return used_bytes_ - garbage_bytes_; }

 private:
  static constexpr size_t kChunkHeaderBytes = 8;
  RegionList regions_;
  size_t current_ = 0;                    // chunk receiving appends
  size_t current_used_ = 0;               // bytes used in it
  size_t current_size_ = 0;               // its size (0: none yet)
  uint64_t used_bytes_ = 0;               // appended (live + garbage values)
  uint64_t garbage_bytes_ = 0;            // released values and unusable chunk tails
  uint64_t compaction_used_mark_ = 0;     // used_bytes_ when the compaction began
  uint64_t compaction_garbage_mark_ = 0;  // garbage_bytes_ when the compaction began
};

}  // namespace quiver
