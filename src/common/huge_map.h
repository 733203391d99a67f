// Mappings that transparent huge pages can back: random reads of big tables then miss the TLB far
// less (a page walk costs more than the cache miss itself under virtualization). Used for the
// engine's regions (anonymous or memfd) and for the shared-memory readers' mappings of them.
//
// Thread safety: a function.
#pragma once

#include <cstddef>

namespace quiver {

inline constexpr size_t kHugePageBytes = 2 << 20;

// mmap(prot, flags, fd) of `size` bytes at a 2 MiB boundary, advised MADV_HUGEPAGE (shmem gets
// huge pages only where /sys/kernel/mm/transparent_hugepage/shmem_enabled allows). MAP_FAILED
// (errno set) on failure, as mmap.
void* MapHugeAligned(size_t size, int prot, int flags, int fd);

}  // namespace quiver
