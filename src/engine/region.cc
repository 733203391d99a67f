#include "engine/region.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

namespace quiver {
namespace {

std::atomic<uint64_t> g_region_bytes{0};

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

constexpr size_t kHugePage = 2 << 20;

// Anonymous memory of `size` bytes starting on a 2 MiB boundary, advised for transparent huge
// pages: random reads of big tables then miss the TLB far less (a page walk costs more than the
// cache miss itself under virtualization).
void* MapAnonymousHuge(size_t size) {
  const size_t padded = size + kHugePage;
  void* raw = mmap(nullptr, padded, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return MAP_FAILED;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = aligned + size;
  if (start + padded > end) munmap(reinterpret_cast<void*>(end), start + padded - end);
  madvise(reinterpret_cast<void*>(aligned), size, MADV_HUGEPAGE);  // advice only: may be off
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

Result<std::unique_ptr<Region>> Region::Create(size_t bytes, RegionBacking backing) {
  const size_t page = PageSize();
  size_t size = bytes == 0 ? page : (bytes + page - 1) / page * page;
  int fd = -1;
  void* base = MAP_FAILED;
  if (backing == RegionBacking::kAnonymous && size >= kHugePage) {
    base = MapAnonymousHuge(size);
  } else if (backing == RegionBacking::kAnonymous) {
    base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1, 0);
  } else {
    fd = memfd_create("quiver-region", MFD_CLOEXEC);
    if (fd < 0) {
      return Status::IOError(std::string("memfd_create: ") + std::strerror(errno));
    }
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      int err = errno;
      close(fd);
      return Status::OutOfMemory("cannot size a shared-memory region of " + std::to_string(size) +
                                 " bytes: " + std::strerror(err));
    }
    base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  if (base == MAP_FAILED) {
    int err = errno;
    if (fd >= 0) close(fd);
    return Status::OutOfMemory("cannot map a region of " + std::to_string(size) +
                               " bytes: " + std::strerror(err));
  }
  g_region_bytes.fetch_add(size, std::memory_order_relaxed);
  return std::unique_ptr<Region>(new Region(static_cast<std::byte*>(base), size, backing, fd));
}

Region::~Region() {
  munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
  g_region_bytes.fetch_sub(size_, std::memory_order_relaxed);
}

uint64_t TotalRegionBytes() { return g_region_bytes.load(std::memory_order_relaxed); }

}  // namespace quiver
