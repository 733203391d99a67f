#include "engine/schema_change.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "engine/catalog.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ChangeFromJson;
using testing::ValueOrFail;

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

}  // namespace
}  // namespace quiver
