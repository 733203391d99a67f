// Composite keys: the schema, the key encoding (engine/keys.h) and a table keyed by two columns
// through every operation.
#include <arrow/api.h>
#include <gtest/gtest.h>

#include "engine/catalog.h"
#include "engine/keys.h"
#include "engine/schema_change.h"
#include "engine/table.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ArrayFromJson;
using testing::BatchFromJson;
using testing::ChangeFromJson;
using testing::ExpectColumn;
using testing::SchemaFromJson;
using testing::ValueOrFail;

constexpr char kSchema[] = R"({"key": ["user_id", "item_id"], "columns": {
    "score": {"dtype": "float32"},
    "item_id": {"dtype": "utf8"},
    "user_id": {"dtype": "int64"},
    "tag": {"dtype": "utf8"}}})";

// Keys as a struct array of the two key columns, from JSON lists.
std::shared_ptr<arrow::Array> Keys(const std::string& users, const std::string& items) {
  return ValueOrFail(Result<std::shared_ptr<arrow::Array>>(
      arrow::StructArray::Make(
          {ArrayFromJson(arrow::int64(), users), ArrayFromJson(arrow::utf8(), items)},
          std::vector<std::string>{"user_id", "item_id"})
          .ValueOrDie()));
}

std::shared_ptr<arrow::RecordBatch> Rows(const std::string& users, const std::string& items,
                                         const std::string& scores) {
  return BatchFromJson({{"user_id", arrow::int64(), users},
                        {"item_id", arrow::utf8(), items},
                        {"score", arrow::float32(), scores}});
}

TEST(CompositeKeySchemaTest, JsonAndArrowRoundTripTheKeyInKeyOrder) {
  const TableSchema schema = SchemaFromJson(kSchema);
  ASSERT_TRUE(schema.composite_key());
  EXPECT_EQ(schema.key_index(), -1);
  EXPECT_EQ(schema.key_columns(), (std::vector<int>{2, 1}));
  EXPECT_EQ(schema.KeyNames(), "user_id, item_id");
  EXPECT_FALSE(schema.columns()[1].nullable) << "key columns are not nullable by default";
  EXPECT_TRUE(schema.columns()[3].nullable);
  const TableSchema from_json = ValueOrFail(TableSchema::FromJson(schema.ToJson()));
  EXPECT_TRUE(from_json.Equals(schema)) << schema.ToJson();
  EXPECT_NE(schema.ToJson().find(R"("key":["user_id","item_id"])"), std::string::npos);
  const auto arrow_schema = schema.ToArrow();
  EXPECT_EQ(arrow_schema->field(2)->metadata()->Get("quiver.key").ValueOrDie(), "1");
  EXPECT_EQ(arrow_schema->field(1)->metadata()->Get("quiver.key").ValueOrDie(), "2");
  EXPECT_TRUE(ValueOrFail(TableSchema::FromArrow(*arrow_schema)).Equals(schema));
  // A one-element list is a single key.
  const TableSchema single = SchemaFromJson(
      R"({"key": ["id"], "columns": {"id": {"dtype": "int64"}, "x": {"dtype": "float32"}}})");
  EXPECT_FALSE(single.composite_key());
  EXPECT_EQ(single.key_index(), 0);
}

TEST(CompositeKeySchemaTest, BadKeysAreRefusedNamingTheColumn) {
  const auto error = [](const std::string& json) {
    return TableSchema::FromJson(json).status().message();
  };
  EXPECT_NE(error(R"({"key": ["a", "f"], "columns": {"a": {"dtype": "int64"},
                     "f": {"dtype": "float32"}}})")
                .find("key column 'f' must be utf8 or int64"),
            std::string::npos);
  EXPECT_NE(error(R"({"key": ["a", "b"], "columns": {"a": {"dtype": "int64"},
                     "b": {"dtype": "utf8", "nullable": true}}})")
                .find("key column 'b' cannot be nullable"),
            std::string::npos);
  EXPECT_NE(
      error(R"({"key": ["a", "a"], "columns": {"a": {"dtype": "int64"}}})").find("named twice"),
      std::string::npos);
  EXPECT_NE(error(R"({"key": ["a", "zz"], "columns": {"a": {"dtype": "int64"}}})")
                .find("key column 'zz' is not among the columns"),
            std::string::npos);
  EXPECT_NE(error(R"({"key": [], "columns": {"a": {"dtype": "int64"}}})").find("\"key\""),
            std::string::npos);
  EXPECT_NE(error(R"({"key": ["a", 1], "columns": {"a": {"dtype": "int64"}}})").find("\"key\""),
            std::string::npos);
  EXPECT_NE(
      error(R"({"key": ["a","b","c","d","e","f","g","h","i"], "columns": {}})").find("\"key\""),
      std::string::npos);
  EXPECT_NE(error(R"({"key": ["a", "t"], "event_time": "t", "columns": {
                     "a": {"dtype": "int64"}, "t": {"dtype": "timestamp[ms]"}}})")
                .find("must be utf8 or int64"),
            std::string::npos);
}

