#include <algorithm>
#include <vector>

#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {

// The end of every write: heap compaction, freeing what readers no longer see, statistics.

Status Table::MoveHeapValues(const std::vector<bool>& victims) {
  // Whether a value's bytes are in a chunk being emptied (chunks opened by the move are not).
  const auto in_victim = [&victims](const VarRef& ref) {
    if (ref.length <= kVarInlineBytes) return false;
    const size_t chunk = Heap::ChunkOf(HeapRefOf(ref));
    return chunk < victims.size() && victims[chunk];
  };
  for (uint32_t id = 0; id < next_row_; ++id) {
    std::byte* row = rows_.Row(id);
    if (!RowLiveForWriter(row)) continue;
    size_t bytes = 0, largest = 0;
    for (const ColumnLayout& layout : layout_.var_slots()) {
      const VarRef ref = LoadVarRef(row + layout.offset, layout.width);
      if (!in_victim(ref)) continue;
      bytes += ref.length;
      largest = std::max<size_t>(largest, ref.length);
    }
    if (bytes == 0) continue;
    QUIVER_RETURN_NOT_OK(heap_.Reserve(bytes, largest));
    const uint32_t sequence = SeqlockWriteBegin(row);
    for (const ColumnLayout& layout : layout_.var_slots()) {
      VarRef ref = LoadVarRef(row + layout.offset, layout.width);
      if (!in_victim(ref)) continue;
      const HeapRef heap_ref = HeapRefOf(ref);
      const HeapRef moved = heap_.Append(heap_.View(heap_ref, ref.length), ref.length);
      std::memcpy(ref.payload, &moved, sizeof(moved));
      StoreVarRef(row + layout.offset, layout.width, ref);
      heap_.Release(heap_ref, ref.length);  // the old copy: freed with its chunk
      heap_moved_bytes_ += ref.length;
    }
    SeqlockWriteEnd(row, sequence, /*live=*/true);
  }
  return Status::OK();
}

void Table::FinishWrite() {
  // Chunks holding only garbage are freed at once (free of copying). Past that, the heap's
  // garbage stays under its live bytes (the heap within about twice them: when garbage is spread
  // evenly, a byte copied per byte given back), or a quarter of them under a memory limit (whose
  // accounting leaves garbage out: four bytes copied per byte then); and at least the configured
  // minimum and 2 bytes a row, as a compaction visits every row.
  const MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  const uint64_t garbage_divisor = limit != nullptr && limit->MaxMemory() != 0 ? 4 : 1;
  const uint64_t garbage_threshold =
      std::max({uint64_t{limits_.heap_compaction_min_garbage}, uint64_t{next_row_} * 2,
                heap_.live_bytes() / garbage_divisor});
  std::vector<bool> victims;
  if (heap_.CompactionDue(garbage_threshold)) {
    victims = heap_.ChooseVictims(garbage_threshold);
    // On failure (no memory for a moved value) every row is still valid, a moved value's old
    // copy is garbage of its chunk, and a later write tries again.
    if (heap_.LiveBytesIn(victims) > 0 && !MoveHeapValues(victims).ok()) victims.clear();
  }
  const bool compacted = std::find(victims.begin(), victims.end(), true) != victims.end();
  if (compacted || index_->has_retired() || rows_.regions().has_retired() ||
      heap_.regions().has_retired()) {
    gate_.Synchronize();  // from here no reader holds a pointer or reference to what goes below
    index_->FreeRetired();
    rows_.regions().FreeRetired();
    heap_.regions().FreeRetired();
    if (compacted) {
      heap_.FreeChunks(victims);
      ++heap_compactions_;
    }
  }
  scan_limit_.store(next_row_, std::memory_order_release);
  stat_row_bytes_.store(rows_.bytes(), std::memory_order_relaxed);
  stat_index_bytes_.store(index_->bytes(), std::memory_order_relaxed);
  stat_heap_bytes_.store(heap_.bytes(), std::memory_order_relaxed);
  stat_heap_garbage_.store(heap_.garbage_bytes(), std::memory_order_relaxed);
  stat_heap_live_.store(heap_.live_bytes(), std::memory_order_relaxed);
  stat_row_capacity_.store(rows_.capacity(), std::memory_order_relaxed);
  stat_heap_compactions_.store(heap_compactions_, std::memory_order_relaxed);
  stat_heap_moved_.store(heap_moved_bytes_, std::memory_order_relaxed);
  stat_expiring_.store(static_cast<int64_t>(expiring_.size()), std::memory_order_relaxed);
}

}  // namespace quiver
