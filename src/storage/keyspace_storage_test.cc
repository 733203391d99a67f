// The key-value keyspace's durability through Database: recovery from the log and snapshots,
// snapshots while writers go on, a failing log, evictions, and row TTLs across restarts.
#include "storage/storage_test_util.h"

namespace quiver::storage {

namespace {

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

}  // namespace

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

namespace {

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
