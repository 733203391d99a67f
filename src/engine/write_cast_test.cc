#include "engine/write_cast.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "engine/schema.h"
#include "engine/table.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ArrayFromJson;

std::shared_ptr<arrow::DataType> Dtype(const std::string& spelling) {
  return testing::ValueOrFail(ParseDtype(spelling));
}

// Casts `json` of `from` to dtype `to` under `mode`: "" when it converts, else the error.
std::string Cast(const std::shared_ptr<arrow::DataType>& from, const std::string& json,
                 const std::string& to, CastMode mode = CastMode::kSafe) {
  auto cast = CastForWrite(ArrayFromJson(from, json), Dtype(to), mode, "column 'c'");
  return cast.ok() ? "" : cast.status().message();
}

TEST(WriteCastTest, SafeConvertsWhatLosesNothing) {
  EXPECT_EQ(Cast(arrow::int64(), "[0, -5, 100, null]", "int8"), "");
  EXPECT_EQ(Cast(arrow::int8(), "[-128, 127]", "int64"), "");
  EXPECT_EQ(Cast(arrow::uint32(), "[4294967295]", "int64"), "");
  EXPECT_EQ(Cast(arrow::float64(), "[0.1, -3.4e38, 3.4e38, null]", "float32"), "");
  EXPECT_EQ(Cast(arrow::float64(), "[2.0, -7.0]", "int16"), "");
  EXPECT_EQ(Cast(arrow::int32(), "[1, 16777216]", "float32"), "");
  EXPECT_EQ(Cast(arrow::float32(), "[1.5, 65504]", "float16"), "");
  // Not finite before, not finite after: nothing was lost.
  auto specials = CastForWrite(ArrayFromJson(arrow::float64(), "[1, 2]"), arrow::float32(),
                               CastMode::kSafe, "c");
  EXPECT_TRUE(specials.ok());
  arrow::DoubleBuilder builder;
  ASSERT_TRUE(builder.Append(std::numeric_limits<double>::infinity()).ok());
  ASSERT_TRUE(builder.Append(std::numeric_limits<double>::quiet_NaN()).ok());
  EXPECT_TRUE(
      CastForWrite(builder.Finish().ValueOrDie(), arrow::float32(), CastMode::kSafe, "c").ok());
  EXPECT_EQ(Cast(arrow::timestamp(arrow::TimeUnit::NANO), "[1000000, 5000000]", "timestamp[ms]"),
            "");
  EXPECT_EQ(Cast(arrow::utf8(), R"(["2024-05-01", null])", "date32"), "");
  EXPECT_EQ(Cast(arrow::utf8(), R"(["2024-05-01T10:00:00.123"])", "timestamp[ms]"), "");
  EXPECT_EQ(Cast(arrow::date32(), "[19844]", "timestamp[s]"), "");
  EXPECT_EQ(Cast(arrow::large_utf8(), R"(["x"])", "utf8"), "");
  EXPECT_EQ(Cast(arrow::utf8(), R"(["x"])", "binary"), "");
  EXPECT_EQ(Cast(arrow::list(arrow::float64()), "[[1, 2], null, []]", "list[float32]"), "");
  EXPECT_EQ(Cast(arrow::list(arrow::int64()), "[[1, 2]]", "fixed_size_list[float32, 2]"), "");
}

