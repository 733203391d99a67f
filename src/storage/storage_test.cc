// Tests of the write-ahead log, snapshots, the catalog file and recovery (storage/), including
// torn and corrupt files and a disk that fills up or fails (FaultOps).
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
namespace {

using testing::ArrayFromJson;
using testing::BatchFromJson;
using testing::SchemaFromJson;
using testing::ValueOrFail;
namespace fs = std::filesystem;

template <typename T>
Result<T> FromArrowResult(arrow::Result<T> result) {
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

constexpr char kSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "utf8"}, "x": {"dtype": "float32"}, "s": {"dtype": "utf8"},
    "emb": {"dtype": "fixed_size_list[float32, 2]"}, "n": {"dtype": "int64", "nullable": false}}})";

std::shared_ptr<arrow::RecordBatch> Rows(const std::string& ids, const std::string& xs,
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
std::map<std::string, std::map<std::string, std::string>> Contents(Catalog& catalog) {
  std::map<std::string, std::map<std::string, std::string>> contents;
  for (const auto& table : catalog.Tables()) {
    auto& rows = contents[table->name() + " " + table->schema().ToJson()];
    auto reader = ValueOrFail(table->Scan(3));
    for (;;) {
      std::shared_ptr<arrow::RecordBatch> batch;
      EXPECT_TRUE(reader->ReadNext(&batch).ok());
      if (batch == nullptr) break;
      for (int64_t i = 0; i < batch->num_rows(); ++i) {
        std::string row;
        for (int c = 1; c < batch->num_columns(); ++c) {
          row += ValueOrFail(FromArrowResult(batch->column(c)->GetScalar(i)))->ToString() + "|";
        }
        rows[ValueOrFail(FromArrowResult(batch->column(0)->GetScalar(i)))->ToString()] = row;
      }
    }
  }
  return contents;
}

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(static_cast<std::streamoff>(offset));
  char byte;
  file.read(&byte, 1);
  byte ^= 0x20;
  file.seekp(static_cast<std::streamoff>(offset));
  file.write(&byte, 1);
}

TEST(Crc32cTest, KnownValues) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62A8AB43u);
  const std::string text = "the quick brown fox jumps over the lazy dog, twice or more";
  EXPECT_EQ(Crc32c(text.substr(20), Crc32c(text.substr(0, 20))), Crc32c(text));
}

// ---------------------------------------------------------------------------------------------
// The log alone.

std::vector<std::pair<uint64_t, std::string>> ScanAll(const std::string& dir, WalScan* scan_out,
                                                      bool truncate = false,
                                                      Status* status = nullptr) {
  std::vector<std::pair<uint64_t, std::string>> records;
  Result<WalScan> scan = ScanWal(dir, truncate, FileOps::Default(), [&](const WalRecord& r) {
    records.emplace_back(r.lsn, std::string(r.payload));
    return Status::OK();
  });
  if (status != nullptr) *status = scan.status();
  if (scan.ok() && scan_out != nullptr) *scan_out = *scan;
  return records;
}

// Appends `count` records ("record <i>" padded to various sizes) to a new log in `dir`; returns
// each record's offset in its segment.
std::vector<uint64_t> WriteLog(const std::string& dir, int count, uint64_t segment_bytes) {
  WalOptions options;
  options.segment_bytes = segment_bytes;
  options.fsync = FsyncPolicy::kNo;
  auto wal = ValueOrFail(Wal::Open(dir, options, WalScan{}, 1));
  std::vector<uint64_t> offsets;
  uint64_t offset = kSegmentHeaderBytes;
  for (int i = 1; i <= count; ++i) {
    const std::string payload = "record " + std::to_string(i) + std::string(i * 7 % 50, '.');
    EXPECT_EQ(ValueOrFail(wal->Append(RecordType::kUpsert, {payload})), uint64_t(i));
    offsets.push_back(offset);
    offset += kRecordHeaderBytes + kRecordBodyPrefixBytes + payload.size();
  }
  return offsets;
}

TEST_F(StorageTest, WalRecordsComeBackInOrderAcrossSegments) {
  WriteLog(dir_, 200, 1024);
  WalScan scan;
  auto records = ScanAll(dir_, &scan);
  ASSERT_EQ(records.size(), 200u);
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].first, i + 1);
    EXPECT_TRUE(records[i].second.starts_with("record " + std::to_string(i + 1)));
  }
  EXPECT_GT(scan.segments.size(), 5u);
  EXPECT_EQ(scan.last_lsn, 200u);
  EXPECT_EQ(scan.end_lsn, 201u);
  EXPECT_TRUE(scan.dropped.empty());
}

TEST_F(StorageTest, WalTornFinalRecordIsDroppedAndTheLogContinues) {
  WriteLog(dir_, 10, 1 << 20);
  const std::string segment = Files(dir_).back();
  fs::resize_file(segment, fs::file_size(segment) - 5);  // a crash mid-append
  WalScan scan;
  auto records = ScanAll(dir_, &scan);
  EXPECT_EQ(records.size(), 9u);
  EXPECT_NE(scan.dropped.find("torn final record"), std::string::npos) << scan.dropped;
  // The torn bytes are cut off, so the log continues cleanly.
  auto wal = ValueOrFail(Wal::Open(dir_, WalOptions{}, scan, scan.end_lsn));
  EXPECT_EQ(ValueOrFail(wal->Append(RecordType::kUpsert, {"again"})), 10u);
  wal->Close();
  records = ScanAll(dir_, &scan);
  ASSERT_EQ(records.size(), 10u);
  EXPECT_EQ(records.back().second, "again");
  EXPECT_TRUE(scan.dropped.empty());
}

TEST_F(StorageTest, WalZeroFilledTailIsTorn) {
  WriteLog(dir_, 3, 1 << 20);
  const std::string segment = Files(dir_).back();
  fs::resize_file(segment, fs::file_size(segment) + 4096);  // space the file system never filled
  WalScan scan;
  EXPECT_EQ(ScanAll(dir_, &scan).size(), 3u);
  EXPECT_FALSE(scan.dropped.empty());
}

