#include "engine/tier.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "common/crc32c.h"

namespace quiver {
namespace {

constexpr uint64_t kBlock = TierFile::kBlockBytes;
uint64_t BlockFloor(uint64_t x) { return x / kBlock * kBlock; }
uint64_t BlockCeil(uint64_t x) { return (x + kBlock - 1) / kBlock * kBlock; }

// Each reading thread's io_uring, made on its first tier read (state -1: not available here).
constexpr unsigned kRingEntries = 256;
struct ThreadRing {
  io_uring ring{};
  int state = 0;  // 0: not tried, 1: ready, -1: failed
  ~ThreadRing() {
    if (state == 1) io_uring_queue_exit(&ring);
  }
  bool Ready() {
    if (state == 0) state = io_uring_queue_init(kRingEntries, &ring, 0) == 0 ? 1 : -1;
    return state == 1;
  }
};
thread_local ThreadRing thread_ring;

}  // namespace

Result<std::unique_ptr<TierDirectory>> TierDirectory::Open(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return Status::IOError("tier directory '" + path + "': cannot create it: " + error.message());
  }
  const std::string lock = path + "/LOCK";
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::IOError("tier directory '" + path + "': cannot open " + lock + ": " +
                           std::strerror(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int cause = errno;
    ::close(fd);
    return Status::IOError("tier directory '" + path + "' is in use by another process (" +
                           std::strerror(cause) + "); give each its own");
  }
  size_t removed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path, error)) {
    if (entry.path().extension() == ".tier" && std::filesystem::remove(entry.path(), error)) {
      ++removed;
    }
  }
  if (error) {
    ::close(fd);
    return Status::IOError("tier directory '" + path + "': cannot clear it: " + error.message());
  }
  return std::unique_ptr<TierDirectory>(new TierDirectory(path, fd, removed));
}

TierDirectory::~TierDirectory() { ::close(fd_); }

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

bool AlignedBuffer::Reserve(size_t bytes) { return Grow(bytes, 0); }

bool AlignedBuffer::Grow(size_t bytes, size_t keep) {
  if (bytes <= capacity_) return true;
  const size_t capacity = std::max(BlockCeil(bytes), capacity_ * 2);
  void* fresh = std::aligned_alloc(kBlock, capacity);
  if (fresh == nullptr) return false;
  if (keep > 0) std::memcpy(fresh, data_, keep);
  std::free(data_);
  data_ = static_cast<std::byte*>(fresh);
  capacity_ = capacity;
  return true;
}

TierFile::TierFile(std::string path, std::string table, int fd, bool direct, TierIo io)
    : path_(std::move(path)), table_(std::move(table)), fd_(fd), direct_(direct), io_(io) {}

TierFile::~TierFile() {
  ::close(fd_);
  ::unlink(path_.c_str());
}

Result<std::unique_ptr<TierFile>> TierFile::Create(const TierOptions& options,
                                                   const std::string& file_name,
                                                   std::string table) {
  const std::string path = options.directory + "/" + file_name;
  ::unlink(path.c_str());
  const int flags = O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC;
  bool direct = options.direct;
  int fd = direct ? ::open(path.c_str(), flags | O_DIRECT, 0600) : -1;
  if (fd < 0 && direct && errno == EINVAL) direct = false;  // no direct I/O here (tmpfs)
  if (fd < 0 && !direct) fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) {
    return Status::IOError("table '" + table + "': cannot create its tier file " + path + ": " +
                           std::strerror(errno));
  }
  return std::unique_ptr<TierFile>(new TierFile(path, std::move(table), fd, direct, options.io));
}

Status TierFile::Failure(const std::string& what, int error) const {
  return Status::IOError("table '" + table_ + "': tier file " + path_ + ": " + what + ": " +
                         std::strerror(error));
}

