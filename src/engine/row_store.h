// RowStore: fixed-width rows in chunks (a RegionList), addressed by a 32-bit row id.
//
// Chunk sizes double, then stay fixed (RowChunkGeometry, engine/row_format.h), so a small table
// stays small while a big one lives in a few large chunks that transparent huge pages can back:
// the first chunk holds about 64 KiB of rows, the large ones at least 8 MiB. Rows never move, so
// a row id read from the index stays meaningful for as long as the table lives (the row may be
// reused for another key after a delete: readers confirm the key under the row's seqlock).
//
// Thread safety: Row() from any thread inside the owner's ReaderGate section, for ids below the
// capacity at the time the id was published; Reserve() from the owner's single writer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/result.h"
#include "engine/region_list.h"
#include "engine/row_format.h"

namespace quiver {

class RowStore {
 public:
  RowStore(uint32_t row_width, RegionBacking backing);

  [[gnu::always_inline]] std::byte* Row(uint32_t id) const {
    size_t chunk, position;
    geometry_.Locate(id, &chunk, &position);
    // Row ids come from the index, published after their chunk: no bounds check needed.
    return regions_.PublishedBase(chunk) + position * row_width_;
  }
  // Writer: makes rows [0, rows) addressable.
  Status Reserve(size_t rows);

  // Rows addressable by the chunks published so far.
  size_t capacity() const { return geometry_.CapacityOf(regions_.published_count()); }
  uint32_t row_width() const { return row_width_; }
  const RowChunkGeometry& geometry() const { return geometry_; }
  RegionList& regions() { return regions_; }
  uint64_t bytes() const { return regions_.bytes(); }

 private:
  uint32_t row_width_;
  RowChunkGeometry geometry_;
  RegionList regions_;
};

}  // namespace quiver
