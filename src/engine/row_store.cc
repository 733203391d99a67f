#include "engine/row_store.h"

#include <algorithm>
#include <string>

namespace quiver {
namespace {
constexpr size_t kFirstChunkBytes = 64 << 10;
constexpr size_t kLargeChunkBytes = 8 << 20;

// Smallest power-of-two row count whose rows take at least `bytes` (at least 16 rows).
int ShiftFor(size_t bytes, uint32_t row_width) {
  int shift = 4;
  while ((size_t{1} << shift) * row_width < bytes) ++shift;
  return shift;
}
}  // namespace

RowStore::RowStore(uint32_t row_width, RegionBacking backing)
    : row_width_(row_width), regions_(backing) {
  geometry_.first_shift = ShiftFor(kFirstChunkBytes, row_width);
  geometry_.large_shift = std::max(ShiftFor(kLargeChunkBytes, row_width), geometry_.first_shift);
}

Status RowStore::Reserve(size_t rows) {
  while (capacity() < rows) {
    const size_t chunk = regions_.published_count();
    // Row ids are 31 bits: the index marks a cold row's with the top bit (engine/tier_format.h).
    if (geometry_.CapacityOf(chunk + 1) > (size_t{1} << 31)) {
      return Status::LimitExceeded("a table holds at most 2^31 - 1 rows in memory");
    }
    QUIVER_RETURN_NOT_OK(regions_.Append(geometry_.ChunkRows(chunk) * row_width_).status());
  }
  return Status::OK();
}

}  // namespace quiver
