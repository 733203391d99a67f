#include "engine/schema_change.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "engine/catalog.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ValueOrFail;

SchemaChange ChangeFromJson(const std::string& json) {
  return ValueOrFail(SchemaChange::FromJson(json));
}

TableSchema Base() {
  return testing::SchemaFromJson(R"({"key": "id", "columns": {
      "id": {"dtype": "int64"}, "a": {"dtype": "int32"}, "x": {"dtype": "float32"},
      "s": {"dtype": "utf8"}, "e": {"dtype": "fixed_size_list[float16, 4]"},
      "at": {"dtype": "timestamp[ms]", "nullable": false}},
      "event_time": "at"})");
}

TEST(SchemaChangeTest, EachPartAndTheirCombination) {
  ChangedSchema changed =
      ValueOrFail(ApplySchemaChange(Base(), ChangeFromJson(R"({"add": {"g": {"dtype": "float32"},
                                          "h": {"dtype": "int8", "nullable": false, "default": 3}},
                                  "drop": ["x"], "rename": {"a": "b", "id": "user"},
                                  "alter": {"a": {"dtype": "int64"},
                                            "e": {"dtype": "fixed_size_list[float32, 4]"}},
                                  "ttl": 60})")));
  EXPECT_EQ(changed.schema.ToJson(),
            R"({"key":"user","columns":{"user":{"dtype":"int64","nullable":false},)"
            R"("b":{"dtype":"int64","nullable":true},"s":{"dtype":"utf8","nullable":true},)"
            R"("e":{"dtype":"fixed_size_list[float32, 4]","nullable":true},)"
            R"("at":{"dtype":"timestamp[ms]","nullable":false},)"
            R"("g":{"dtype":"float32","nullable":true},)"
            R"("h":{"dtype":"int8","nullable":false,"default":3}},"event_time":"at","ttl":60.0})");
  EXPECT_EQ(changed.sources, (std::vector<int>{0, 1, 3, 4, 5, -1, -1}));
  // The journal's form reads back as the same change.
  const SchemaChange change = ChangeFromJson(R"({"rename": {"a": "b"}, "ttl": null,
      "alter": {"s": {"default": "none"}, "x": {"nullable": true, "dtype": "float64"}}})");
  const SchemaChange again = ChangeFromJson(change.ToJson());
  EXPECT_EQ(again.ToJson(), change.ToJson());
  ChangedSchema twice = ValueOrFail(ApplySchemaChange(Base(), again));
  EXPECT_TRUE(twice.schema.Equals(ValueOrFail(ApplySchemaChange(Base(), change)).schema));
  EXPECT_EQ(twice.schema.ttl_ms(), 0);
  EXPECT_EQ(DefaultJson(*twice.schema.columns()[3].default_value), "\"none\"");
  // A swap of two names is one change.
  ChangedSchema swapped =
      ValueOrFail(ApplySchemaChange(Base(), ChangeFromJson(R"({"rename": {"a": "x", "x": "a"}})")));
  EXPECT_EQ(swapped.schema.columns()[1].name, "x");
  EXPECT_EQ(swapped.schema.columns()[2].name, "a");
}

TEST(SchemaChangeTest, RefusalsNameTheColumnAndTheReason) {
  const TableSchema base = Base();
  const auto refused = [&](const std::string& json, StatusCode code, const std::string& text) {
    auto change = SchemaChange::FromJson(json);
    Status status = change.ok() ? ApplySchemaChange(base, *change).status() : change.status();
    EXPECT_EQ(status.code(), code) << json << ": " << status.ToString();
    EXPECT_NE(status.message().find(text), std::string::npos) << json << ": " << status.message();
  };
  refused("{}", StatusCode::kInvalidArgument, "changes nothing");
  refused("[]", StatusCode::kInvalidArgument, "must be a JSON object");
  refused(R"({"widen": {}})", StatusCode::kInvalidArgument, "unknown part 'widen'");
  refused(R"({"drop": ["nope"]})", StatusCode::kNotFound, "no column 'nope'");
  refused(R"({"drop": ["id"]})", StatusCode::kInvalidArgument, "key column cannot be dropped");
  refused(R"({"drop": ["at"]})", StatusCode::kInvalidArgument, "event-time column cannot");
  refused(R"({"drop": ["x", "x"]})", StatusCode::kInvalidArgument, "dropped twice");
  refused(R"({"drop": ["x"], "rename": {"x": "y"}})", StatusCode::kInvalidArgument,
          "both dropped and renamed");
  refused(R"({"rename": {"a": "x"}})", StatusCode::kInvalidArgument, "column 'x': the name");
  refused(R"({"add": {"a": {"dtype": "int8"}}})", StatusCode::kInvalidArgument,
          "column 'a': cannot be added");
  refused(R"({"add": {"g": {"dtype": "int8", "nullable": false}}})", StatusCode::kInvalidArgument,
          "needs a \"default\"");
  refused(R"({"add": {"g": {"dtype": "int8", "default": 300}}})", StatusCode::kInvalidArgument,
          "column 'g': default 300 does not fit int8");
  refused(R"({"add": {"g": {"dtype": "list[float32]", "default": 1}}})",
          StatusCode::kInvalidArgument, "scalar dtypes only");
  refused(R"({"add": {"g": {"dtype": "decimal"}}})", StatusCode::kInvalidArgument,
          "column 'g': unknown dtype 'decimal'");
  refused(R"({"alter": {"a": {"dtype": "int16"}}})", StatusCode::kInvalidArgument,
          "cannot change int32 to int16 online");
  refused(R"({"alter": {"s": {"dtype": "binary"}}})", StatusCode::kInvalidArgument,
          "cannot change utf8 to binary");
  refused(R"({"alter": {"id": {"dtype": "utf8"}}})", StatusCode::kInvalidArgument,
          "key column's dtype cannot change");
  refused(R"({"alter": {"at": {"dtype": "timestamp[us]"}}})", StatusCode::kInvalidArgument,
          "event-time column's dtype");
  refused(R"({"alter": {"x": {"nullable": false}}})", StatusCode::kInvalidArgument,
          "cannot be made non-nullable");
  refused(R"({"alter": {"x": {}}})", StatusCode::kInvalidArgument, "gives no change");
  refused(R"({"alter": {"e": {"dtype": "fixed_size_list[float32, 8]"}}})",
          StatusCode::kInvalidArgument, "cannot change");
  refused(R"({"ttl": -1})", StatusCode::kInvalidArgument, "\"ttl\" must be");
  refused(R"({"ttl": "1h"})", StatusCode::kInvalidArgument, "\"ttl\" must be");
}

