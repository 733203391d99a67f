#include "storage/wal.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "common/coding.h"
#include "common/crc32c.h"
#include "common/log.h"

namespace quiver::storage {
namespace {

constexpr char kSegmentMagic[8] = {'Q', 'U', 'I', 'V', 'W', 'A', 'L', '1'};
constexpr uint32_t kFormatVersion = 1;
constexpr std::string_view kSegmentSuffix = ".wal";

std::string SegmentName(uint64_t first_lsn) {
  std::string digits = std::to_string(first_lsn);
  return std::string(20 - digits.size(), '0') + digits + std::string(kSegmentSuffix);
}

bool ParseSegmentName(std::string_view name, uint64_t* first_lsn) {
  if (name.size() != 20 + kSegmentSuffix.size() || !name.ends_with(kSegmentSuffix)) return false;
  auto [end, ec] = std::from_chars(name.data(), name.data() + 20, *first_lsn);
  return ec == std::errc() && end == name.data() + 20;
}

std::string SegmentHeader(uint64_t first_lsn) {
  std::string header(kSegmentMagic, sizeof(kSegmentMagic));
  PutFixed32(&header, kFormatVersion);
  PutFixed32(&header, kSegmentHeaderBytes);
  PutFixed64(&header, first_lsn);
  PutFixed32(&header, 0);
  PutFixed32(&header, Crc32c(header));
  return header;
}

bool AllZero(std::string_view bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

bool KnownType(uint8_t type) { return type >= 1 && type <= 6; }

}  // namespace

std::string_view FsyncPolicyName(FsyncPolicy policy) {
  switch (policy) {
    case FsyncPolicy::kAlways:
      return "always";
    case FsyncPolicy::kEverySec:
      return "everysec";
    case FsyncPolicy::kNo:
      return "no";
  }
  return "?";
}

bool ParseFsyncPolicy(std::string_view text, FsyncPolicy* policy) {
  for (FsyncPolicy p : {FsyncPolicy::kAlways, FsyncPolicy::kEverySec, FsyncPolicy::kNo}) {
    if (text == FsyncPolicyName(p)) {
      *policy = p;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Reading.

Result<WalScan> ScanWal(const std::string& dir, bool truncate_corrupt, FileOps* ops,
                        const std::function<Status(const WalRecord&)>& apply) {
  WalScan scan;
  std::error_code error;
  std::vector<WalSegment> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    uint64_t first_lsn;
    if (ParseSegmentName(entry.path().filename().string(), &first_lsn)) {
      found.push_back({first_lsn, entry.path().string()});
    }
  }
  if (error) return Status::IOError("cannot list '" + dir + "': " + error.message());
  std::sort(found.begin(), found.end(),
            [](const WalSegment& a, const WalSegment& b) { return a.first_lsn < b.first_lsn; });

  uint64_t expected = 0;  // the next LSN; 0 before the first segment
  for (size_t s = 0; s < found.size(); ++s) {
    const WalSegment& segment = found[s];
    const bool newest = s + 1 == found.size();
    QUIVER_ASSIGN_OR_RETURN(std::string content, ReadFile(segment.path));
    uint64_t offset = 0;
    std::string problem;  // corruption found at `offset`
    bool torn = false;
    // The header.
    if (content.size() < kSegmentHeaderBytes) {
      if (newest && (content.empty() || AllZero(content) ||
                     content.compare(0, content.size(), SegmentHeader(segment.first_lsn), 0,
                                     content.size()) == 0)) {
        torn = true;  // a crash while the segment was being started
      } else {
        problem = "the segment header is cut short (" + std::to_string(content.size()) + " bytes)";
      }
    } else if (content.compare(0, kSegmentHeaderBytes, SegmentHeader(segment.first_lsn)) != 0) {
      problem = DecodeFixed<uint64_t>(content.data() + 16) != segment.first_lsn &&
                        std::memcmp(content.data(), kSegmentMagic, 8) == 0
                    ? "the segment header does not match the file name"
                    : "the segment header is damaged (magic, version or checksum)";
    } else if (expected != 0 && segment.first_lsn != expected) {
      problem = "the segment starts at LSN " + std::to_string(segment.first_lsn) + " but LSN " +
                std::to_string(expected) + " was expected (a segment is missing)";
    } else {
      offset = kSegmentHeaderBytes;
      if (expected == 0) expected = segment.first_lsn;
    }
    if (torn && content.size() < kSegmentHeaderBytes) {
      // Nothing in it: remove it; the writer starts the segment again.
      QUIVER_RETURN_NOT_OK(RemoveFile(segment.path));
      scan.dropped = "an unfinished segment " + segment.path;
      break;
    }
    // The records.
    while (problem.empty() && offset < content.size()) {
      const std::string_view rest(content.data() + offset, content.size() - offset);
      if (rest.size() < kRecordHeaderBytes) {
        if (newest)
          torn = true;
        else
          problem = "a record header is cut short";
        break;
      }
      const uint32_t length = DecodeFixed<uint32_t>(rest.data());
      const uint32_t body_crc = DecodeFixed<uint32_t>(rest.data() + 4);
      if (DecodeFixed<uint32_t>(rest.data() + 8) != Crc32c(rest.data(), 8)) {
        if (newest && AllZero(rest))
          torn = true;  // space the file system never filled
        else
          problem = "a record header fails its checksum";
        break;
      }
      if (length < kRecordBodyPrefixBytes || length > kMaxRecordBodyBytes) {
        problem = "a record has an impossible length " + std::to_string(length);
        break;
      }
      if (rest.size() - kRecordHeaderBytes < length) {
        if (newest)
          torn = true;
        else
          problem = "a record extends past the end of the segment";
        break;
      }
      const char* body = rest.data() + kRecordHeaderBytes;
      if (Crc32c(body, size_t{length}) != body_crc) {
        problem = "a record fails its checksum";
        break;
      }
      const uint64_t lsn = DecodeFixed<uint64_t>(body);
      const uint8_t type = static_cast<uint8_t>(body[8]);
      if (lsn != expected) {
        problem = "a record has LSN " + std::to_string(lsn) + " where " + std::to_string(expected) +
                  " was expected";
        break;
      }
      if (!KnownType(type)) {
        problem = "a record has an unknown type " + std::to_string(type);
        break;
      }
      WalRecord record;
      record.lsn = lsn;
      record.type = static_cast<RecordType>(type);
      record.payload =
          std::string_view(body + kRecordBodyPrefixBytes, length - kRecordBodyPrefixBytes);
      record.file = &segment.path;
      record.offset = offset;
      if (Status applied = apply(record); !applied.ok()) {
        return Status(applied.code(), "write-ahead log '" + segment.path + "' offset " +
                                          std::to_string(offset) + " (LSN " + std::to_string(lsn) +
                                          "): " + applied.message());
      }
      if (scan.first_lsn == 0) scan.first_lsn = lsn;
      scan.last_lsn = lsn;
      ++scan.records;
      scan.bytes += kRecordHeaderBytes + length;
      ++expected;
      offset += kRecordHeaderBytes + length;
    }
    if (torn || !problem.empty()) {
      if (!problem.empty() && !truncate_corrupt) {
        return Status::Corruption("write-ahead log '" + segment.path + "' is corrupt at offset " +
                                  std::to_string(offset) + ": " + problem +
                                  ". Nothing was changed; to start anyway, dropping this "
                                  "record and every later one, pass --wal-truncate-corrupt");
      }
      // A bad header (offset 0) drops the whole segment; otherwise it is cut at `offset`.
      const bool whole = offset == 0;
      if (whole) {
        QUIVER_RETURN_NOT_OK(RemoveFile(segment.path));
      } else if (offset < content.size()) {
        QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> file,
                                AppendFile::Open(segment.path, ops, /*exclusive=*/false));
        QUIVER_RETURN_NOT_OK(file->Truncate(offset));
        QUIVER_RETURN_NOT_OK(file->Sync());
      }
      const std::string where = "'" + segment.path + "' offset " + std::to_string(offset);
      if (torn) {
        scan.dropped = "a torn final record at " + where + " (" +
                       std::to_string(content.size() - offset) + " bytes)";
      } else {
        scan.cut = true;
        scan.dropped = "the log from " + where + " on (" + problem + "; " +
                       std::to_string(content.size() - offset) + " bytes";
        for (size_t later = s + 1; later < found.size(); ++later) {
          QUIVER_RETURN_NOT_OK(RemoveFile(found[later].path));
        }
        scan.dropped += ", and " + std::to_string(found.size() - s - 1) + " later segments)";
      }
      if (!whole) {
        scan.segments.push_back(segment);
        scan.end_lsn = expected;
      }
      break;
    }
    scan.segments.push_back(segment);
    scan.end_lsn = expected;
  }
  return scan;
}

// ---------------------------------------------------------------------------------------------
// Writing.

Result<std::unique_ptr<Wal>> Wal::Open(const std::string& dir, WalOptions options,
                                       const WalScan& scan, uint64_t next_lsn) {
  std::unique_ptr<Wal> wal(new Wal(dir, options));
  wal->segments_ = scan.segments;
  wal->next_lsn_ = next_lsn;
  wal->written_lsn_ = next_lsn - 1;
  wal->assigned_lsn_ = next_lsn - 1;
  wal->synced_lsn_ = next_lsn - 1;  // what is on disk now is as durable as it gets
  const bool continues = !scan.segments.empty() && scan.end_lsn == next_lsn;
  if (continues) {
    QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> file,
                            AppendFile::Open(scan.segments.back().path, options.ops, false));
    // What an earlier process wrote may still be only in the page cache.
    QUIVER_RETURN_NOT_OK(file->Sync());
    wal->file_ = std::move(file);
  } else {
    std::lock_guard lock(wal->append_mutex_);
    QUIVER_RETURN_NOT_OK(wal->StartSegment(next_lsn));
  }
  wal->sync_thread_ = std::thread([w = wal.get()] { w->SyncLoop(); });
  return wal;
}

Wal::~Wal() { Close(); }

void Wal::Close() {
  {
    std::lock_guard lock(loop_mutex_);
    if (stop_) return;
    stop_ = true;
  }
  loop_wake_.notify_all();
  if (sync_thread_.joinable()) sync_thread_.join();
  if (Status synced = Sync(); !synced.ok()) {
    QUIVER_LOG(kError, "write-ahead log not synced at close", {{"error", synced.message()}});
  }
  std::lock_guard lock(append_mutex_);
  closed_ = true;
}

Status Wal::StartSegment(uint64_t first_lsn) {
  if (file_ != nullptr) {
    // Everything before the new segment is synced first, so a sync of the current segment
    // covers all records.
    QUIVER_RETURN_NOT_OK(file_->Sync());
    fsyncs_.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard lock(sync_mutex_);
    synced_lsn_ = std::max(synced_lsn_, first_lsn - 1);
  }
  const std::string path = dir_ + "/" + SegmentName(first_lsn);
  (void)RemoveFile(path);  // an unfinished attempt at this very segment
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> file,
                          AppendFile::Open(path, options_.ops, /*exclusive=*/true));
  Status started = file->Append(SegmentHeader(first_lsn));
  if (started.ok()) started = file->Sync();
  if (started.ok()) started = SyncDirectory(dir_);
  if (!started.ok()) {
    file.reset();
    (void)RemoveFile(path);
    return started;
  }
  file_ = std::move(file);
  segments_.push_back({first_lsn, path});
  return Status::OK();
}

Result<uint64_t> Wal::Append(RecordType type, const std::vector<std::string_view>& payload) {
  return Add(type, payload, /*buffered=*/false);
}

Result<uint64_t> Wal::Buffer(RecordType type, std::string_view payload) {
  return Add(type, {payload}, /*buffered=*/true);
}

namespace {

constexpr size_t kRecordPrefixBytes = kRecordHeaderBytes + kRecordBodyPrefixBytes;

// Writes the bytes before a record's payload to `out`: length, body CRC, header CRC, LSN, type.
void PutPrefix(char* out, uint64_t lsn, RecordType type, uint32_t length,
               const std::vector<std::string_view>& payload) {
  EncodeFixed<uint64_t>(out + kRecordHeaderBytes, lsn);
  out[kRecordHeaderBytes + 8] = static_cast<char>(type);
  uint32_t body_crc = Crc32c(out + kRecordHeaderBytes, kRecordBodyPrefixBytes);
  for (std::string_view part : payload) body_crc = Crc32c(part, body_crc);
  EncodeFixed<uint32_t>(out, length);
  EncodeFixed<uint32_t>(out + 4, body_crc);
  EncodeFixed<uint32_t>(out + 8, Crc32c(out, 8));
}

}  // namespace

Result<uint64_t> Wal::Add(RecordType type, const std::vector<std::string_view>& payload,
                          bool buffered) {
  size_t payload_bytes = 0;
  for (std::string_view part : payload) payload_bytes += part.size();
  if (payload_bytes > kMaxRecordBodyBytes - kRecordBodyPrefixBytes) {
    return Status::LimitExceeded("a write-ahead log record holds at most " +
                                 std::to_string(kMaxRecordBodyBytes) + " bytes; this write has " +
                                 std::to_string(payload_bytes));
  }
  std::lock_guard lock(append_mutex_);
  if (failed_flag_.load(std::memory_order_acquire)) {
    std::lock_guard sync_lock(sync_mutex_);
    return failed_;
  }
  if (closed_) return Status::IOError("the write-ahead log is closed");
  const auto length = static_cast<uint32_t>(kRecordBodyPrefixBytes + payload_bytes);
  if (buffered) {
    const uint64_t lsn = next_lsn_++;
    const size_t start = pending_.size();
    pending_.resize(start + kRecordPrefixBytes);
    for (std::string_view part : payload) pending_.append(part);
    PutPrefix(pending_.data() + start, lsn, type, length, payload);
    assigned_lsn_.store(lsn, std::memory_order_release);
    return lsn;
  }
  // A direct record follows the buffered ones in the file: they are written first, and when
  // they cannot be, the record is refused (it gets no LSN).
  QUIVER_RETURN_NOT_OK(WritePendingLocked());
  QUIVER_RETURN_NOT_OK(StartSegmentIfFull());
  const uint64_t lsn = next_lsn_;
  // The payload (a whole batch, maybe megabytes) is written from where it is, not copied.
  char prefix[kRecordPrefixBytes];
  PutPrefix(prefix, lsn, type, length, payload);
  std::vector<std::string_view> parts;
  parts.reserve(payload.size() + 1);
  parts.emplace_back(prefix, kRecordPrefixBytes);
  parts.insert(parts.end(), payload.begin(), payload.end());
  if (Status written = file_->Append(parts); !written.ok()) {
    return Status::IOError("write-ahead log: " + written.message() + "; the write was not applied");
  }
  ++next_lsn_;
  assigned_lsn_.store(lsn, std::memory_order_release);
  written_lsn_.store(lsn, std::memory_order_release);
  bytes_appended_.fetch_add(kRecordHeaderBytes + length, std::memory_order_relaxed);
  return lsn;
}

Status Wal::StartSegmentIfFull() {
  if (file_->size() < options_.segment_bytes) return Status::OK();
  if (Status started = StartSegment(written_lsn_.load() + 1); !started.ok()) {
    return Status::IOError("cannot start a new write-ahead log segment: " + started.message());
  }
  return Status::OK();
}

Status Wal::WritePendingLocked() {
  if (pending_.empty()) return Status::OK();
  Status written = StartSegmentIfFull();
  if (written.ok()) written = file_->Append(pending_);
  if (!written.ok()) {
    // Kept, to be written by a later attempt (the sync thread retries every second); until
    // then Writable() refuses new changes.
    std::lock_guard sync_lock(sync_mutex_);
    write_error_ = Status::IOError("write-ahead log: " + written.message());
    return write_error_;
  }
  bytes_appended_.fetch_add(pending_.size(), std::memory_order_relaxed);
  pending_.clear();
  if (pending_.capacity() > (4 << 20)) pending_.shrink_to_fit();
  written_lsn_.store(next_lsn_ - 1, std::memory_order_release);
  std::lock_guard sync_lock(sync_mutex_);
  write_error_ = Status::OK();
  return Status::OK();
}

Status Wal::Write(uint64_t lsn) {
  if (written_lsn_.load(std::memory_order_acquire) >= lsn) return Status::OK();
  std::lock_guard lock(append_mutex_);
  if (written_lsn_.load(std::memory_order_relaxed) >= lsn) return Status::OK();
  return WritePendingLocked();
}

Status Wal::Writable() const {
  std::lock_guard sync_lock(sync_mutex_);
  if (!failed_.ok()) return failed_;
  return write_error_;
}

Status Wal::Commit(uint64_t lsn) {
  QUIVER_RETURN_NOT_OK(Write(lsn));
  if (options_.fsync != FsyncPolicy::kAlways) return Status::OK();
  return SyncTo(lsn);
}

Status Wal::Sync() {
  QUIVER_RETURN_NOT_OK(Write(assigned_lsn_.load(std::memory_order_acquire)));
  return SyncTo(written_lsn_.load(std::memory_order_acquire));
}

Status Wal::SyncTo(uint64_t lsn) {
  std::unique_lock lock(sync_mutex_);
  while (synced_lsn_ < lsn) {
    if (!failed_.ok()) return failed_;
    if (syncing_) {  // another caller's fsync may cover this record: wait for it
      synced_.wait(lock);
      continue;
    }
    syncing_ = true;
    lock.unlock();
    std::shared_ptr<AppendFile> file;
    uint64_t covered;
    {
      std::lock_guard append_lock(append_mutex_);
      file = file_;
      covered = written_lsn_.load(std::memory_order_acquire);
    }
    Status synced = file->Sync();
    fsyncs_.fetch_add(1, std::memory_order_relaxed);
    lock.lock();
    syncing_ = false;
    if (synced.ok()) {
      synced_lsn_ = std::max(synced_lsn_, covered);
    } else {
      failed_flag_.store(true, std::memory_order_release);
      failed_ = Status::IOError("write-ahead log: " + synced.message() +
                                "; writes are refused until quiverd restarts (reads go on; "
                                "recovery keeps what reached the disk)");
      QUIVER_LOG(kError, "write-ahead log sync failed", {{"error", synced.message()}});
    }
    synced_.notify_all();
  }
  return Status::OK();
}

void Wal::SyncLoop() {
  std::unique_lock lock(loop_mutex_);
  while (!stop_) {
    loop_wake_.wait_for(lock, std::chrono::seconds(1));
    if (stop_) break;
    lock.unlock();
    if (options_.fsync == FsyncPolicy::kEverySec) {
      (void)Sync();  // a failure is logged and refuses later appends
    } else {
      (void)Write(assigned_lsn_.load(std::memory_order_acquire));  // retries a failed write
    }
    lock.lock();
  }
}

uint64_t Wal::synced_lsn() const {
  std::lock_guard lock(sync_mutex_);
  return synced_lsn_;
}

uint64_t Wal::sealed_lsn() const {
  std::lock_guard lock(append_mutex_);
  return segments_.empty() ? 0 : segments_.back().first_lsn - 1;
}

size_t Wal::segment_count() const {
  std::lock_guard lock(append_mutex_);
  return segments_.size();
}

Status CreateEmptySegment(const std::string& dir, uint64_t first_lsn) {
  const std::string path = dir + "/" + SegmentName(first_lsn);
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> file,
                          AppendFile::Open(path, FileOps::Default(), /*exclusive=*/true));
  QUIVER_RETURN_NOT_OK(file->Append(SegmentHeader(first_lsn)));
  QUIVER_RETURN_NOT_OK(file->Sync());
  return SyncDirectory(dir);
}