TEST(WriteCastTest, SafeRefusesWhatLosesSomethingAndNamesTheRow) {
  EXPECT_EQ(Cast(arrow::int64(), "[1, 2, 300]", "int8"),
            "column 'c' row 2: cannot store 300 as int8 (Integer value 300 not in range: -128 to "
            "127)");
  EXPECT_NE(Cast(arrow::int64(), "[-1]", "uint8").find("row 0: cannot store -1 as uint8"),
            std::string::npos);
  EXPECT_NE(Cast(arrow::uint64(), "[18446744073709551615]", "int64").find("row 0"),
            std::string::npos);
  EXPECT_EQ(Cast(arrow::float64(), "[1, 2, 1e300]", "float32"),
            "column 'c' row 2: 1e+300 is out of range for float32");
  EXPECT_EQ(Cast(arrow::float64(), "[-1e39]", "float32"),
            "column 'c' row 0: -1e+39 is out of range for float32");
  EXPECT_EQ(Cast(arrow::float32(), "[1, 70000]", "float16"),
            "column 'c' row 1: 70000 is out of range for float16");
  EXPECT_EQ(Cast(arrow::int64(), "[65536]", "float16"),
            "column 'c' row 0: 65536 is out of range for float16");
  EXPECT_NE(Cast(arrow::float64(), "[1.0, 2.5]", "int32").find("row 1: cannot store 2.5 as int32"),
            std::string::npos);
  EXPECT_NE(Cast(arrow::timestamp(arrow::TimeUnit::NANO), "[1000000, 1000001]", "timestamp[ms]")
                .find("row 1"),
            std::string::npos);
  EXPECT_NE(Cast(arrow::utf8(), R"(["2024-05-01", "yesterday"])", "date32").find("row 1"),
            std::string::npos);
  EXPECT_EQ(Cast(arrow::list(arrow::float64()), "[[1], [2, 1e300]]", "list[float32]"),
            "column 'c' row 1: 1e+300 is out of range for list[float32]");
  // Another family is not a conversion.
  EXPECT_EQ(Cast(arrow::binary(), R"(["x"])", "utf8"), "column 'c': cannot store binary as utf8");
  EXPECT_EQ(Cast(arrow::int8(), "[1]", "bool"), "column 'c': cannot store int8 as bool");
  EXPECT_EQ(Cast(arrow::int64(), "[1]", "timestamp[ms]"),
            "column 'c': cannot store int64 as timestamp[ms]");
  EXPECT_EQ(Cast(arrow::utf8(), R"(["1"])", "int32"), "column 'c': cannot store utf8 as int32");
}

TEST(WriteCastTest, StrictTakesTheColumnsTypeOnly) {
  EXPECT_EQ(Cast(arrow::float32(), "[1.5]", "float32", CastMode::kStrict), "");
  // A list's child field name is not its type.
  auto element = arrow::list(arrow::field("element", arrow::float32()));
  EXPECT_EQ(Cast(element, "[[1]]", "list[float32]", CastMode::kStrict), "");
  for (const auto& [from, json, to] :
       std::vector<std::tuple<std::shared_ptr<arrow::DataType>, std::string, std::string>>{
           {arrow::float64(), "[1.5]", "float32"},
           {arrow::int32(), "[1]", "int64"},
           {arrow::utf8(), R"(["2024-05-01"])", "date32"},
           {arrow::large_utf8(), R"(["x"])", "utf8"},
           {arrow::timestamp(arrow::TimeUnit::MICRO), "[1]", "timestamp[ms]"},
       }) {
    EXPECT_NE(Cast(from, json, to, CastMode::kStrict).find("given for a column of " + to),
              std::string::npos)
        << from->ToString() << " -> " << to;
  }
  EXPECT_EQ(testing::ValueOrFail(ParseCastMode("strict")), CastMode::kStrict);
  QUIVER_EXPECT_ERROR(ParseCastMode("lossy"), StatusCode::kInvalidArgument,
                      "cast 'lossy' is not one of safe, strict");
}

TEST(WriteCastTest, TablesTakeTheirCastModeAndWritesOverrideIt) {
  auto schema = testing::SchemaFromJson(
      R"({"key": "id", "columns": {"id": {"dtype": "int64"}, "x": {"dtype": "float32"}},
          "cast": "strict"})");
  EXPECT_EQ(schema.cast_mode(), CastMode::kStrict);
  EXPECT_NE(schema.ToJson().find(R"("cast":"strict")"), std::string::npos);
  EXPECT_EQ(testing::ValueOrFail(TableSchema::FromArrow(*schema.ToArrow())).cast_mode(),
            CastMode::kStrict);
  auto table = testing::ValueOrFail(Table::Make("t", schema));
  auto wide =
      testing::BatchFromJson({{"id", arrow::int64(), "[1]"}, {"x", arrow::float64(), "[2]"}});
  QUIVER_EXPECT_ERROR(table->Upsert(*wide), StatusCode::kInvalidArgument,
                      "float64 given for a column of float32");
  EXPECT_EQ(
      testing::ValueOrFail(table->Upsert(*wide, WriteOptions{0, CastMode::kSafe})).rows_written, 1);
  // Replay takes what any write took.
  EXPECT_EQ(testing::ValueOrFail(table->Replay(*wide, 1)).rows_written, 1);
}

}  // namespace
}  // namespace quiver
