#include "engine/hash_index.h"

#include <bit>
#include <cstring>
#include <string>

namespace quiver {

Result<std::unique_ptr<HashIndex>> HashIndex::Create(RegionBacking backing,
                                                     RegionObserver* observer) {
  std::unique_ptr<HashIndex> index(new HashIndex(backing, observer));
  QUIVER_ASSIGN_OR_RETURN(index->owned_, index->MakeArray(kMinCapacity));
  if (observer != nullptr) {
    QUIVER_RETURN_NOT_OK(observer->Added(RegionKind::kIndex, index->owned_->number,
                                         *index->owned_->region, kMinCapacity));
  }
  index->current_.store(index->owned_.get(), std::memory_order_release);
  return index;
}

Result<std::unique_ptr<HashIndex::Array>> HashIndex::MakeArray(size_t capacity) {
  auto array = std::make_unique<Array>();
  QUIVER_ASSIGN_OR_RETURN(array->region, Region::Create(capacity * sizeof(uint64_t), backing_));
  std::memset(array->region->data(), 0xFF, capacity * sizeof(uint64_t));  // all kEmpty
  array->slots = reinterpret_cast<std::atomic<uint64_t>*>(array->region->data());
  array->mask = capacity - 1;
  array->shift = 32 - std::countr_zero(capacity);
  array->number = arrays_made_++;
  return array;
}

void HashIndex::Place(Array& array, uint64_t slot_value) {
  for (size_t i = Home(array, slot_value);; i = (i + 1) & array.mask) {
    uint64_t slot = array.slots[i].load(std::memory_order_relaxed);
    if (slot == kEmpty || slot == kTombstone) {
      array.slots[i].store(slot_value, std::memory_order_release);
      return;
    }
  }
}

Status HashIndex::Reserve(size_t additional) {
  size_t capacity = this->capacity();
  if (!OverLoad(used_ + additional, capacity)) return Status::OK();
  if (live_ + additional > kMaxRows) {
    return Status::LimitExceeded("a table holds at most " + std::to_string(kMaxRows) + " rows");
  }
  size_t wanted = kMinCapacity;
  while (OverLoad(live_ + additional, wanted)) wanted *= 2;
  // Rebuilding at the same size only drops tombstones; if they are few, grow instead so that
  // rebuilds stay amortized.
  if (wanted == capacity && (live_ + additional) * 8 > capacity * 3) wanted *= 2;
  if (wanted > (size_t{1} << 32)) {
    return Status::LimitExceeded("the index of a table holds at most 2^32 slots");
  }
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<Array> larger, MakeArray(wanted));
  const Array& old = *owned_;
  // Home() reads the tag from the upper 32 bits of its argument, which a slot also holds. The
  // destination slots are random: prefetch them a few entries ahead.
  constexpr size_t kAhead = 16;
  size_t pending[kAhead];
  size_t count = 0;
  for (size_t i = 0; i <= old.mask; ++i) {
    const uint64_t slot = old.slots[i].load(std::memory_order_relaxed);
    if (slot == kEmpty || slot == kTombstone) continue;
    Prefetch(*larger, slot);
    if (count >= kAhead) {
      Place(*larger, old.slots[pending[count % kAhead]].load(std::memory_order_relaxed));
    }
    pending[count++ % kAhead] = i;
  }
  for (size_t j = count > kAhead ? count - kAhead : 0; j < count; ++j) {
    Place(*larger, old.slots[pending[j % kAhead]].load(std::memory_order_relaxed));
  }
  // Told once filled, so that a reader mapping it from the observer's list finds every entry.
  if (observer_ != nullptr) {
    QUIVER_RETURN_NOT_OK(
        observer_->Added(RegionKind::kIndex, larger->number, *larger->region, wanted));
  }
  current_.store(larger.get(), std::memory_order_release);
  retired_.push_back(std::move(owned_));
  owned_ = std::move(larger);
  used_ = live_;
  return Status::OK();
}

void HashIndex::FreeRetired() {
  for (const std::unique_ptr<Array>& array : retired_) {
    if (observer_ != nullptr) observer_->Removed(RegionKind::kIndex, array->number);
  }
  retired_.clear();
}

void HashIndex::Insert(uint64_t hash, uint32_t row) {
  size_t position = 0;
  FindForInsert(
      hash, [](uint32_t) { return false; }, &position);
  InsertAt(position, hash, row);
}

void HashIndex::InsertAt(size_t position, uint64_t hash, uint32_t row) {
  std::atomic<uint64_t>& slot = owned_->slots[position];
  if (slot.load(std::memory_order_relaxed) == kEmpty) ++used_;
  slot.store(IndexSlotValue(hash, row), std::memory_order_release);
  ++live_;
}

bool HashIndex::Replace(uint64_t hash, uint32_t row, uint32_t replacement) {
  const uint64_t value = IndexSlotValue(hash, row);
  Array& array = *owned_;
  for (size_t i = Home(array, hash);; i = (i + 1) & array.mask) {
    const uint64_t slot = array.slots[i].load(std::memory_order_relaxed);
    if (slot == kEmpty) return false;
    if (slot == value) {
      array.slots[i].store(IndexSlotValue(hash, replacement), std::memory_order_release);
      return true;
    }
  }
}

bool HashIndex::Erase(uint64_t hash, uint32_t row) {
  uint64_t value = IndexSlotValue(hash, row);
  Array& array = *owned_;
  for (size_t i = Home(array, hash);; i = (i + 1) & array.mask) {
    uint64_t slot = array.slots[i].load(std::memory_order_relaxed);
    if (slot == kEmpty) return false;
    if (slot == value) {
      array.slots[i].store(kTombstone, std::memory_order_release);
      --live_;
      return true;
    }
  }
}

}  // namespace quiver