Result<Wal::Sealed> Wal::Seal() {
  std::lock_guard lock(append_mutex_);
  if (closed_) return Status::IOError("the write-ahead log is closed");
  QUIVER_RETURN_NOT_OK(WritePendingLocked());
  if (file_->size() > kSegmentHeaderBytes) {
    if (Status started = StartSegment(written_lsn_.load() + 1); !started.ok()) {
      return Status::IOError("cannot start a new write-ahead log segment: " + started.message());
    }
  }
  Sealed sealed;
  sealed.segments.assign(segments_.begin(), segments_.end() - 1);
  sealed.end = segments_.back().first_lsn - 1;
  return sealed;
}

Status Wal::RemoveSegmentsBefore(uint64_t lsn) {
  std::vector<std::string> doomed;
  {
    std::lock_guard lock(append_mutex_);
    // Segment i holds [first_i, first_{i+1}); the last one is current.
    size_t remove = 0;
    while (remove + 1 < segments_.size() && segments_[remove + 1].first_lsn <= lsn) ++remove;
    for (size_t i = 0; i < remove; ++i) doomed.push_back(segments_[i].path);
    segments_.erase(segments_.begin(), segments_.begin() + static_cast<ptrdiff_t>(remove));
  }
  for (const std::string& path : doomed) QUIVER_RETURN_NOT_OK(RemoveFile(path));
  if (!doomed.empty()) return SyncDirectory(dir_);
  return Status::OK();
}

}  // namespace quiver::storage
