#include "engine/table.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>

#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ArrayFromJson;
using testing::BatchFromJson;
using testing::ExpectColumn;
using testing::SchemaFromJson;
using testing::ValueOrFail;

std::shared_ptr<Table> MakeTable(const std::string& schema_json, EngineLimits limits = {}) {
  return ValueOrFail(Table::Make("t", SchemaFromJson(schema_json), limits));
}

std::shared_ptr<arrow::Array> Keys(const std::string& json) {
  return ArrayFromJson(arrow::utf8(), json);
}

// Every row of the table, in small batches to cross batch boundaries.
std::shared_ptr<arrow::Table> ScanAll(const Table& table) {
  auto reader = ValueOrFail(table.Scan(7));
  auto result = reader->ToTable();
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  return *result;
}

void ExpectFound(const ReadResult& result, const std::string& json) {
  auto expected = ArrayFromJson(arrow::boolean(), json);
  EXPECT_TRUE(result.found->Equals(*expected)) << result.found->ToString();
}

constexpr char kAllTypes[] = R"({"key": "id", "columns": {
    "id": {"dtype": "utf8"},
    "b": {"dtype": "bool"}, "i8": {"dtype": "int8"}, "i16": {"dtype": "int16"},
    "i32": {"dtype": "int32"}, "i64": {"dtype": "int64"}, "u8": {"dtype": "uint8"},
    "u16": {"dtype": "uint16"}, "u32": {"dtype": "uint32"}, "u64": {"dtype": "uint64"},
    "f32": {"dtype": "float32"}, "f64": {"dtype": "float64"}, "s": {"dtype": "utf8"},
    "bin": {"dtype": "binary"}, "ts": {"dtype": "timestamp[us, tz=America/New_York]"},
    "d": {"dtype": "date32"}, "emb": {"dtype": "fixed_size_list[float32, 3]"},
    "hist": {"dtype": "list[int64]"}, "req": {"dtype": "float64", "nullable": false}}})";

TEST(TableTest, EveryTypeRoundTripsWithNulls) {
  auto table = MakeTable(kAllTypes);
  auto schema = table->schema().ToArrow();
  std::vector<testing::ColumnJson> columns;
  const std::map<std::string, std::string> values = {
      {"id", R"(["a", "long key over eight bytes", "", "c"])"},
      {"b", "[true, false, null, true]"},
      {"i8", "[-128, 127, null, 0]"},
      {"i16", "[-32768, 32767, null, 1]"},
      {"i32", "[-2147483648, 2147483647, null, 2]"},
      {"i64", "[-9223372036854775808, 9223372036854775807, null, 3]"},
      {"u8", "[0, 255, null, 4]"},
      {"u16", "[0, 65535, null, 5]"},
      {"u32", "[0, 4294967295, null, 6]"},
      {"u64", "[0, 18446744073709551615, null, 7]"},
      {"f32", "[1.5, -0.25, null, 1e30]"},
      {"f64", "[2.5, -1e300, null, 0]"},
      {"s", R"(["", "short", null, "a string that is longer than eight bytes"])"},
      {"bin", R"(["", "AQID", null, "bG9uZ2VyIGJpbmFyeSB2YWx1ZQ=="])"},
      {"ts", "[0, 1700000000000000, null, -1]"},
      {"d", "[0, 19000, null, -1]"},
      {"emb", "[[1, 2, 3], [4.5, 5.5, 6.5], null, [0, 0, 0]]"},
      {"hist", "[[], [1, 2, 3, 4, 5], null, [9223372036854775807]]"},
      {"req", "[1, 2, 3, 4]"},
  };
  for (const auto& field : schema->fields()) {
    columns.push_back({field->name(), field->type(), values.at(field->name())});
  }
  auto batch = BatchFromJson(columns);
  UpsertResult written = ValueOrFail(table->Upsert(*batch));
  EXPECT_EQ(written.rows_written, 4);
  EXPECT_EQ(written.rows_skipped, 0);

  // Read in another order, with a missing key and a duplicate.
  ReadResult result = ValueOrFail(
      table->Read(*Keys(R"(["c", "missing", "a", "", "long key over eight bytes", "c"])")));
  ASSERT_EQ(result.batch->num_rows(), 6);
  EXPECT_EQ(result.found_count, 5);
  ExpectFound(result, "[true, false, true, true, true, true]");
  EXPECT_EQ(result.batch->num_columns(), 18);  // every value column
  const std::vector<int> order = {3, -1, 0, 2, 1, 3};
  for (const auto& field : schema->fields()) {
    if (field->name() == "id") continue;
    auto input = batch->GetColumnByName(field->name());
    arrow::ArrayVector pieces;
    for (int row : order) {
      pieces.push_back(row < 0 ? arrow::MakeArrayOfNull(field->type(), 1).ValueOrDie()
                               : input->Slice(row, 1));
    }
    auto expected = arrow::Concatenate(pieces).ValueOrDie();
    auto got = result.batch->GetColumnByName(field->name());
    EXPECT_TRUE(got->Equals(*expected))
        << field->name() << ":\n got " << got->ToString() << "\n want " << expected->ToString();
    EXPECT_TRUE(result.batch->schema()->GetFieldByName(field->name())->nullable());
  }

  // Scan returns every row with the key.
  auto scanned = ScanAll(*table);
  EXPECT_EQ(scanned->num_rows(), 4);
  EXPECT_TRUE(scanned->schema()->Equals(*schema));
}

