// Files for durable storage: the few system calls that write (behind FileOps, so tests can make
// them fail the way a full or failing disk does), an append-only file, atomic whole-file
// replacement, and the data directory's lock.
//
// Every error is a Status naming the path and the operating system's reason.
//
// Thread safety: FileOps::Default() is stateless. An AppendFile is used by one thread at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace quiver::storage {

// The writing system calls, with their POSIX contracts (return -1 and set errno on failure).
class FileOps {
 public:
  virtual ~FileOps() = default;
  virtual ssize_t Write(int fd, const void* data, size_t size);
  virtual int Sync(int fd);  // fdatasync
  virtual int Truncate(int fd, off_t size);
  virtual int Rename(const char* from, const char* to);
  static FileOps* Default();
};

// "<what> '<path>': <strerror(error)>" as an IOError.
Status IOErrorFor(std::string_view what, const std::string& path, int error);

class AppendFile {
 public:
  // Opens `path` for appending, creating it when missing (`create`) or failing when it exists
  // (`exclusive`).
  static Result<std::unique_ptr<AppendFile>> Open(const std::string& path, FileOps* ops,
                                                  bool exclusive);
  ~AppendFile();
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Writes all of `data` at the end. On failure the file is cut back to its size before the call
  // (when that fails too, the file is left longer: the next Append fails first).
  Status Append(std::string_view data);
  Status Append(const std::vector<std::string_view>& parts);
  Status Sync();
  Status Truncate(uint64_t size);
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }

 private:
  AppendFile(std::string path, int fd, uint64_t size, FileOps* ops)
      : path_(std::move(path)), fd_(fd), size_(size), ops_(ops) {}
  Status WriteAll(const char* data, size_t size);

  const std::string path_;
  const int fd_;
  uint64_t size_;
  bool broken_ = false;  // a failed write could not be cut back
  FileOps* const ops_;
};

// Replaces `path` with `content` atomically: writes `path`.tmp, syncs it, renames it over `path`
// and syncs the directory. A crash leaves either the old file or the new one.
Status WriteFileAtomically(const std::string& path, std::string_view content, FileOps* ops);
Status SyncDirectory(const std::string& dir);
Result<std::string> ReadFile(const std::string& path);
// Removes `path`; a missing file is not an error.
Status RemoveFile(const std::string& path);

// An exclusive lock on `<dir>/LOCK` (flock), held until destroyed. The file names the holder's pid.
class DirectoryLock {
 public:
  static Result<std::unique_ptr<DirectoryLock>> Acquire(const std::string& dir);
  ~DirectoryLock();

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace quiver::storage
