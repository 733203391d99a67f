// HashIndex: open addressing with linear probing, from a key's 64-bit hash to a row id (the slot
// format is engine/index_format.h).
//
// The index stores no keys: a probe yields candidate rows whose tag matches, and the caller
// confirms the key in the row. Tags make a mismatching candidate rare (most probes touch one cache
// line of slots and one row). Because the home slot is derived from the tag, the index is rebuilt
// larger from its slots alone, without reading a single key.
//
// Growth keeps readers running: the writer builds a larger array, publishes it with one atomic
// store, and retires the old one; the owner frees it (FreeRetired) after ReaderGate::Synchronize.
// Deletion leaves a tombstone (moving entries would make a concurrent reader miss them);
// tombstones count towards the load factor and disappear at the next rebuild.
//
// Thread safety: current() and the static probe functions from any thread inside the owner's
// ReaderGate section; everything else from the owner's single writer.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/result.h"
#include "engine/index_format.h"
#include "engine/region.h"

namespace quiver {

class HashIndex {
 public:
  static constexpr uint32_t kNoRow = kIndexNoRow;
  static constexpr uint32_t kMaxRows = 0xFFFFFFFE;  // entries, cold rows' included

  struct Array {
    std::unique_ptr<Region> region;
    std::atomic<uint64_t>* slots;
    uint64_t mask;        // capacity - 1
    int shift;            // 32 - log2(capacity)
    uint32_t number = 0;  // arrays made by this index before it
  };

  // `observer` (may be null; must outlive the index) is told of every array made and freed.
  static Result<std::unique_ptr<HashIndex>> Create(
      RegionBacking backing = RegionBacking::kAnonymous, RegionObserver* observer = nullptr);

  const Array* current() const { return current_.load(std::memory_order_acquire); }

  static uint32_t Tag(uint64_t hash) { return IndexTag(hash); }
  static size_t Home(const Array& array, uint64_t hash) { return IndexHome(hash, array.shift); }
  static void Prefetch(const Array& array, uint64_t hash) {
    __builtin_prefetch(&array.slots[Home(array, hash)]);
  }
  // Candidate rows for `hash`, in probe order: start with *pos = Home(array, hash); each call
  // returns the next row whose tag matches and advances *pos past it, or kNoRow at the end.
  [[gnu::always_inline]] static uint32_t NextCandidate(const Array& array, uint64_t hash,
                                                       size_t* pos) {
    const uint64_t tag = Tag(hash);
    for (size_t i = *pos;; i = (i + 1) & array.mask) {
      uint64_t slot = array.slots[i].load(std::memory_order_acquire);
      if (slot == kEmpty) {
        *pos = i;
        return kNoRow;
      }
      if (slot != kTombstone && (slot >> 32) == tag) {
        *pos = (i + 1) & array.mask;
        return static_cast<uint32_t>(slot);
      }
    }
  }

  // Writer: makes room for `additional` more entries without exceeding the load limit, rebuilding
  // (larger, or the same size to drop tombstones) when needed.
  Status Reserve(size_t additional);
  // Writer: adds an entry. Preconditions: the key is absent; Reserve covered it.
  void Insert(uint64_t hash, uint32_t row);
  // Writer: one walk of the probe run of `hash`. Returns the first candidate row for which
  // `matches(row)` holds, or kNoRow; then *insert_at is where InsertAt may place the key (the
  // first tombstone or the empty slot ending the run), valid until the index changes.
  template <typename Matches>
  uint32_t FindForInsert(uint64_t hash, Matches&& matches, size_t* insert_at) const {
    const Array& array = *owned_;
    const uint64_t tag = Tag(hash);
    size_t tombstone = SIZE_MAX;
    for (size_t i = Home(array, hash);; i = (i + 1) & array.mask) {
      const uint64_t slot = array.slots[i].load(std::memory_order_relaxed);
      if (slot == kEmpty) {
        *insert_at = tombstone != SIZE_MAX ? tombstone : i;
        return kNoRow;
      }
      if (slot == kTombstone) {
        if (tombstone == SIZE_MAX) tombstone = i;
      } else if ((slot >> 32) == tag && matches(static_cast<uint32_t>(slot))) {
        return static_cast<uint32_t>(slot);
      }
    }
  }
  // Writer: adds (hash, row) at a position FindForInsert returned. Precondition: Reserve
  // covered it.
  void InsertAt(size_t position, uint64_t hash, uint32_t row);
  // Writer: removes the entry (hash, row); false when there is none.
  bool Erase(uint64_t hash, uint32_t row);
  // Writer: makes the entry (hash, row) say `replacement` instead, in place (one atomic store:
  // a reader sees one or the other); false when there is no such entry.
  bool Replace(uint64_t hash, uint32_t row, uint32_t replacement);
  // Any thread inside the owner's ReaderGate section: whether `array` holds the entry (hash, row).
  static bool Contains(const Array& array, uint64_t hash, uint32_t row) {
    const uint64_t value = IndexSlotValue(hash, row);
    for (size_t i = Home(array, hash);; i = (i + 1) & array.mask) {
      const uint64_t slot = array.slots[i].load(std::memory_order_acquire);
      if (slot == value) return true;
      if (slot == kEmpty) return false;
    }
  }

  size_t size() const { return live_; }
  size_t capacity() const { return owned_->mask + 1; }
  uint64_t bytes() const { return owned_->region->size(); }
  bool has_retired() const { return !retired_.empty(); }
  void FreeRetired();

 private:
  static constexpr uint64_t kEmpty = kIndexEmpty;
  static constexpr uint64_t kTombstone = kIndexTombstone;
  static constexpr size_t kMinCapacity = 512;  // one page of slots
  // Load limit (entries + tombstones) / capacity = 3/4: short probe runs under linear probing.
  static bool OverLoad(size_t used, size_t capacity) { return used * 4 > capacity * 3; }

  HashIndex(RegionBacking backing, RegionObserver* observer)
      : backing_(backing), observer_(observer) {}
  // A new array of `capacity` empty slots, told to the observer.
  Result<std::unique_ptr<Array>> MakeArray(size_t capacity);
  static void Place(Array& array, uint64_t slot_value);

  RegionBacking backing_;
  RegionObserver* observer_;
  uint32_t arrays_made_ = 0;
  std::unique_ptr<Array> owned_;
  std::atomic<const Array*> current_{nullptr};
  std::vector<std::unique_ptr<Array>> retired_;
  size_t live_ = 0;
  size_t used_ = 0;  // live entries + tombstones
};

}  // namespace quiver
