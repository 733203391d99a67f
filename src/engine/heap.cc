#include "engine/heap.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <string>

namespace quiver {

Status Heap::Reserve(size_t bytes) {
  if (bytes == 0 || current_used_ + bytes <= current_size_) return Status::OK();
  // Offsets are 32-bit: one chunk holds at most 4 GiB.
  if (bytes > (size_t{1} << 32) - kChunkHeaderBytes) {
    return Status::LimitExceeded("a batch of " + std::to_string(bytes) +
                                 " variable-length bytes is over the 4 GiB per batch limit");
  }
  // Chunks double up to kMaxChunkBytes, so small tables stay small and big ones use few chunks.
  size_t size = std::clamp(current_size_ * 2, kMinChunkBytes, kMaxChunkBytes);
  size = std::max(size, bytes + kChunkHeaderBytes);
  // Regions are whole pages: round up so the recorded size is the usable size.
  size = std::min((size + 4095) / 4096 * 4096, size_t{1} << 32);
  uint64_t recorded = size;
  QUIVER_RETURN_NOT_OK(
      regions_.Append(size, std::as_bytes(std::span<const uint64_t>(&recorded, 1))).status());
  if (current_size_ > 0) {  // the rest of the current chunk will never be used
    garbage_bytes_ += current_size_ - current_used_;
    used_bytes_ += current_size_ - current_used_;
  }
  current_ = regions_.published_count() - 1;
  current_size_ = size;
  current_used_ = kChunkHeaderBytes;
  return Status::OK();
}

HeapRef Heap::Append(const void* data, size_t size) {
  std::byte* base = regions_.Base(current_);
  std::memcpy(base + current_used_, data, size);
  HeapRef ref = (static_cast<uint64_t>(current_) << 32) | current_used_;
  current_used_ += size;
  used_bytes_ += size;
  return ref;
}

size_t Heap::BeginCompaction() {
  // Abandon the current chunk: the next Reserve opens a fresh one.
  if (current_size_ > 0) {
    garbage_bytes_ += current_size_ - current_used_;
    used_bytes_ += current_size_ - current_used_;
  }
  current_size_ = 0;
  current_used_ = 0;
  compaction_used_mark_ = used_bytes_;
  compaction_garbage_mark_ = garbage_bytes_;
  return regions_.published_count();
}

void Heap::FinishCompaction(size_t first_kept) {
  for (size_t chunk = 0; chunk < first_kept; ++chunk) regions_.Release(chunk);
  used_bytes_ -= compaction_used_mark_;
  garbage_bytes_ -= compaction_garbage_mark_;
}

}  // namespace quiver