Status TierFile::OpenSegment() {
  std::lock_guard lock(mutex_);
  size_t number = 0;
  while (number < segments_.size() && segments_[number].sequence != 0) ++number;
  if (number == segments_.size()) {
    if (number >= kTierMaxSegments) {
      return Status::LimitExceeded("table '" + table_ + "': its tier file " + path_ + " is full (" +
                                   std::to_string(kTierMaxSegments) + " segments of " +
                                   std::to_string(kTierSegmentBytes >> 20) + " MiB)");
    }
    segments_.emplace_back();
  }
  segments_[number] = Segment{};
  segments_[number].sequence = next_sequence_++;
  current_ = static_cast<uint32_t>(number);
  pending_offset_ = number * kTierSegmentBytes;
  pending_bytes_ = 0;
  pending_records_ = 0;
  return Status::OK();
}

Result<std::byte*> TierFile::Add(uint32_t bytes, uint32_t* location) {
  const uint64_t size = uint64_t{TierUnits(bytes)} * kTierUnitBytes;
  if (size > kTierSegmentBytes) {
    return Status::LimitExceeded("table '" + table_ + "': a row of " + std::to_string(bytes) +
                                 " bytes is larger than a tier segment");
  }
  if (current_ == UINT32_MAX || segments_[current_].fill + size > kTierSegmentBytes) {
    if (pending_records_ > 0) QUIVER_RETURN_NOT_OK(WritePending());
    QUIVER_RETURN_NOT_OK(OpenSegment());
  }
  const uint64_t at = current_ * kTierSegmentBytes + segments_[current_].fill;
  const size_t used = at - pending_offset_;
  if (!pending_.Grow(BlockCeil(used + size), pending_bytes_)) {
    return Status::OutOfMemory("table '" + table_ + "': no memory for a tier write");
  }
  std::byte* record = pending_.data() + used;
  std::memset(record + bytes, 0, size - bytes);
  {
    std::lock_guard lock(mutex_);
    Segment& segment = segments_[current_];
    segment.fill += size;
    ++segment.live_records;
    segment.live_bytes += bytes;
    live_bytes_ += bytes;
    ++live_records_;
    disk_bytes_ += size;
  }
  pending_bytes_ = used + size;
  ++pending_records_;
  *location = static_cast<uint32_t>(at / kTierUnitBytes);
  return record;
}

