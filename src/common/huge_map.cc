#include "common/huge_map.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace quiver {

void* MapHugeAligned(size_t size, int prot, int flags, int fd) {
  // Reserve room for any alignment, put the mapping at the first 2 MiB boundary, give back the
  // rest.
  const size_t padded = size + kHugePageBytes;
  void* raw = mmap(nullptr, padded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return MAP_FAILED;
  auto* start = static_cast<std::byte*>(raw);
  const size_t misalignment = reinterpret_cast<uintptr_t>(start) % kHugePageBytes;
  std::byte* aligned = misalignment == 0 ? start : start + (kHugePageBytes - misalignment);
  if (mmap(aligned, size, prot, flags | MAP_FIXED, fd, 0) == MAP_FAILED) {
    const int error = errno;
    munmap(raw, padded);
    errno = error;
    return MAP_FAILED;
  }
  if (aligned > start) munmap(start, static_cast<size_t>(aligned - start));
  std::byte* end = aligned + size;
  if (start + padded > end) munmap(end, static_cast<size_t>(start + padded - end));
  madvise(aligned, size, MADV_HUGEPAGE);  // advice only: may be off
  return aligned;
}

}  // namespace quiver
