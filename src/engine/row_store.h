// RowStore: fixed-width rows in chunks (a RegionList), addressed by a 32-bit row id.
//
// Chunk sizes double, then stay fixed, so a small table stays small and a big one lives in a few
// large chunks that transparent huge pages can back:
//   chunk 0 holds ids [0, F); chunk k >= 1 of the doubling zone holds [F * 2^(k-1), F * 2^k);
//   past L (the large chunk size, a power of two), chunk D + j holds [L * (j + 1), L * (j + 2)),
//   D being the number of doubling chunks. F (~64 KiB of rows) and L (>= 8 MiB of rows) are
//   powers of two.
// Rows never move, so a row id read
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

  [[gnu::always_inline]] std::byte* Row(uint32_t id) const {
    size_t chunk, offset;
    if (id >= large_rows_) {
      chunk = doubling_chunks_ + (id >> large_shift_) - 1;
      offset = id & (large_rows_ - 1);
    } else if (id < first_rows_) {
      chunk = 0;
      offset = id;
    } else {
      const int bit = 31 - __builtin_clz(id);
      chunk = static_cast<size_t>(bit) - static_cast<size_t>(first_shift_) + 1;
      offset = id - (1u << bit);
    }
    // Row ids come from the index, published after their chunk: no bounds check needed.
    return regions_.PublishedBase(chunk) + offset * row_width_;
  }
  // Writer: makes rows [0, rows) addressable.
  Status Reserve(size_t rows);

  // Rows addressable by the chunks published so far.
  size_t capacity() const { return CapacityOf(regions_.published_count()); }
  uint32_t row_width() const { return row_width_; }
  RegionList& regions() { return regions_; }
  uint64_t bytes() const { return regions_.bytes(); }

 private:
  size_t CapacityOf(size_t chunks) const;
  size_t ChunkRows(size_t chunk) const;

  uint32_t row_width_;
  int first_shift_;         // log2(F)
  uint32_t first_rows_;     // F
  int large_shift_;         // log2(L)
  uint32_t large_rows_;     // L
  size_t doubling_chunks_;  // D = log2(L / F) + 1
  RegionList regions_;
};

}  // namespace quiver