TEST_F(StorageTest, WalCorruptionNamesFileAndOffset) {
  const auto offsets = WriteLog(dir_, 10, 1 << 20);
  const std::string segment = Files(dir_).back();
  FlipByte(segment, offsets[4] + kRecordHeaderBytes + 12);  // inside record 5's payload
  Status status;
  ScanAll(dir_, nullptr, false, &status);
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find(segment), std::string::npos) << status.ToString();
  EXPECT_NE(status.message().find("offset " + std::to_string(offsets[4])), std::string::npos)
      << status.ToString();
  EXPECT_NE(status.message().find("--wal-truncate-corrupt"), std::string::npos);
  EXPECT_EQ(fs::file_size(segment), offsets.back() + kRecordHeaderBytes + kRecordBodyPrefixBytes +
                                        std::string("record 10").size() + 70 % 50)
      << "nothing is changed without the flag";
  // Asked to, the log is cut there.
  WalScan scan;
  auto records = ScanAll(dir_, &scan, /*truncate=*/true, &status);
  QUIVER_ASSERT_OK(status);
  EXPECT_EQ(records.size(), 4u);
  EXPECT_TRUE(scan.cut);
  EXPECT_EQ(fs::file_size(segment), offsets[4]);
}

TEST_F(StorageTest, WalDamagedFinalRecordIsCorruptionNotTorn) {
  const auto offsets = WriteLog(dir_, 4, 1 << 20);
  FlipByte(Files(dir_).back(), offsets[3] + kRecordHeaderBytes + 10);
  Status status;
  ScanAll(dir_, nullptr, false, &status);
  EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
}

TEST_F(StorageTest, WalDamagedLengthIsCorruption) {
  const auto offsets = WriteLog(dir_, 4, 1 << 20);
  FlipByte(Files(dir_).back(), offsets[1] + 1);  // record 2's length: fails the header checksum
  Status status;
  ScanAll(dir_, nullptr, false, &status);
  EXPECT_EQ(status.code(), StatusCode::kCorruption) << status.ToString();
  EXPECT_NE(status.message().find("header fails its checksum"), std::string::npos);
}

TEST_F(StorageTest, WalMissingOrCutSegmentIsCorruption) {
  WriteLog(dir_, 200, 1024);
  auto files = Files(dir_);
  ASSERT_GT(files.size(), 3u);
  fs::resize_file(files[1], fs::file_size(files[1]) - 3);  // an older segment cut short
  Status status;
  ScanAll(dir_, nullptr, false, &status);
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find(files[1]), std::string::npos) << status.ToString();
  fs::remove(files[1]);
  ScanAll(dir_, nullptr, false, &status);
  EXPECT_EQ(status.code(), StatusCode::kCorruption);
  EXPECT_NE(status.message().find("a segment is missing"), std::string::npos) << status.ToString();
}

TEST_F(StorageTest, WalGroupCommitSharesFsyncs) {
  WalOptions options;
  options.fsync = FsyncPolicy::kAlways;
  auto wal = ValueOrFail(Wal::Open(dir_, options, WalScan{}, 1));
  const uint64_t fsyncs_before = wal->fsyncs();
  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        auto lsn = wal->Append(RecordType::kUpsert, {std::string(100, 'x')});
        if (!lsn.ok() || !wal->Commit(*lsn).ok() || wal->synced_lsn() < *lsn) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures, 0);
  const uint64_t fsyncs = wal->fsyncs() - fsyncs_before;
  EXPECT_LT(fsyncs, uint64_t{kThreads * kEach}) << "every commit synced alone";
  EXPECT_EQ(wal->synced_lsn(), uint64_t{kThreads * kEach});
}

// ---------------------------------------------------------------------------------------------
// The database.

TEST_F(StorageTest, RecoversEveryChangeFromTheLog) {
  std::map<std::string, std::map<std::string, std::string>> before;
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    ValueOrFail(t->Upsert(*Rows(R"(["a", "b", "c"])", "[1, 2, null]",
                                R"(["x", null, "long string value"])", "[1, 2, 3]")));
    ValueOrFail(t->Upsert(
        *BatchFromJson({{"id", arrow::utf8(), R"(["b"])"}, {"x", arrow::float32(), "[20]"}})));
    EXPECT_EQ(ValueOrFail(t->Delete(*ArrayFromJson(arrow::utf8(), R"(["a", "zz"])"))), 1);
    // A name dropped and created again is another table.
    auto u = ValueOrFail(db->catalog().CreateTable("u", SchemaFromJson(kSchema)));
    ValueOrFail(u->Upsert(*Rows(R"(["old"])", "[1]", R"(["o"])", "[1]")));
    QUIVER_ASSERT_OK(db->catalog().DropTable("u"));
    auto u2 = ValueOrFail(db->catalog().CreateTable(
        "u",
        SchemaFromJson(
            R"({"key": "k", "columns": {"k": {"dtype": "int64"}, "v": {"dtype": "float64"}}})")));
    ValueOrFail(u2->Upsert(
        *BatchFromJson({{"k", arrow::int64(), "[7, 8]"}, {"v", arrow::float64(), "[0.5, null]"}})));
    QUIVER_ASSERT_OK(db->catalog().CreateTable("empty", SchemaFromJson(kSchema)).status());
    before = Contents(db->catalog());
  }
  auto db = Open();
  EXPECT_EQ(Contents(db->catalog()), before);
  EXPECT_EQ(db->catalog().ListTables(), (std::vector<std::string>{"empty", "t", "u"}));
  // Ten records; the catalog file (rewritten at each create and drop) already holds the tables,
  // so their creates are not replayed, but their writes are.
  EXPECT_EQ(db->recovery().wal_records, 10u);
  EXPECT_GE(db->recovery().replayed, 4u);
  // Ids keep growing across restarts.
  auto again = ValueOrFail(db->catalog().CreateTable("w", SchemaFromJson(kSchema)));
  EXPECT_GT(again->id(), ValueOrFail(db->catalog().GetTable("u"))->id());
}