TEST(SchemaChangeTest, WideningsKeepEveryValueAndNothingElseIsOne) {
  const std::vector<std::string> numbers = {"int8",    "int16",   "int32",  "int64",
                                            "uint8",   "uint16",  "uint32", "uint64",
                                            "float16", "float32", "float64"};
  // from -> the types it widens to (besides itself).
  const std::map<std::string, std::set<std::string>> widens = {
      {"int8", {"int16", "int32", "int64", "float16", "float32", "float64"}},
      {"int16", {"int32", "int64", "float32", "float64"}},
      {"int32", {"int64", "float64"}},
      {"int64", {}},
      {"uint8",
       {"uint16", "uint32", "uint64", "int16", "int32", "int64", "float16", "float32", "float64"}},
      {"uint16", {"uint32", "uint64", "int32", "int64", "float32", "float64"}},
      {"uint32", {"uint64", "int64", "float64"}},
      {"uint64", {}},
      {"float16", {"float32", "float64"}},
      {"float32", {"float64"}},
      {"float64", {}},
  };
  for (const std::string& from : numbers) {
    for (const std::string& to : numbers) {
      const bool expected = from == to || widens.at(from).count(to) > 0;
      EXPECT_EQ(IsWidening(*ValueOrFail(ParseDtype(from)), *ValueOrFail(ParseDtype(to))), expected)
          << from << " -> " << to;
      EXPECT_EQ(IsWidening(*ValueOrFail(ParseDtype("list[" + from + "]")),
                           *ValueOrFail(ParseDtype("list[" + to + "]"))),
                expected)
          << "lists of " << from << " -> " << to;
    }
  }
  EXPECT_FALSE(IsWidening(*arrow::utf8(), *arrow::binary()));
  EXPECT_FALSE(IsWidening(*arrow::timestamp(arrow::TimeUnit::SECOND),
                          *arrow::timestamp(arrow::TimeUnit::MILLI)));
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

TEST(SchemaChangeTest, CatalogAlterConvertsEveryRowAndTheOldTableForwardsWrites) {
  Catalog catalog;
  TableSchema schema = testing::SchemaFromJson(R"({"key": "id", "columns": {
      "id": {"dtype": "int64"}, "a": {"dtype": "int32"}, "x": {"dtype": "float32"},
      "s": {"dtype": "utf8"}, "at": {"dtype": "timestamp[ms]", "nullable": false}},
      "event_time": "at"})");
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

TEST(SchemaChangeTest, TtlChangesApplyToLaterWrites) {
  Catalog catalog;
  auto old = ValueOrFail(catalog.CreateTable(
      "t", testing::SchemaFromJson(R"({"key": "id", "columns": {"id": {"dtype": "int64"},
                                       "v": {"dtype": "int32"}}})")));
  ValueOrFail(old->Upsert(
      *testing::BatchFromJson({{"id", arrow::int64(), "[1]"}, {"v", arrow::int32(), "[1]"}})));
  auto table = ValueOrFail(catalog.AlterTable("t", ChangeFromJson(R"({"ttl": 3600})")));
  EXPECT_EQ(table->schema().ttl_ms(), 3600000);
  EXPECT_EQ(table->Stats().rows_with_ttl, 0);  // the rows stored keep their expiry (none)
  ValueOrFail(table->Upsert(
      *testing::BatchFromJson({{"id", arrow::int64(), "[2]"}, {"v", arrow::int32(), "[2]"}})));
  EXPECT_EQ(table->Stats().rows_with_ttl, 1);
  table = ValueOrFail(catalog.AlterTable("t", ChangeFromJson(R"({"ttl": 0})")));
  EXPECT_EQ(table->schema().ttl_ms(), 0);
  EXPECT_EQ(table->Stats().rows_with_ttl, 1);  // row 2 keeps the expiry it was written with
}

// Writers and readers keep going while the table is changed: every acknowledged write is in the
// result, and every read sees one schema, whole.
TEST(SchemaChangeTest, ReadsAndWritesGoOnDuringAChange) {
  Catalog catalog;
  auto schema = testing::SchemaFromJson(R"({"key": "id", "columns": {
      "id": {"dtype": "int64"}, "a": {"dtype": "int32"}, "x": {"dtype": "float32"},
      "s": {"dtype": "utf8"}, "at": {"dtype": "timestamp[ms]", "nullable": false}},
      "event_time": "at"})");
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
