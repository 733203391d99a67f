// RowStore: fixed-width rows in fixed-size chunks (a RegionList), addressed by a 32-bit row id:
// chunk = id >> shift, byte offset = (id & mask) * row_width. Rows never move, so a row id read
// from the index stays meaningful for as long as the table lives (the row may be reused for
// another key after a delete: readers confirm the key under the row's seqlock).
//
// Thread safety: Row() from any thread inside the owner's ReaderGate section, for ids below the
// capacity at the time the id was published; Reserve() from the owner's single writer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/result.h"
#include "engine/region_list.h"

namespace quiver {

class RowStore {
 public:
  RowStore(uint32_t row_width, RegionBacking backing);

  std::byte* Row(uint32_t id) const {
    return regions_.Base(id >> shift_) + static_cast<size_t>(id & mask_) * row_width_;
  }
  // Writer: makes rows [0, rows) addressable.
  Status Reserve(size_t rows);

  size_t capacity() const { return regions_.published_count() << shift_; }
  uint32_t row_width() const { return row_width_; }
  RegionList& regions() { return regions_; }
  uint64_t bytes() const { return regions_.bytes(); }

 private:
  uint32_t row_width_;
  int shift_;      // log2(rows per chunk)
  uint32_t mask_;  // rows per chunk - 1
  RegionList regions_;
};

}  // namespace quiver