TEST_F(StorageTest, SnapshotThenLogReplay) {
  std::map<std::string, std::map<std::string, std::string>> before;
  {
    auto options = Options();
    options.wal_segment_bytes = 4096;
    auto db = Open(options);
    // A table never written must not pin the log: its base moves with each snapshot.
    QUIVER_ASSERT_OK(db->catalog().CreateTable("idle", SchemaFromJson(kSchema)).status());
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    for (int i = 0; i < 50; ++i) {
      const std::string id = "\"k" + std::to_string(i % 20) + "\"";
      ValueOrFail(t->Upsert(*Rows("[" + id + "]", "[" + std::to_string(i) + "]", R"(["v"])",
                                  "[" + std::to_string(i) + "]")));
    }
    const size_t segments = Files(dir_ + "/wal").size();
    ASSERT_GT(segments, 3u);
    SnapshotReport report = ValueOrFail(db->Snapshot());
    ASSERT_EQ(report.tables.size(), 2u);
    EXPECT_FALSE(report.tables[0].written);  // "idle"
    EXPECT_TRUE(report.tables[1].written);
    EXPECT_EQ(report.tables[1].rows, 20);
    EXPECT_EQ(report.wal_segments_removed, segments - 1) << "only the current segment stays";
    EXPECT_EQ(Files(dir_ + "/wal").size(), 1u);
    // Unchanged: not written again.
    report = ValueOrFail(db->Snapshot({"t"}));
    EXPECT_FALSE(report.tables[0].written);
    QUIVER_EXPECT_ERROR(db->Snapshot({"nope"}), StatusCode::kNotFound, "nope");
    ValueOrFail(
        t->Upsert(*Rows(R"(["k1", "new"])", "[100, 101]", R"(["after", "snapshot"])", "[1, 2]")));
    ValueOrFail(t->Delete(*ArrayFromJson(arrow::utf8(), R"(["k2"])")));
    before = Contents(db->catalog());
  }
  // The snapshot is a plain Arrow IPC file.
  const auto snapshots = Files(dir_ + "/snapshots");
  ASSERT_EQ(snapshots.size(), 1u);
  auto file = ValueOrFail(FromArrowResult(arrow::io::ReadableFile::Open(snapshots[0])));
  auto reader = ValueOrFail(FromArrowResult(arrow::ipc::RecordBatchFileReader::Open(file)));
  EXPECT_EQ(ValueOrFail(FromArrowResult(reader->CountRows())), 20);
  EXPECT_EQ(reader->schema()->metadata()->Get("quiver.table").ValueOr(""), "t");
  // Left by a crash during a snapshot: removed at the next start.
  std::ofstream(dir_ + "/snapshots/2-999.arrow") << "orphan";
  std::ofstream(dir_ + "/snapshots/2-1000.arrow.tmp") << "partial";

  auto db = Open();
  EXPECT_EQ(Files(dir_ + "/snapshots"), snapshots);
  EXPECT_EQ(Contents(db->catalog()), before);
  EXPECT_EQ(db->recovery().snapshot_rows, 20);
  EXPECT_EQ(db->recovery().replayed, 2u);
}

TEST_F(StorageTest, SnapshotsWhileWritersAndReadersGoOn) {
  auto options = Options(FsyncPolicy::kNo);
  options.wal_segment_bytes = 64 << 10;
  std::map<std::string, std::map<std::string, std::string>> before;
  {
    auto db = Open(options);
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    std::atomic<bool> stop{false};
    std::atomic<int> errors{0}, batches{0};
    // Each batch rewrites the same 50 keys with one value, and adds 5 new keys.
    std::thread writer([&] {
      for (int b = 0; !stop; ++b) {
        std::string ids = "[", xs = "[", ss = "[", ns = "[";
        for (int i = 0; i < 55; ++i) {
          const std::string key =
              i < 50 ? "k" + std::to_string(i) : "n" + std::to_string(b) + "-" + std::to_string(i);
          ids += (i ? ", \"" : "\"") + key + "\"";
          xs += (i ? ", " : "") + std::to_string(b);
          ss += (i ? ", \"" : "\"") + std::string(i % 3 ? "s" : "a longer string, on the heap ") +
                std::to_string(b) + "\"";
          ns += (i ? ", " : "") + std::to_string(b);
        }
        if (!t->Upsert(*Rows(ids + "]", xs + "]", ss + "]", ns + "]")).ok()) ++errors;
        if (b % 7 == 3 &&
            !t->Delete(*ArrayFromJson(arrow::utf8(), "[\"n" + std::to_string(b - 1) + "-50\"]"))
                 .ok())
          ++errors;
        ++batches;
      }
    });
    std::thread reader([&] {
      auto keys = ArrayFromJson(arrow::utf8(), R"(["k0", "k17", "k49"])");
      while (!stop) {
        auto read = t->Read(*keys, {"n"});
        if (!read.ok()) ++errors;
      }
    });
    for (int i = 0; i < 6; ++i) {
      // Each snapshot after a few more batches: counts, not time, so a busy machine passes too.
      while (batches.load() < (i + 1) * 3) std::this_thread::yield();
      auto report = db->Snapshot();
      if (!report.ok()) ++errors;
    }
    stop = true;
    writer.join();
    reader.join();
    EXPECT_EQ(errors, 0);
    EXPECT_GT(batches, 6);
    before = Contents(db->catalog());
  }
  auto db = Open(options);
  EXPECT_EQ(Contents(db->catalog()), before);
  // One value per batch across the 50 rewritten keys: no batch is half-applied.
  std::set<std::string> values;
  for (const auto& [key, row] : before.begin()->second) {
    if (key.starts_with("k")) values.insert(row.substr(row.rfind('|', row.size() - 2) + 1));
  }
  EXPECT_EQ(values.size(), 1u);
}

