#include "engine/schema.h"

#include <arrow/api.h>
#include <arrow/util/key_value_metadata.h>
#include <gtest/gtest.h>

#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::SchemaFromJson;

TEST(SchemaTest, ParsesMurrShape) {
  TableSchema schema = SchemaFromJson(
      R"({"key": "doc_id", "columns": {"doc_id": {"dtype": "utf8", "nullable": false},
                                       "score": {"dtype": "float32"}}})");
  ASSERT_EQ(schema.num_columns(), 2);
  EXPECT_EQ(schema.key().name, "doc_id");
  EXPECT_TRUE(schema.key().type->Equals(arrow::utf8()));
  EXPECT_FALSE(schema.key().nullable);
  EXPECT_EQ(schema.columns()[1].name, "score");
  EXPECT_TRUE(schema.columns()[1].type->Equals(arrow::float32()));
  EXPECT_TRUE(schema.columns()[1].nullable);  // the default for value columns
  EXPECT_EQ(schema.event_time_index(), -1);
}

TEST(SchemaTest, KeyDefaultsToNotNullable) {
  TableSchema schema = SchemaFromJson(
      R"({"key": "id", "columns": {"id": {"dtype": "int64"}, "x": {"dtype": "bool"}}})");
  EXPECT_FALSE(schema.key().nullable);
  EXPECT_EQ(schema.key_index(), 0);
}

TEST(SchemaTest, JsonRoundTripKeepsOrderAndEventTime) {
  const std::string json =
      R"({"key":"k","columns":{"ts":{"dtype":"timestamp[ms, tz=UTC]","nullable":false},)"
      R"("k":{"dtype":"utf8","nullable":false},"emb":{"dtype":"fixed_size_list[float32, 128]",)"
      R"("nullable":true},"hist":{"dtype":"list[int16]","nullable":true}},"event_time":"ts"})";
  TableSchema schema = SchemaFromJson(json);
  EXPECT_EQ(schema.ToJson(), json);
  EXPECT_EQ(schema.key_index(), 1);
  EXPECT_EQ(schema.event_time_index(), 0);
}

TEST(SchemaTest, EveryDtypeSpellingRoundTrips) {
  for (const char* spelling : {"bool",
                               "int8",
                               "int16",
                               "int32",
                               "int64",
                               "uint8",
                               "uint16",
                               "uint32",
                               "uint64",
                               "float32",
                               "float64",
                               "utf8",
                               "binary",
                               "date32",
                               "timestamp[s]",
                               "timestamp[ms]",
                               "timestamp[us]",
                               "timestamp[ns]",
                               "timestamp[us, tz=Europe/Paris]",
                               "list[float64]",
                               "list[uint8]",
                               "fixed_size_list[float32, 8192]",
                               "fixed_size_list[int8, 1]"}) {
    auto type = ParseDtype(spelling);
    ASSERT_TRUE(type.ok()) << spelling << ": " << type.status().ToString();
    EXPECT_EQ(DtypeName(**type), spelling);
    QUIVER_ASSERT_OK(CheckValueType(**type));
  }
  EXPECT_TRUE(ParseDtype("timestamp[ms, tz=UTC]")
                  .value()
                  ->Equals(arrow::timestamp(arrow::TimeUnit::MILLI, "UTC")));
  EXPECT_TRUE(ParseDtype("fixed_size_list[float32, 128]")
                  .value()
                  ->Equals(arrow::fixed_size_list(arrow::float32(), 128)));
}

TEST(SchemaTest, RejectsBadDtypes) {
  // (float16 was the example until it became a dtype.)
  QUIVER_EXPECT_ERROR(ParseDtype("float8"), StatusCode::kInvalidArgument, "unknown dtype 'float8'");
  QUIVER_EXPECT_ERROR(ParseDtype("timestamp[m]"), StatusCode::kInvalidArgument, "unit");
  QUIVER_EXPECT_ERROR(ParseDtype("list[utf8]"), StatusCode::kInvalidArgument,
                      "not a numeric dtype");
  QUIVER_EXPECT_ERROR(ParseDtype("fixed_size_list[float32, 0]"), StatusCode::kInvalidArgument,
                      "positive integer");
  QUIVER_EXPECT_ERROR(ParseDtype("fixed_size_list[float32]"), StatusCode::kInvalidArgument,
                      "expected fixed_size_list");
}

