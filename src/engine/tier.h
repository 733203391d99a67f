// TierFile: one table's disk tier, the file its cold rows live in (format: engine/tier_format.h,
// docs/tiering.md). Rows are appended in batches as records; a record is read back by its
// location, many at once; a record no longer referenced (its row promoted, rewritten, deleted)
// is garbage until its segment is compacted and freed.
//
// I/O is direct (O_DIRECT, where the file system allows it): the tier's reads come from the disk,
// never from a page cache that would hold the table in memory after all. Appends are written in
// whole 4 KiB blocks (the last, partial block of the segment taking appends is kept in memory and
// written again with the next batch); reads fetch the aligned blocks around each record, all of a
// batch at once through io_uring (each reading thread has its own ring), or with preads where
// io_uring is not available.
//
// The tier is a cache of rows that the snapshot and the log also hold: the file is created empty
// when the table is made and removed with it; nothing in it is needed after a restart.
//
// Thread safety: Read and Segments from any thread; Add, Commit, Release, FreeSegment from the
// table's writer only (under its write lock). A record stays readable until FreeSegment of its
// segment, which the table calls only after a ReaderGate grace period.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/result.h"
#include "engine/tier_format.h"

namespace quiver {

enum class TierIo : uint8_t { kAuto, kUring, kPread };

struct TierOptions {
  std::string directory;  // where the table's tier file is made (it must exist)
  TierIo io = TierIo::kAuto;
  bool direct = true;  // O_DIRECT where the file system allows it
};

// Memory aligned for direct I/O.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  ~AlignedBuffer();
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  // Makes room for `bytes` (contents are not kept); false when memory cannot be had.
  bool Reserve(size_t bytes);
  // Grows to at least `bytes`, keeping the first `keep` bytes.
  bool Grow(size_t bytes, size_t keep);
  std::byte* data() const { return data_; }
  size_t capacity() const { return capacity_; }

 private:
  std::byte* data_ = nullptr;
  size_t capacity_ = 0;
};

// A directory holding the tier files of one process's tables: created when missing, locked
// (flock on its LOCK file) while open, and emptied of tier files left by an earlier process
// (the tier is a cache: a restart rebuilds it from the snapshots and the log).
class TierDirectory {
 public:
  static Result<std::unique_ptr<TierDirectory>> Open(const std::string& path);
  ~TierDirectory();
  TierDirectory(const TierDirectory&) = delete;
  TierDirectory& operator=(const TierDirectory&) = delete;
  const std::string& path() const { return path_; }
  size_t removed() const { return removed_; }  // tier files found and removed at open

 private:
  TierDirectory(std::string path, int fd, size_t removed)
      : path_(std::move(path)), fd_(fd), removed_(removed) {}
  std::string path_;
  int fd_;
  size_t removed_;
};

struct TierFileStats {
  uint64_t file_bytes = 0;     // segments in use × segment size (the address space taken)
  uint64_t disk_bytes = 0;     // bytes written into segments in use (their fill)
  uint64_t live_bytes = 0;     // bytes of records still referenced
  uint64_t live_records = 0;   // records still referenced
  uint64_t segments = 0;       // in use
  uint64_t written_bytes = 0;  // appended since the file was made (padding included)
  uint64_t reads = 0;          // records read
  uint64_t read_ios = 0;       // reads issued to the disk
  uint64_t read_bytes = 0;     // bytes read from the disk
  uint64_t freed_segments = 0;
  bool direct = false;  // O_DIRECT in use
  bool uring = false;   // io_uring in use for reads (by the last reading thread)
};

class TierFile {
 public:
  static constexpr size_t kBlockBytes = 4096;

  // Creates `options.directory`/`file_name` (replacing a file of that name). `table`: for errors.
  static Result<std::unique_ptr<TierFile>> Create(const TierOptions& options,
                                                  const std::string& file_name, std::string table);
  ~TierFile();  // closes and removes the file
  TierFile(const TierFile&) = delete;
  TierFile& operator=(const TierFile&) = delete;