TEST_F(StorageTest, MissingDamagedSnapshotOrCatalogStopsTheStart) {
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    ValueOrFail(t->Upsert(*Rows(R"(["a", "b"])", "[1, 2]", R"(["x", "y"])", "[1, 2]")));
    ValueOrFail(db->Snapshot());
  }
  const std::string snapshot = Files(dir_ + "/snapshots").at(0);
  const std::string saved = dir_ + "/saved.arrow";
  fs::copy_file(snapshot, saved);
  FlipByte(snapshot, fs::file_size(snapshot) / 2);
  QUIVER_EXPECT_ERROR(Database::Open(Options()), StatusCode::kCorruption, snapshot);
  fs::remove(snapshot);
  QUIVER_EXPECT_ERROR(Database::Open(Options()), StatusCode::kCorruption, snapshot);
  fs::copy_file(saved, snapshot);
  ASSERT_TRUE(Database::Open(Options()).ok());
  FlipByte(dir_ + "/catalog", 100);
  QUIVER_EXPECT_ERROR(Database::Open(Options()), StatusCode::kCorruption, "catalog");
}

TEST_F(StorageTest, CorruptLogStopsTheStartUnlessCut) {
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    for (int i = 0; i < 5; ++i) {
      ValueOrFail(t->Upsert(*Rows("[\"k" + std::to_string(i) + "\"]", "[1]", R"(["x"])", "[1]")));
    }
  }
  const std::string segment = Files(dir_ + "/wal").at(0);
  FlipByte(segment, fs::file_size(segment) * 2 / 3);
  QUIVER_EXPECT_ERROR(Database::Open(Options()), StatusCode::kCorruption,
                      segment + "' is corrupt at offset");
  auto options = Options();
  options.wal_truncate_corrupt = true;
  int64_t rows;
  {
    auto db = Open(options);
    EXPECT_NE(db->recovery().dropped.find("the log from"), std::string::npos);
    auto t = ValueOrFail(db->catalog().GetTable("t"));
    rows = t->Stats().rows;
    EXPECT_GT(rows, 0);
    EXPECT_LT(rows, 5);
    ValueOrFail(t->Upsert(*Rows(R"(["after"])", "[1]", R"(["x"])", "[1]")));
  }
  // Cut once, it starts cleanly from then on.
  auto db = Open();
  EXPECT_EQ(ValueOrFail(db->catalog().GetTable("t"))->Stats().rows, rows + 1);
}

// The data directory as a crash (a SIGKILL) would leave it while `db` runs: its files as they
// are now, without what a clean close adds. Replaces the directory once `db` is gone.
class CrashImage {
 public:
  explicit CrashImage(const std::string& dir) : dir_(dir), image_(dir + ".crash") {
    fs::copy(dir_, image_, fs::copy_options::recursive);
  }
  void Restore() {
    fs::remove_all(dir_);
    fs::rename(image_, dir_);
  }

 private:
  std::string dir_, image_;
};

TEST_F(StorageTest, TornTailIsDroppedAtStart) {
  std::optional<CrashImage> crash;
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    ValueOrFail(t->Upsert(*Rows(R"(["a"])", "[1]", R"(["x"])", "[1]")));
    ValueOrFail(t->Upsert(*Rows(R"(["b"])", "[2]", R"(["y"])", "[2]")));
    crash.emplace(dir_);
  }
  crash->Restore();
  const std::string segment = Files(dir_ + "/wal").at(0);
  fs::resize_file(segment, fs::file_size(segment) - 20);  // the crash was mid-append
  auto db = Open();
  EXPECT_NE(db->recovery().dropped.find("torn"), std::string::npos);
  auto t = ValueOrFail(db->catalog().GetTable("t"));
  auto read = ValueOrFail(t->Read(*ArrayFromJson(arrow::utf8(), R"(["a", "b"])")));
  EXPECT_EQ(read.found_count, 1);
  EXPECT_TRUE(read.found->Value(0));
}

TEST_F(StorageTest, ACutTailAfterACleanCloseIsCorruption) {
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    ValueOrFail(t->Upsert(*Rows(R"(["a"])", "[1]", R"(["x"])", "[1]")));
    ValueOrFail(t->Upsert(*Rows(R"(["b"])", "[2]", R"(["y"])", "[2]")));
  }
  // The close recorded the log's end in the catalog: the last record was synced, so a short
  // file is damage, not a torn write.
  const std::string segment = Files(dir_ + "/wal").at(0);
  fs::resize_file(segment, fs::file_size(segment) - 20);
  QUIVER_EXPECT_ERROR(Database::Open(Options()), StatusCode::kCorruption,
                      "holds LSNs 1..2 but the catalog needs");
}

// Issue 21: files removed from the data directory stop the start, naming what is missing, and
// nothing is deleted; --accept-data-loss starts with what is there.
TEST_F(StorageTest, MissingFilesStopTheStartAndDeleteNothing) {
  auto fill = [&](bool snapshot) {
    fs::remove_all(dir_);
    DatabaseOptions options = Options();
    options.wal_segment_bytes = 4096;
    auto db = ValueOrFail(Database::Open(options));
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    for (int batch = 0; batch < 20; ++batch) {
      const std::string key = "[\"k" + std::to_string(batch) + "\"]";
      ValueOrFail(t->Upsert(*Rows(key, "[1]", R"(["x"])", "[1]")));
      if (snapshot && batch == 9) ValueOrFail(db->Snapshot());
    }
  };
  auto listing = [&] {
    std::vector<std::string> files = Files(dir_ + "/wal");
    for (const std::string& file : Files(dir_ + "/snapshots")) files.push_back(file);
    if (fs::exists(dir_ + "/catalog")) files.push_back(dir_ + "/catalog");
    return files;
  };
  for (bool snapshot : {false, true}) {
    for (const std::string which : {"catalog", "first", "middle", "last", "all"}) {
      SCOPED_TRACE(which + std::string(snapshot ? " after a snapshot" : ""));
      fill(snapshot);
      const std::vector<std::string> segments = Files(dir_ + "/wal");
      ASSERT_GE(segments.size(), 3u);
      std::string expected = "write-ahead log";
      if (which == "catalog") {
        fs::remove(dir_ + "/catalog");
        // Without a snapshot the log from LSN 1 holds everything: nothing is lost.
        if (!snapshot) {
          auto db = ValueOrFail(Database::Open(Options()));
          EXPECT_EQ(ValueOrFail(db->catalog().GetTable("t"))->Stats().rows, 20);
          continue;
        }
        expected = "the catalog '" + dir_ + "/catalog' is missing";
      } else if (which == "first") {
        if (snapshot) continue;  // the segments before the snapshot are not needed
        fs::remove(segments.front());
      } else if (which == "middle") {
        fs::remove(segments[segments.size() / 2]);
      } else if (which == "last") {
        fs::remove(segments.back());
      } else {
        for (const std::string& segment : segments) fs::remove(segment);
      }
      const std::vector<std::string> before = listing();
      auto refused = Database::Open(Options());
      ASSERT_FALSE(refused.ok());
      EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
      EXPECT_NE(refused.status().message().find(expected), std::string::npos)
          << refused.status().message();
      EXPECT_EQ(listing(), before) << "nothing may be deleted";
      DatabaseOptions accept = Options();
      accept.accept_data_loss = true;
      {
        auto db = ValueOrFail(Database::Open(accept));
        if (which == "catalog") {
          // The snapshot file stays for the operator.
          EXPECT_TRUE(fs::exists(before.at(before.size() - 1)));
        }
      }
      ValueOrFail(Database::Open(Options()));  // later starts need no flag
    }
  }
}