TEST(KeyEncodingTest, PartsAreLengthPrefixedSoNoTwoKeysShareBytes) {
  const TableSchema schema = SchemaFromJson(
      R"({"key": ["a", "b", "n"], "columns": {"a": {"dtype": "utf8"}, "b": {"dtype": "utf8"},
          "n": {"dtype": "int64"}}})");
  const arrow::ArrayVector parts = {ArrayFromJson(arrow::utf8(), R"(["ab", "a", ""])"),
                                    ArrayFromJson(arrow::utf8(), R"(["c", "bc", "abc"])"),
                                    ArrayFromJson(arrow::int64(), "[1, 1, -5]")};
  const auto encoded = ValueOrFail(EncodeKeyParts(schema, parts));
  const auto& keys = static_cast<const arrow::BinaryArray&>(*encoded);
  EXPECT_NE(keys.GetView(0), keys.GetView(1));
  // a: 2-byte length + bytes; b: likewise; n (last, int64): 8 bytes.
  EXPECT_EQ(keys.value_length(0), 2 + 2 + 2 + 1 + 8);
  const arrow::ArrayVector decoded = ValueOrFail(DecodeKeys(schema, *encoded));
  ASSERT_EQ(decoded.size(), 3u);
  for (size_t p = 0; p < 3; ++p) EXPECT_TRUE(decoded[p]->Equals(*parts[p])) << p;
  EXPECT_EQ(KeyForMessage(schema, keys.GetView(2)), "('', 'abc', -5)");
  // Text parts (RESP) encode to the same bytes.
  EXPECT_EQ(ValueOrFail(EncodeTextKey(schema, {"ab", "c", "1"})), keys.GetString(0));
  QUIVER_EXPECT_ERROR(EncodeTextKey(schema, {"ab", "c", "x"}), StatusCode::kInvalidArgument,
                      "key column 'n' is int64: 'x' is not an integer");
  QUIVER_EXPECT_ERROR(EncodeTextKey(schema, {"ab", "c"}), StatusCode::kInvalidArgument,
                      "the key has 3 columns (a, b, n), given 2");
  // Bytes that are not a key of this schema are refused, never read past their end.
  QUIVER_EXPECT_ERROR(SplitKey(schema, std::string("\x05\x00"
                                                   "ab",
                                                   4)),
                      StatusCode::kInvalidArgument, "not an encoded key");
  QUIVER_EXPECT_ERROR(SplitKey(schema, keys.GetString(0) + "x"), StatusCode::kInvalidArgument,
                      "not an encoded key");
}

TEST(CompositeKeyTableTest, RowsAreFoundByAllKeyColumnsTogether) {
  auto table = ValueOrFail(Table::Make("t", SchemaFromJson(kSchema)));
  ValueOrFail(table->Upsert(*Rows("[1, 1, 2]", R"(["a", "b", "a"])", "[0.5, 1.5, 2.5]")));
  EXPECT_EQ(table->Stats().rows, 3);
  const ReadResult read = ValueOrFail(
      table->Read(*Keys("[2, 1, 1, 3, 1]", R"(["a", "b", "a", "a", "c"])"), {"score", "user_id"}));
  ExpectColumn(read, "score", arrow::float32(), "[2.5, 1.5, 0.5, null, null]");
  ExpectColumn(read, "user_id", arrow::int64(), "[2, 1, 1, null, null]");
  EXPECT_EQ(read.found_count, 3);
  // All value columns by default: the key columns are left out, as a single key is.
  const ReadResult all = ValueOrFail(table->Read(*Keys("[1]", R"(["b"])")));
  EXPECT_EQ(all.batch->schema()->ToString(), "score: float\ntag: string");
  // Key fields in any order, any castable types.
  auto reordered = arrow::StructArray::Make({ArrayFromJson(arrow::utf8(), R"(["b"])"),
                                             ArrayFromJson(arrow::int32(), "[1]")},
                                            std::vector<std::string>{"item_id", "user_id"})
                       .ValueOrDie();
  ExpectColumn(ValueOrFail(table->Read(*reordered, {"score"})), "score", arrow::float32(), "[1.5]");
  // An update of one key leaves its neighbours alone.
  ValueOrFail(table->Upsert(*Rows("[1]", R"(["a"])", "[9]")));
  ExpectColumn(ValueOrFail(table->Read(*Keys("[1, 1, 2]", R"(["a", "b", "a"])"), {"score"})),
               "score", arrow::float32(), "[9, 1.5, 2.5]");
  // Scans give every column in schema order.
  auto scanned = ValueOrFail(table->Scan())->ToTable().ValueOrDie();
  EXPECT_EQ(scanned->num_rows(), 3);
  EXPECT_EQ(scanned->schema()->field(1)->name(), "item_id");
  EXPECT_EQ(scanned->schema()->field(2)->name(), "user_id");
  // Deletes take the same keys.
  EXPECT_EQ(ValueOrFail(table->Delete(*Keys("[1, 5]", R"(["a", "a"])"))), 1);
  EXPECT_EQ(ValueOrFail(table->Read(*Keys("[1, 1]", R"(["a", "b"])"))).found_count, 1);
}

