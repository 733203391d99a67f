// Feature tables under a memory limit (common/eviction.h): refusal, each policy's choice of rows,
// accounting, heap compaction, and leaving the limit.
#include "common/eviction.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "engine/catalog.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::SchemaFromJson;
using testing::ValueOrFail;

constexpr char kSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "int64"}, "x": {"dtype": "int64"}, "s": {"dtype": "utf8"}}})";

// The limit may be passed by the index's growth: it doubles in one step (docs/engine.md).
void ExpectWithinLimit(const MemoryLimit& limit, const Table& table) {
  EXPECT_LE(limit.UsedMemory(), limit.MaxMemory() + table.Stats().index_bytes / 2);
}

// Rows [first, first + count): x = id, s = a 40-byte string naming the id.
std::shared_ptr<arrow::RecordBatch> Rows(int64_t first, int64_t count, char fill = 'v') {
  arrow::Int64Builder ids, xs;
  arrow::StringBuilder strings;
  for (int64_t id = first; id < first + count; ++id) {
    EXPECT_TRUE(ids.Append(id).ok());
    EXPECT_TRUE(xs.Append(id).ok());
    std::string s = std::to_string(id);
    s.resize(40, fill);
    EXPECT_TRUE(strings.Append(s).ok());
  }
  auto schema =
      arrow::schema({arrow::field("id", arrow::int64()), arrow::field("x", arrow::int64()),
                     arrow::field("s", arrow::utf8())});
  return arrow::RecordBatch::Make(schema, count, {*ids.Finish(), *xs.Finish(), *strings.Finish()});
}

std::shared_ptr<arrow::Array> Ids(int64_t first, int64_t count) {
  arrow::Int64Builder ids;
  for (int64_t id = first; id < first + count; ++id) EXPECT_TRUE(ids.Append(id).ok());
  return *ids.Finish();
}

int64_t FoundOf(const Table& table, int64_t first, int64_t count) {
  return ValueOrFail(table.Read(*Ids(first, count), {"x"})).found_count;
}

class TableEvictionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CatalogOptions options;
    options.memory_limit = &limit_;
    catalog_ = std::make_unique<Catalog>(options);
    table_ = ValueOrFail(catalog_->CreateTable("t", SchemaFromJson(kSchema)));
  }
  // Writes rows [0, count) and sets the limit to what they take plus `slack` bytes.
  void FillAndLimit(int64_t count, uint64_t slack, EvictionPolicy policy) {
    ValueOrFail(table_->Upsert(*Rows(0, count)));
    limit_.SetMaxMemory(limit_.UsedMemory() + slack);
    limit_.SetPolicy(policy);
  }

  MemoryLimit limit_;  // outlives the catalog
  std::unique_ptr<Catalog> catalog_;
  std::shared_ptr<Table> table_;
};

TEST_F(TableEvictionTest, UsedMemoryCountsLiveRowsIndexAndHeapValues) {
  EXPECT_EQ(limit_.UsedMemory(), table_->UsedMemory());
  ValueOrFail(table_->Upsert(*Rows(0, 1000)));
  const TableStats stats = table_->Stats();
  EXPECT_EQ(stats.used_bytes, table_->UsedMemory());
  EXPECT_EQ(limit_.UsedMemory(), stats.used_bytes);
  // 1000 rows of the row width, the index, and 1000 heap values of 40 bytes (over the 8 inline).
  EXPECT_GE(stats.used_bytes, 1000 * (stats.row_width + 40) + stats.index_bytes);
  EXPECT_LE(stats.used_bytes, stats.bytes);
  ValueOrFail(table_->Delete(*Ids(0, 500)));
  EXPECT_LT(table_->UsedMemory(), stats.used_bytes - 500 * (stats.row_width + 40) + 1)
      << "deleted rows and their heap values no longer count";
}

