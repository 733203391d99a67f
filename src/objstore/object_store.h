// ObjectStore: a prefix of an object store (`s3://bucket/prefix`, `file:///path`, or a local
// path), through Arrow's filesystem layer (arrow::fs::FileSystemFromUri: S3's query options and
// AWS credentials work as Arrow documents them). Keys are relative to the prefix, '/'-separated.
//
// Large files travel as numbered parts (objects `<key>/00000`, `<key>/00001`, ... of at most
// part_bytes each) so that they upload and download in parallel from any store, and each part's
// CRC-32C is checked on the way back (docs/object-storage.md).
//
// Every error is a Status naming the store (its URI without credentials) and the key.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace arrow::fs {
class FileSystem;
}
namespace arrow::io {
class RandomAccessFile;
}

namespace quiver::objstore {

// A local file as stored: its size, its CRC-32C, and each part's.
struct StoredFile {
  std::string key;
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
  uint64_t part_bytes = 0;
  std::vector<uint32_t> part_crc32c;  // one per part (a file of 0 bytes has one empty part)
};

struct ObjectInfo {
  std::string key;  // relative to the prefix
  uint64_t bytes = 0;
};

struct DownloadJob {
  StoredFile file;
  std::string path;  // the local file written (created or replaced)
};

class ObjectStore {
 public:
  // Parses `uri` and, for S3, initializes the AWS SDK once per process. Nothing is contacted yet.
  static Result<std::unique_ptr<ObjectStore>> Open(const std::string& uri,
                                                   uint64_t part_bytes = 32 << 20, int threads = 8);
  ~ObjectStore();

  // The URI with any user:password removed, for messages and metrics.
  const std::string& name() const { return name_; }

  // Creates the prefix (S3: the bucket when missing and allow_bucket_creation=true).
  Status Prepare();
  // A small object, whole. kNotFound when it does not exist.
  Result<std::string> Get(const std::string& key);
  Status Put(const std::string& key, std::string_view bytes);
  // Uploads the local file at `path` as parts of `key`, in parallel.
  Result<StoredFile> PutFile(const std::string& key, const std::string& path);
  // Downloads every job's parts in parallel, each checked against its CRC-32C; kCorruption
  // naming the object when a part is missing, short or damaged. Returns the bytes read.
  Result<uint64_t> Download(const std::vector<DownloadJob>& jobs);
  // The objects under `dir` (recursively; "" for the whole prefix), sorted by key. A missing dir
  // is empty.
  Result<std::vector<ObjectInfo>> List(const std::string& dir);
  Status Delete(const std::string& key);
  // An object (or a file of a local directory) for random access: a Parquet file's reader.
  Result<std::shared_ptr<arrow::io::RandomAccessFile>> OpenInput(const std::string& key);

 private:
  ObjectStore() = default;
  std::string Path(const std::string& key) const;
  Status Error(const std::string& what, const std::string& key, const std::string& why) const;

  std::shared_ptr<arrow::fs::FileSystem> fs_;
  std::string root_;  // the prefix's path in fs_
  std::string name_;
  bool is_local_ = false;
  uint64_t part_bytes_ = 0;
  int threads_ = 1;
};

// `uri` without user:password@ (an S3 access key may be given there), for messages.
std::string WithoutCredentials(const std::string& uri);

// Part `index` of `key`: "<key>/00000".
std::string PartKey(const std::string& key, size_t index);

// Shuts the AWS SDK down when an S3 store was opened (at the end of main: it must not run
// during static destruction).
void FinalizeObjectStores();

}  // namespace quiver::objstore
