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
  first_shift_ = ShiftFor(kFirstChunkBytes, row_width);
  large_shift_ = std::max(ShiftFor(kLargeChunkBytes, row_width), first_shift_);
  first_rows_ = 1u << first_shift_;
  large_rows_ = 1u << large_shift_;
  doubling_chunks_ = static_cast<size_t>(large_shift_ - first_shift_) + 1;
}

size_t RowStore::ChunkRows(size_t chunk) const {
  if (chunk == 0) return first_rows_;
  if (chunk < doubling_chunks_) return size_t{first_rows_} << (chunk - 1);
  return large_rows_;
}

size_t RowStore::CapacityOf(size_t chunks) const {
  if (chunks == 0) return 0;
  if (chunks <= doubling_chunks_) return size_t{first_rows_} << (chunks - 1);
  return size_t{large_rows_} * (chunks - doubling_chunks_ + 1);
}

Status RowStore::Reserve(size_t rows) {
  while (capacity() < rows) {
    const size_t chunk = regions_.published_count();
    if (CapacityOf(chunk + 1) > (size_t{1} << 32)) {
      return Status::LimitExceeded("a table holds at most 2^32 - 2 rows");
    }
    QUIVER_RETURN_NOT_OK(regions_.Append(ChunkRows(chunk) * row_width_).status());
  }
  return Status::OK();
}

}  // namespace quiver
