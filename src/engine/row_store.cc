#include "engine/row_store.h"

#include <string>

namespace quiver {
namespace {
// Chunks of about 1 MiB (at least 16 rows): few regions for big tables, little waste for small.
constexpr size_t kTargetChunkBytes = 1 << 20;
}  // namespace

RowStore::RowStore(uint32_t row_width, RegionBacking backing)
    : row_width_(row_width), regions_(backing) {
  int shift = 4;
  while ((size_t{1} << (shift + 1)) * row_width <= kTargetChunkBytes) ++shift;
  shift_ = shift;
  mask_ = (1u << shift) - 1;
}

Status RowStore::Reserve(size_t rows) {
  while (capacity() < rows) {
    if (capacity() + (size_t{1} << shift_) > (size_t{1} << 32)) {
      return Status::LimitExceeded("a table holds at most 2^32 - 2 rows");
    }
    QUIVER_RETURN_NOT_OK(regions_.Append((size_t{1} << shift_) * row_width_).status());
  }
  return Status::OK();
}

}  // namespace quiver