TEST(TableTest, PartialWritesKeepOtherColumns) {
  auto table = MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"},
      "x": {"dtype": "int32"}, "y": {"dtype": "utf8"}}})");
  ValueOrFail(table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b"])"},
                                            {"x", arrow::int32(), "[1, 2]"},
                                            {"y", arrow::utf8(), R"(["first value a", "b"])"}})));
  // Only y for a (existing) and c (new); then only x for b.
  ValueOrFail(table->Upsert(*BatchFromJson({{"y", arrow::utf8(), R"(["second value a", "c"])"},
                                            {"id", arrow::utf8(), R"(["a", "c"])"}})));
  ValueOrFail(table->Upsert(
      *BatchFromJson({{"id", arrow::utf8(), R"(["b"])"}, {"x", arrow::int32(), "[20]"}})));
  ReadResult result = ValueOrFail(table->Read(*Keys(R"(["a", "b", "c"])")));
  ExpectColumn(result, "x", arrow::int32(), "[1, 20, null]");
  ExpectColumn(result, "y", arrow::utf8(), R"(["second value a", "b", "c"])");
  // Only some columns, in the order asked.
  ReadResult only_y = ValueOrFail(table->Read(*Keys(R"(["c"])"), {"y", "x", "y"}));
  ASSERT_EQ(only_y.batch->num_columns(), 3);
  EXPECT_EQ(only_y.batch->schema()->field(0)->name(), "y");
  EXPECT_EQ(only_y.batch->schema()->field(1)->name(), "x");
}

// Read results keep fixed-width columns in one allocation at a 64-byte-aligned constant stride,
// and floats under nulls (stored nulls and missing keys alike) are NaN: what lets the Python
// package view them as one NumPy matrix without a copy.
TEST(TableTest, ReadLaysFixedColumnsOutForAMatrixView) {
  auto table = MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"},
      "a": {"dtype": "float32"}, "s": {"dtype": "utf8"}, "b": {"dtype": "float32"},
      "c": {"dtype": "float32"}, "e": {"dtype": "fixed_size_list[float64, 2]"}}})");
  ValueOrFail(table->Upsert(*BatchFromJson(
      {{"id", arrow::utf8(), R"(["x", "y", "z"])"},
       {"a", arrow::float32(), "[1, 2, 3]"},
       {"s", arrow::utf8(), R"(["p", "q", "r"])"},
       {"b", arrow::float32(), "[4, null, 6]"},
       {"c", arrow::float32(), "[7, 8, 9]"},
       {"e", arrow::fixed_size_list(arrow::float64(), 2), "[[1, 2], null, [5, 6]]"}})));
  ReadResult result = ValueOrFail(table->Read(*Keys(R"(["z", "missing", "y"])")));
  auto values = [&](const char* name) {
    return result.batch->GetColumnByName(name)->data()->buffers[1]->data();
  };
  const ptrdiff_t stride = values("b") - values("a");
  EXPECT_EQ(stride % 64, 0);
  EXPECT_GE(stride, 3 * 4);
  EXPECT_EQ(values("c") - values("b"), stride);
  const auto* a = reinterpret_cast<const float*>(values("a"));
  const auto* b = reinterpret_cast<const float*>(values("b"));
  EXPECT_EQ(a[0], 3);
  EXPECT_TRUE(std::isnan(a[1]));  // missing key
  EXPECT_TRUE(std::isnan(b[2]));  // stored null
  const auto& e =
      static_cast<const arrow::FixedSizeListArray&>(*result.batch->GetColumnByName("e"));
  const auto* e_values = e.values()->data()->GetValues<double>(1);
  EXPECT_EQ(e_values[0], 5);
  EXPECT_TRUE(std::isnan(e_values[2]) && std::isnan(e_values[3]));  // missing key
  EXPECT_TRUE(std::isnan(e_values[4]) && std::isnan(e_values[5]));  // stored null
}