TEST_F(TableEvictionTest, NoEvictionRefusesAWriteThatMayPassTheLimitAndChangesNothing) {
  FillAndLimit(1000, 1000, EvictionPolicy::kNoEviction);
  QUIVER_EXPECT_ERROR(table_->Upsert(*Rows(1000, 100)), StatusCode::kOutOfMemory,
                      "maxmemory-policy noeviction");
  EXPECT_EQ(table_->Stats().rows, 1000);
  EXPECT_EQ(FoundOf(*table_, 1000, 100), 0);
  EXPECT_EQ(FoundOf(*table_, 0, 1000), 1000);
  // A write larger than the whole limit is refused under any policy, and says why.
  limit_.SetPolicy(EvictionPolicy::kAllKeysLru);
  QUIVER_EXPECT_ERROR(table_->Upsert(*Rows(5000, 100'000)), StatusCode::kOutOfMemory,
                      "more than maxmemory");
  EXPECT_EQ(FoundOf(*table_, 0, 1000), 1000) << "nothing was evicted for a write that cannot fit";
  // Small writes fit.
  ValueOrFail(table_->Upsert(*Rows(0, 1)));
  // Without a limit, anything goes.
  limit_.SetMaxMemory(0);
  ValueOrFail(table_->Upsert(*Rows(1000, 100)));
}

TEST_F(TableEvictionTest, AllKeysLruEvictsTheRowsReadLeastRecently) {
  FillAndLimit(2000, 0, EvictionPolicy::kAllKeysLru);
  // The access clock counts seconds: read the hot rows a second later than the others were
  // written.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(FoundOf(*table_, 0, 200), 200);
  for (int64_t batch = 0; batch < 10; ++batch) {
    ValueOrFail(table_->Upsert(*Rows(10'000 + batch * 100, 100)));
    ExpectWithinLimit(limit_, *table_);
  }
  const TableStats stats = table_->Stats();
  EXPECT_GE(stats.evicted, 1000) << "room for 1000 new rows was made";
  EXPECT_EQ(stats.rows, 2000 + 1000 - stats.evicted);
  EXPECT_EQ(limit_.Evicted(), stats.evicted);
  EXPECT_EQ(FoundOf(*table_, 10'000, 1000), 1000) << "the rows just written are there";
  // Sampling approximates LRU: nearly all recently read rows survive, while more than half of
  // the others are gone.
  EXPECT_GE(FoundOf(*table_, 0, 200), 180);
  EXPECT_LE(FoundOf(*table_, 200, 1800), 1100);
}

TEST_F(TableEvictionTest, AllKeysLfuKeepsTheRowsReadOften) {
  FillAndLimit(2000, 0, EvictionPolicy::kAllKeysLfu);
  ValueOrFail(table_->Upsert(*Rows(0, 2000)));  // stamps LFU words (the policy came later)
  for (int i = 0; i < 30; ++i) EXPECT_EQ(FoundOf(*table_, 0, 200), 200);
  for (int64_t batch = 0; batch < 10; ++batch) {
    ValueOrFail(table_->Upsert(*Rows(10'000 + batch * 100, 100)));
  }
  EXPECT_GE(table_->Stats().evicted, 1000);
  EXPECT_GE(FoundOf(*table_, 0, 200), 190);
  ExpectWithinLimit(limit_, *table_);
}

TEST_F(TableEvictionTest, VolatilePoliciesEvictOnlyRowsWithATtl) {
  for (EvictionPolicy policy : {EvictionPolicy::kVolatileTtl, EvictionPolicy::kVolatileLru,
                                EvictionPolicy::kVolatileRandom, EvictionPolicy::kVolatileLfu}) {
    SCOPED_TRACE(std::string(PolicyName(policy)));
    limit_.SetMaxMemory(0);
    SetUp();
    ValueOrFail(table_->Upsert(*Rows(0, 500)));                              // no TTL
    ValueOrFail(table_->Upsert(*Rows(1000, 300), WriteOptions{3'600'000}));  // 1 hour
    ValueOrFail(table_->Upsert(*Rows(2000, 300), WriteOptions{60'000}));     // 1 minute
    limit_.SetMaxMemory(limit_.UsedMemory());
    limit_.SetPolicy(policy);
    ValueOrFail(table_->Upsert(*Rows(5000, 200)));
    EXPECT_EQ(FoundOf(*table_, 0, 500), 500) << "rows without a TTL are never evicted";
    EXPECT_EQ(FoundOf(*table_, 5000, 200), 200);
    const int64_t left = FoundOf(*table_, 1000, 300) + FoundOf(*table_, 2000, 300);
    EXPECT_LE(left, 400);
    if (policy == EvictionPolicy::kVolatileTtl) {
      EXPECT_LE(FoundOf(*table_, 2000, 300), 100) << "the rows expiring soonest go first";
      EXPECT_GE(FoundOf(*table_, 1000, 300), 250);
    }
    // Once no row has a TTL, nothing can be evicted: writes are refused.
    QUIVER_EXPECT_ERROR(table_->Upsert(*Rows(8000, 600)), StatusCode::kOutOfMemory,
                        "nothing left to evict");
    EXPECT_EQ(FoundOf(*table_, 0, 500), 500);
    EXPECT_EQ(FoundOf(*table_, 8000, 600), 0);
    table_.reset();
    catalog_.reset();
  }
}

TEST_F(TableEvictionTest, AllKeysRandomEvictsUntilTheWriteFits) {
  FillAndLimit(3000, 0, EvictionPolicy::kAllKeysRandom);
  ValueOrFail(table_->Upsert(*Rows(10'000, 1000)));
  ExpectWithinLimit(limit_, *table_);
  EXPECT_EQ(FoundOf(*table_, 10'000, 1000), 1000);
  const int64_t evicted = table_->Stats().evicted;
  EXPECT_GE(evicted, 900);
  EXPECT_LE(evicted, 1400) << "eviction stops about when the write fits";
  EXPECT_EQ(FoundOf(*table_, 0, 3000), 3000 - evicted);
}

TEST_F(TableEvictionTest, TwoTablesShareTheLimit) {
  auto other = ValueOrFail(catalog_->CreateTable("u", SchemaFromJson(kSchema)));
  ValueOrFail(other->Upsert(*Rows(0, 1000)));
  FillAndLimit(1000, 0, EvictionPolicy::kAllKeysRandom);
  ValueOrFail(table_->Upsert(*Rows(5000, 1000)));
  EXPECT_GT(other->Stats().evicted, 200) << "a write to one table may evict the other's rows";
  EXPECT_GT(table_->Stats().evicted, 200);
  ExpectWithinLimit(limit_, *table_);
  // A dropped table leaves the limit: its memory no longer counts, its rows are not evicted.
  const uint64_t before = limit_.UsedMemory();
  const uint64_t its = other->UsedMemory();
  QUIVER_ASSERT_OK(catalog_->DropTable("u"));
  EXPECT_EQ(limit_.UsedMemory(), before - its);
  limit_.SetMaxMemory(1);
  const int64_t evicted = other->Stats().evicted;
  EXPECT_FALSE(limit_.MakeRoom(0)) << "the index alone is over 1 byte";
  EXPECT_EQ(table_->Stats().rows, 0);
  EXPECT_EQ(other->Stats().evicted, evicted);
}

TEST(MemoryLimitTest, TheHookSeesEveryLimitSetAfterIt) {
  MemoryLimit limit;
  limit.SetMaxMemory(1 << 20);  // before the hook: not seen
  std::vector<uint64_t> seen;
  limit.OnSetMaxMemory([&](uint64_t bytes) {
    EXPECT_EQ(limit.MaxMemory(), bytes);  // already in effect
    seen.push_back(bytes);
  });
  limit.SetMaxMemory(2 << 20);
  limit.SetMaxMemory(0);
  EXPECT_EQ(seen, (std::vector<uint64_t>{2 << 20, 0}));
}

// A table under a limit far away: only the heap's compaction rules matter.
class TableEvictionHeapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineLimits limits;
    limits.heap_compaction_min_garbage = 64 << 10;
    CatalogOptions options;
    options.limits = limits;
    options.memory_limit = &limit_;
    catalog_ = std::make_unique<Catalog>(options);
    table_ = ValueOrFail(catalog_->CreateTable("t", SchemaFromJson(kSchema)));
    limit_.SetMaxMemory(64 << 20);
    limit_.SetPolicy(EvictionPolicy::kAllKeysLru);
  }

  MemoryLimit limit_;
  std::unique_ptr<Catalog> catalog_;
  std::shared_ptr<Table> table_;
};

TEST_F(TableEvictionHeapTest, HeapGarbageIsCompactedSoonerUnderALimit) {
  Table* table = table_.get();
  for (int round = 0; round < 20; ++round) {
    ValueOrFail(table->Upsert(*Rows(0, 5000, static_cast<char>('a' + round))));
    const TableStats stats = table->Stats();
    const uint64_t live = stats.heap_bytes - stats.heap_garbage_bytes;
    EXPECT_LE(stats.heap_garbage_bytes, std::max<uint64_t>(live / 4, 64 << 10))
        << "round " << round;
  }
  EXPECT_GT(table->Stats().heap_compactions, 2);
}

TEST_F(TableEvictionHeapTest, RowsLeavingOldestFirstFreeTheirChunksWithLittleCopying) {
  // As under LRU eviction of rows written once: the oldest rows go, and with them whole chunks.
  Table* table = table_.get();
  constexpr int kBatch = 5000, kKept = 20;  // 200 KB of values a batch, 4 MB kept
  uint64_t released = 0;
  for (int round = 0; round < 100; ++round) {
    ValueOrFail(table->Upsert(*Rows(int64_t{round} * kBatch, kBatch)));
    if (round >= kKept) {
      ValueOrFail(table->Delete(*Ids(int64_t{round - kKept} * kBatch, kBatch)));
      released += kBatch * 40;
    }
    const TableStats stats = table->Stats();
    const uint64_t live = stats.heap_bytes - stats.heap_garbage_bytes;
    // Garbage under the threshold (a quarter of the live bytes), and the chunk taking appends
    // and the one reserved next (a sixteenth of them each, rounded up to a power of two).
    EXPECT_LE(stats.heap_bytes, live + live / 4 + live / 4) << "round " << round;
  }
  const TableStats stats = table->Stats();
  EXPECT_GT(stats.heap_compactions, 10u);
  // Measured: 2.0 MB copied for 16 MB released (a whole-heap compaction copied ~4 bytes a byte).
  EXPECT_LE(stats.heap_moved_bytes, released / 4);
}

}  // namespace
}  // namespace quiver
