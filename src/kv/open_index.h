// OpenIndex: an open-addressing hash index over items that carry their own key (`Item::key()`
// returns a std::string_view). The keyspace's shards index their keys with it.
//
// Layout: a power-of-two array of 16-byte slots {64-bit hash, Item*}, linear probing from
// `hash & mask`. A lookup touches one slot line and then only the item whose full hash matches,
// so a hit costs two cache misses (slot, item), where a node-based map walks bucket, previous
// node, node and an out-of-line key. Rebuilding reads only the slots (the hashes are kept there),
// never the items.
//
// Deletion leaves a tombstone: an item never moves until the index is rebuilt (grown past 3/4
// full counting tombstones, shrunk below 1/8, or cleaned), and every rebuild bumps generation().
// So a position cursor (SCAN) is valid while the generation holds, and a walk over positions
// meets every item present throughout exactly once.
//
// The index owns neither its items nor their keys; the caller frees them. Memory comes from
// ::operator new (so the keyspace's allocation counting sees it); SlotBytes() is what it takes.
//
// Prefetching (for a pipeline of operations): PrefetchSlot(hash) asks the CPU to bring the line
// a lookup of `hash` starts at, and PrefetchItem(hash) the first item with that hash.
//
// Thread safety: none, but for PrefetchSlot, which may run on any thread at any time (it reads an
// atomic copy of the array's address and mask, and a prefetch of a stale address is harmless);
// the keyspace's shard mutex guards everything else.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <new>
#include <string_view>
#include <utility>

namespace quiver::kv {

template <typename Item>
class OpenIndex {
 public:
  static constexpr size_t kMinCapacity = 16;

  OpenIndex() = default;
  ~OpenIndex() { ::operator delete(slots_); }
  OpenIndex(OpenIndex&& other) noexcept { swap(other); }
  OpenIndex& operator=(OpenIndex&& other) noexcept {
    OpenIndex(std::move(other)).swap(*this);
    return *this;
  }
  void swap(OpenIndex& other) noexcept {
    std::swap(slots_, other.slots_);
    std::swap(mask_, other.mask_);
    std::swap(size_, other.size_);
    std::swap(tombstones_, other.tombstones_);
    std::swap(generation_, other.generation_);
    PublishHint();
    other.PublishHint();
  }

  // The item with this key (and its hash), or null.
  Item* Find(std::string_view key, uint64_t hash) const {
    if (slots_ == nullptr) return nullptr;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.item == nullptr) return nullptr;
      if (slot.hash == hash && slot.item != Tombstone() && slot.item->key() == key) {
        return slot.item;
      }
    }
  }

  // Adds an item whose key is not in the index. May rebuild (positions change).
  void Insert(uint64_t hash, Item* item) {
    if ((size_ + tombstones_ + 1) * 4 > capacity() * 3) Rebuild(size_ + 1);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.item == nullptr || slot.item == Tombstone()) {
        tombstones_ -= slot.item == Tombstone();
        slot = {hash, item};
        ++size_;
        return;
      }
    }
  }

  // Removes `item` (present, with this hash). May rebuild smaller (positions change).
  void Erase(const Item* item, uint64_t hash) {
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.item != item) continue;
      // The end of a probe chain needs no tombstone: the next slot is empty.
      const bool last = slots_[(i + 1) & mask_].item == nullptr;
      slot.item = last ? nullptr : Tombstone();
      tombstones_ += !last;
      --size_;
      break;
    }
    if (capacity() > kMinCapacity && size_ * 8 < capacity()) Rebuild(size_);
  }

  // Puts `now` in the place of `old` (present, with this hash; `now` has the same key). Positions
  // do not change.
  void Replace(const Item* old, Item* now, uint64_t hash) {
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].item == old) {
        slots_[i].item = now;
        return;
      }
    }
  }

  void PrefetchSlot(uint64_t hash) const {
    const Slot* slots = hint_slots_.load(std::memory_order_relaxed);
    if (slots != nullptr)
      __builtin_prefetch(slots + (hash & hint_mask_.load(std::memory_order_relaxed)));
  }
  void PrefetchItem(uint64_t hash) const {
    if (slots_ == nullptr) return;
    for (size_t i = hash & mask_; slots_[i].item != nullptr; i = (i + 1) & mask_) {
      if (slots_[i].hash == hash && slots_[i].item != Tombstone()) {
        const char* item = reinterpret_cast<const char*>(slots_[i].item);
        __builtin_prefetch(item);
        __builtin_prefetch(item + sizeof(Item) + 15);  // the key's first bytes behind it
        return;
      }
    }
  }

  // Positions [0, capacity()): the live item at one, or null (empty or deleted).
  size_t capacity() const { return slots_ == nullptr ? 0 : mask_ + 1; }
  Item* At(size_t position) const {
    Item* item = slots_[position].item;
    return item == Tombstone() ? nullptr : item;
  }
  // The first live item at or after `position` (wrapping), or null when empty.
  Item* NextFrom(size_t position) const {
    if (size_ == 0) return nullptr;
    for (size_t i = position & mask_;; i = (i + 1) & mask_) {
      if (Item* item = At(i)) return item;
    }
  }
  template <typename F>
  void ForEach(F&& f) const {
    for (size_t i = 0; i < capacity(); ++i) {
      if (Item* item = At(i)) f(item);
    }
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint64_t generation() const { return generation_; }
  // The slot array's size in bytes (0 when none).
  size_t SlotBytes() const { return capacity() * sizeof(Slot); }

 private:
  struct Slot {
    uint64_t hash;
    Item* item;  // null: empty; Tombstone(): deleted
  };
  static Item* Tombstone() { return reinterpret_cast<Item*>(uintptr_t{1}); }

  // Moves the live items into a new array at most half full for `items`; empty: none.
  void Rebuild(size_t items) {
    ++generation_;
    Slot* old = slots_;
    const size_t old_capacity = capacity();
    if (items == 0) {
      slots_ = nullptr;
      mask_ = 0;
    } else {
      const size_t capacity = std::bit_ceil(std::max(kMinCapacity, items * 2));
      slots_ = static_cast<Slot*>(::operator new(capacity * sizeof(Slot)));
      std::memset(static_cast<void*>(slots_), 0, capacity * sizeof(Slot));
      mask_ = capacity - 1;
      for (size_t j = 0; j < old_capacity; ++j) {
        if (old[j].item == nullptr || old[j].item == Tombstone()) continue;
        size_t i = old[j].hash & mask_;
        while (slots_[i].item != nullptr) i = (i + 1) & mask_;
        slots_[i] = old[j];
      }
    }
    tombstones_ = 0;
    PublishHint();
    ::operator delete(old);
  }
  void PublishHint() {
    hint_slots_.store(slots_, std::memory_order_relaxed);
    hint_mask_.store(mask_, std::memory_order_relaxed);
  }

  Slot* slots_ = nullptr;
  size_t mask_ = 0;
  size_t size_ = 0;
  size_t tombstones_ = 0;
  uint64_t generation_ = 0;
  std::atomic<const Slot*> hint_slots_{nullptr};  // slots_ and mask_, for PrefetchSlot
  std::atomic<size_t> hint_mask_{0};
};

}  // namespace quiver::kv