TEST(SchemaTest, InvalidSchemasNameTheColumn) {
  auto expect = [](const std::string& json, StatusCode code, const std::string& text) {
    QUIVER_EXPECT_ERROR(TableSchema::FromJson(json), code, text);
  };
  expect(R"({"key": "id", "columns": {"id": {"dtype": "float32"}}})", StatusCode::kInvalidArgument,
         "key column 'id' must be utf8 or int64");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8", "nullable": true}}})",
         StatusCode::kInvalidArgument, "key column 'id' cannot be nullable");
  expect(R"({"key": "id", "columns": {"x": {"dtype": "utf8"}}})", StatusCode::kInvalidArgument,
         "key column 'id' is not among the columns");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "decimal"}}})",
         StatusCode::kInvalidArgument, "column 'v'");
  expect(
      R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "utf8", "size": 3}}})",
      StatusCode::kInvalidArgument, "column 'v': unknown field 'size'");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"nullable": true}}})",
         StatusCode::kInvalidArgument, "column 'v': \"dtype\" must be a string");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "int8"}},
             "event_time": "v"})",
         StatusCode::kInvalidArgument, "event-time column 'v' must be a timestamp");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "t": {"dtype": "timestamp[ms]"}},
             "event_time": "t"})",
         StatusCode::kInvalidArgument, "event-time column 't' must not be nullable");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"},
             "e": {"dtype": "fixed_size_list[float32, 9000]"}}})",
         StatusCode::kInvalidArgument, "column 'e'");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "": {"dtype": "int8"}}})",
         StatusCode::kInvalidArgument, "column name is empty");
  expect("{not json", StatusCode::kInvalidArgument, "not valid JSON");
  expect(R"([1, 2])", StatusCode::kInvalidArgument, "must be a JSON object");
  expect(R"({"columns": {}})", StatusCode::kInvalidArgument, "\"key\"");
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}}, "expiry": 5})",
         StatusCode::kInvalidArgument, "unknown field 'expiry'");
  for (const char* ttl : {"0", "-1", "0.0001", "4e9"}) {
    expect(
        std::string(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}}, "ttl": )") + ttl + "}",
        StatusCode::kInvalidArgument, "the table's \"ttl\" must be a number of seconds");
  }
  expect(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}}, "ttl": "1h"})",
         StatusCode::kInvalidArgument, "\"ttl\" must be a number of seconds");
}

TEST(SchemaTest, TableTtlRoundTripsThroughJsonAndArrow) {
  TableSchema schema =
      SchemaFromJson(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}}, "ttl": 1.5})");
  EXPECT_EQ(schema.ttl_ms(), 1500);
  EXPECT_NE(schema.ToJson().find("\"ttl\":1.5"), std::string::npos) << schema.ToJson();
  TableSchema from_json = testing::ValueOrFail(TableSchema::FromJson(schema.ToJson()));
  EXPECT_TRUE(from_json.Equals(schema));
  TableSchema from_arrow = testing::ValueOrFail(TableSchema::FromArrow(*schema.ToArrow()));
  EXPECT_EQ(from_arrow.ttl_ms(), 1500);
  EXPECT_FALSE(
      SchemaFromJson(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}}})").Equals(schema));
}

TEST(SchemaTest, ArrowRoundTripMarksKeyAndEventTime) {
  TableSchema schema = SchemaFromJson(
      R"({"key": "id", "columns": {"id": {"dtype": "int64"}, "t": {"dtype": "timestamp[ns]",
          "nullable": false}, "v": {"dtype": "binary"}}, "event_time": "t"})");
  std::shared_ptr<arrow::Schema> arrow_schema = schema.ToArrow();
  ASSERT_EQ(arrow_schema->num_fields(), 3);
  EXPECT_EQ(arrow_schema->field(0)->metadata()->Get("quiver.key").ValueOrDie(), "true");
  EXPECT_EQ(arrow_schema->field(1)->metadata()->Get("quiver.event_time").ValueOrDie(), "true");
  EXPECT_FALSE(arrow_schema->field(0)->nullable());
  TableSchema back = testing::ValueOrFail(TableSchema::FromArrow(*arrow_schema));
  EXPECT_TRUE(back.Equals(schema));
}

TEST(SchemaTest, FromArrowNeedsAKey) {
  auto plain = arrow::schema({arrow::field("a", arrow::utf8()), arrow::field("b", arrow::int8())});
  QUIVER_EXPECT_ERROR(TableSchema::FromArrow(*plain), StatusCode::kInvalidArgument,
                      "no key column");
  TableSchema named = testing::ValueOrFail(TableSchema::FromArrow(*plain, "a"));
  EXPECT_EQ(named.key().name, "a");
  EXPECT_FALSE(named.key().nullable);  // pyarrow fields are nullable by default
  QUIVER_EXPECT_ERROR(TableSchema::FromArrow(*plain, "b"), StatusCode::kInvalidArgument,
                      "key column 'b' must be utf8 or int64");
  auto dictionary =
      arrow::schema({arrow::field("a", arrow::utf8(), false),
                     arrow::field("d", arrow::dictionary(arrow::int8(), arrow::utf8()))});
  QUIVER_EXPECT_ERROR(TableSchema::FromArrow(*dictionary, "a"), StatusCode::kInvalidArgument,
                      "column 'd'");
}

TEST(SchemaTest, TableNames) {
  QUIVER_ASSERT_OK(CheckTableName("user_features.v2-b"));
  QUIVER_EXPECT_ERROR(CheckTableName(""), StatusCode::kInvalidArgument, "1 to 128");
  QUIVER_EXPECT_ERROR(CheckTableName("a/b"), StatusCode::kInvalidArgument, "may only contain");
  QUIVER_EXPECT_ERROR(CheckTableName("a:b"), StatusCode::kInvalidArgument, "may only contain");
  QUIVER_EXPECT_ERROR(CheckTableName(".hidden"), StatusCode::kInvalidArgument, "must not start");
  QUIVER_EXPECT_ERROR(CheckTableName(std::string(129, 'a')), StatusCode::kInvalidArgument,
                      "1 to 128");
}

}  // namespace
}  // namespace quiver
