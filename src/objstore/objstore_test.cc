// The object store over a local directory (file://): parts and their checks, the manifest and
// lease codecs, and a Backup of a live database restored into an empty directory — every table,
// key and log record back, across snapshots that retire segments; a second leader refused; a
// damaged part named; the change history across snapshots and restarts. (S3 itself is exercised
// end to end by tests/e2e/test_object_store.py and tests/e2e/test_history.py.)
#include <arrow/api.h>
#include <arrow/io/file.h>
#include <gtest/gtest.h>
#include <parquet/arrow/reader.h>

#include <fstream>
#include <set>

#include "objstore/backup.h"
#include "objstore/history.h"
#include "objstore/manifest.h"
#include "objstore/object_store.h"
#include "storage/storage_test_util.h"

namespace quiver::objstore {
namespace {

using storage::Contents;
using storage::Database;
using storage::DatabaseOptions;
using storage::Rows;
using testing::SchemaFromJson;
using testing::ValueOrFail;
namespace fs = std::filesystem;

class ObjectStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/quiver-objstore-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    root_ = pattern;
    uri_ = "file://" + root_ + "/store";
  }
  void TearDown() override { fs::remove_all(root_); }

  DatabaseOptions Options(const std::string& dir, Backup* backup) {
    DatabaseOptions options;
    options.data_dir = dir;
    options.snapshot_wal_bytes = 0;
    options.snapshot_interval_seconds = 0;
    options.wal_segment_bytes = 4096;
    if (backup != nullptr) options.before_recovery = [backup] { return backup->Prepare(); };
    return options;
  }
  BackupOptions Backups() {
    BackupOptions options;
    options.uri = uri_;
    options.upload_interval_seconds = 0.05;
    options.part_bytes = 1000;  // many parts, even for small files
    options.lease_ms = 60'000;
    return options;
  }

  std::string root_, uri_;
};

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST_F(ObjectStoreTest, FilesTravelAsCheckedParts) {
  auto store = ValueOrFail(ObjectStore::Open(uri_, 7, 3));
  ASSERT_TRUE(store->Prepare().ok());
  std::string bytes;
  for (int i = 0; i < 100; ++i) bytes += static_cast<char>(i * 7);
  WriteFile(root_ + "/in", bytes);
  const StoredFile stored = ValueOrFail(store->PutFile("data/f", root_ + "/in"));
  EXPECT_EQ(stored.bytes, 100u);
  EXPECT_EQ(stored.part_crc32c.size(), 15u);
  EXPECT_EQ(stored.crc32c, Crc32c(bytes));
  EXPECT_EQ(ValueOrFail(store->List("data")).size(), 15u);
  EXPECT_EQ(ValueOrFail(store->Download({{stored, root_ + "/out"}})), 100u);
  EXPECT_EQ(ValueOrFail(storage::ReadFile(root_ + "/out")), bytes);
  // A damaged part is named; a missing one too.
  WriteFile(root_ + "/store/" + PartKey("data/f", 3), "xxxxxxx");
  Result<uint64_t> damaged = store->Download({{stored, root_ + "/out"}});
  ASSERT_FALSE(damaged.ok());
  EXPECT_NE(damaged.status().message().find("data/f/00003' fails its checksum"), std::string::npos)
      << damaged.status().message();
  ASSERT_TRUE(store->PutFile("data/f", root_ + "/in").ok());
  fs::remove(root_ + "/store/" + PartKey("data/f", 4));
  Result<uint64_t> missing = store->Download({{stored, root_ + "/out"}});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("00004"), std::string::npos);
  EXPECT_EQ(store->Get("nothing").status().code(), StatusCode::kNotFound);
}

