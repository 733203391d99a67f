// The write-ahead log: numbered records (LSN 1, 2, ...) appended to segment files
// `<dir>/<first LSN, 20 digits>.wal`, each record framed with its length and CRC-32C checksums
// (format: docs/durability.md).
//
// Writing: Append() writes a record with write(2) before it returns, so a process crash never
// loses it; Commit(lsn) then makes it as durable as the fsync policy asks. Buffer() only adds a
// record to a buffer (small records, many per second: the key-value writes) and Commit (or
// Write) writes the buffer with one write(2), for every record in it; a failed write keeps the
// buffer, refuses later changes (Writable) and is retried by the background thread each second.
// Under `always`, concurrent committers share fsyncs (group commit: one caller syncs everything
// written so far while the others wait for it); under `everysec` a background thread syncs once a
// second; under `no` only rotation, Sync() and Close() sync. A segment is synced before the next
// one is started. A failed write is cut back out of the file and reported; the log stays usable. A
// failed fsync is not retried (the kernel may have dropped the unsynced pages): the log refuses
// every later append, and the process must restart and recover from what is on disk.
//
// Reading: ScanWal() checks and yields every record at start, telling a torn final record (a
// crash mid-append: dropped with a warning) from corruption (an error naming the file and
// offset, or, when asked, the log cut there).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/result.h"
#include "storage/file.h"

namespace quiver::storage {

enum class FsyncPolicy { kAlways, kEverySec, kNo };
std::string_view FsyncPolicyName(FsyncPolicy policy);
bool ParseFsyncPolicy(std::string_view text, FsyncPolicy* policy);

enum class RecordType : uint8_t {
  kCreateTable = 1,
  kDropTable = 2,
  kUpsert = 3,
  kDelete = 4,
  kKeyspace = 5,  // key-value changes (kv::Keyspace's record format)
  kAlterTable = 6,
};

inline constexpr size_t kSegmentHeaderBytes = 32;
inline constexpr size_t kRecordHeaderBytes = 12;     // length, body CRC, header CRC
inline constexpr size_t kRecordBodyPrefixBytes = 9;  // LSN, type
inline constexpr uint32_t kMaxRecordBodyBytes = 1u << 31;

struct WalRecord {
  uint64_t lsn = 0;
  RecordType type = RecordType::kUpsert;
  std::string_view payload;  // valid during the callback only
  const std::string* file = nullptr;
  uint64_t offset = 0;  // of the record's header in `file`
};

struct WalSegment {
  uint64_t first_lsn = 0;
  std::string path;
};

struct WalScan {
  std::vector<WalSegment> segments;  // oldest first
  uint64_t first_lsn = 0;            // of the oldest record kept (0: none)
  uint64_t last_lsn = 0;             // of the newest record kept (0: none)
  uint64_t end_lsn = 0;              // the LSN a record appended to the newest segment would get
  uint64_t records = 0;
  uint64_t bytes = 0;
  std::string dropped;  // what was dropped (a torn record, or a cut log), for the log; "" if none
  bool cut = false;     // corruption was cut away (truncate_corrupt)
};

// Reads every segment in `dir`, oldest first, and calls `apply` for each record. A torn final
// record of the newest segment is cut off the file. Corruption elsewhere fails with
// kCorruption naming the file and offset, unless `truncate_corrupt`: then the log is cut there
// (that segment truncated, later ones removed).
Result<WalScan> ScanWal(const std::string& dir, bool truncate_corrupt, FileOps* ops,
                        const std::function<Status(const WalRecord&)>& apply);

// Writes a segment holding no record yet that starts at `first_lsn`: the log of a restored
// directory whose records before it are all in its snapshots.
Status CreateEmptySegment(const std::string& dir, uint64_t first_lsn);

struct WalOptions {
  FsyncPolicy fsync = FsyncPolicy::kEverySec;
  uint64_t segment_bytes = 64 << 20;  // a new segment starts after one grows past this
  FileOps* ops = FileOps::Default();
};

class Wal {
 public:
  // Continues the log found by `scan` (its newest segment when it ends at next_lsn - 1, a new
  // segment otherwise); the next record gets `next_lsn`.
  static Result<std::unique_ptr<Wal>> Open(const std::string& dir, WalOptions options,
                                           const WalScan& scan, uint64_t next_lsn);
  ~Wal();  // Close()