TEST(TableTest, LastOccurrenceOfARepeatedKeyWins) {
  auto table =
      MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "int64"}, "v": {"dtype": "utf8"}}})");
  auto batch = BatchFromJson({{"id", arrow::int64(), "[7, 8, 7, 7]"},
                              {"v", arrow::utf8(), R"(["one", "two", "three is longer", null])"}});
  EXPECT_EQ(ValueOrFail(table->Upsert(*batch)).rows_written, 4);
  EXPECT_EQ(table->Stats().rows, 2);
  ReadResult result = ValueOrFail(table->Read(*ArrayFromJson(arrow::int64(), "[7, 8]")));
  ExpectColumn(result, "v", arrow::utf8(), R"([null, "two"])");
  ExpectFound(result, "[true, true]");
}

TEST(TableTest, EventTimeGuardSkipsOlderRows) {
  auto table = MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"},
      "t": {"dtype": "timestamp[ms]", "nullable": false}, "v": {"dtype": "float64"}},
      "event_time": "t"})");
  auto ts = arrow::timestamp(arrow::TimeUnit::MILLI);
  ValueOrFail(table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b"])"},
                                            {"t", ts, "[100, 100]"},
                                            {"v", arrow::float64(), "[1, 1]"}})));
  // a: older (skipped); b: same time (applied); c: new.
  UpsertResult result =
      ValueOrFail(table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b", "c"])"},
                                                {"t", ts, "[99, 100, 5]"},
                                                {"v", arrow::float64(), "[2, 2, 2]"}})));
  EXPECT_EQ(result.rows_written, 2);
  EXPECT_EQ(result.rows_skipped, 1);
  // Inside one batch rows apply in order: the later, older row for d is skipped.
  result = ValueOrFail(table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["d", "d"])"},
                                                     {"t", ts, "[50, 40]"},
                                                     {"v", arrow::float64(), "[3, 4]"}})));
  EXPECT_EQ(result.rows_written, 1);
  EXPECT_EQ(result.rows_skipped, 1);
  // Seconds are converted to the stored unit before comparing: 1 s = 1000 ms > 100 ms.
  result = ValueOrFail(
      table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a"])"},
                                    {"t", arrow::timestamp(arrow::TimeUnit::SECOND), "[1]"},
                                    {"v", arrow::float64(), "[9]"}})));
  EXPECT_EQ(result.rows_written, 1);
  ReadResult read = ValueOrFail(table->Read(*Keys(R"(["a", "b", "c", "d"])")));
  ExpectColumn(read, "v", arrow::float64(), "[9, 2, 2, 3]");
  ExpectColumn(read, "t", ts, "[1000, 100, 5, 50]");
}

// Every rejected batch must leave the table exactly as it was.
class TableErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineLimits limits;
    limits.max_value_bytes = 16;
    limits.max_key_bytes = 10;
    table_ = MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"},
        "x": {"dtype": "int32", "nullable": false}, "s": {"dtype": "utf8"},
        "e": {"dtype": "fixed_size_list[float32, 2]"}, "l": {"dtype": "list[int8]"}}})",
                       limits);
    ValueOrFail(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b"])"},
                                               {"x", arrow::int32(), "[1, 2]"},
                                               {"s", arrow::utf8(), R"(["sa", "sb"])"}})));
    before_ = ScanAll(*table_);
  }
  void ExpectUnchanged() {
    auto after = ScanAll(*table_);
    EXPECT_TRUE(after->Equals(*before_)) << after->ToString();
    EXPECT_EQ(table_->Stats().rows, 2);
  }
  std::shared_ptr<Table> table_;
  std::shared_ptr<arrow::Table> before_;
};

TEST_F(TableErrorTest, UnknownColumn) {
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["c"])"},
                                                     {"x", arrow::int32(), "[3]"},
                                                     {"nope", arrow::int32(), "[3]"}})),
                      StatusCode::kNotFound, "table 't' has no column 'nope'");
  QUIVER_EXPECT_ERROR(table_->Read(*Keys(R"(["a"])"), {"x", "nope"}), StatusCode::kNotFound,
                      "table 't' has no column 'nope'");
  ExpectUnchanged();
}

