#include "engine/heap.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <new>
#include <span>
#include <string>

namespace quiver {

Status Heap::Reserve(size_t bytes, size_t largest) {
  if (bytes == 0 || (current_size_ != 0 && bytes <= current_size_ - current_used_)) {
    return Status::OK();
  }
  // Offsets are 32-bit: one chunk holds at most 4 GiB.
  if (largest > (size_t{1} << 32) - 4096) {
    return Status::LimitExceeded("a value of " + std::to_string(largest) +
                                 " bytes is over the heap's 4 GiB limit");
  }
  // Room for values of at most `largest` bytes in `free` bytes: appends stop short of the end by
  // less than `largest`.
  const auto room = [largest](uint64_t free) -> uint64_t {
    return free >= largest ? free - largest + 1 : 0;
  };
  uint64_t available = current_size_ == 0 ? 0 : room(current_size_ - current_used_);
  for (const Spare& spare : spare_) available += room(spare.size - kChunkHeaderBytes);
  while (available < bytes) {
    // A chunk is about a sixteenth of the live bytes (these included), up to kMaxChunkBytes:
    // small tables stay small, big ones use few chunks, and the garbage a chunk gathers before
    // it holds nothing else (and is freed) stays well under the compaction threshold.
    size_t size =
        std::clamp<size_t>(std::bit_ceil(std::max<uint64_t>((live_bytes() + bytes) / 16, 1)),
                           kMinChunkBytes, kMaxChunkBytes);
    size = std::max(size, largest + kChunkHeaderBytes);
    size = (size + 4095) / 4096 * 4096;  // whole pages: the recorded size is the usable size
    try {  // entries first (an unused chunk entry reads as a freed chunk)
      chunks_.resize(regions_.published_count() + 1);
      spare_.reserve(spare_.size() + 1);
    } catch (const std::bad_alloc&) {
      return Status::OutOfMemory("no memory for the heap's chunk list");
    }
    uint64_t recorded = size;
    QUIVER_RETURN_NOT_OK(
        regions_.Append(size, std::as_bytes(std::span<const uint64_t>(&recorded, 1))).status());
    spare_.push_back({regions_.published_count() - 1, size});
    available += room(size - kChunkHeaderBytes);
  }
  return Status::OK();
}

void Heap::CloseCurrent() {
  if (current_size_ == 0) return;
  const size_t tail = current_size_ - current_used_;  // will never be used
  chunks_[current_].used += tail;
  chunks_[current_].garbage += tail;
  used_bytes_ += tail;
  garbage_bytes_ += tail;
  current_size_ = 0;
  current_used_ = 0;
  if (Dead(current_)) ++dead_chunks_;
}

HeapRef Heap::Append(const void* data, size_t size) {
  if (current_size_ == 0 || current_used_ + size > current_size_) {  // on to a reserved chunk
    assert(!spare_.empty());
    CloseCurrent();
    current_ = spare_.front().chunk;
    current_size_ = spare_.front().size;
    current_used_ = kChunkHeaderBytes;
    spare_.erase(spare_.begin());
  }
  std::byte* base = regions_.Base(current_);
  std::memcpy(base + current_used_, data, size);
  HeapRef ref = (static_cast<uint64_t>(current_) << 32) | current_used_;
  current_used_ += size;
  chunks_[current_].used += size;
  used_bytes_ += size;
  return ref;
}

void Heap::Release(HeapRef ref, size_t size) {
  const size_t n = ChunkOf(ref);
  chunks_[n].garbage += size;
  garbage_bytes_ += size;
  if (Dead(n)) ++dead_chunks_;
}

std::vector<bool> Heap::ChooseVictims(uint64_t garbage_threshold) {
  std::vector<bool> victims(chunks_.size(), false);
  uint64_t chosen = 0;
  std::vector<size_t> candidates;
  for (size_t n = 0; n < chunks_.size(); ++n) {
    if (chunks_[n].used == 0) continue;  // freed (or taking appends, still empty)
    if (Dead(n)) {
      victims[n] = true;
      chosen += chunks_[n].garbage;
    } else if (chunks_[n].garbage > 0) {
      candidates.push_back(n);
    }
  }
  if (garbage_bytes_ < garbage_threshold) return victims;
  // Most garbage for its size first, until at most half the threshold is left: the next
  // compaction is at least as much garbage away.
  std::sort(candidates.begin(), candidates.end(), [&](size_t a, size_t b) {
    return chunks_[a].garbage * chunks_[b].used > chunks_[b].garbage * chunks_[a].used;
  });
  for (size_t n : candidates) {
    if (garbage_bytes_ - chosen <= garbage_threshold / 2) break;
    if (n == current_) CloseCurrent();  // moved values go to a fresh chunk
    victims[n] = true;
    chosen += chunks_[n].garbage;
  }
  return victims;
}

uint64_t Heap::LiveBytesIn(const std::vector<bool>& victims) const {
  uint64_t live = 0;
  for (size_t n = 0; n < victims.size(); ++n) {
    if (victims[n]) live += chunks_[n].used - chunks_[n].garbage;
  }
  return live;
}

void Heap::FreeChunks(const std::vector<bool>& victims) {
  for (size_t n = 0; n < victims.size(); ++n) {
    if (!victims[n]) continue;
    assert(Dead(n));  // every value in it released (moved or dead)
    regions_.Release(n);
    used_bytes_ -= chunks_[n].used;
    garbage_bytes_ -= chunks_[n].garbage;
    --dead_chunks_;
    chunks_[n] = Chunk{};
  }
}

}  // namespace quiver
