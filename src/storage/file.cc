#include "storage/file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace quiver::storage {

ssize_t FileOps::Write(int fd, const void* data, size_t size) { return ::write(fd, data, size); }
int FileOps::Sync(int fd) { return ::fdatasync(fd); }
int FileOps::Truncate(int fd, off_t size) { return ::ftruncate(fd, size); }
int FileOps::Rename(const char* from, const char* to) { return ::rename(from, to); }

FileOps* FileOps::Default() {
  static FileOps ops;
  return &ops;
}

Status IOErrorFor(std::string_view what, const std::string& path, int error) {
  return Status::IOError(std::string(what) + " '" + path + "': " + std::strerror(error));
}

Result<std::unique_ptr<AppendFile>> AppendFile::Open(const std::string& path, FileOps* ops,
                                                     bool exclusive) {
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : 0);
  const int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return IOErrorFor("cannot open", path, errno);
  const off_t end = ::lseek(fd, 0, SEEK_END);
  if (end < 0) {
    const int error = errno;
    ::close(fd);
    return IOErrorFor("cannot seek", path, error);
  }
  return std::unique_ptr<AppendFile>(new AppendFile(path, fd, static_cast<uint64_t>(end), ops));
}

AppendFile::~AppendFile() { ::close(fd_); }

Status AppendFile::WriteAll(const char* data, size_t size) {
  while (size > 0) {
    const ssize_t written = ops_->Write(fd_, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      return IOErrorFor("cannot write", path_, errno);
    }
    data += written;
    size -= static_cast<size_t>(written);
    size_ += static_cast<uint64_t>(written);
  }
  return Status::OK();
}

Status AppendFile::Append(std::string_view data) {
  return Append(std::vector<std::string_view>{data});
}

Status AppendFile::Append(const std::vector<std::string_view>& parts) {
  if (broken_) {
    return Status::IOError("'" + path_ + "' holds a partial write that could not be removed");
  }
  const uint64_t before = size_;
  for (std::string_view part : parts) {
    Status written = WriteAll(part.data(), part.size());
    if (written.ok()) continue;
    // The file may hold part of the data: cut it back, so that the next append follows whole data.
    if (size_ != before) {
      if (ops_->Truncate(fd_, static_cast<off_t>(before)) == 0 &&
          ::lseek(fd_, static_cast<off_t>(before), SEEK_SET) >= 0) {
        size_ = before;
      } else {
        broken_ = true;
      }
    }
    return written;
  }
  return Status::OK();
}

Status AppendFile::Sync() {
  if (ops_->Sync(fd_) != 0) return IOErrorFor("cannot sync", path_, errno);
  return Status::OK();
}

Status AppendFile::Truncate(uint64_t size) {
  if (ops_->Truncate(fd_, static_cast<off_t>(size)) != 0 ||
      ::lseek(fd_, static_cast<off_t>(size), SEEK_SET) < 0) {
    return IOErrorFor("cannot truncate", path_, errno);
  }
  size_ = size;
  broken_ = false;
  return Status::OK();
}

Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IOErrorFor("cannot open directory", dir, errno);
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (result != 0) return IOErrorFor("cannot sync directory", dir, error);
  return Status::OK();
}

Status WriteFileAtomically(const std::string& path, std::string_view content, FileOps* ops) {
  const std::string temporary = path + ".tmp";
  {
    QUIVER_RETURN_NOT_OK(RemoveFile(temporary));
    QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> file,
                            AppendFile::Open(temporary, ops, /*exclusive=*/true));
    Status written = file->Append(content);
    if (written.ok()) written = file->Sync();
    if (!written.ok()) {
      (void)RemoveFile(temporary);
      return written;
    }
  }
  if (ops->Rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    (void)RemoveFile(temporary);
    return IOErrorFor("cannot rename into", path, error);
  }
  return SyncDirectory(std::filesystem::path(path).parent_path().string());
}

Result<std::string> ReadFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IOErrorFor("cannot open", path, errno);
  std::string content;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      return IOErrorFor("cannot read", path, error);
    }
    if (got == 0) break;
    content.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  return content;
}

Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return IOErrorFor("cannot remove", path, errno);
  }
  return Status::OK();
}

Result<std::unique_ptr<DirectoryLock>> DirectoryLock::Acquire(const std::string& dir) {
  const std::string path = dir + "/LOCK";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return IOErrorFor("cannot open", path, errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    char holder[32] = {};
    const ssize_t got = ::pread(fd, holder, sizeof(holder) - 1, 0);
    ::close(fd);
    if (error == EWOULDBLOCK) {
      std::string pid = got > 0 ? std::string(holder, static_cast<size_t>(got)) : "";
      while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
      return Status::IOError("data directory '" + dir + "' is in use" +
                             (pid.empty() ? "" : " (locked by pid " + pid + ")") +
                             "; one quiverd or embedded engine at a time may open it");
    }
    return IOErrorFor("cannot lock", path, error);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    const int error = errno;
    ::close(fd);
    return IOErrorFor("cannot write", path, error);
  }
  return std::unique_ptr<DirectoryLock>(new DirectoryLock(fd));
}

DirectoryLock::~DirectoryLock() { ::close(fd_); }

}  // namespace quiver::storage