TEST_F(StorageTest, SecondOpenOfADirectoryIsRefused) {
  auto db = Open();
  QUIVER_EXPECT_ERROR(Database::Open(Options()), StatusCode::kIOError, "is in use (locked by pid");
}

TEST_F(StorageTest, FullDiskFailsWritesAndChangesNothing) {
  FaultOps ops;
  std::map<std::string, std::map<std::string, std::string>> acknowledged;
  {
    auto db = Open(FaultyOptions(&ops));
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    ValueOrFail(t->Upsert(*Rows(R"(["a", "b"])", "[1, 2]", R"(["x", "y"])", "[1, 2]")));
    acknowledged = Contents(db->catalog());
    for (int64_t budget : {0, 1, 13, 200}) {  // nothing, part of a header, part of a record
      ops.write_budget = budget;
      QUIVER_EXPECT_ERROR(t->Upsert(*Rows(R"(["a", "c"])", "[9, 9]", R"(["z", "z"])", "[9, 9]")),
                          StatusCode::kIOError, "No space left on device");
      QUIVER_EXPECT_ERROR(t->Delete(*ArrayFromJson(arrow::utf8(), R"(["a"])")),
                          StatusCode::kIOError, "No space");
      QUIVER_EXPECT_ERROR(db->catalog().CreateTable("u", SchemaFromJson(kSchema)),
                          StatusCode::kIOError, "No space");
      EXPECT_EQ(Contents(db->catalog()), acknowledged) << "memory holds what is durable";
      EXPECT_TRUE(t->Read(*ArrayFromJson(arrow::utf8(), R"(["a"])")).ok()) << "reads go on";
      EXPECT_FALSE(db->Snapshot().ok());
    }
    ops.write_budget = -1;  // space again: writes go on
    ValueOrFail(t->Upsert(*Rows(R"(["c"])", "[3]", R"(["w"])", "[3]")));
    acknowledged = Contents(db->catalog());
  }
  auto db = Open(Options());
  EXPECT_EQ(Contents(db->catalog()), acknowledged);
}

TEST_F(StorageTest, FailedFsyncRefusesLaterWritesAndKeepsReads) {
  FaultOps ops;
  std::map<std::string, std::map<std::string, std::string>> acknowledged;
  {
    auto db = Open(FaultyOptions(&ops));
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    ValueOrFail(t->Upsert(*Rows(R"(["a"])", "[1]", R"(["x"])", "[1]")));
    acknowledged = Contents(db->catalog());
    ops.fail_sync = true;
    QUIVER_EXPECT_ERROR(t->Upsert(*Rows(R"(["b"])", "[2]", R"(["y"])", "[2]")),
                        StatusCode::kIOError, "Input/output error");
    ops.fail_sync = false;
    QUIVER_EXPECT_ERROR(t->Upsert(*Rows(R"(["c"])", "[3]", R"(["z"])", "[3]")),
                        StatusCode::kIOError, "refused until quiverd restarts");
    EXPECT_TRUE(t->Read(*ArrayFromJson(arrow::utf8(), R"(["a"])")).ok());
  }
  // What reached the disk is recovered: every acknowledged write, and here the unacknowledged
  // one whose fsync failed (its bytes were written).
  auto db = Open(Options());
  auto contents = Contents(db->catalog());
  for (const auto& [key, row] : acknowledged.begin()->second) {
    EXPECT_EQ(contents.begin()->second[key], row);
  }
  EXPECT_EQ(contents.begin()->second.count("c"), 0u);
}

// ---------------------------------------------------------------------------------------------
// The key-value keyspace.

using kv::testing::Describe;

// Runs a command given as words ("SET a 1"); its reply.
resp::Reply Command(resp::LocalClient& kv, const std::string& command) {
  std::vector<std::string> words;
  for (size_t start = 0; start < command.size();) {
    const size_t space = std::min(command.find(' ', start), command.size());
    words.push_back(command.substr(start, space - start));
    start = space + 1;
  }
  return kv.Call(std::vector<std::string_view>(words.begin(), words.end()));
}

void RunAll(resp::LocalClient& kv, const std::vector<std::string>& commands) {
  for (const std::string& command : commands) {
    const resp::Reply reply = Command(kv, command);
    EXPECT_NE(reply.kind, resp::Reply::Kind::kError) << command << ": " << reply.text;
  }
}

