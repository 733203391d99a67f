// The disk tier (engine/tier.h, docs/tiering.md): rows moved to disk under a memory limit read,
// write, delete, expire and scan exactly as an all-memory table's; reads queue promotions; a
// damaged tier file is reported, not served.
#include <arrow/api.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "common/eviction.h"
#include "engine/catalog.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::SchemaFromJson;
using testing::ValueOrFail;

constexpr char kSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "int64"}, "x": {"dtype": "int64"}, "s": {"dtype": "utf8"},
    "e": {"dtype": "fixed_size_list[float32, 8]"}, "l": {"dtype": "list[int32]"}}})";

// Row `id` as written in round `round`: x = id + round, s a string of 20 + id % 50 bytes, e and l
// derived from the id (l empty for every seventh id, s null for every eleventh).
std::shared_ptr<arrow::RecordBatch> Rows(int64_t first, int64_t count, int64_t round = 0) {
  arrow::Int64Builder ids, xs;
  arrow::StringBuilder strings;
  arrow::FixedSizeListBuilder embeddings(arrow::default_memory_pool(),
                                         std::make_shared<arrow::FloatBuilder>(), 8);
  arrow::ListBuilder lists(arrow::default_memory_pool(), std::make_shared<arrow::Int32Builder>());
  auto* floats = static_cast<arrow::FloatBuilder*>(embeddings.value_builder());
  auto* ints = static_cast<arrow::Int32Builder*>(lists.value_builder());
  for (int64_t id = first; id < first + count; ++id) {
    EXPECT_TRUE(ids.Append(id).ok());
    EXPECT_TRUE(xs.Append(id + round).ok());
    if (id % 11 == 0) {
      EXPECT_TRUE(strings.AppendNull().ok());
    } else {
      EXPECT_TRUE(strings.Append(std::string(20 + id % 50, static_cast<char>('a' + id % 26))).ok());
    }
    EXPECT_TRUE(embeddings.Append().ok());
    for (int k = 0; k < 8; ++k) EXPECT_TRUE(floats->Append(static_cast<float>(id * 8 + k)).ok());
    EXPECT_TRUE(lists.Append().ok());
    for (int k = 0; k < (id % 7 == 0 ? 0 : id % 5 + 3); ++k) {
      EXPECT_TRUE(ints->Append(static_cast<int32_t>(id + k)).ok());
    }
  }
  auto schema = arrow::schema({arrow::field("id", arrow::int64()),
                               arrow::field("x", arrow::int64()), arrow::field("s", arrow::utf8()),
                               arrow::field("e", arrow::fixed_size_list(arrow::float32(), 8)),
                               arrow::field("l", arrow::list(arrow::int32()))});
  return arrow::RecordBatch::Make(
      schema, count,
      {*ids.Finish(), *xs.Finish(), *strings.Finish(), *embeddings.Finish(), *lists.Finish()});
}

std::shared_ptr<arrow::Array> Ids(const std::vector<int64_t>& ids) {
  arrow::Int64Builder builder;
  for (int64_t id : ids) EXPECT_TRUE(builder.Append(id).ok());
  return *builder.Finish();
}
std::shared_ptr<arrow::Array> Range(int64_t first, int64_t count) {
  std::vector<int64_t> ids;
  for (int64_t id = first; id < first + count; ++id) ids.push_back(id);
  return Ids(ids);
}

class TierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/quiver-tier-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    directory_ = pattern;
    limit_.SetPolicy(EvictionPolicy::kAllKeysLru);
    table_ = Make("t", &limit_, true);
    reference_ = Make("r", nullptr, false);
  }
  void TearDown() override {
    table_->AttachMemoryLimit(nullptr);
    table_.reset();
    std::filesystem::remove_all(directory_);
  }

  std::shared_ptr<Table> Make(const std::string& name, MemoryLimit* limit, bool tiered) {
    auto table =
        ValueOrFail(Table::Make(name, SchemaFromJson(kSchema), EngineLimits{},
                                RegionBacking::kAnonymous, 7, nullptr, [this] { return now_ms_; }));
    if (tiered) {
      EXPECT_TRUE(table->AttachTier(TierOptions{directory_}).ok());
    }
    if (limit != nullptr) table->AttachMemoryLimit(limit);
    return table;
  }

  // Writes Rows(first, count, round) (only `columns`, when given) to both tables (the tiered one
  // under its limit), 50 rows at a time.
  void Write(int64_t first, int64_t count, int64_t round = 0, const std::vector<int>& columns = {},
             const WriteOptions& options = {}) {
    for (int64_t at = first; at < first + count; at += 50) {
      auto batch = Rows(at, std::min<int64_t>(50, first + count - at), round);
      if (!columns.empty()) batch = batch->SelectColumns(columns).ValueOrDie();
      auto written = table_->Upsert(*batch, options);
      ASSERT_TRUE(written.ok()) << written.status().ToString();
      ASSERT_TRUE(reference_->Upsert(*batch, options).ok());
    }
  }

  // Both tables answer `keys` alike.
  void ExpectSameRead(const arrow::Array& keys, const std::vector<std::string>& columns = {}) {
    auto got = table_->Read(keys, columns, ReadOptions{true});
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    auto want = ValueOrFail(reference_->Read(keys, columns, ReadOptions{true}));
    EXPECT_TRUE(got->found->Equals(*want.found));
    EXPECT_EQ(got->found_count, want.found_count);
    EXPECT_TRUE(got->batch->Equals(*want.batch)) << "got\n"
                                                 << got->batch->ToString() << "\nwant\n"
                                                 << want.batch->ToString();
    EXPECT_TRUE(got->ttl_ms->Equals(*want.ttl_ms));
  }

  // A memory limit for `rows` rows of which about `fraction` stay in memory: the index (which
  // stays whole) and that share of the rest, measured on a table holding them all.
  uint64_t Budget(int64_t rows, double fraction) {
    auto full = Make("full", nullptr, false);
    for (int64_t at = 0; at < rows; at += 50) EXPECT_TRUE(full->Upsert(*Rows(at, 50)).ok());
    const TableStats stats = full->Stats();
    return stats.index_bytes +
           static_cast<uint64_t>(static_cast<double>(stats.used_bytes - stats.index_bytes) *
                                 fraction);
  }

  // Every row of a scan, by id, as one-row batches' text.
  static std::map<int64_t, std::string> Scanned(const Table& table, int64_t* count) {
    auto reader = ValueOrFail(table.Scan(100, true));
    std::map<int64_t, std::string> rows;
    *count = 0;
    std::shared_ptr<arrow::RecordBatch> batch;
    while (reader->ReadNext(&batch).ok() && batch != nullptr) {
      const auto& ids = static_cast<const arrow::Int64Array&>(*batch->column(0));
      for (int64_t i = 0; i < batch->num_rows(); ++i) {
        rows[ids.Value(i)] = batch->Slice(i, 1)->ToString();
        ++*count;
      }
    }
    return rows;
  }

  std::string directory_;
  int64_t now_ms_ = 1'700'000'000'000;
  MemoryLimit limit_;
  std::shared_ptr<Table> table_, reference_;
};

TEST_F(TierTest, RowsOverTheLimitMoveToDiskAndReadAsInMemory) {
  const uint64_t budget = Budget(2000, 0.4);
  limit_.SetMaxMemory(budget);
  Write(0, 2000);
  const TableStats stats = table_->Stats();
  EXPECT_TRUE(stats.tiered);
  EXPECT_EQ(stats.rows, 2000);
  EXPECT_GT(stats.cold_rows, 1000);
  EXPECT_EQ(stats.demoted, stats.cold_rows);
  EXPECT_EQ(stats.evicted, 0);
  EXPECT_EQ(limit_.Evicted(), 0);
  EXPECT_EQ(limit_.Demoted(), stats.demoted);
  EXPECT_LE(limit_.UsedMemory(), budget);
  EXPECT_GT(stats.cold_bytes, 0u);
  ExpectSameRead(*Range(0, 2000));
  ExpectSameRead(*Ids({1999, 3, 3, 5000, 0, 1500, -1}), {"l", "s"});
  EXPECT_GT(table_->Stats().cold_reads, 0);
  EXPECT_TRUE(std::filesystem::exists(directory_ + "/t.7.tier"));
}

TEST_F(TierTest, RowsReadTwicePromotedUnderLru) {
  limit_.SetMaxMemory(Budget(800, 0.5));
  Write(0, 800);
  const int64_t cold = table_->Stats().cold_rows;
  ASSERT_GT(cold, 200);
  // Read once, a cold row stays on disk; read again, it comes back.
  ExpectSameRead(*Range(0, 100));
  EXPECT_EQ(table_->PromoteQueued(), 0);
  ExpectSameRead(*Range(0, 100));
  const int64_t promoted = table_->PromoteQueued();
  EXPECT_GT(promoted, 0);
  EXPECT_EQ(table_->Stats().promoted, promoted);
  ExpectSameRead(*Range(0, 800));
  // Promoting made room by moving others out: the limit holds.
  EXPECT_LE(limit_.UsedMemory(), limit_.MaxMemory());
}

TEST_F(TierTest, WritesAndDeletesOfColdRows) {
  Write(0, 600);
  limit_.SetMaxMemory(table_->UsedMemory() / 3);
  Write(600, 600);
  ASSERT_GT(table_->Stats().cold_rows, 600);
  // A partial write keeps the stored values of the columns it lacks.
  Write(0, 300, 1, {0, 1});
  Write(100, 100, 2);
  auto deleted = ValueOrFail(table_->Delete(*Range(250, 100)));
  EXPECT_EQ(deleted, ValueOrFail(reference_->Delete(*Range(250, 100))));
  EXPECT_EQ(deleted, 100);
  EXPECT_EQ(table_->Stats().rows, 1100);
  ExpectSameRead(*Range(0, 1200));
  int64_t count = 0, reference_count = 0;
  EXPECT_EQ(Scanned(*table_, &count), Scanned(*reference_, &reference_count));
  EXPECT_EQ(count, 1100);
}