TEST_F(TableErrorTest, TypeMismatchNamesTheColumn) {
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "c"])"},
                                                     {"x", arrow::utf8(), R"(["1", "x"])"}})),
                      StatusCode::kInvalidArgument, "column 'x': cannot store utf8 as int32");
  // A lossy cast is refused too.
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a"])"},
                                                     {"x", arrow::int64(), "[10000000000]"}})),
                      StatusCode::kInvalidArgument, "column 'x'");
  QUIVER_EXPECT_ERROR(table_->Read(*ArrayFromJson(arrow::float64(), "[1.5]")),
                      StatusCode::kInvalidArgument, "read keys must be utf8");
  ExpectUnchanged();
}

TEST_F(TableErrorTest, NullsWhereNotAllowed) {
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "c", "d"])"},
                                                     {"x", arrow::int32(), "[5, 6, null]"}})),
                      StatusCode::kInvalidArgument,
                      "column 'x' row 2: null in a non-nullable column");
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", null])"},
                                                     {"x", arrow::int32(), "[5, 6]"}})),
                      StatusCode::kInvalidArgument, "key at position 1 is null");
  QUIVER_EXPECT_ERROR(table_->Read(*Keys(R"(["a", null])")), StatusCode::kInvalidArgument,
                      "read key at position 1 is null");
  QUIVER_EXPECT_ERROR(table_->Delete(*Keys(R"(["a", null])")), StatusCode::kInvalidArgument,
                      "delete key at position 1 is null");
  ExpectUnchanged();
}

TEST_F(TableErrorTest, NewKeyWithoutRequiredColumn) {
  // Updating only s of existing keys is fine; a new key would leave x null.
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "new"])"},
                                                     {"s", arrow::utf8(), R"(["z", "z"])"}})),
                      StatusCode::kInvalidArgument,
                      "row 1: new key 'new' has no value for non-nullable column 'x'");
  ExpectUnchanged();
}

TEST_F(TableErrorTest, EmbeddingOfWrongLength) {
  auto list_type = arrow::list(arrow::float32());
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b"])"},
                                                     {"e", list_type, "[[1, 2], [1, 2, 3]]"}})),
                      StatusCode::kInvalidArgument,
                      "column 'e' row 1: embedding has 3 elements, expected 2");
  QUIVER_EXPECT_ERROR(
      table_->Upsert(
          *BatchFromJson({{"id", arrow::utf8(), R"(["a"])"}, {"e", list_type, "[[1, null]]"}})),
      StatusCode::kInvalidArgument, "column 'e' row 0: embedding elements must not be null");
  QUIVER_EXPECT_ERROR(
      table_->Upsert(*BatchFromJson(
          {{"id", arrow::utf8(), R"(["a"])"}, {"l", arrow::list(arrow::int8()), "[[1, null]]"}})),
      StatusCode::kInvalidArgument, "column 'l' row 0: list elements must not be null");
  ExpectUnchanged();
}

TEST_F(TableErrorTest, ValuesOverLimits) {
  QUIVER_EXPECT_ERROR(
      table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b"])"},
                                     {"s", arrow::utf8(), R"(["ok", "seventeen bytes!!!"])"}})),
      StatusCode::kLimitExceeded, "column 's' row 1: value of 18 bytes");
  QUIVER_EXPECT_ERROR(
      table_->Upsert(*BatchFromJson(
          {{"id", arrow::utf8(), R"(["a", "eleven char"])"}, {"x", arrow::int32(), "[1, 1]"}})),
      StatusCode::kLimitExceeded, "row 1: key of 11 bytes");
  QUIVER_EXPECT_ERROR(
      table_->Upsert(*BatchFromJson(
          {{"id", arrow::utf8(), R"(["a"])"},
           {"l", arrow::list(arrow::int8()), "[[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]]"}})),
      StatusCode::kLimitExceeded, "column 'l' row 0: list of 17 bytes");
  ExpectUnchanged();
}

TEST_F(TableErrorTest, BatchWithoutKeyOrWithRepeatedColumn) {
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"x", arrow::int32(), "[1]"}})),
                      StatusCode::kInvalidArgument, "the batch has no key column 'id'");
  QUIVER_EXPECT_ERROR(table_->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a"])"},
                                                     {"x", arrow::int32(), "[1]"},
                                                     {"x", arrow::int32(), "[2]"}})),
                      StatusCode::kInvalidArgument, "column 'x' appears twice");
  ExpectUnchanged();
}

