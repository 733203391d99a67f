// Online schema changes of a table holding rows, and under concurrent readers and writers (run
// under ThreadSanitizer by `make test-tsan`). The parsing and the rules: schema_change_test.cc.
#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "engine/catalog.h"
#include "engine/schema_change.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ChangeFromJson;
using testing::ValueOrFail;

// The table Rows() writes to.
TableSchema RowsSchema() {
  return testing::SchemaFromJson(R"({"key": "id", "columns": {
      "id": {"dtype": "int64"}, "a": {"dtype": "int32"}, "x": {"dtype": "float32"},
      "s": {"dtype": "utf8"}, "at": {"dtype": "timestamp[ms]", "nullable": false}},
      "event_time": "at"})");
}

std::shared_ptr<arrow::RecordBatch> Rows(int64_t first, int64_t count, int32_t a_of = 1) {
  arrow::Int64Builder ids;
  arrow::Int32Builder as;
  arrow::FloatBuilder xs;
  arrow::StringBuilder ss;
  arrow::TimestampBuilder ats(arrow::timestamp(arrow::TimeUnit::MILLI),
                              arrow::default_memory_pool());
  for (int64_t i = first; i < first + count; ++i) {
    EXPECT_TRUE(ids.Append(i).ok());
    EXPECT_TRUE(as.Append(static_cast<int32_t>(i) * a_of).ok());
    EXPECT_TRUE(xs.Append(static_cast<float>(i) / 2).ok());
    EXPECT_TRUE(ss.Append("value-" + std::to_string(i) + "-long-enough-for-the-heap").ok());
    EXPECT_TRUE(ats.Append(1000 + i).ok());
  }
  auto schema =
      arrow::schema({arrow::field("id", arrow::int64()), arrow::field("a", arrow::int32()),
                     arrow::field("x", arrow::float32()), arrow::field("s", arrow::utf8()),
                     arrow::field("at", arrow::timestamp(arrow::TimeUnit::MILLI))});
  return arrow::RecordBatch::Make(
      schema, count,
      {ids.Finish().ValueOrDie(), as.Finish().ValueOrDie(), xs.Finish().ValueOrDie(),
       ss.Finish().ValueOrDie(), ats.Finish().ValueOrDie()});
}

TEST(SchemaChangeConcurrencyTest, AlterConvertsEveryRowAndTheOldTableForwardsWrites) {
  Catalog catalog;
  TableSchema schema = RowsSchema();
  auto old = ValueOrFail(catalog.CreateTable("t", schema));
  ValueOrFail(old->Upsert(*Rows(0, 5000)));
  ValueOrFail(old->Delete(*testing::ArrayFromJson(arrow::int64(), "[7, 8]")));
  auto table =
      ValueOrFail(catalog.AlterTable("t", ChangeFromJson(R"({"add": {"g": {"dtype": "float32"},
                                      "h": {"dtype": "int16", "nullable": false, "default": -2}},
                              "drop": ["x"], "rename": {"s": "label"},
                              "alter": {"a": {"dtype": "int64"}}})")));
  EXPECT_NE(table->id(), old->id());
  EXPECT_EQ(ValueOrFail(catalog.GetTable("t")).get(), table.get());
  EXPECT_EQ(old->successor().get(), table.get());
  EXPECT_EQ(table->Stats().rows, 4998);

  auto read = ValueOrFail(table->Read(*testing::ArrayFromJson(arrow::int64(), "[0, 4999, 7]")));
  EXPECT_EQ(read.batch->schema()->ToString(),
            arrow::schema({arrow::field("a", arrow::int64()), arrow::field("label", arrow::utf8()),
                           arrow::field("at", arrow::timestamp(arrow::TimeUnit::MILLI)),
                           arrow::field("g", arrow::float32()), arrow::field("h", arrow::int16())})
                ->ToString());
  EXPECT_EQ(read.batch->column(0)->ToString(),
            testing::ArrayFromJson(arrow::int64(), "[0, 4999, null]")->ToString());
  EXPECT_EQ(read.batch->column(1)->GetScalar(1).ValueOrDie()->ToString(),
            "value-4999-long-enough-for-the-heap");
  EXPECT_EQ(read.batch->column(3)->null_count(), 3);
  EXPECT_EQ(read.batch->column(4)->ToString(),
            testing::ArrayFromJson(arrow::int16(), "[-2, -2, null]")->ToString());

  // The old table still reads as it was, for whoever holds it; a write given to it lands in the
  // new one (with the new schema's rules: "x" is gone).
  auto old_read = ValueOrFail(old->Read(*testing::ArrayFromJson(arrow::int64(), "[1]")));
  EXPECT_EQ(old_read.batch->schema()->field(1)->name(), "x");
  QUIVER_EXPECT_ERROR(old->Upsert(*Rows(1, 1)), StatusCode::kNotFound, "no column 'x'");
  auto late = testing::BatchFromJson({{"id", arrow::int64(), "[9000]"},
                                      {"a", arrow::int64(), "[5000000000]"},
                                      {"at", arrow::timestamp(arrow::TimeUnit::MILLI), "[1]"}});
  ValueOrFail(old->Upsert(*late));
  auto after = ValueOrFail(table->Read(*testing::ArrayFromJson(arrow::int64(), "[9000]")));
  EXPECT_EQ(after.found_count, 1);
  EXPECT_EQ(after.batch->column(4)->ToString(),
            testing::ArrayFromJson(arrow::int16(), "[-2]")->ToString());
  EXPECT_EQ(ValueOrFail(old->Delete(*testing::ArrayFromJson(arrow::int64(), "[9000]"))), 1);
  EXPECT_EQ(table->Stats().rows, 4998);

  // Refused changes leave the table as it was.
  QUIVER_EXPECT_ERROR(
      catalog.AlterTable("t", ChangeFromJson(R"({"alter": {"a": {"dtype": "int8"}}})")),
      StatusCode::kInvalidArgument, "cannot change int64 to int8");
  QUIVER_EXPECT_ERROR(catalog.AlterTable("nope", ChangeFromJson(R"({"ttl": 5})")),
                      StatusCode::kNotFound, "table 'nope' does not exist");
  EXPECT_EQ(ValueOrFail(catalog.GetTable("t")).get(), table.get());
}

