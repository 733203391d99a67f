// Region: one contiguous block of memory that table data lives in. Everything stored in a region
// is addressed by offsets from its base, never by pointers, so the same bytes can later be mapped
// read-only into other processes or written to disk unchanged.
//
// Backings:
//   kAnonymous     private anonymous memory (mmap), zero-filled;
//   kSharedMemory  a memfd object (zero-filled), whose fd other processes can map;
//   kFile          a file mapped shared (MapFile): the bytes are the file's.
//
// Every byte of every live region is counted in a process-wide total (TotalRegionBytes), which is
// the base of Quiver's exact memory accounting.
//
// Thread safety: a Region is immutable after Create except for the bytes it holds, whose
// synchronization is the owner's business. Destruction unmaps: the owner must ensure no reader
// still uses it (see ReaderGate).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "engine/control_block.h"

namespace quiver {

enum class RegionBacking : uint8_t { kAnonymous, kSharedMemory, kFile };

class Region {
 public:
  // `bytes` is rounded up to a whole number of pages; size() tells the result.
  // kAnonymous or kSharedMemory.
  static Result<std::unique_ptr<Region>> Create(size_t bytes,
                                                RegionBacking backing = RegionBacking::kAnonymous);
  // The file at `path` mapped read-write and shared, created or extended (with zeros) to at least
  // `bytes`; existing contents are kept. Writes reach the file through the page cache (no sync).
  static Result<std::unique_ptr<Region>> MapFile(const std::string& path, size_t bytes);
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  RegionBacking backing() const { return backing_; }
  // The memfd of a kSharedMemory region or the file of a kFile one; -1 otherwise. Owned by the
  // region.
  int fd() const { return fd_; }

 private:
  Region(std::byte* data, size_t size, RegionBacking backing, int fd)
      : data_(data), size_(size), backing_(backing), fd_(fd) {}

  std::byte* data_;
  size_t size_;
  RegionBacking backing_;
  int fd_;
};

// Told of every region a RegionList or HashIndex adds or removes, by kind and number (chunk
// number; an index array's sequence number), to publish them (engine/publication.h).
class RegionObserver {
 public:
  virtual ~RegionObserver() = default;
  // Before the region is used; an error makes the owner drop it and fail.
  virtual Status Added(RegionKind kind, uint32_t number, const Region& region, uint64_t param) = 0;
  // Before the region is unmapped.
  virtual void Removed(RegionKind kind, uint32_t number) = 0;
};

// Bytes held by all live regions of this process.
uint64_t TotalRegionBytes();

}  // namespace quiver
