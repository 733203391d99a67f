#include "engine/region_list.h"

#include <algorithm>
#include <cstring>

namespace quiver {

RegionList::RegionList(RegionBacking backing) : backing_(backing) {
  owned_directory_ = std::make_unique<Directory>(8);
  directory_bytes_ = 8 * sizeof(std::atomic<std::byte*>);
  directory_.store(owned_directory_.get(), std::memory_order_release);
}

RegionList::~RegionList() = default;

Result<std::byte*> RegionList::Append(size_t bytes, std::span<const std::byte> prefix) {
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<Region> region,
                          Region::Create(std::max(bytes, prefix.size()), backing_));
  if (!prefix.empty()) std::memcpy(region->data(), prefix.data(), prefix.size());
  size_t index = regions_.size();
  if (observer_ != nullptr) {
    QUIVER_RETURN_NOT_OK(observer_->Added(kind_, static_cast<uint32_t>(index), *region, 0));
  }
  if (index == owned_directory_->capacity) {
    auto larger = std::make_unique<Directory>(owned_directory_->capacity * 2);
    for (size_t i = 0; i < index; ++i) {
      larger->bases[i].store(owned_directory_->bases[i].load(std::memory_order_relaxed),
                             std::memory_order_relaxed);
    }
    directory_.store(larger.get(), std::memory_order_release);
    retired_.push_back(std::move(owned_directory_));
    owned_directory_ = std::move(larger);
    directory_bytes_ = owned_directory_->capacity * sizeof(std::atomic<std::byte*>);
  }
  std::byte* base = region->data();
  owned_directory_->bases[index].store(base, std::memory_order_release);
  region_bytes_ += region->size();
  regions_.push_back(std::move(region));
  count_.store(index + 1, std::memory_order_release);
  return base;
}

void RegionList::Release(size_t index) {
  if (regions_[index] == nullptr) return;
  if (observer_ != nullptr) observer_->Removed(kind_, static_cast<uint32_t>(index));
  owned_directory_->bases[index].store(nullptr, std::memory_order_release);
  region_bytes_ -= regions_[index]->size();
  regions_[index].reset();
}

}  // namespace quiver