  const std::string& path() const { return path_; }

  // Writer: room for a record of `bytes` (at most a segment) in the pending append, and its
  // location. The pointer is valid until the next Add or Commit.
  Result<std::byte*> Add(uint32_t bytes, uint32_t* location);
  // Writer: writes what was added since the last Commit. On an error, those records are garbage
  // (none of them may be referenced) and the error names the file.
  Status Commit();
  // Writer: the record of `bytes` at `location` is no longer referenced.
  void Release(uint32_t location, uint32_t bytes);
  // Writer: scans (Segments) see the records committed so far. Called once the index points at
  // them, so that a scan never passes a record before it is live.
  void Publish();

  // Any thread: reads the records at `locations` (each at most `expect` bytes, about; a longer
  // one is read again whole) into `buffer`; `offsets[k]` is where record k begins there. Each is
  // checked (magic, length, CRC, `row_bytes`): kCorruption names the file and the location.
  Status Read(const uint32_t* locations, size_t n, uint32_t expect, uint32_t row_bytes,
              AlignedBuffer* buffer, std::vector<size_t>* offsets) const;

  // A segment in use, for scans: its number, its order of creation, its fill in bytes (as
  // published).
  struct SegmentInfo {
    uint32_t number;
    uint64_t sequence;
    uint64_t fill;
  };
  // Segments in use, oldest first.
  std::vector<SegmentInfo> Segments() const;
  // Any thread: reads `bytes` at byte `offset` of the file (both multiples of kBlockBytes) into
  // `buffer` (which it grows): a scan's sequential read of a segment.
  Status ReadRange(uint64_t offset, size_t bytes, AlignedBuffer* buffer) const;
  // The creation order of segment `number` (0: free).
  uint64_t SequenceOf(uint32_t number) const;

  TierFileStats Stats() const;
  // How later reads are made (a benchmark compares them).
  void set_io(TierIo io) { io_.store(io, std::memory_order_relaxed); }

 private:
  struct Segment {
    uint64_t sequence = 0;   // 0: free
    uint64_t fill = 0;       // bytes appended
    uint64_t published = 0;  // bytes scans may read (Publish)
    uint64_t written = 0;    // bytes on disk
    uint64_t live_records = 0;
    uint64_t live_bytes = 0;
  };
  struct IoRequest {
    uint64_t offset;
    size_t bytes;
    std::byte* destination;
  };

  TierFile(std::string path, std::string table, int fd, bool direct, TierIo io);
  // Writer: a segment to append to, taken from the free ones or added.
  Status OpenSegment();
  Status WritePending();
  Status ReadAll(std::vector<IoRequest>& requests) const;
  Status Check(const std::byte* record, size_t available, uint32_t location,
               uint32_t row_bytes) const;
  Status Failure(const std::string& what, int error) const;

  const std::string path_;
  const std::string table_;
  const int fd_;
  const bool direct_;
  std::atomic<TierIo> io_;

  mutable std::mutex mutex_;  // segments_ and the statistics below, briefly
  std::vector<Segment> segments_;
  uint64_t next_sequence_ = 1;
  uint64_t live_bytes_ = 0, live_records_ = 0, disk_bytes_ = 0, written_bytes_ = 0,
           freed_segments_ = 0;

  // Writer only: the segment taking appends, and the pending append (which begins with that
  // segment's last, partial block).
  uint32_t current_ = UINT32_MAX;
  AlignedBuffer pending_;
  uint64_t pending_offset_ = 0;  // file offset of pending_[0] (block-aligned)
  size_t pending_bytes_ = 0;     // bytes of pending_ in use
  size_t pending_records_ = 0;

  mutable std::atomic<uint64_t> reads_{0}, read_ios_{0}, read_bytes_{0};
  mutable std::atomic<bool> uring_used_{false};
};

}  // namespace quiver
