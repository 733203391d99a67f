#include "objstore/object_store.h"

#include <arrow/buffer.h>
#include <arrow/filesystem/filesystem.h>
#include <arrow/filesystem/s3fs.h>
#include <arrow/io/interfaces.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "common/crc32c.h"

namespace quiver::objstore {
namespace {

std::atomic<bool> s3_initialized{false};

// Runs work(0..count-1) on up to `threads` threads; the first error wins and stops the rest.
Status ParallelFor(size_t count, int threads, const std::function<Status(size_t)>& work) {
  std::atomic<size_t> next{0};
  std::mutex mutex;
  Status first;
  std::atomic<bool> failed{false};
  const auto run = [&] {
    for (size_t i = next++; i < count && !failed.load(); i = next++) {
      Status status = work(i);
      if (!status.ok()) {
        std::lock_guard lock(mutex);
        if (first.ok()) first = std::move(status);
        failed = true;
      }
    }
  };
  const size_t n = std::min<size_t>(count, static_cast<size_t>(std::max(threads, 1)));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < n; ++t) pool.emplace_back(run);
  run();
  for (std::thread& thread : pool) thread.join();
  return first;
}

Status ReadAt(int fd, char* data, size_t size, uint64_t offset, const std::string& path) {
  while (size > 0) {
    const ssize_t n = pread(fd, data, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return Status::IOError("cannot read '" + path +
                             "': " + (n == 0 ? "it is shorter than expected" : strerror(errno)));
    }
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Status WriteAt(int fd, const uint8_t* data, size_t size, uint64_t offset, const std::string& path) {
  while (size > 0) {
    const ssize_t n = pwrite(fd, data, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError("cannot write '" + path + "': " + strerror(errno));
    data += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

size_t PartCount(uint64_t bytes, uint64_t part_bytes) {
  return bytes == 0 ? 1 : static_cast<size_t>((bytes + part_bytes - 1) / part_bytes);
}

}  // namespace

std::string WithoutCredentials(const std::string& uri) {
  const size_t scheme = uri.find("://");
  if (scheme == std::string::npos) return uri;
  const size_t host = scheme + 3;
  const size_t at = uri.find('@', host);
  const size_t slash = uri.find('/', host);
  if (at == std::string::npos || (slash != std::string::npos && at > slash)) return uri;
  return uri.substr(0, host) + uri.substr(at + 1);
}

std::string PartKey(const std::string& key, size_t index) {
  char suffix[16];
  std::snprintf(suffix, sizeof(suffix), "/%05zu", index);
  return key + suffix;
}

Result<std::unique_ptr<ObjectStore>> ObjectStore::Open(const std::string& uri, uint64_t part_bytes,
                                                       int threads) {
  std::unique_ptr<ObjectStore> store(new ObjectStore());
  store->name_ = WithoutCredentials(uri);
  store->part_bytes_ = std::max<uint64_t>(part_bytes, 1);
  store->threads_ = std::max(threads, 1);
  if (uri.starts_with("s3://") && !s3_initialized.exchange(true)) {
    if (arrow::Status status = arrow::fs::EnsureS3Initialized(); !status.ok()) {
      return Status::IOError("cannot initialize S3 support: " + status.message());
    }
  }
  std::string path;
  arrow::Result<std::shared_ptr<arrow::fs::FileSystem>> fs =
      arrow::fs::FileSystemFromUriOrPath(uri, &path);
  if (!fs.ok()) {
    return Status::InvalidArgument("object store '" + store->name_ + "': " + fs.status().message());
  }
  store->fs_ = *fs;
  store->is_local_ = store->fs_->type_name() == "local";
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.empty() || path == "/") {
    return Status::InvalidArgument("object store '" + store->name_ +
                                   "': name a bucket and prefix (s3://bucket/prefix) or a "
                                   "directory (file:///path)");
  }
  store->root_ = path;
  return store;
}

ObjectStore::~ObjectStore() = default;

void FinalizeObjectStores() {
  if (s3_initialized.load()) (void)arrow::fs::EnsureS3Finalized();
}

std::string ObjectStore::Path(const std::string& key) const {
  return key.empty() ? root_ : root_ + "/" + key;
}

Status ObjectStore::Error(const std::string& what, const std::string& key,
                          const std::string& why) const {
  return Status::IOError("object store '" + name_ + "': cannot " + what + " '" + key + "': " + why);
}

Status ObjectStore::Prepare() {
  if (arrow::Status status = fs_->CreateDir(root_, /*recursive=*/true); !status.ok()) {
    return Status::IOError("object store '" + name_ + "': cannot create '" + root_ +
                           "': " + status.message());
  }
  return Status::OK();
}

Result<std::string> ObjectStore::Get(const std::string& key) {
  arrow::Result<std::shared_ptr<arrow::io::RandomAccessFile>> file = fs_->OpenInputFile(Path(key));
  if (!file.ok()) {
    if (file.status().IsIOError() || file.status().IsKeyError()) {
      // A missing object is an IOError whose detail says so; tell it from the others.
      arrow::Result<arrow::fs::FileInfo> info = fs_->GetFileInfo(Path(key));
      if (info.ok() && info->type() == arrow::fs::FileType::NotFound) {
        return Status::NotFound("object store '" + name_ + "': no object '" + key + "'");
      }
    }
    return Error("read", key, file.status().message());
  }
  arrow::Result<int64_t> size = (*file)->GetSize();
  if (!size.ok()) return Error("read", key, size.status().message());
  arrow::Result<std::shared_ptr<arrow::Buffer>> bytes = (*file)->ReadAt(0, *size);
  if (!bytes.ok()) return Error("read", key, bytes.status().message());
  if ((*bytes)->size() != *size) return Error("read", key, "it was cut short");
  return (*bytes)->ToString();
}

Status ObjectStore::Put(const std::string& key, std::string_view bytes) {
  if (is_local_) {
    const std::string parent = std::filesystem::path(Path(key)).parent_path().string();
    if (arrow::Status made = fs_->CreateDir(parent, true); !made.ok()) {
      return Error("write", key, made.message());
    }
  }
  // An S3 object appears whole when its upload completes; a local file is written under a
  // hidden temporary name and renamed, so that no reader sees half of it.
  const std::filesystem::path path(Path(key));
  const std::string written =
      is_local_ ? (path.parent_path() / ("." + path.filename().string() + ".tmp")).string()
                : path.string();
  arrow::Result<std::shared_ptr<arrow::io::OutputStream>> out =
      fs_->OpenOutputStream(written, nullptr);
  if (!out.ok()) return Error("write", key, out.status().message());
  arrow::Status status = (*out)->Write(bytes.data(), static_cast<int64_t>(bytes.size()));
  if (status.ok()) status = (*out)->Close();
  if (status.ok() && is_local_) status = fs_->Move(written, path.string());
  if (!status.ok()) return Error("write", key, status.message());
  return Status::OK();
}

Result<StoredFile> ObjectStore::PutFile(const std::string& key, const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("cannot open '" + path + "': " + strerror(errno));
  struct stat st {};
  fstat(fd, &st);
  StoredFile stored;
  stored.key = key;
  stored.bytes = static_cast<uint64_t>(st.st_size);
  stored.part_bytes = part_bytes_;
  const size_t parts = PartCount(stored.bytes, part_bytes_);
  stored.part_crc32c.assign(parts, 0);
  Status status = ParallelFor(parts, threads_, [&](size_t i) -> Status {
    const uint64_t offset = i * part_bytes_;
    const size_t size = static_cast<size_t>(std::min(part_bytes_, stored.bytes - offset));
    std::string bytes(size, '\0');
    QUIVER_RETURN_NOT_OK(ReadAt(fd, bytes.data(), size, offset, path));
    stored.part_crc32c[i] = Crc32c(bytes);
    return Put(PartKey(key, i), bytes);
  });
  // The whole file's CRC, from the parts' bytes again (page cache; cheap beside the upload).
  uint32_t crc = 0;
  std::string chunk;
  for (uint64_t offset = 0; status.ok() && offset < stored.bytes;) {
    const size_t size = static_cast<size_t>(std::min<uint64_t>(4 << 20, stored.bytes - offset));
    chunk.resize(size);
    status = ReadAt(fd, chunk.data(), size, offset, path);
    crc = Crc32c(chunk, crc);
    offset += size;
  }
  close(fd);
  QUIVER_RETURN_NOT_OK(status);
  stored.crc32c = crc;
  return stored;
}

Result<uint64_t> ObjectStore::Download(const std::vector<DownloadJob>& jobs) {
  struct Part {
    size_t job;
    size_t index;
  };
  std::vector<Part> parts;
  std::vector<int> fds(jobs.size(), -1);
  Status status;
  for (size_t j = 0; j < jobs.size() && status.ok(); ++j) {
    const StoredFile& file = jobs[j].file;
    if (file.part_bytes == 0 || file.part_crc32c.size() != PartCount(file.bytes, file.part_bytes)) {
      status = Status::Corruption("object store '" + name_ + "': '" + file.key +
                                  "': its part list does not match its size");
      break;
    }
    fds[j] = open(jobs[j].path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fds[j] < 0) {
      status = Status::IOError("cannot create '" + jobs[j].path + "': " + strerror(errno));
      break;
    }
    for (size_t i = 0; i < file.part_crc32c.size(); ++i) parts.push_back({j, i});
  }
  std::atomic<uint64_t> read{0};
  if (status.ok()) {
    status = ParallelFor(parts.size(), threads_, [&](size_t p) -> Status {
      const DownloadJob& job = jobs[parts[p].job];
      const StoredFile& file = job.file;
      const size_t index = parts[p].index;
      const std::string key = PartKey(file.key, index);
      const uint64_t offset = index * file.part_bytes;
      const uint64_t want = std::min(file.part_bytes, file.bytes - std::min(file.bytes, offset));
      arrow::Result<std::shared_ptr<arrow::io::RandomAccessFile>> in =
          fs_->OpenInputFile(Path(key));
      if (!in.ok()) return Error("read", key, in.status().message());
      arrow::Result<int64_t> size = (*in)->GetSize();
      if (!size.ok()) return Error("read", key, size.status().message());
      if (static_cast<uint64_t>(*size) != want) {
        return Status::Corruption("object store '" + name_ + "': '" + key + "' holds " +
                                  std::to_string(*size) + " bytes; the manifest says " +
                                  std::to_string(want));
      }
      arrow::Result<std::shared_ptr<arrow::Buffer>> bytes = (*in)->ReadAt(0, *size);
      if (!bytes.ok()) return Error("read", key, bytes.status().message());
      if (static_cast<uint64_t>((*bytes)->size()) != want ||
          Crc32c((*bytes)->data(), want) != file.part_crc32c[index]) {
        return Status::Corruption("object store '" + name_ + "': '" + key +
                                  "' fails its checksum (damaged or replaced)");
      }
      read += want;
      return WriteAt(fds[parts[p].job], (*bytes)->data(), want, offset, job.path);
    });
  }
  for (size_t j = 0; j < fds.size(); ++j) {
    if (fds[j] < 0) continue;
    if (status.ok() && fdatasync(fds[j]) != 0) {
      status = Status::IOError("cannot sync '" + jobs[j].path + "': " + strerror(errno));
    }
    close(fds[j]);
  }
  QUIVER_RETURN_NOT_OK(status);
  return read.load();
}

Result<std::vector<ObjectInfo>> ObjectStore::List(const std::string& dir) {
  arrow::fs::FileSelector selector;
  selector.base_dir = Path(dir);
  selector.recursive = true;
  selector.allow_not_found = true;
  arrow::Result<std::vector<arrow::fs::FileInfo>> infos = fs_->GetFileInfo(selector);
  if (!infos.ok()) return Error("list", dir, infos.status().message());
  std::vector<ObjectInfo> objects;
  for (const arrow::fs::FileInfo& info : *infos) {
    if (info.type() != arrow::fs::FileType::File) continue;
    std::string key = info.path();
    if (key.starts_with(root_ + "/")) key = key.substr(root_.size() + 1);
    objects.push_back({std::move(key), static_cast<uint64_t>(std::max<int64_t>(info.size(), 0))});
  }
  std::sort(objects.begin(), objects.end(),
            [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
  return objects;
}

Result<std::shared_ptr<arrow::io::RandomAccessFile>> ObjectStore::OpenInput(
    const std::string& key) {
  arrow::Result<std::shared_ptr<arrow::io::RandomAccessFile>> file = fs_->OpenInputFile(Path(key));
  if (!file.ok()) return Error("read", key, file.status().message());
  return *file;
}

Status ObjectStore::Delete(const std::string& key) {
  arrow::Status status = fs_->DeleteFile(Path(key));
  if (!status.ok()) {
    arrow::Result<arrow::fs::FileInfo> info = fs_->GetFileInfo(Path(key));
    if (info.ok() && info->type() == arrow::fs::FileType::NotFound) return Status::OK();
    return Error("delete", key, status.message());
  }
  return Status::OK();
}

}  // namespace quiver::objstore