TEST(TableTest, DeleteFreesRowsForReuse) {
  auto table =
      MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "utf8"}}})");
  auto keys = ArrayFromJson(arrow::utf8(), R"(["k1", "k2", "key number three"])");
  auto values = ArrayFromJson(arrow::utf8(), R"(["v1", "a long value number two", null])");
  auto batch = arrow::RecordBatch::Make(
      arrow::schema({arrow::field("id", arrow::utf8()), arrow::field("v", arrow::utf8())}), 3,
      {keys, values});
  ValueOrFail(table->Upsert(*batch));
  const TableStats full = table->Stats();
  EXPECT_EQ(full.rows, 3);
  EXPECT_EQ(ValueOrFail(table->Delete(*Keys(R"(["k2", "missing", "k2", "key number three"])"))), 2);
  EXPECT_EQ(table->Stats().rows, 1);
  EXPECT_GT(table->Stats().heap_garbage_bytes, 0u);
  ReadResult result = ValueOrFail(table->Read(*Keys(R"(["k1", "k2", "key number three"])")));
  ExpectFound(result, "[true, false, false]");
  ExpectColumn(result, "v", arrow::utf8(), R"(["v1", null, null])");
  // Re-inserting reuses the freed rows: the row store does not grow.
  ValueOrFail(table->Upsert(*batch));
  EXPECT_EQ(table->Stats().rows, 3);
  EXPECT_EQ(table->Stats().row_capacity, full.row_capacity);
  result = ValueOrFail(table->Read(*Keys(R"(["k2"])")));
  ExpectColumn(result, "v", arrow::utf8(), R"(["a long value number two"])");
  EXPECT_EQ(ScanAll(*table)->num_rows(), 3);
}

TEST(TableTest, HeapIsCompactedUnderUpdates) {
  EngineLimits limits;
  limits.heap_compaction_min_garbage = 64 << 10;
  auto table = MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"},
      "s": {"dtype": "utf8"}, "l": {"dtype": "list[int32]"}}})",
                         limits);
  constexpr int kRows = 1000;
  auto write_round = [&](int round) {
    arrow::StringBuilder ids, strings;
    auto values = std::make_shared<arrow::Int32Builder>();
    arrow::ListBuilder lists(arrow::default_memory_pool(), values);
    for (int r = 0; r < kRows; ++r) {
      // Keys over 8 bytes live in the heap too and must survive compaction.
      ASSERT_TRUE(ids.Append("key-number-" + std::to_string(r)).ok());
      ASSERT_TRUE(
          strings
              .Append(std::string(100, static_cast<char>('a' + round % 26)) + std::to_string(round))
              .ok());
      ASSERT_TRUE(lists.Append().ok());
      for (int e = 0; e < 5; ++e) ASSERT_TRUE(values->Append(round * 10 + e).ok());
    }
    auto schema =
        arrow::schema({arrow::field("id", arrow::utf8()), arrow::field("s", arrow::utf8()),
                       arrow::field("l", arrow::list(arrow::int32()))});
    auto batch = arrow::RecordBatch::Make(
        schema, kRows,
        {ids.Finish().ValueOrDie(), strings.Finish().ValueOrDie(), lists.Finish().ValueOrDie()});
    ValueOrFail(table->Upsert(*batch));
  };
  constexpr int kRounds = 60;  // ~7 MB of values written, ~125 KB live
  for (int round = 0; round < kRounds; ++round) write_round(round);

  const TableStats stats = table->Stats();
  EXPECT_GT(stats.heap_compactions, 0u);
  EXPECT_LT(stats.heap_bytes, 2u << 20) << "garbage was not reclaimed";
  // Every row reads back its last value, and every key is still found.
  arrow::StringBuilder wanted;
  for (int r = 0; r < kRows; ++r)
    ASSERT_TRUE(wanted.Append("key-number-" + std::to_string(r)).ok());
  ReadResult result = ValueOrFail(table->Read(*wanted.Finish().ValueOrDie()));
  ASSERT_EQ(result.found_count, kRows);
  const auto& s = static_cast<const arrow::StringArray&>(*result.batch->GetColumnByName("s"));
  const auto& l = static_cast<const arrow::ListArray&>(*result.batch->GetColumnByName("l"));
  const auto& elements = static_cast<const arrow::Int32Array&>(*l.values());
  const int last = kRounds - 1;
  for (int r = 0; r < kRows; ++r) {
    ASSERT_EQ(s.GetString(r),
              std::string(100, static_cast<char>('a' + last % 26)) + std::to_string(last));
    ASSERT_EQ(l.value_length(r), 5);
    ASSERT_EQ(elements.Value(l.value_offset(r)), last * 10);
  }
  auto scanned = ScanAll(*table);
  EXPECT_EQ(scanned->num_rows(), kRows);
}