TEST_F(TierTest, ColdRowsExpire) {
  Write(0, 400, 0, {}, WriteOptions{60'000});
  limit_.SetMaxMemory(table_->UsedMemory() / 2);
  Write(400, 400);
  ASSERT_GT(table_->Stats().cold_rows, 100);
  ExpectSameRead(*Range(0, 800));
  now_ms_ += 61'000;
  ExpectSameRead(*Range(0, 800));
  int64_t count = 0, reference_count = 0;
  EXPECT_EQ(Scanned(*table_, &count), Scanned(*reference_, &reference_count));
  EXPECT_EQ(count, 400);
  // A write of an expired cold key makes a new row.
  Write(0, 10, 5);
  ExpectSameRead(*Range(0, 20));
}

TEST_F(TierTest, ScansMeetEveryRowOnce) {
  limit_.SetMaxMemory(Budget(2000, 0.25));
  Write(0, 2000);
  int64_t count = 0, reference_count = 0;
  EXPECT_EQ(Scanned(*table_, &count), Scanned(*reference_, &reference_count));
  EXPECT_EQ(count, 2000);
}

TEST_F(TierTest, AScanMeetsEveryRowOnceWhileRowsMove) {
  limit_.SetMaxMemory(Budget(3000, 0.3));
  Write(0, 2000);
  ASSERT_GT(table_->Stats().cold_rows, 1000);
  // Meanwhile: new rows (which move others to disk), rewrites of cold rows and reads (which
  // bring rows back). Rows 0..1999 live throughout: each is met exactly once.
  std::atomic<bool> stop{false};
  std::thread mover([&] {
    for (int64_t round = 1; !stop.load(); ++round) {
      const int64_t first = 2000 + (round * 50) % 1000;
      EXPECT_TRUE(table_->Upsert(*Rows(first, 50, round)).ok());
      EXPECT_TRUE(table_->Upsert(*Rows((round * 37) % 1950, 50, round)).ok());
      EXPECT_TRUE(table_->Read(*Range((round * 91) % 1900, 100)).ok());
      table_->PromoteQueued();
    }
  });
  for (int pass = 0; pass < 5; ++pass) {
    auto reader = ValueOrFail(table_->Scan(64));
    std::map<int64_t, int> met;
    std::shared_ptr<arrow::RecordBatch> batch;
    while (true) {
      ASSERT_TRUE(reader->ReadNext(&batch).ok());
      if (batch == nullptr) break;
      const auto& ids = static_cast<const arrow::Int64Array&>(*batch->column(0));
      for (int64_t i = 0; i < batch->num_rows(); ++i) ++met[ids.Value(i)];
    }
    for (int64_t id = 0; id < 2000; ++id) EXPECT_EQ(met[id], 1) << "row " << id << " pass " << pass;
    for (const auto& [id, count] : met) EXPECT_EQ(count, 1) << "row " << id;
  }
  stop = true;
  mover.join();
  EXPECT_GT(table_->Stats().promoted, 0);
}

TEST_F(TierTest, NoevictionStillMovesRowsToDisk) {
  limit_.SetPolicy(EvictionPolicy::kNoEviction);
  Write(0, 400);
  limit_.SetMaxMemory(table_->UsedMemory() / 2);
  Write(400, 400);
  EXPECT_GT(table_->Stats().cold_rows, 0);
  ExpectSameRead(*Range(0, 800));
}

TEST_F(TierTest, ADamagedRecordIsAnErrorNotAnAnswer) {
  Write(0, 400);
  limit_.SetMaxMemory(table_->UsedMemory() / 2);
  Write(400, 400);
  ASSERT_GT(table_->Stats().cold_rows, 0);
  {  // every record's first byte of values flipped
    const int fd = ::open((directory_ + "/t.7.tier").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    std::string block(4096, '\0');
    ASSERT_EQ(::pread(fd, block.data(), block.size(), 0), 4096);
    block[100] = static_cast<char>(block[100] ^ 0x5a);
    ASSERT_EQ(::pwrite(fd, block.data(), block.size(), 0), 4096);
    ::close(fd);
  }
  auto read = table_->Read(*Range(0, 800));
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kCorruption);
  EXPECT_NE(read.status().message().find("t.7.tier"), std::string::npos);
  // Rows in memory still read.
  EXPECT_TRUE(table_->Read(*Range(799, 1)).ok());
}

TEST_F(TierTest, TheFileGoesWithTheTable) {
  Write(0, 10);
  EXPECT_TRUE(std::filesystem::exists(directory_ + "/t.7.tier"));
  table_->AttachMemoryLimit(nullptr);
  table_.reset();
  EXPECT_FALSE(std::filesystem::exists(directory_ + "/t.7.tier"));
  table_ = Make("t", &limit_, true);
}

}  // namespace
}  // namespace quiver