TEST(CompositeKeyTableTest, BadKeysAreRefusedNamingWhatIsWrong) {
  auto table = ValueOrFail(Table::Make("t", SchemaFromJson(kSchema)));
  ValueOrFail(table->Upsert(*Rows("[1]", R"(["a"])", "[0.5]")));
  QUIVER_EXPECT_ERROR(table->Read(*ArrayFromJson(arrow::int64(), "[1]")),
                      StatusCode::kInvalidArgument,
                      "the key has 2 columns: give read keys as one array per key column (its "
                      "key is user_id, item_id)");
  auto missing = arrow::StructArray::Make({ArrayFromJson(arrow::int64(), "[1]")},
                                          std::vector<std::string>{"user_id"})
                     .ValueOrDie();
  QUIVER_EXPECT_ERROR(table->Read(*missing), StatusCode::kInvalidArgument,
                      "read keys lack key column 'item_id'");
  auto extra = arrow::StructArray::Make(
                   {ArrayFromJson(arrow::int64(), "[1]"), ArrayFromJson(arrow::utf8(), R"(["a"])"),
                    ArrayFromJson(arrow::float32(), "[1]")},
                   std::vector<std::string>{"user_id", "item_id", "score"})
                   .ValueOrDie();
  QUIVER_EXPECT_ERROR(table->Read(*extra), StatusCode::kInvalidArgument,
                      "keys have column 'score', which is not a key column");
  QUIVER_EXPECT_ERROR(table->Read(*Keys("[1, null]", R"(["a", "b"])")),
                      StatusCode::kInvalidArgument,
                      "(key column 'user_id') key at position 1 is null");
  auto mistyped = arrow::StructArray::Make({ArrayFromJson(arrow::float64(), "[1.5]"),
                                            ArrayFromJson(arrow::utf8(), R"(["a"])")},
                                           std::vector<std::string>{"user_id", "item_id"})
                      .ValueOrDie();
  QUIVER_EXPECT_ERROR(table->Read(*mistyped), StatusCode::kInvalidArgument,
                      "keys must be int64, not double");
  // A write needs every key column; nothing changes.
  QUIVER_EXPECT_ERROR(table->Upsert(*BatchFromJson({{"user_id", arrow::int64(), "[2]"},
                                                    {"score", arrow::float32(), "[1]"}})),
                      StatusCode::kInvalidArgument,
                      "the batch has no key column 'item_id' (the key is user_id, item_id)");
  QUIVER_EXPECT_ERROR(table->Upsert(*Rows("[2, 3]", R"(["a", null])", "[1, 2]")),
                      StatusCode::kInvalidArgument, "key at position 1 is null");
  EXPECT_EQ(table->Stats().rows, 1);
  // A new key without a required column names the key by its parts.
  auto required = ValueOrFail(
      Table::Make("r", SchemaFromJson(R"({"key": ["u", "i"], "columns": {"u": {"dtype": "int64"},
           "i": {"dtype": "utf8"}, "x": {"dtype": "float32", "nullable": false}}})")));
  QUIVER_EXPECT_ERROR(required->Upsert(*BatchFromJson(
                          {{"u", arrow::int64(), "[7]"}, {"i", arrow::utf8(), R"(["z"])"}})),
                      StatusCode::kInvalidArgument, "new key (7, 'z') has no value");
}