  // Appends one record whose payload is the concatenation of `payload`; returns its LSN. The
  // buffered records before it are written first; when they cannot be, it fails.
  Result<uint64_t> Append(RecordType type, const std::vector<std::string_view>& payload);
  // Adds a record to the buffer and returns its LSN; Write or Commit writes it.
  Result<uint64_t> Buffer(RecordType type, std::string_view payload);
  // Writes the buffered records when record `lsn` is among them.
  Status Write(uint64_t lsn);
  // OK, or why changes cannot be logged now: a failed fsync (until restart) or a failed write
  // of the buffer (until a retry succeeds).
  Status Writable() const;
  // Writes record `lsn` (when buffered) and waits until it is as durable as the policy asks.
  Status Commit(uint64_t lsn);
  // Syncs everything appended so far, whatever the policy.
  Status Sync();
  // Seals the current segment when it holds records (the buffered ones written first): it is
  // synced and a new one started. Returns the sealed segments, oldest first; the last LSN in
  // them is the returned vector's `sealed_end`. Used to hand whole segments to a backup.
  struct Sealed {
    std::vector<WalSegment> segments;
    uint64_t end = 0;  // the last LSN before the current segment (0: the log is empty)
  };
  Result<Sealed> Seal();
  // Removes the segments whose records all have LSNs below `lsn` (never the current one).
  Status RemoveSegmentsBefore(uint64_t lsn);
  // Syncs and stops the background thread. Appends fail afterwards.
  void Close();

  // The last record written to the file, and the last that got an LSN (buffered ones included).
  uint64_t last_lsn() const { return written_lsn_.load(std::memory_order_acquire); }
  uint64_t assigned_lsn() const { return assigned_lsn_.load(std::memory_order_acquire); }
  uint64_t synced_lsn() const;
  uint64_t bytes_appended() const { return bytes_appended_.load(std::memory_order_relaxed); }
  uint64_t fsyncs() const { return fsyncs_.load(std::memory_order_relaxed); }
  size_t segment_count() const;
  uint64_t sealed_lsn() const;  // the last LSN in a sealed segment (0: none)
  FsyncPolicy policy() const { return options_.fsync; }

 private:
  Wal(std::string dir, WalOptions options) : dir_(std::move(dir)), options_(options) {}
  Status StartSegment(uint64_t first_lsn);  // under append_mutex_
  Status StartSegmentIfFull();              // under append_mutex_
  Status WritePendingLocked();              // under append_mutex_
  Result<uint64_t> Add(RecordType type, const std::vector<std::string_view>& payload,
                       bool buffered);
  Status SyncTo(uint64_t lsn);
  void SyncLoop();

  const std::string dir_;
  const WalOptions options_;

  mutable std::mutex append_mutex_;
  std::shared_ptr<AppendFile> file_;  // the current segment
  std::vector<WalSegment> segments_;
  uint64_t next_lsn_ = 1;
  bool closed_ = false;
  std::string pending_;  // buffered records, LSNs written_lsn_ + 1 .. next_lsn_ - 1
  std::atomic<uint64_t> written_lsn_{0};
  std::atomic<uint64_t> assigned_lsn_{0};
  std::atomic<uint64_t> bytes_appended_{0};
  std::atomic<uint64_t> fsyncs_{0};

  mutable std::mutex sync_mutex_;  // after append_mutex_ when both are held
  std::condition_variable synced_;
  uint64_t synced_lsn_ = 0;
  bool syncing_ = false;
  Status failed_;                         // set once an fsync failed
  std::atomic<bool> failed_flag_{false};  // failed_ is set (read without sync_mutex_)
  Status write_error_;                    // the last write of the buffer failed

  std::mutex loop_mutex_;
  std::condition_variable loop_wake_;
  bool stop_ = false;
  std::thread sync_thread_;
};

}  // namespace quiver::storage