TEST(TableTest, ManyRowsAcrossGrowthAndScan) {
  auto table =
      MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "int64"}, "v": {"dtype": "float64"},
      "s": {"dtype": "utf8"}}})");
  constexpr int64_t kRows = 200000;
  arrow::Int64Builder ids;
  arrow::DoubleBuilder values;
  arrow::StringBuilder strings;
  for (int64_t i = 0; i < kRows; ++i) {
    ASSERT_TRUE(ids.Append(i * 3).ok());
    ASSERT_TRUE(values.Append(i * 0.5).ok());
    ASSERT_TRUE(strings.Append("value-" + std::to_string(i)).ok());
  }
  auto schema =
      arrow::schema({arrow::field("id", arrow::int64()), arrow::field("v", arrow::float64()),
                     arrow::field("s", arrow::utf8())});
  auto batch = arrow::RecordBatch::Make(
      schema, kRows,
      {ids.Finish().ValueOrDie(), values.Finish().ValueOrDie(), strings.Finish().ValueOrDie()});
  // In slices, so the index and the regions grow between batches.
  for (int64_t offset = 0; offset < kRows; offset += 30000) {
    ValueOrFail(table->Upsert(*batch->Slice(offset, 30000)));
  }
  TableStats stats = table->Stats();
  EXPECT_EQ(stats.rows, kRows);
  EXPECT_EQ(stats.bytes, stats.row_bytes + stats.index_bytes + stats.heap_bytes);
  EXPECT_GE(stats.row_bytes, static_cast<uint64_t>(kRows) * stats.row_width);

  arrow::Int64Builder wanted;
  for (int64_t i = 0; i < kRows; i += 7) ASSERT_TRUE(wanted.Append(i * 3 + (i % 2)).ok());
  auto keys = wanted.Finish().ValueOrDie();
  ReadResult result = ValueOrFail(table->Read(*keys, {"v", "s"}));
  const auto& v = static_cast<const arrow::DoubleArray&>(*result.batch->column(0));
  const auto& s = static_cast<const arrow::StringArray&>(*result.batch->column(1));
  for (int64_t j = 0; j < keys->length(); ++j) {
    const int64_t i = j * 7;
    if (i % 2) {
      ASSERT_FALSE(result.found->Value(j));
      ASSERT_TRUE(v.IsNull(j));
    } else {
      ASSERT_TRUE(result.found->Value(j));
      ASSERT_EQ(v.Value(j), i * 0.5);
      ASSERT_EQ(s.GetString(j), "value-" + std::to_string(i));
    }
  }
  auto scanned = ScanAll(*table);
  EXPECT_EQ(scanned->num_rows(), kRows);
}

TEST(TableTest, ReadOfAnEmptyTableAndEmptyBatches) {
  auto table =
      MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "bool"}}})");
  ReadResult result = ValueOrFail(table->Read(*Keys(R"(["a"])")));
  ExpectFound(result, "[false]");
  ExpectColumn(result, "v", arrow::boolean(), "[null]");
  result = ValueOrFail(table->Read(*Keys("[]")));
  EXPECT_EQ(result.batch->num_rows(), 0);
  EXPECT_EQ(ValueOrFail(table->Upsert(*BatchFromJson({{"id", arrow::utf8(), "[]"}}))).rows_written,
            0);
  EXPECT_EQ(ScanAll(*table)->num_rows(), 0);
  // Keys of another string type are accepted.
  ValueOrFail(table->Upsert(*BatchFromJson(
      {{"id", arrow::large_utf8(), R"(["x"])"}, {"v", arrow::boolean(), "[true]"}})));
  result = ValueOrFail(table->Read(*ArrayFromJson(arrow::large_utf8(), R"(["x"])")));
  ExpectColumn(result, "v", arrow::boolean(), "[true]");
}

TEST(TableTest, UpsertOfAChunkedTable) {
  auto table =
      MakeTable(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "v": {"dtype": "int16"}}})");
  auto first =
      BatchFromJson({{"id", arrow::utf8(), R"(["a", "b"])"}, {"v", arrow::int16(), "[1, 2]"}});
  auto second =
      BatchFromJson({{"id", arrow::utf8(), R"(["b", "c"])"}, {"v", arrow::int16(), "[3, 4]"}});
  auto chunked = arrow::Table::FromRecordBatches({first, second}).ValueOrDie();
  EXPECT_EQ(ValueOrFail(table->Upsert(*chunked)).rows_written, 4);
  ReadResult result = ValueOrFail(table->Read(*Keys(R"(["a", "b", "c"])")));
  ExpectColumn(result, "v", arrow::int16(), "[1, 3, 4]");
}