TEST_F(ObjectStoreTest, ManifestsAndLeasesAreChecked) {
  Manifest manifest;
  manifest.epoch = 3;
  manifest.sequence = 17;
  manifest.lsn = 99;
  manifest.catalog = "QUIVER-CATALOG ...";
  ManifestFile file;
  file.name = "00000000000000000001.wal";
  file.stored = {"data/00000003/wal/x", 10, 5, 4, {1, 2, 3}};
  manifest.files.push_back(file);
  const std::string text = EncodeManifest(manifest);
  const Manifest decoded = ValueOrFail(DecodeManifest(manifest.Key(), text));
  EXPECT_EQ(manifest.Key(), "manifests/00000003-000000000017.manifest");
  EXPECT_EQ(decoded.lsn, 99u);
  EXPECT_EQ(decoded.files.at(0).stored.part_crc32c, (std::vector<uint32_t>{1, 2, 3}));
  uint64_t epoch, sequence;
  ASSERT_TRUE(ParseManifestKey(manifest.Key(), &epoch, &sequence));
  EXPECT_EQ(epoch * 1000 + sequence, 3017u);
  EXPECT_FALSE(ParseManifestKey("manifests/x.manifest", &epoch, &sequence));
  // Cut, flipped, or naming a path outside the directory: refused.
  EXPECT_EQ(DecodeManifest("m", text.substr(0, text.size() - 3)).status().code(),
            StatusCode::kCorruption);
  std::string flipped = text;
  flipped[flipped.size() / 2] ^= 1;
  EXPECT_EQ(DecodeManifest("m", flipped).status().code(), StatusCode::kCorruption);
  manifest.files[0].name = "../catalog";
  EXPECT_NE(DecodeManifest("m", EncodeManifest(manifest)).status().message().find("plain file"),
            std::string::npos);
  // A field of the wrong type is corruption, not an exception.
  const std::string body =
      R"({"format": 1, "epoch": 1, "sequence": 1, "lsn": 1, "created_ms": 1, "catalog": "",)"
      R"( "instance": 7, "files": []})";
  char header[64];
  std::snprintf(header, sizeof(header), "QUIVER-MANIFEST 1 crc32c=%08x\n", Crc32c(body));
  EXPECT_EQ(DecodeManifest("m", header + body).status().code(), StatusCode::kCorruption);
  Lease lease{4, "abc", "host", 12, 1000, 30000};
  EXPECT_EQ(ValueOrFail(DecodeLease(EncodeLease(lease))).epoch, 4u);
  EXPECT_FALSE(DecodeLease("QUIVER-LEASE 1 crc32c=00000000\n{}").ok());
}

TEST_F(ObjectStoreTest, AnEmptyDirectoryIsRestoredFromTheBackup) {
  const std::string leader_dir = root_ + "/leader";
  std::map<std::string, std::map<std::string, std::string>> before;
  {
    auto backup = ValueOrFail(Backup::Create(Backups(), leader_dir));
    fs::create_directories(leader_dir);
    auto db = ValueOrFail(Database::Open(Options(leader_dir, backup.get())));
    backup->Start(db.get());
    auto table = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(storage::kSchema)));
    for (int i = 0; i < 40; ++i) {
      const std::string id = "\"k" + std::to_string(i % 25) + "\"";
      ASSERT_TRUE(table
                      ->Upsert(*Rows("[" + id + "]", "[" + std::to_string(i) + "]", R"(["s"])",
                                     "[" + std::to_string(i) + "]"))
                      .ok());
      if (i == 20) {
        ASSERT_TRUE(db->Snapshot().ok());  // retires segments mid-way
      }
      if (i == 30) {
        ASSERT_TRUE(db->catalog().CreateTable("u", SchemaFromJson(storage::kSchema)).ok());
      }
    }
    resp::LocalClient kv(db->keyspace(), &db->catalog(), ":");
    ASSERT_TRUE(kv.Set("key", "value").ok());
    before = Contents(db->catalog());
    backup->Stop(/*final_upload=*/true);  // what a clean stop uploads
    EXPECT_EQ(backup->Stats().uploaded_lsn, db->Stats().wal_last_lsn);
    EXPECT_GE(backup->Stats().manifests, 1u);
    EXPECT_FALSE(backup->Stats().fenced);
  }
  // A new node with an empty directory gets everything.
  const std::string follower_dir = root_ + "/new";
  auto backup = ValueOrFail(Backup::Create(Backups(), follower_dir));
  fs::create_directories(follower_dir);
  auto db = ValueOrFail(Database::Open(Options(follower_dir, backup.get())));
  EXPECT_TRUE(backup->restore().restored);
  EXPECT_EQ(Contents(db->catalog()), before);
  resp::LocalClient kv(db->keyspace(), &db->catalog(), ":");
  EXPECT_EQ(**kv.Get("key"), "value");
  // It is the leader now: the old directory may no longer upload there.
  const std::string old_dir = root_ + "/leader";
  auto old_backup = ValueOrFail(Backup::Create(Backups(), old_dir));
  Result<std::unique_ptr<Database>> old = Database::Open(Options(old_dir, old_backup.get()));
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.status().message().find("taken over by a newer leader"), std::string::npos)
      << old.status().message();
  // Nor may a third, empty node while the new leader's lease is live.
  auto third = ValueOrFail(Backup::Create(Backups(), root_ + "/third"));
  fs::create_directories(root_ + "/third");
  Result<std::unique_ptr<Database>> refused =
      Database::Open(Options(root_ + "/third", third.get()));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("renewed its lease"), std::string::npos)
      << refused.status().message();
}

