// OpenIndex: an open-addressing hash index over items that carry their own key (`Item::key()`
// returns a std::string_view). The keyspace's shards and the hashes' fields index with it.
//
// Layout: a power-of-two array of 16-byte slots {64-bit hash, Item*}, linear probing from
// `hash & mask`. A lookup touches one slot line and then only the item whose full hash matches,
// so a hit costs two cache misses (slot, item), where a node-based map walks bucket, previous
// node, node and an out-of-line key. Rebuilding reads only the slots (the hashes are kept there),
// never the items.
//
// Deletion leaves a tombstone: an item never moves until the index is rebuilt (grown past 3/4
// full counting tombstones, shrunk below 1/8, or cleaned), and every rebuild bumps generation().
//
// Incremental rebuild: an array of more than kIncrementalFrom slots is not moved in one step
// (a million items would stall their shard or hash for tens of milliseconds). The new array is
// made and the old one kept; each Insert and Erase then moves the next kMigrateStep old slots,
// so the old array is gone after capacity/kMigrateStep changes, long before the new one fills
// (Redis rehashes its dicts the same way); the keyspace's lookups step too (RebuildStep). Meanwhile
// Find looks in the new array, then the old; Insert always adds to the new. Positions (At,
// NextFrom) cover both arrays: the new one's, then the old one's. A walk over positions that must
// not miss items moved meanwhile (SCAN) calls FinishRebuild() first; a walk under the caller's lock
// (no change in between) needs nothing.
//
// The index owns neither its items nor their keys; the caller frees them. Memory comes from
// ::operator new, or for large arrays from mmap (below); SlotBytes() is what it takes.
//
// Prefetching (for a pipeline of operations): PrefetchSlot(hash) asks the CPU to bring the line
// a lookup of `hash` starts at, and PrefetchItem(hash) the first item with that hash.
//
// Thread safety: none, but for PrefetchSlot, which may run on any thread at any time (it reads an
// atomic copy of the array's address and mask, and a prefetch of a stale address is harmless);
// the keyspace's shard mutex guards everything else.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

namespace quiver::kv {

// Bytes glibc's malloc takes for a request of `n` bytes: the chunk, its header included.
constexpr uint64_t ChunkBytes(uint64_t n) {
  return n == 0 ? 0 : std::max<uint64_t>(32, (n + 8 + 15) & ~uint64_t{15});
}

template <typename Item>
class OpenIndex {
 public:
  static constexpr size_t kMinCapacity = 16;
  static constexpr size_t kIncrementalFrom = 1024;  // old arrays up to this size move at once
  static constexpr size_t kMigrateStep = 64;        // old slots moved per change meanwhile

  OpenIndex() = default;
  ~OpenIndex() {
    FreeArray(slots_, capacity());
    if (old_slots_ != nullptr) FreeArray(old_slots_, old_mask_ + 1);
  }
  OpenIndex(OpenIndex&& other) noexcept { swap(other); }
  OpenIndex& operator=(OpenIndex&& other) noexcept {
    OpenIndex(std::move(other)).swap(*this);
    return *this;
  }
  void swap(OpenIndex& other) noexcept {
    std::swap(slots_, other.slots_);
    std::swap(mask_, other.mask_);
    std::swap(old_slots_, other.old_slots_);
    std::swap(old_mask_, other.old_mask_);
    std::swap(migrated_, other.migrated_);
    std::swap(size_, other.size_);
    std::swap(old_size_, other.old_size_);
    std::swap(tombstones_, other.tombstones_);
    std::swap(generation_, other.generation_);
    PublishHint();
    other.PublishHint();
  }

  // The item with this key (and its hash), or null.
  Item* Find(std::string_view key, uint64_t hash) const {
    Item* item = Probe(slots_, mask_, key, hash);
    return item != nullptr || old_slots_ == nullptr ? item
                                                    : Probe(old_slots_, old_mask_, key, hash);
  }

  // Adds an item whose key is not in the index. May start a rebuild (positions change).
  void Insert(uint64_t hash, Item* item) {
    if (old_slots_ != nullptr) Migrate(kMigrateStep);
    if ((size_ - old_size_ + tombstones_ + 1) * 4 > capacity() * 3) Rebuild(size_ + 1);
    Put(hash, item);
    ++size_;
  }

  // Removes `item` (present, with this hash). May start a rebuild smaller (positions change).
  void Erase(const Item* item, uint64_t hash) {
    if (old_slots_ != nullptr) Migrate(kMigrateStep);
    if (!Remove(slots_, mask_, item, hash, &tombstones_)) {
      size_t old_tombstones = 0;  // not tracked: the old array only empties
      Remove(old_slots_, old_mask_, item, hash, &old_tombstones);
      --old_size_;
      if (old_size_ == 0) EndMigration();
    }
    --size_;
    if (capacity() > kMinCapacity && size_ * 8 < capacity()) Rebuild(size_);
  }

