#include "engine/region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/huge_map.h"

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
  if (backing == RegionBacking::kFile) {
    return Status::InvalidArgument("a file-backed region needs a path: use Region::MapFile");
  }
  if (backing == RegionBacking::kAnonymous && size >= kHugePageBytes) {
    base = MapHugeAligned(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                          -1);
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
      return Status::OutOfMemory(
          "cannot size a shared-memory region of " + std::to_string(size) +
          " bytes: " + std::strerror(err) +
          (err == EFBIG ? " (a memfd is a file: the process's file size limit, ulimit -f, "
                          "bounds it)"
                        : ""));
    }
    base = size >= kHugePageBytes ? MapHugeAligned(size, PROT_READ | PROT_WRITE, MAP_SHARED, fd)
                                  : mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
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

Result<std::unique_ptr<Region>> Region::MapFile(const std::string& path, size_t bytes) {
  const size_t page = PageSize();
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("open " + path + ": " + std::strerror(errno));
  struct stat info;
  if (fstat(fd, &info) != 0) {
    const int err = errno;
    close(fd);
    return Status::IOError("stat " + path + ": " + std::strerror(err));
  }
  size_t size = std::max(bytes, static_cast<size_t>(info.st_size));
  size = size == 0 ? page : (size + page - 1) / page * page;
  if (static_cast<size_t>(info.st_size) < size && ftruncate(fd, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    close(fd);
    return Status::IOError("extend " + path + " to " + std::to_string(size) +
                           " bytes: " + std::strerror(err));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return Status::IOError("map " + path + ": " + std::strerror(err));
  }
  g_region_bytes.fetch_add(size, std::memory_order_relaxed);
  return std::unique_ptr<Region>(
      new Region(static_cast<std::byte*>(base), size, RegionBacking::kFile, fd));
}

Region::~Region() {
  munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
  g_region_bytes.fetch_sub(size_, std::memory_order_relaxed);
}

uint64_t TotalRegionBytes() { return g_region_bytes.load(std::memory_order_relaxed); }

}  // namespace quiver