// Every history row under `dir`, as (op, LSN, row, key) in log order.
std::vector<std::tuple<std::string, int64_t, int32_t, std::string>> HistoryRows(
    const std::string& dir) {
  std::vector<std::tuple<std::string, int64_t, int32_t, std::string>> rows;
  if (!fs::exists(dir)) return rows;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.path().extension() != ".parquet") continue;
    auto input = arrow::io::ReadableFile::Open(entry.path().string()).ValueOrDie();
    auto reader = parquet::arrow::OpenFile(input, arrow::default_memory_pool()).ValueOrDie();
    auto batch = reader->ReadTable().ValueOrDie()->CombineChunksToBatch().ValueOrDie();
    auto op = std::static_pointer_cast<arrow::StringArray>(batch->GetColumnByName("_quiver_op"));
    auto lsn = std::static_pointer_cast<arrow::Int64Array>(batch->GetColumnByName("_quiver_lsn"));
    auto row = std::static_pointer_cast<arrow::Int32Array>(batch->GetColumnByName("_quiver_row"));
    auto key = std::static_pointer_cast<arrow::StringArray>(batch->GetColumnByName("id"));
    for (int64_t i = 0; i < batch->num_rows(); ++i) {
      rows.emplace_back(op->GetString(i), lsn->Value(i), row->Value(i),
                        key->IsNull(i) ? "" : key->GetString(i));
    }
  }
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return std::get<1>(a) < std::get<1>(b); });
  return rows;
}

TEST_F(ObjectStoreTest, TheHistoryHoldsEveryChangeOnceAcrossSnapshotsAndRestarts) {
  const std::string dir = root_ + "/data";
  HistoryOptions options{.uri = uri_, .interval_seconds = 0.05};
  const auto upsert = [](Table& table, int i) {
    const std::string id = "\"k" + std::to_string(i % 7) + "\"";
    return table
        .Upsert(*Rows("[" + id + "]", "[" + std::to_string(i) + "]", R"(["s"])",
                      "[" + std::to_string(i) + "]"))
        .ok();
  };
  {
    auto db = ValueOrFail(Database::Open(Options(dir, nullptr)));
    auto table = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(storage::kSchema)));
    ASSERT_TRUE(upsert(*table, 100));  // before the history: not in it
    auto history = ValueOrFail(History::Create(options, dir));
    ASSERT_TRUE(history->Start(db.get()).ok());
    for (int i = 0; i < 30; ++i) {
      ASSERT_TRUE(upsert(*table, i));
      if (i == 10) {
        ASSERT_TRUE(db->Snapshot().ok());  // the history's segments stay
      }
    }
    ASSERT_TRUE(table->Delete(*testing::ArrayFromJson(arrow::utf8(), R"(["k1"])")).ok());
    ASSERT_TRUE(db->catalog().CreateTable("u", SchemaFromJson(storage::kSchema)).ok());
    ASSERT_TRUE(db->catalog().DropTable("t").ok());
    history->Stop(/*final_write=*/true);
    EXPECT_EQ(history->Stats().lsn, db->Stats().wal_last_lsn);
    EXPECT_EQ(history->Stats().skipped, 0u);
  }
  auto rows = HistoryRows(root_ + "/store/table=t");
  ASSERT_EQ(rows.size(), 32u);  // 30 upserts, a delete, the drop
  EXPECT_EQ(std::get<0>(rows[30]), "delete");
  EXPECT_EQ(std::get<3>(rows[30]), "k1");
  EXPECT_EQ(std::get<0>(rows[31]), "drop");
  {  // A restart continues where the history stopped, nothing written twice.
    auto db = ValueOrFail(Database::Open(Options(dir, nullptr)));
    auto history = ValueOrFail(History::Create(options, dir));
    ASSERT_TRUE(history->Start(db.get()).ok());
    auto table = ValueOrFail(db->catalog().CreateTable("t", SchemaFromJson(storage::kSchema)));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(upsert(*table, i));
    history->Stop(/*final_write=*/true);
  }
  rows = HistoryRows(root_ + "/store/table=t");
  ASSERT_EQ(rows.size(), 37u);
  std::set<std::pair<int64_t, int32_t>> positions;
  for (const auto& row : rows) positions.emplace(std::get<1>(row), std::get<2>(row));
  EXPECT_EQ(positions.size(), rows.size());
  EXPECT_TRUE(HistoryRows(root_ + "/store/table=u").empty());  // created, never written
}

}  // namespace
}  // namespace quiver::objstore