  // Puts `now` in the place of `old` (present, with this hash; `now` has the same key). Positions
  // do not change.
  void Replace(const Item* old, Item* now, uint64_t hash) {
    if (!Swap(slots_, mask_, old, now, hash)) Swap(old_slots_, old_mask_, old, now, hash);
  }

  // Moves the next kMigrateStep old slots of a rebuild under way (positions change): for lookups,
  // so that a rebuild also ends under a load that only reads (Insert and Erase step themselves).
  void RebuildStep() {
    if (old_slots_ != nullptr) Migrate(kMigrateStep);
  }

  // Moves whatever an incremental rebuild has left in the old array (positions change).
  void FinishRebuild() {
    if (old_slots_ != nullptr) Migrate(old_mask_ + 1);
  }
  bool rebuilding() const { return old_slots_ != nullptr; }

  void PrefetchSlot(uint64_t hash) const {
    const Slot* slots = hint_slots_.load(std::memory_order_relaxed);
    if (slots != nullptr)
      __builtin_prefetch(slots + (hash & hint_mask_.load(std::memory_order_relaxed)));
  }
  void PrefetchItem(uint64_t hash) const {
    if (!PrefetchIn(slots_, mask_, hash)) PrefetchIn(old_slots_, old_mask_, hash);
  }

  // Positions [0, positions()): the live item at one, or null (empty, deleted, or moved).
  size_t positions() const { return capacity() + (old_slots_ == nullptr ? 0 : old_mask_ + 1); }
  Item* At(size_t position) const {
    Item* item =
        position < capacity() ? slots_[position].item : old_slots_[position - capacity()].item;
    return item == Tombstone() ? nullptr : item;
  }
  // The first live item at or after `position` (wrapping), or null when empty.
  Item* NextFrom(size_t position) const {
    if (size_ == 0) return nullptr;
    for (size_t i = position % positions();; i = i + 1 == positions() ? 0 : i + 1) {
      if (Item* item = At(i)) return item;
    }
  }
  template <typename F>
  void ForEach(F&& f) const {
    for (size_t i = 0; i < positions(); ++i) {
      if (Item* item = At(i)) f(item);
    }
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint64_t generation() const { return generation_; }
  // The bytes malloc takes for the slot arrays (ChunkBytes of each; 0 when none).
  uint64_t SlotBytes() const {
    return ArrayBytes(capacity()) + (old_slots_ == nullptr ? 0 : ArrayBytes(old_mask_ + 1));
  }

 private:
  struct Slot {
    uint64_t hash;
    Item* item;  // null: empty; Tombstone(): deleted (or moved to the new array)
  };
  // A sentinel address no allocation has.
  static Item* Tombstone() {
    return reinterpret_cast<Item*>(uintptr_t{1});  // NOLINT(performance-no-int-to-ptr)
  }

  size_t capacity() const { return slots_ == nullptr ? 0 : mask_ + 1; }

  // Arrays of kMapFrom bytes or more are mapped from the kernel: its pages come zeroed and are
  // touched as slots fill, so a rebuild does not stop to clear (and fault in) a large array at
  // once. Smaller ones come from ::operator new.
  static constexpr size_t kMapFrom = size_t{1} << 20;
  static Slot* NewArray(size_t capacity) {
    const size_t bytes = capacity * sizeof(Slot);
    if (bytes >= kMapFrom) {
      void* mapped =
          mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (mapped == MAP_FAILED) throw std::bad_alloc();
      return static_cast<Slot*>(mapped);
    }
    Slot* slots = static_cast<Slot*>(::operator new(bytes));
    std::memset(static_cast<void*>(slots), 0, bytes);
    return slots;
  }
  static void FreeArray(Slot* slots, size_t capacity) {
    if (slots == nullptr) return;
    const size_t bytes = capacity * sizeof(Slot);
    if (bytes >= kMapFrom) {
      munmap(slots, bytes);
    } else {
      ::operator delete(slots);
    }
  }
  // What an array of `capacity` slots takes: the pages of a mapped one (a power of two of at
  // least kMapFrom bytes is whole pages), malloc's chunk for the rest.
  static uint64_t ArrayBytes(size_t capacity) {
    const size_t bytes = capacity * sizeof(Slot);
    return bytes >= kMapFrom ? bytes : ChunkBytes(bytes);
  }

  static Item* Probe(const Slot* slots, size_t mask, std::string_view key, uint64_t hash) {
    if (slots == nullptr) return nullptr;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots[i];
      if (slot.item == nullptr) return nullptr;
      if (slot.hash == hash && slot.item != Tombstone() && slot.item->key() == key) {
        return slot.item;
      }
    }
  }