// ---------------------------------------------------------------------------------------------
// TTL: tables on a clock the test advances.

constexpr char kTtlSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "utf8"}, "x": {"dtype": "int64"}, "s": {"dtype": "utf8"},
    "req": {"dtype": "int64", "nullable": false}}})";

class TestClock {
 public:
  UnixClock clock() {
    return [this] { return now_.load(); };
  }
  void Advance(int64_t ms) { now_ += ms; }

 private:
  std::atomic<int64_t> now_{1'800'000'000'000};
};

std::shared_ptr<Table> MakeTtlTable(TestClock& clock, int64_t default_ttl_ms = 0) {
  TableSchema schema = SchemaFromJson(kTtlSchema);
  if (default_ttl_ms != 0) schema = ValueOrFail(schema.WithTtl(default_ttl_ms));
  return ValueOrFail(Table::Make("t", std::move(schema), {}, RegionBacking::kAnonymous, 0, nullptr,
                                 clock.clock()));
}

std::shared_ptr<arrow::RecordBatch> TtlRows(const std::string& ids, const std::string& xs) {
  const int64_t n = Keys(ids)->length();
  std::string ss = "[", reqs = "[";
  for (int64_t i = 0; i < n; ++i) {
    ss += std::string(i ? ", " : "") + "\"a long string value " + std::to_string(i) + "\"";
    reqs += std::string(i ? ", " : "") + "1";
  }
  return BatchFromJson({{"id", arrow::utf8(), ids},
                        {"x", arrow::int64(), xs},
                        {"s", arrow::utf8(), ss + "]"},
                        {"req", arrow::int64(), reqs + "]"}});
}

