// Tests of the write-ahead log, snapshots, the catalog file and recovery (storage/), including
// torn and corrupt files and a disk that fills up or fails (FaultOps). The key-value keyspace's
// durability: keyspace_storage_test.cc.
#include "storage/storage_test_util.h"

namespace quiver::storage {
namespace {

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

// A schema change is logged and replayed; until the changed table is snapshotted, the catalog
// file lists the table it came from (with that one's snapshot), so that a restart at any point
// rebuilds it: after the change alone, after another create rewrote the catalog, after a second
// change, and after the changed table's own snapshot.
TEST_F(StorageTest, SchemaChangesSurviveRestartsAtEveryStage) {
  const auto change = [](const std::string& json) {
    return ValueOrFail(SchemaChange::FromJson(json));
  };
  std::map<std::string, std::map<std::string, std::string>> before;
  const auto reopen_and_compare = [&](const char* stage) {
    auto db = Open();
    EXPECT_EQ(Contents(db->catalog()), before) << stage;
    return db;
  };
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(kSchema)));
    ValueOrFail(t->Upsert(*Rows(R"(["a", "b", "c"])", "[1, 2, null]",
                                R"(["x", null, "long string value"])", "[1, 2, 3]")));
    ValueOrFail(db->Snapshot());  // "t" has a snapshot of the old schema
    ValueOrFail(t->Upsert(*Rows(R"(["d"])", "[4]", R"(["after the snapshot"])", "[4]")));
    auto changed = ValueOrFail(db->catalog().AlterTable(
        "t", change(R"({"add": {"g": {"dtype": "int32", "default": 9}}, "drop": ["s"],
                        "alter": {"x": {"dtype": "float64"}}})")));
    ValueOrFail(changed->Upsert(
        *BatchFromJson({{"id", arrow::utf8(), R"(["e"])"}, {"n", arrow::int64(), "[5]"}})));
    before = Contents(db->catalog());
  }
  reopen_and_compare("after the change");
  {
    auto db = reopen_and_compare("again");
    QUIVER_ASSERT_OK(db->catalog().CreateTable("other", SchemaFromJson(kSchema)).status());
    before = Contents(db->catalog());
  }
  {
    auto db = reopen_and_compare("after a create rewrote the catalog");
    auto t = ValueOrFail(db->catalog().AlterTable("t", change(R"({"rename": {"g": "h"}})")));
    ValueOrFail(t->Delete(*ArrayFromJson(arrow::utf8(), R"(["a"])")));
    before = Contents(db->catalog());
  }
  {
    auto db = reopen_and_compare("after a second change");
    SnapshotReport report = ValueOrFail(db->Snapshot());
    ASSERT_EQ(report.tables.size(), 2u);
    EXPECT_TRUE(report.tables[1].written) << "a changed table is always written";
    EXPECT_EQ(Files(dir_ + "/snapshots").size(), 1u) << "the old schema's snapshot is gone";
  }
  auto db = reopen_and_compare("after the changed table's snapshot");
  EXPECT_EQ(db->recovery().replayed, 0u);
  EXPECT_EQ(ValueOrFail(db->catalog().GetTable("t"))->schema().FindColumn("h"), 4);
}

TEST_F(StorageTest, CompositeKeysSurviveLogReplayAndSnapshots) {
  constexpr char kComposite[] = R"({"key": ["user", "item"], "columns": {
      "user": {"dtype": "int64"}, "item": {"dtype": "utf8"}, "score": {"dtype": "float32"}}})";
  const auto rows = [](const std::string& users, const std::string& items,
                       const std::string& scores) {
    return BatchFromJson({{"user", arrow::int64(), users},
                          {"item", arrow::utf8(), items},
                          {"score", arrow::float32(), scores}});
  };
  const auto keys = [](const std::string& users, const std::string& items) {
    return arrow::StructArray::Make(
               {ArrayFromJson(arrow::int64(), users), ArrayFromJson(arrow::utf8(), items)},
               std::vector<std::string>{"user", "item"})
        .ValueOrDie();
  };
  std::map<std::string, std::map<std::string, std::string>> before;
  {
    auto db = Open();
    auto t = ValueOrFail(db->catalog().CreateTable("c", SchemaFromJson(kComposite)));
    ValueOrFail(
        t->Upsert(*rows("[1, 1, 2]", R"(["a", "an item id past eight bytes", "a"])", "[1, 2, 3]")));
    ValueOrFail(db->Snapshot());
    ValueOrFail(t->Upsert(*rows("[3]", R"(["c"])", "[4]")));
    EXPECT_EQ(ValueOrFail(t->Delete(*keys("[1]", R"(["a"])"))), 1);
    before = Contents(db->catalog());
    EXPECT_EQ(before.begin()->second.size(), 3u);
  }
  {
    auto db = Open();
    EXPECT_EQ(Contents(db->catalog()), before) << "snapshot + log";
    auto t = ValueOrFail(db->catalog().GetTable("c"));
    EXPECT_EQ(ValueOrFail(t->Read(*keys("[1, 1]", R"(["a", "an item id past eight bytes"])")))
                  .found_count,
              1);
    ValueOrFail(db->Snapshot());
  }
  auto db = Open();
  EXPECT_EQ(Contents(db->catalog()), before) << "snapshot alone";
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

}  // namespace
}  // namespace quiver::storage
