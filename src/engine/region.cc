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

}  // namespace

Result<std::unique_ptr<Region>> Region::Create(size_t bytes, RegionBacking backing) {
  const size_t page = PageSize();
  size_t size = bytes == 0 ? page : (bytes + page - 1) / page * page;
  int fd = -1;
  void* base = MAP_FAILED;
  if (backing == RegionBacking::kAnonymous) {
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