TEST(TableTtlTest, RowsExpireAfterTheTablesTtlAndAreReclaimed) {
  TestClock clock;
  auto table = MakeTtlTable(clock, 300);
  ValueOrFail(table->Upsert(*TtlRows(R"(["a", "b"])", "[1, 2]")));
  ExpectFound(ValueOrFail(table->Read(*Keys(R"(["a", "b"])"))), "[true, true]");
  EXPECT_EQ(table->Stats().rows_with_ttl, 2);
  clock.Advance(300);
  ReadResult gone = ValueOrFail(table->Read(*Keys(R"(["a", "b"])")));
  ExpectFound(gone, "[false, false]");
  EXPECT_EQ(gone.found_count, 0);
  EXPECT_EQ(ScanAll(*table)->num_rows(), 0) << "a scan leaves expired rows out";
  EXPECT_EQ(ValueOrFail(table->Delete(*Keys(R"(["a"])"))), 0) << "an expired row is gone";
  EXPECT_EQ(table->ExpireCycle(10'000), 1);  // "b"; the delete reclaimed "a"
  const TableStats stats = table->Stats();
  EXPECT_EQ(stats.rows, 0);
  EXPECT_EQ(stats.rows_with_ttl, 0);
  EXPECT_EQ(stats.expired, 1);
}

TEST(TableTtlTest, AWritesTtlOverridesAndAnExpiredKeyIsWrittenAsNew) {
  TestClock clock;
  auto table = MakeTtlTable(clock);  // no default TTL
  ValueOrFail(
      table->Upsert(*TtlRows(R"(["short", "plain", "again"])", "[1, 2, 3]"), WriteOptions{300}));
  ValueOrFail(table->Upsert(*TtlRows(R"(["plain"])", "[20]")));  // without a TTL: never expires
  clock.Advance(300);
  ReadResult read = ValueOrFail(table->Read(*Keys(R"(["short", "plain", "again"])")));
  ExpectFound(read, "[false, true, false]");
  ExpectColumn(read, "x", arrow::int64(), "[null, 20, null]");
  // A partial write of an expired key makes a new row: the other columns are null, not the
  // expired row's, and a non-nullable column it lacks is an error as for any new key.
  auto partial = BatchFromJson({{"id", arrow::utf8(), R"(["again"])"},
                                {"x", arrow::int64(), "[30]"},
                                {"req", arrow::int64(), "[5]"}});
  ValueOrFail(table->Upsert(*partial));
  read = ValueOrFail(table->Read(*Keys(R"(["again"])")));
  ExpectColumn(read, "x", arrow::int64(), "[30]");
  ExpectColumn(read, "s", arrow::utf8(), "[null]");
  auto lacking =
      BatchFromJson({{"id", arrow::utf8(), R"(["short"])"}, {"x", arrow::int64(), "[1]"}});
  QUIVER_EXPECT_ERROR(table->Upsert(*lacking), StatusCode::kInvalidArgument,
                      "new key 'short' has no value for non-nullable column 'req'");
  QUIVER_EXPECT_ERROR(table->Upsert(*partial, WriteOptions{-5}), StatusCode::kInvalidArgument,
                      "TTL must be from 1 ms to 100 years");
  EXPECT_EQ(table->Stats().rows, 3) << "the expired 'short' waits for reclaiming";
  EXPECT_EQ(table->ExpireCycle(10'000), 1);
  EXPECT_EQ(table->Stats().rows, 2);
}

TEST(TableTtlTest, ActiveExpiryTouchesOnlyRowsWithATtl) {
  TestClock clock;
  auto table = MakeTtlTable(clock);
  std::string ids = "[", xs = "[";
  for (int i = 0; i < 20000; ++i) {
    ids += std::string(i ? ", " : "") + "\"k" + std::to_string(i) + "\"";
    xs += std::string(i ? ", " : "") + std::to_string(i);
  }
  ValueOrFail(table->Upsert(*TtlRows(ids + "]", xs + "]")));
  std::string short_ids = "[", short_xs = "[";
  for (int i = 0; i < 2000; ++i) {
    short_ids += std::string(i ? ", " : "") + "\"t" + std::to_string(i) + "\"";
    short_xs += std::string(i ? ", " : "") + std::to_string(i);
  }
  ValueOrFail(table->Upsert(*TtlRows(short_ids + "]", short_xs + "]"), WriteOptions{300}));
  ValueOrFail(table->Upsert(*TtlRows(R"(["long"])", "[0]"), WriteOptions{3'600'000}));
  EXPECT_EQ(table->Stats().rows_with_ttl, 2001);
  clock.Advance(300);
  int64_t reclaimed = 0;
  for (int cycle = 0; cycle < 100 && table->Stats().rows_with_ttl > 1; ++cycle) {
    reclaimed += table->ExpireCycle(100'000);
  }
  EXPECT_EQ(reclaimed, 2000);
  EXPECT_EQ(table->Stats().rows, 20001);
  EXPECT_EQ(table->Stats().rows_with_ttl, 1);
  ExpectFound(ValueOrFail(table->Read(*Keys(R"(["k0", "k19999", "long", "t5"])"))),
              "[true, true, true, false]");
  EXPECT_EQ(table->ExpireCycle(100'000), 0) << "a live row with a TTL stays";
}

TEST(TableTtlTest, ScanWithExpiryAndReplayKeepEachRowsExpiry) {
  auto table = MakeTable(kTtlSchema);
  ValueOrFail(table->Upsert(*TtlRows(R"(["a"])", "[1]"), WriteOptions{3'600'000}));
  ValueOrFail(table->Upsert(*TtlRows(R"(["b"])", "[2]")));
  auto scan = [](const Table& t) {
    auto table = ValueOrFail(t.Scan(7, true))->ToTable();
    EXPECT_TRUE(table.ok()) << table.status().ToString();
    return *table;
  };
  std::shared_ptr<arrow::Table> scanned = scan(*table);
  ASSERT_EQ(scanned->num_columns(), 5);
  // "a" expires in an hour, "b" never (null).
  const int64_t now = UnixMillis();
  int64_t a_expiry = 0, nulls = 0;
  for (const auto& chunk : scanned->column(4)->chunks()) {
    const auto& expiry = static_cast<const arrow::Int64Array&>(*chunk);
    for (int64_t i = 0; i < expiry.length(); ++i) {
      expiry.IsNull(i) ? ++nulls : a_expiry = expiry.Value(i);
    }
  }
  EXPECT_EQ(nulls, 1);
  EXPECT_NEAR(static_cast<double>(a_expiry - now), 3'600'000, 5'000);
  // Replayed into a fresh table (a snapshot's load): the same expiry times.
  auto copy = MakeTable(kTtlSchema);
  auto batch = scanned->CombineChunksToBatch();
  ASSERT_TRUE(batch.ok());
  ValueOrFail(copy->Replay(**batch, 1));
  EXPECT_TRUE(scan(*copy)->Equals(*scanned)) << scan(*copy)->ToString();
  EXPECT_EQ(copy->Stats().rows_with_ttl, 1);
}

}  // namespace
}  // namespace quiver