Status TierFile::WritePending() {
  const size_t length = BlockCeil(pending_bytes_);
  std::memset(pending_.data() + pending_bytes_, 0, length - pending_bytes_);
  for (size_t done = 0; done < length;) {
    const ssize_t n = ::pwrite(fd_, pending_.data() + done, length - done,
                               static_cast<off_t>(pending_offset_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Failure("write", n < 0 ? errno : ENOSPC);
    done += static_cast<size_t>(n);
  }
  {
    std::lock_guard lock(mutex_);
    written_bytes_ += length;
    Segment& segment = segments_[current_];
    segment.written = pending_offset_ + pending_bytes_ - uint64_t{current_} * kTierSegmentBytes;
  }
  // The last, partial block is kept for the next append to complete.
  const size_t tail = BlockFloor(pending_bytes_);
  if (tail < pending_bytes_)
    std::memmove(pending_.data(), pending_.data() + tail, pending_bytes_ - tail);
  pending_offset_ += tail;
  pending_bytes_ -= tail;
  pending_records_ = 0;
  return Status::OK();
}

Status TierFile::Commit() {
  if (pending_records_ == 0) return Status::OK();
  return WritePending();
}

void TierFile::Publish() {
  std::lock_guard lock(mutex_);
  for (Segment& segment : segments_) segment.published = segment.written;
}

void TierFile::Release(uint32_t location, uint32_t bytes) {
  std::lock_guard lock(mutex_);
  const uint32_t number = TierSegmentOf(location);
  if (number >= segments_.size()) return;
  Segment& segment = segments_[number];
  segment.live_records -= std::min<uint64_t>(segment.live_records, 1);
  segment.live_bytes -= std::min<uint64_t>(segment.live_bytes, bytes);
  live_records_ -= std::min<uint64_t>(live_records_, 1);
  live_bytes_ -= std::min<uint64_t>(live_bytes_, bytes);
}

Status TierFile::ReadAll(std::vector<IoRequest>& requests) const {
  read_ios_.fetch_add(requests.size(), std::memory_order_relaxed);
  size_t done = 0;
  if (io_.load(std::memory_order_relaxed) != TierIo::kPread && thread_ring.Ready()) {
    uring_used_.store(true, std::memory_order_relaxed);
    io_uring& ring = thread_ring.ring;
    while (done < requests.size()) {
      const size_t count = std::min<size_t>(kRingEntries, requests.size() - done);
      for (size_t k = 0; k < count; ++k) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        const IoRequest& request = requests[done + k];
        io_uring_prep_read(sqe, fd_, request.destination, static_cast<unsigned>(request.bytes),
                           request.offset);
        io_uring_sqe_set_data64(sqe, done + k);
      }
      int submitted = io_uring_submit_and_wait(&ring, static_cast<unsigned>(count));
      if (submitted < 0) return Failure("io_uring submit", -submitted);
      Status failed;
      for (size_t reaped = 0; reaped < count; ++reaped) {
        io_uring_cqe* cqe = nullptr;
        const int waited = io_uring_wait_cqe(&ring, &cqe);
        if (waited < 0) return Failure("io_uring wait", -waited);
        IoRequest& request = requests[io_uring_cqe_get_data64(cqe)];
        const int result = cqe->res;
        io_uring_cqe_seen(&ring, cqe);
        if (result < 0) {
          if (failed.ok()) failed = Failure("read", -result);
        } else if (static_cast<size_t>(result) < request.bytes) {
          // A short read: the rest with pread, below.
          request.offset += static_cast<uint64_t>(result);
          request.destination += result;
          request.bytes -= static_cast<size_t>(result);
          continue;
        } else {
          request.bytes = 0;
        }
      }
      QUIVER_RETURN_NOT_OK(failed);
      done += count;
    }
  } else {
    uring_used_.store(false, std::memory_order_relaxed);
  }
  for (IoRequest& request : requests) {
    while (request.bytes > 0) {
      const ssize_t n =
          ::pread(fd_, request.destination, request.bytes, static_cast<off_t>(request.offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Failure("read", errno);
      if (n == 0) {  // past the end of the file: a window beyond the last record (checked later)
        std::memset(request.destination, 0, request.bytes);
        break;
      }
      request.offset += static_cast<uint64_t>(n);
      request.destination += n;
      request.bytes -= static_cast<size_t>(n);
    }
  }
  return Status::OK();
}

Status TierFile::Check(const std::byte* record, size_t available, uint32_t location,
                       uint32_t row_bytes) const {
  uint32_t crc, length, bytes, magic;
  std::memcpy(&crc, record, 4);
  std::memcpy(&length, record + 4, 4);
  std::memcpy(&bytes, record + 16, 4);
  std::memcpy(&magic, record + 20, 4);
  const auto corrupt = [&](const std::string& what) {
    return Status::Corruption("table '" + table_ + "': tier file " + path_ + ": the record at " +
                              std::to_string(TierOffset(location)) + " " + what);
  };
  if (magic != kTierRecordMagic || bytes != row_bytes ||
      length < kTierRecordHeaderBytes + row_bytes) {
    return corrupt("is not a record of this table");
  }
  if (length > available) return corrupt("runs past what was read");
  if (Crc32c(record + 4, length - 4) != crc) return corrupt("fails its checksum");
  return Status::OK();
}

Status TierFile::Read(const uint32_t* locations, size_t n, uint32_t expect, uint32_t row_bytes,
                      AlignedBuffer* buffer, std::vector<size_t>* offsets) const {
  offsets->resize(n);
  std::vector<IoRequest> requests(n);
  std::vector<size_t> windows(n);  // bytes read for record k from its start
  size_t total = 0;
  for (size_t k = 0; k < n; ++k) {
    const uint64_t start = TierOffset(locations[k]);
    const uint64_t begin = BlockFloor(start);
    const uint64_t end = BlockCeil(start + std::max<uint32_t>(expect, kTierRecordHeaderBytes));
    requests[k] = IoRequest{begin, end - begin, nullptr};
    (*offsets)[k] = total + (start - begin);
    windows[k] = end - start;
    total += end - begin;
  }
  if (!buffer->Reserve(total)) {
    return Status::OutOfMemory("table '" + table_ + "': no memory for a tier read");
  }
  for (size_t k = 0; k < n; ++k) {
    requests[k].destination =
        buffer->data() + ((*offsets)[k] - (TierOffset(locations[k]) - requests[k].offset));
  }
  read_bytes_.fetch_add(total, std::memory_order_relaxed);
  QUIVER_RETURN_NOT_OK(ReadAll(requests));
  // Records longer than expected: read again whole, after the rest.
  std::vector<size_t> longer;
  for (size_t k = 0; k < n; ++k) {
    uint32_t length;
    std::memcpy(&length, buffer->data() + (*offsets)[k] + 4, 4);
    if (length > windows[k] && length <= kTierSegmentBytes) longer.push_back(k);
  }
  if (!longer.empty()) {
    std::vector<IoRequest> again;
    size_t used = total;
    std::vector<size_t> moved(longer.size());
    for (size_t j = 0; j < longer.size(); ++j) {
      const size_t k = longer[j];
      uint32_t length;
      std::memcpy(&length, buffer->data() + (*offsets)[k] + 4, 4);
      const uint64_t start = TierOffset(locations[k]);
      const uint64_t begin = BlockFloor(start);
      const uint64_t end = BlockCeil(start + length);
      again.push_back(IoRequest{begin, end - begin, nullptr});
      moved[j] = used + (start - begin);
      windows[k] = end - start;
      used += end - begin;
    }
    if (!buffer->Grow(used, total)) {
      return Status::OutOfMemory("table '" + table_ + "': no memory for a tier read");
    }
    for (size_t j = 0; j < longer.size(); ++j) {
      again[j].destination =
          buffer->data() + moved[j] - (TierOffset(locations[longer[j]]) - again[j].offset);
      (*offsets)[longer[j]] = moved[j];
    }
    read_bytes_.fetch_add(used - total, std::memory_order_relaxed);
    QUIVER_RETURN_NOT_OK(ReadAll(again));
  }
  for (size_t k = 0; k < n; ++k) {
    QUIVER_RETURN_NOT_OK(
        Check(buffer->data() + (*offsets)[k], windows[k], locations[k], row_bytes));
  }
  reads_.fetch_add(n, std::memory_order_relaxed);
  return Status::OK();
}

std::vector<TierFile::SegmentInfo> TierFile::Segments() const {
  std::vector<SegmentInfo> out;
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < segments_.size(); ++i) {
      if (segments_[i].sequence != 0) {
        out.push_back(
            SegmentInfo{static_cast<uint32_t>(i), segments_[i].sequence, segments_[i].published});
      }
    }
  }
  std::sort(out.begin(), out.end(),
            [](const SegmentInfo& a, const SegmentInfo& b) { return a.sequence < b.sequence; });
  return out;
}

uint64_t TierFile::SequenceOf(uint32_t number) const {
  std::lock_guard lock(mutex_);
  return number < segments_.size() ? segments_[number].sequence : 0;
}

Status TierFile::ReadRange(uint64_t offset, size_t bytes, AlignedBuffer* buffer) const {
  if (!buffer->Reserve(bytes)) {
    return Status::OutOfMemory("table '" + table_ + "': no memory for a tier scan");
  }
  std::vector<IoRequest> request{IoRequest{offset, bytes, buffer->data()}};
  read_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  return ReadAll(request);
}

TierFileStats TierFile::Stats() const {
  TierFileStats stats;
  {
    std::lock_guard lock(mutex_);
    for (const Segment& segment : segments_) stats.segments += segment.sequence != 0 ? 1 : 0;
    stats.file_bytes = stats.segments * kTierSegmentBytes;
    stats.disk_bytes = disk_bytes_;
    stats.live_bytes = live_bytes_;
    stats.live_records = live_records_;
    stats.written_bytes = written_bytes_;
    stats.freed_segments = freed_segments_;
  }
  stats.reads = reads_.load(std::memory_order_relaxed);
  stats.read_ios = read_ios_.load(std::memory_order_relaxed);
  stats.read_bytes = read_bytes_.load(std::memory_order_relaxed);
  stats.direct = direct_;
  stats.uring = uring_used_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace quiver