TEST_F(StorageTest, KeyspaceRecoversFromTheLogThenFromASnapshotAndTheLog) {
  std::map<std::string, std::string> expected;
  {
    auto db = Open();
    resp::LocalClient kv(db->keyspace());
    RunAll(kv, {"SET old 1",
                "FLUSHALL",
                "SET a 1",
                "SET b hello EX 1000",
                "HSET h f1 v1 f2 v2",
                "HDEL h f1",
                "INCR a",
                "APPEND b _world",
                "RENAME b c",
                "SET gone x PX 1",
                "DEL a",
                "SET a 5",
                "HSET h2 x 1",
                "HDEL h2 x",
                "SET p v EX 100",
                "PERSIST p",
                "EXPIRE c 500",
                "HINCRBY h n 3",
                "MSET m1 1 m2 2",
                "GETDEL m1",
                "SETEX s 50 v",
                "GETEX p PX 90000",
                "INCRBYFLOAT f 1.5",
                "SET a 6 KEEPTTL",
                "EXPIRE a 0"});
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // "gone" is due
    expected = Describe(db->keyspace());
    EXPECT_EQ(expected.size(), 6u);  // c h m2 p s f: "a" went with EXPIRE 0
  }
  {
    auto db = Open();
    EXPECT_EQ(Describe(db->keyspace()), expected);
    EXPECT_GT(db->recovery().replayed, 20u);
    resp::LocalClient kv(db->keyspace());
    ValueOrFail(db->Snapshot());
    RunAll(kv, {"SET after snapshot", "HSET h f3 v3", "DEL m2"});
    expected = Describe(db->keyspace());
  }
  auto db = Open();
  EXPECT_EQ(Describe(db->keyspace()), expected);
  EXPECT_EQ(db->recovery().snapshot_keys, 6);
  EXPECT_EQ(db->recovery().replayed, 3u) << "only the records after the snapshot";
}

TEST_F(StorageTest, KeyspaceSnapshotsWhileWritersGoOnAndRetireTheLog) {
  DatabaseOptions options = Options();
  options.wal_segment_bytes = 64 << 10;
  std::map<std::string, std::string> expected;
  {
    auto db = Open(options);
    // Driven by counts, not time: each snapshot waits for 2,000 more commands, so the test holds
    // however fast the machine is (981 keys in 30 ms windows failed under ASan on a busy one).
    std::atomic<bool> stop{false};
    std::atomic<int> commands{0};
    auto wait_for_commands = [&](int count) {
      while (commands.load() < count) std::this_thread::yield();
    };
    std::vector<std::thread> writers;
    for (int t = 0; t < 2; ++t) {
      writers.emplace_back([&, t] {
        resp::LocalClient kv(db->keyspace());
        std::mt19937 rng(t);
        for (int i = 0; !stop; ++i, ++commands) {
          const std::string key = "k" + std::to_string(rng() % 2000);
          switch (rng() % 4) {
            case 0:
              Command(kv, "SET " + key + " v" + std::to_string(i));
              break;
            case 1:
              Command(kv,
                      "HSET h" + key + " f" + std::to_string(rng() % 8) + " " + std::to_string(i));
              break;
            case 2:
              Command(kv, "DEL " + key);
              break;
            case 3:
              Command(kv, "EXPIRE " + key + " 100000");
              break;
          }
        }
      });
    }
    for (int s = 0; s < 5; ++s) {
      wait_for_commands((s + 1) * 2000);
      SnapshotReport report = ValueOrFail(db->Snapshot());
      ASSERT_TRUE(report.keyspace.has_value());
      EXPECT_TRUE(report.keyspace->written);
    }
    wait_for_commands(12000);
    stop = true;
    for (auto& writer : writers) writer.join();
    expected = Describe(db->keyspace());
    EXPECT_GT(expected.size(), 1000u);
    // An unchanged keyspace writes no new file but lets go of the log before now.
    ValueOrFail(db->Snapshot());
    SnapshotReport unchanged = ValueOrFail(db->Snapshot());
    EXPECT_FALSE(unchanged.keyspace->written);
    EXPECT_LE(db->Stats().wal_segments, 2u);
  }
  int keyspace_files = 0;
  for (const std::string& file : Files(dir_ + "/snapshots")) {
    keyspace_files += file.find("keyspace-") != std::string::npos;
  }
  EXPECT_EQ(keyspace_files, 1) << "older keyspace snapshots are removed";
  auto db = Open(options);
  EXPECT_EQ(Describe(db->keyspace()), expected);
}

// A crash between a first snapshot's rename and its catalog (a directory holding only keyspace
// data has no catalog before that): the log still starts at LSN 1, so nothing is lost, and the
// start goes on, the unnamed snapshot removed.
TEST_F(StorageTest, ASnapshotWithoutACatalogBesideAWholeLogIsACrashNotALoss) {
  std::map<std::string, std::string> expected;
  {
    auto db = Open();
    resp::LocalClient kv(db->keyspace());
    RunAll(kv, {"SET a 1", "HSET h f v"});
    expected = Describe(db->keyspace());
    ValueOrFail(db->Snapshot());
  }
  fs::remove(dir_ + "/catalog");
  ASSERT_EQ(Files(dir_ + "/snapshots").size(), 1u);
  auto db = Open();
  EXPECT_EQ(Describe(db->keyspace()), expected);
  EXPECT_TRUE(Files(dir_ + "/snapshots").empty() ||
              fs::exists(dir_ + "/catalog"));  // the orphan went, or a new catalog names one
}

TEST_F(StorageTest, KeyspaceInMemoryOnlyStartsEmptyAndPinsNoLog) {
  DatabaseOptions options = Options();
  options.keyspace_durable = false;
  options.wal_segment_bytes = 4096;
  {
    auto db = Open(options);
    resp::LocalClient kv(db->keyspace());
    for (int i = 0; i < 200; ++i) RunAll(kv, {"SET k" + std::to_string(i) + " value"});
    EXPECT_EQ(db->Stats().wal_bytes, 0u) << "nothing is logged";
  }
  {
    auto db = Open();  // durable again: an earlier cache is not brought back
    EXPECT_EQ(db->keyspace().Size(), 0);
    resp::LocalClient kv(db->keyspace());
    RunAll(kv, {"SET kept 1"});
  }
  {
    auto db = Open(options);
    EXPECT_EQ(db->keyspace().Size(), 0) << "in memory only: the logged key is let go";
  }
  auto db = Open();
  EXPECT_EQ(db->keyspace().Size(), 0) << "and it does not come back";
}

TEST_F(StorageTest, KeyspaceLogFailureRefusesChangesUntilTheLogIsWrittenAgain) {
  for (FsyncPolicy policy : {FsyncPolicy::kAlways, FsyncPolicy::kEverySec}) {
    SCOPED_TRACE(FsyncPolicyName(policy));
    fs::remove_all(dir_);
    KeyspaceLogFailure(policy);
  }
}

