// What the storage tests share: a FileOps that fails writes and syncs on demand, the fixture
// with a fresh data directory, and helpers over tables and files (tests only).
#pragma once

#include <arrow/io/file.h>
#include <arrow/ipc/api.h>
#include <arrow/util/key_value_metadata.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "common/arrow_status.h"
#include "common/crc32c.h"
#include "engine/test_util.h"
#include "kv/keyspace_test_util.h"
#include "server/resp/local.h"
#include "storage/database.h"

namespace quiver::storage {

using testing::ArrayFromJson;
using testing::BatchFromJson;
using testing::SchemaFromJson;
using testing::ValueOrFail;
namespace fs = std::filesystem;

template <typename T>
inline Result<T> FromArrowResult(arrow::Result<T> result) {
  if (!result.ok()) return FromArrow(result.status());
  return std::move(result).ValueUnsafe();
}

// Fails writes once `write_budget` bytes were written (ENOSPC, like a full disk) and syncs while
// `fail_sync` (EIO).
class FaultOps : public FileOps {
 public:
  std::atomic<int64_t> write_budget{-1};  // -1: unlimited
  std::atomic<bool> fail_sync{false};

  ssize_t Write(int fd, const void* data, size_t size) override {
    const int64_t budget = write_budget.load();
    if (budget >= 0) {
      if (budget == 0) {
        errno = ENOSPC;
        return -1;
      }
      size = std::min<size_t>(size, static_cast<size_t>(budget));
      write_budget -= static_cast<int64_t>(size);
    }
    return FileOps::Write(fd, data, size);
  }
  int Sync(int fd) override {
    if (fail_sync) {
      errno = EIO;
      return -1;
    }
    return FileOps::Sync(fd);
  }
};

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/quiver-storage-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  DatabaseOptions Options(FsyncPolicy fsync = FsyncPolicy::kEverySec) {
    DatabaseOptions options;
    options.data_dir = dir_;
    options.fsync = fsync;
    options.snapshot_wal_bytes = 0;
    options.snapshot_interval_seconds = 0;
    return options;
  }
  // fsync always, every write through `ops` (which injects the faults).
  DatabaseOptions FaultyOptions(FaultOps* ops) {
    DatabaseOptions options = Options(FsyncPolicy::kAlways);
    options.ops = ops;
    return options;
  }
  std::unique_ptr<Database> Open(const DatabaseOptions& options) {
    return ValueOrFail(Database::Open(options));
  }
  std::unique_ptr<Database> Open() { return Open(Options()); }
  void KeyspaceLogFailure(FsyncPolicy policy);

  std::string dir_;
};

inline constexpr char kSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "utf8"}, "x": {"dtype": "float32"}, "s": {"dtype": "utf8"},
    "emb": {"dtype": "fixed_size_list[float32, 2]"}, "n": {"dtype": "int64", "nullable": false}}})";

inline std::shared_ptr<arrow::RecordBatch> Rows(const std::string& ids, const std::string& xs,
                                                const std::string& ss, const std::string& ns) {
  std::string embs = "[";
  const int64_t count = ArrayFromJson(arrow::utf8(), ids)->length();
  for (int64_t i = 0; i < count; ++i) {
    embs += (i ? ", " : "") + std::string("[") + std::to_string(i) + ", 0.5]";
  }
  embs += "]";
  return BatchFromJson({{"id", arrow::utf8(), ids},
                        {"x", arrow::float32(), xs},
                        {"s", arrow::utf8(), ss},
                        {"emb", arrow::fixed_size_list(arrow::float32(), 2), embs},
                        {"n", arrow::int64(), ns}});
}

// Every table's rows as text, by table and key: equal contents compare equal.
inline std::map<std::string, std::map<std::string, std::string>> Contents(Catalog& catalog) {
  std::map<std::string, std::map<std::string, std::string>> contents;
  for (const auto& table : catalog.Tables()) {
    auto& rows = contents[table->name() + " " + table->schema().ToJson()];
    auto reader = ValueOrFail(table->Scan(3));
    for (;;) {
      std::shared_ptr<arrow::RecordBatch> batch;
      EXPECT_TRUE(reader->ReadNext(&batch).ok());
      if (batch == nullptr) break;
      for (int64_t i = 0; i < batch->num_rows(); ++i) {
        std::string key, row;
        for (int c = 0; c < batch->num_columns(); ++c) {
          const std::string value =
              ValueOrFail(FromArrowResult(batch->column(c)->GetScalar(i)))->ToString() + "|";
          (table->schema().IsKeyColumn(c) ? key : row) += value;
        }
        rows[key] = row;
      }
    }
  }
  return contents;
}

inline std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

inline void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(offset));
  char byte;
  file.read(&byte, 1);
  byte ^= 0x20;
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(&byte, 1);
}

}  // namespace quiver::storage