TEST(CompositeKeyTableTest, LongKeysSurviveHeapCompactionExpiryAndSchemaChanges) {
  int64_t now = 1'000'000;
  auto table = ValueOrFail(Table::Make("t", SchemaFromJson(kSchema), {}, RegionBacking::kAnonymous,
                                       0, nullptr, [&now] { return now; }));
  const std::string long_item = "an item id well over the eight inline bytes ";
  // Rewrites of long values leave heap garbage until compactions move the live values, the
  // encoded keys among them.
  for (int round = 0; round < 40; ++round) {
    arrow::Int64Builder users;
    arrow::StringBuilder items, tags;
    arrow::FloatBuilder scores;
    for (int i = 0; i < 500; ++i) {
      (void)users.Append(i % 50);
      (void)items.Append(long_item + std::to_string(i));
      (void)tags.Append("tag value of round " + std::to_string(round) + " and more bytes");
      (void)scores.Append(static_cast<float>(round));
    }
    auto batch = arrow::RecordBatch::Make(
        arrow::schema({arrow::field("user_id", arrow::int64()),
                       arrow::field("item_id", arrow::utf8()), arrow::field("tag", arrow::utf8()),
                       arrow::field("score", arrow::float32())}),
        500,
        {users.Finish().ValueOrDie(), items.Finish().ValueOrDie(), tags.Finish().ValueOrDie(),
         scores.Finish().ValueOrDie()});
    ValueOrFail(table->Upsert(*batch, WriteOptions{.ttl_ms = round == 39 ? 0 : 10'000'000}));
  }
  EXPECT_GT(table->Stats().heap_compactions, 0u);
  EXPECT_EQ(table->Stats().rows, 500);
  const ReadResult read = ValueOrFail(table->Read(
      *Keys("[7, 8]", "[\"" + long_item + "7\", \"" + long_item + "7\"]"), {"score", "item_id"}));
  ExpectColumn(read, "score", arrow::float32(), "[39, null]");
  // Expiry reclaims rows by their stored key.
  ValueOrFail(table->Upsert(*Rows("[100]", R"(["gone"])", "[1]"), WriteOptions{.ttl_ms = 10}));
  now += 20;
  table->ExpireCycle(1000);
  EXPECT_EQ(table->Stats().rows, 500);
  // A schema change renames a key column: the key follows it.
  const ChangedSchema changed = ValueOrFail(ApplySchemaChange(
      table->schema(),
      ChangeFromJson(R"({"rename": {"user_id": "uid"}, "add": {"n": {"dtype": "int32"}}})")));
  EXPECT_EQ(changed.schema.KeyNames(), "uid, item_id");
  QUIVER_EXPECT_ERROR(
      ApplySchemaChange(table->schema(), ChangeFromJson(R"({"drop": ["item_id"]})")),
      StatusCode::kInvalidArgument, "a key column cannot be dropped");
  auto successor = ValueOrFail(
      table->Rebuild(changed, 1, [](const std::shared_ptr<Table>&) { return Status::OK(); }));
  auto keys = arrow::StructArray::Make({ArrayFromJson(arrow::int64(), "[7]"),
                                        ArrayFromJson(arrow::utf8(), "[\"" + long_item + "7\"]")},
                                       std::vector<std::string>{"uid", "item_id"})
                  .ValueOrDie();
  ExpectColumn(ValueOrFail(successor->Read(*keys, {"score"})), "score", arrow::float32(), "[39]");
  EXPECT_EQ(successor->Stats().rows, 500);
}

TEST(CompositeKeyTableTest, EvictionDeletesByTheEncodedKey) {
  MemoryLimit limit;
  CatalogOptions options;
  options.memory_limit = &limit;
  Catalog catalog(options);
  auto table = ValueOrFail(catalog.CreateTable("t", SchemaFromJson(kSchema)));
  arrow::Int64Builder users;
  arrow::StringBuilder items;
  for (int i = 0; i < 2000; ++i) {
    (void)users.Append(i);
    (void)items.Append("item-" + std::to_string(i));
  }
  auto batch =
      arrow::RecordBatch::Make(arrow::schema({arrow::field("user_id", arrow::int64()),
                                              arrow::field("item_id", arrow::utf8())}),
                               2000, {users.Finish().ValueOrDie(), items.Finish().ValueOrDie()});
  ValueOrFail(table->Upsert(*batch));
  limit.SetMaxMemory(limit.UsedMemory());
  limit.SetPolicy(EvictionPolicy::kAllKeysRandom);
  ValueOrFail(table->Upsert(*Rows("[5000, 5001]", R"(["x", "y"])", "[1, 2]")));
  EXPECT_GE(table->Stats().evicted, 2);
  EXPECT_EQ(table->Stats().rows, 2002 - table->Stats().evicted);
  EXPECT_EQ(ValueOrFail(table->Read(*Keys("[5000, 5001]", R"(["x", "y"])"))).found_count, 2);
}

}  // namespace
}  // namespace quiver