void StorageTest::KeyspaceLogFailure(FsyncPolicy policy) {
  FaultOps ops;
  std::map<std::string, std::string> acknowledged;
  {
    DatabaseOptions options = FaultyOptions(&ops);
    options.fsync = policy;
    auto db = Open(options);
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    resp::LocalClient kv(db->keyspace());
    RunAll(kv, {"SET a 1", "HSET h f v"});
    acknowledged = Describe(db->keyspace());
    ops.write_budget = 0;
    resp::Reply failed = Command(kv, "SET a 2");
    EXPECT_EQ(failed.kind, resp::Reply::Kind::kError);
    EXPECT_NE(failed.text.find("MISCONF the change was applied in memory but could not be logged"),
              std::string::npos)
        << failed.text;
    EXPECT_NE(failed.text.find("No space left on device"), std::string::npos);
    // The change stays buffered; until it is written, changes are refused and change nothing.
    const auto buffered = Describe(db->keyspace());
    for (const char* command : {"SET b 1", "DEL a", "HSET h g w", "FLUSHALL", "EXPIRE a 10"}) {
      resp::Reply refused = Command(kv, command);
      EXPECT_EQ(refused.kind, resp::Reply::Kind::kError) << command;
      EXPECT_NE(refused.text.find("MISCONF changes are refused while the write-ahead log cannot"),
                std::string::npos)
          << refused.text;
    }
    EXPECT_EQ(Describe(db->keyspace()), buffered);
    EXPECT_EQ(Command(kv, "GET a").text, "2") << "reads go on";
    QUIVER_EXPECT_ERROR(t->Upsert(*Rows(R"(["x"])", "[1]", R"(["s"])", "[1]")),
                        StatusCode::kIOError, "No space");
    EXPECT_EQ(Command(kv, "SET b 1").kind, resp::Reply::Kind::kError);
    ops.write_budget = -1;  // space again: the background thread writes the buffer within 1 s
    for (int i = 0; i < 300 && Command(kv, "SET b 1").kind == resp::Reply::Kind::kError; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    RunAll(kv, {"SET c 3"});
    ValueOrFail(t->Upsert(*Rows(R"(["x"])", "[1]", R"(["s"])", "[1]")));
    acknowledged = Describe(db->keyspace());
    EXPECT_EQ(acknowledged.at("a"), "string ttl=0 2") << "the buffered change was written";
  }
  auto db = Open(Options());
  EXPECT_EQ(Describe(db->keyspace()), acknowledged);
  EXPECT_EQ(Contents(db->catalog()).begin()->second.size(), 1u);
}

TEST_F(StorageTest, KeyspaceEvictionsAreDurable) {
  std::map<std::string, std::string> expected;
  {
    auto db = Open();
    resp::LocalClient kv(db->keyspace());
    db->keyspace().SetPolicy(kv::EvictionPolicy::kAllKeysLru);
    db->keyspace().SetMaxMemory(64 << 10);
    for (int i = 0; i < 2000; ++i)
      RunAll(kv, {"SET k" + std::to_string(i) + " " + std::string(100, 'x')});
    EXPECT_GT(db->keyspace().Stats().evicted, 1000);
    expected = Describe(db->keyspace());
  }
  auto db = Open();
  EXPECT_EQ(Describe(db->keyspace()), expected) << "evicted keys do not come back";
}

// n rows "<prefix>0".."<prefix><n-1>" with 60-byte strings.
std::shared_ptr<arrow::RecordBatch> ManyRows(const std::string& prefix, int n) {
  std::string ids = "[", xs = "[", ss = "[", ns = "[";
  for (int i = 0; i < n; ++i) {
    const std::string sep = i ? ", " : "";
    ids += sep + "\"" + prefix + std::to_string(i) + "\"";
    xs += sep + std::to_string(i);
    ss += sep + "\"" + std::string(60, 'v') + "\"";
    ns += sep + std::to_string(i);
  }
  return Rows(ids + "]", xs + "]", ss + "]", ns + "]");
}

TEST_F(StorageTest, TableRowsAndKeysShareOneLimitAndEvictionsAreDurable) {
  std::map<std::string, std::map<std::string, std::string>> tables;
  std::map<std::string, std::string> keys;
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    for (int batch = 0; batch < 4; ++batch) {
      ValueOrFail(t->Upsert(*ManyRows("b" + std::to_string(batch) + "-", 500)));
    }
    EXPECT_EQ(db->memory_limit().UsedMemory(), t->UsedMemory() + db->keyspace().UsedMemory());
    // The keyspace's setters set the database's one limit.
    db->keyspace().SetPolicy(kv::EvictionPolicy::kAllKeysRandom);
    db->keyspace().SetMaxMemory(t->UsedMemory() + (16 << 10));
    EXPECT_EQ(db->memory_limit().MaxMemory(), db->keyspace().MaxMemory());
    resp::LocalClient kv(db->keyspace());
    for (int i = 0; i < 1000; ++i) {
      RunAll(kv, {"SET k" + std::to_string(i) + " " + std::string(100, 'x')});
    }
    EXPECT_GT(t->Stats().evicted, 300) << "keyspace writes evicted table rows";
    EXPECT_GT(db->keyspace().Stats().evicted, 100) << "and keys";
    EXPECT_EQ(db->memory_limit().Evicted(), t->Stats().evicted + db->keyspace().Stats().evicted);
    // A table write evicts keys and rows alike.
    ValueOrFail(t->Upsert(*ManyRows("late-", 300)));
    EXPECT_LE(db->memory_limit().UsedMemory(),
              db->memory_limit().MaxMemory() + t->Stats().index_bytes / 2);
    tables = Contents(db->catalog());
    keys = Describe(db->keyspace());
  }
  auto db = Open();
  EXPECT_EQ(Contents(db->catalog()), tables) << "evicted rows do not come back";
  EXPECT_EQ(Describe(db->keyspace()), keys);
}