// Writers and readers keep going while the table is changed: every acknowledged write is in the
// result, and every read sees one schema, whole.
TEST(SchemaChangeConcurrencyTest, ReadsAndWritesGoOnDuringAChange) {
  Catalog catalog;
  auto schema = RowsSchema();
  auto table = ValueOrFail(catalog.CreateTable("t", schema));
  constexpr int64_t kRows = 200000;
  ValueOrFail(table->Upsert(*Rows(0, kRows)));
  std::atomic<bool> done{false};
  std::atomic<int64_t> written{0}, reads{0};
  std::thread writer([&] {
    // Rewrites keys from the start with a = 3 * id, then deletes every 100th.
    for (int64_t first = 0; (!done.load() || first < 20000) && first < kRows; first += 100) {
      auto current = ValueOrFail(catalog.GetTable("t"));
      // Without "x", which the change drops: the same write is valid before and after.
      auto batch = Rows(first, 100, 3)->RemoveColumn(2).ValueOrDie();
      auto result = current->Upsert(*batch);
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      auto deleted = current->Delete(
          *testing::ArrayFromJson(arrow::int64(), "[" + std::to_string(first) + "]"));
      ASSERT_TRUE(deleted.ok()) << deleted.status().ToString();
      written.store(first + 100);
    }
  });
  std::thread reader([&] {
    while (!done.load()) {
      auto current = ValueOrFail(catalog.GetTable("t"));
      auto read =
          ValueOrFail(current->Read(*testing::ArrayFromJson(arrow::int64(), "[5, 150001]")));
      const bool changed = read.batch->schema()->GetFieldIndex("g") >= 0;
      EXPECT_EQ(read.batch->schema()->GetFieldIndex("x") >= 0, !changed);
      EXPECT_EQ(read.batch->schema()->GetFieldByName("a")->type()->id(),
                changed ? arrow::Type::INT64 : arrow::Type::INT32);
      reads.fetch_add(1);
    }
  });
  while (written.load() < 2000) std::this_thread::yield();
  auto changed = ValueOrFail(
      catalog.AlterTable("t", ChangeFromJson(R"({"add": {"g": {"dtype": "float32"}}, "drop": ["x"],
                              "alter": {"a": {"dtype": "int64"}}})")));
  done.store(true);
  writer.join();
  reader.join();
  EXPECT_GT(reads.load(), 0);
  // Every key the writer touched: deleted (every 100th) or a = 3 * id; the others a = id.
  const int64_t touched = written.load();
  arrow::Int64Builder keys;
  for (int64_t i = 0; i < kRows; ++i) ASSERT_TRUE(keys.Append(i).ok());
  auto all = ValueOrFail(changed->Read(*keys.Finish().ValueOrDie(), {"a"}));
  const auto& a = static_cast<const arrow::Int64Array&>(*all.batch->column(0));
  for (int64_t i = 0; i < kRows; ++i) {
    if (i < touched && i % 100 == 0) {
      ASSERT_FALSE(all.found->Value(i)) << i;
    } else {
      ASSERT_TRUE(all.found->Value(i)) << i;
      ASSERT_EQ(a.Value(i), i < touched ? 3 * i : i) << i;
    }
  }
}

}  // namespace
}  // namespace quiver