  // Removes `item` from one array; false when it is not there.
  static bool Remove(Slot* slots, size_t mask, const Item* item, uint64_t hash,
                     size_t* tombstones) {
    if (slots == nullptr) return false;
    for (size_t i = hash & mask; slots[i].item != nullptr; i = (i + 1) & mask) {
      if (slots[i].item != item) continue;
      // The end of a probe chain needs no tombstone: the next slot is empty.
      const bool last = slots[(i + 1) & mask].item == nullptr;
      slots[i].item = last ? nullptr : Tombstone();
      *tombstones += !last;
      return true;
    }
    return false;
  }

  static bool Swap(Slot* slots, size_t mask, const Item* old, Item* now, uint64_t hash) {
    if (slots == nullptr) return false;
    for (size_t i = hash & mask; slots[i].item != nullptr; i = (i + 1) & mask) {
      if (slots[i].item == old) {
        slots[i].item = now;
        return true;
      }
    }
    return false;
  }

  static bool PrefetchIn(const Slot* slots, size_t mask, uint64_t hash) {
    if (slots == nullptr) return false;
    for (size_t i = hash & mask; slots[i].item != nullptr; i = (i + 1) & mask) {
      if (slots[i].hash == hash && slots[i].item != Tombstone()) {
        const char* item = reinterpret_cast<const char*>(slots[i].item);
        __builtin_prefetch(item);
        __builtin_prefetch(item + sizeof(Item) + 15);  // the key's first bytes behind it
        return true;
      }
    }
    return false;
  }

  // Adds to the current array (a free slot is always there: it is kept under 3/4 full).
  void Put(uint64_t hash, Item* item) {
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.item == nullptr || slot.item == Tombstone()) {
        tombstones_ -= slot.item == Tombstone();
        slot = {hash, item};
        return;
      }
    }
  }

  // Starts a rebuild into a new array at most half full for `items` (none for 0): at once for a
  // small array, else incrementally. A rebuild under way is finished first.
  void Rebuild(size_t items) {
    FinishRebuild();
    ++generation_;
    Slot* old = slots_;
    const size_t old_capacity = capacity();
    if (items == 0) {
      slots_ = nullptr;
      mask_ = 0;
    } else {
      const size_t capacity = std::bit_ceil(std::max(kMinCapacity, items * 2));
      slots_ = NewArray(capacity);
      mask_ = capacity - 1;
    }
    tombstones_ = 0;
    PublishHint();
    if (old == nullptr) return;
    old_slots_ = old;
    old_mask_ = old_capacity - 1;
    migrated_ = 0;
    old_size_ = size_;
    if (old_size_ == 0) {
      EndMigration();
    } else if (old_capacity <= kIncrementalFrom) {
      Migrate(old_capacity);
    }
  }

  // Moves the live items of the next `count` old slots to the current array.
  void Migrate(size_t count) {
    const size_t end = std::min(migrated_ + count, old_mask_ + 1);
    for (; migrated_ < end; ++migrated_) {
      Slot& slot = old_slots_[migrated_];
      if (slot.item == nullptr || slot.item == Tombstone()) continue;
      Put(slot.hash, slot.item);
      slot.item = Tombstone();  // keeps the old array's probe chains whole
      if (--old_size_ == 0) break;
    }
    if (old_size_ == 0 || migrated_ == old_mask_ + 1) EndMigration();
  }

  void EndMigration() {
    FreeArray(old_slots_, old_mask_ + 1);
    old_slots_ = nullptr;
    old_mask_ = 0;
    migrated_ = 0;
    old_size_ = 0;
  }

  void PublishHint() {
    hint_slots_.store(slots_, std::memory_order_relaxed);
    hint_mask_.store(mask_, std::memory_order_relaxed);
  }

  Slot* slots_ = nullptr;  // the current array
  size_t mask_ = 0;
  Slot* old_slots_ = nullptr;  // while a rebuild is under way: the array being emptied
  size_t old_mask_ = 0;
  size_t migrated_ = 0;  // old positions below this are moved
  size_t size_ = 0;      // live items in both arrays
  size_t old_size_ = 0;  // live items still in the old array
  size_t tombstones_ = 0;
  uint64_t generation_ = 0;
  std::atomic<const Slot*> hint_slots_{nullptr};  // slots_ and mask_, for PrefetchSlot
  std::atomic<size_t> hint_mask_{0};
};

}  // namespace quiver::kv
