// RegionList: an append-only list of Regions whose base addresses readers look up without locks.
// The row store and the value heap are each a RegionList of fixed- or variable-size chunks; a
// stored reference names (region number, offset), never a pointer.
//
// The directory of base addresses grows by building a larger copy and publishing it with one
// atomic store; the old copy is retired and freed by FreeRetired() once the owner's ReaderGate
// has been synchronized. Regions themselves never move and are freed only with the list.
//
// Thread safety: Base() and published_count() from any thread, inside a ReaderGate section of
// the owner. Everything else from the owner's single writer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/result.h"
#include "engine/region.h"

namespace quiver {

class RegionList {
 public:
  explicit RegionList(RegionBacking backing = RegionBacking::kAnonymous);
  // From now on, `observer` (which must outlive the list, or be replaced by null) is told of
  // each region appended and released, as regions of `kind`.
  void SetObserver(RegionObserver* observer, RegionKind kind) {
    observer_ = observer;
    kind_ = kind;
  }
  ~RegionList();
  RegionList(const RegionList&) = delete;
  RegionList& operator=(const RegionList&) = delete;

  // Base address of region `index`, or nullptr when no such region is published (a torn
  // reference read by an optimistic reader must not fault).
  [[gnu::always_inline]] std::byte* Base(size_t index) const {
    if (index >= count_.load(std::memory_order_acquire)) return nullptr;
    const Directory* directory = directory_.load(std::memory_order_acquire);
    return directory->bases[index].load(std::memory_order_acquire);
  }
  // Base address of region `index`, known to be published: the caller learned `index` from
  // something the writer published after the region (an index slot naming a row in it).
  [[gnu::always_inline]] std::byte* PublishedBase(size_t index) const {
    return directory_.load(std::memory_order_acquire)->bases[index].load(std::memory_order_relaxed);
  }
  size_t published_count() const { return count_.load(std::memory_order_acquire); }

  // Writer: creates a region of at least `bytes`, copies `prefix` to its start, and then
  // publishes it as number published_count().
  Result<std::byte*> Append(size_t bytes, std::span<const std::byte> prefix = {});
  // Writer: unmaps region `index` and clears its directory entry (Base() returns nullptr for it).
  // Precondition: no reader can still use the region (the owner's ReaderGate was synchronized
  // after the last reference to it was replaced).
  void Release(size_t index);
  // Writer: whether region `index` is still mapped.
  bool IsMapped(size_t index) const { return regions_[index] != nullptr; }
  // Writer: size in bytes of region `index`.
  size_t RegionSize(size_t index) const { return regions_[index]->size(); }
  bool has_retired() const { return !retired_.empty(); }
  // Writer, after the owner's ReaderGate::Synchronize(): frees retired directories.
  void FreeRetired() { retired_.clear(); }
  // Bytes held: every region plus the directory.
  uint64_t bytes() const { return region_bytes_ + directory_bytes_; }

 private:
  struct Directory {
    explicit Directory(size_t capacity_in)
        : capacity(capacity_in), bases(new std::atomic<std::byte*>[capacity_in]) {}
    size_t capacity;
    std::unique_ptr<std::atomic<std::byte*>[]> bases;
  };

  RegionBacking backing_;
  RegionObserver* observer_ = nullptr;
  RegionKind kind_ = RegionKind::kRows;
  std::vector<std::unique_ptr<Region>> regions_;
  std::unique_ptr<Directory> owned_directory_;
  std::atomic<const Directory*> directory_{nullptr};
  std::atomic<size_t> count_{0};
  std::vector<std::unique_ptr<Directory>> retired_;
  uint64_t region_bytes_ = 0;
  uint64_t directory_bytes_ = 0;
};

}  // namespace quiver