TEST_F(StorageTest, DamagedKeyspaceSnapshotStopsTheStart) {
  {
    auto db = Open();
    resp::LocalClient kv(db->keyspace());
    RunAll(kv, {"SET a 1", "HSET h f v"});
    ValueOrFail(db->Snapshot());
  }
  std::string file;
  for (const std::string& path : Files(dir_ + "/snapshots")) {
    if (path.find("keyspace-") != std::string::npos) file = path;
  }
  ASSERT_FALSE(file.empty());
  FlipByte(file, fs::file_size(file) - 3);
  Result<std::unique_ptr<Database>> opened = Database::Open(Options());
  QUIVER_EXPECT_ERROR(opened.status(), StatusCode::kCorruption, "fails its checksum");
  EXPECT_NE(opened.status().message().find(file), std::string::npos) << opened.status().ToString();
  fs::remove(file);
  QUIVER_EXPECT_ERROR(Database::Open(Options()).status(), StatusCode::kCorruption,
                      "cannot be read");
}

TEST_F(StorageTest, RowTtlsSurviveTheLogAndSnapshotsAndReplayDecidesExpiryAsTheWriterDid) {
  const std::string keys = R"(["short", "plain", "hour", "mid", "late"])";
  auto read = [&](Database& db) {
    auto t = ValueOrFail(db.catalog().GetTable("t"));
    return ValueOrFail(t->Read(*ArrayFromJson(arrow::utf8(), keys), {"x", "s"}));
  };
  auto sleep = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  for (bool snapshot : {false, true}) {
    SCOPED_TRACE(snapshot ? "snapshot and log" : "log only");
    fs::remove_all(dir_);
    {
      auto db = Open();
      auto t = ValueOrFail(db->catalog().CreateTable(
          "t", ValueOrFail(SchemaFromJson(kSchema).WithTtl(3'600'000))));  // default: an hour
      ValueOrFail(t->Upsert(*Rows(R"(["short"])", "[1]", R"(["a"])", "[1]"), WriteOptions{150}));
      ValueOrFail(t->Upsert(*Rows(R"(["mid"])", "[5]", R"(["m"])", "[5]"), WriteOptions{700}));
      ValueOrFail(t->Upsert(*Rows(R"(["plain", "hour"])", "[2, 3]", R"(["b", "c"])", "[2, 3]")));
      sleep(300);
      // "short" has expired: this partial write makes it a new row (s null). "mid" has not: it
      // keeps its s. Replay, later, must decide the same with the writer's clock, though by
      // then "mid"'s first write has expired too.
      auto partial = BatchFromJson({{"id", arrow::utf8(), R"(["short", "plain", "mid"])"},
                                    {"x", arrow::float32(), "[10, 20, 30]"},
                                    {"n", arrow::int64(), "[1, 2, 3]"}});
      ValueOrFail(t->Upsert(*partial, WriteOptions{1000}));
      if (snapshot) ValueOrFail(db->Snapshot());
      ValueOrFail(t->Upsert(*Rows(R"(["late"])", "[4]", R"(["d"])", "[4]"), WriteOptions{3000}));
    }
    sleep(500);  // past "mid"'s first expiry (700 ms)
    {
      auto db = Open();
      ReadResult after = read(*db);
      EXPECT_EQ(after.found_count, 5);
      EXPECT_EQ(after.batch->column(0)->ToString(),
                ArrayFromJson(arrow::float32(), "[10, 20, 3, 30, 4]")->ToString());
      EXPECT_EQ(after.batch->column(1)->ToString(),
                ArrayFromJson(arrow::utf8(), R"([null, "b", "c", "m", "d"])")->ToString());
    }
    sleep(600);  // past the partial write's 1000 ms (written ~300 ms in)
    auto db = Open();
    ReadResult later = read(*db);
    EXPECT_EQ(later.found->ToString(),
              ArrayFromJson(arrow::boolean(), "[false, false, true, false, true]")->ToString());
    EXPECT_EQ(ValueOrFail(db->catalog().GetTable("t"))->schema().ttl_ms(), 3'600'000);
  }
}

TEST_F(StorageTest, AClientsMetadataCannotPassForTheLoggedExpiry) {
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    auto batch = Rows(R"(["a"])", "[1]", R"(["x"])", "[1]");
    // Keys the log uses for a write's clock and expiry, sent by a client: an expiry in 1970
    // and a clock far in the future would make replay drop the row.
    auto spoofed = batch->ReplaceSchemaMetadata(arrow::key_value_metadata(
        {"quiver.expire_at_ms", "quiver.now_ms", "origin"}, {"1", "99999999999999", "client"}));
    ValueOrFail(t->Upsert(*spoofed));
    ValueOrFail(t->Upsert(*Rows(R"(["b"])", "[2]", R"(["y"])", "[2]"), WriteOptions{3'600'000}));
    ValueOrFail(t->Upsert(*spoofed->Slice(0, 1)));
  }
  auto db = Open();
  auto t = ValueOrFail(db->catalog().GetTable("t"));
  EXPECT_EQ(ValueOrFail(t->Read(*ArrayFromJson(arrow::utf8(), R"(["a", "b"])"))).found_count, 2);
  EXPECT_EQ(t->Stats().rows_with_ttl, 1) << "only 'b' expires";
}

TEST(TableReplayTest, ReplayInsertsRowsMissingARequiredColumn) {
  // A snapshot may lack a row that a later change deleted; replaying an earlier partial update of
  // it must not fail (the later delete, replayed next, removes it again).
  auto table = ValueOrFail(Table::Make("t", SchemaFromJson(kSchema)));
  auto partial =
      BatchFromJson({{"id", arrow::utf8(), R"(["gone"])"}, {"x", arrow::float32(), "[1]"}});
  QUIVER_EXPECT_ERROR(table->Upsert(*partial), StatusCode::kInvalidArgument,
                      "non-nullable column 'n'");
  ValueOrFail(table->Replay(*partial, 7));
  EXPECT_EQ(table->applied_lsn(), 7u);
  EXPECT_EQ(ValueOrFail(table->ReplayDelete(*ArrayFromJson(arrow::utf8(), R"(["gone"])"), 8)), 1);
  EXPECT_EQ(table->Stats().rows, 0);
}

}  // namespace
}  // namespace quiver::storage
