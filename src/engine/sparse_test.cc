// Sparse columns: the schema, the row's sparse blob (engine/sparse_row.h) through writes, reads,
// scans, compaction and schema changes, and what a row of mostly-null features costs.
#include <arrow/api.h>
#include <gtest/gtest.h>

#include <random>

#include "engine/schema_change.h"
#include "engine/sparse_row.h"
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

constexpr char kSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "utf8"},
    "dense": {"dtype": "float32"},
    "f": {"dtype": "float32", "sparse": true},
    "n": {"dtype": "int64", "sparse": true},
    "b": {"dtype": "bool", "sparse": true},
    "s": {"dtype": "utf8", "sparse": true},
    "d": {"dtype": "date32", "sparse": true}}})";

TEST(SparseSchemaTest, RoundTripsAndRefusesWhatCannotBeSparse) {
  const TableSchema schema = SchemaFromJson(kSchema);
  EXPECT_TRUE(schema.columns()[2].sparse);
  EXPECT_FALSE(schema.columns()[1].sparse);
  EXPECT_TRUE(ValueOrFail(TableSchema::FromJson(schema.ToJson())).Equals(schema));
  EXPECT_TRUE(ValueOrFail(TableSchema::FromArrow(*schema.ToArrow())).Equals(schema));
  EXPECT_EQ(schema.ToArrow()->field(2)->metadata()->Get("quiver.sparse").ValueOrDie(), "true");
  const auto error = [](const std::string& column) {
    return TableSchema::FromJson(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, )" + column +
                                 "}}")
        .status()
        .message();
  };
  EXPECT_NE(error(R"("e": {"dtype": "fixed_size_list[float32, 4]", "sparse": true})")
                .find("a sparse column holds a scalar dtype"),
            std::string::npos);
  EXPECT_NE(error(R"("e": {"dtype": "float32", "sparse": true, "nullable": false})")
                .find("must be nullable"),
            std::string::npos);
  EXPECT_NE(error(R"("e": {"dtype": "float32", "sparse": true, "default": 1})")
                .find("cannot have a default"),
            std::string::npos);
  EXPECT_NE(error(R"("e": {"dtype": "float32", "sparse": "yes"})").find("\"sparse\" must be"),
            std::string::npos);
  EXPECT_NE(TableSchema::FromJson(
                R"({"key": "id", "columns": {"id": {"dtype": "utf8", "sparse": true}}})")
                .status()
                .message()
                .find("cannot be sparse"),
            std::string::npos);
}

TEST(SparseBlobTest, FindsValuesAndReadsMalformedBlobsAsUnset) {
  const std::vector<uint32_t> widths = {4, 0, 8};
  std::string blob;
  AppendSparseBlob({{0, "abcd"}, {1, "hello"}, {2, "12345678"}}, widths, &blob);
  EXPECT_EQ(blob.size(), 2u + 6 + 4 + (4 + 5) + 8);
  std::string_view value;
  ASSERT_TRUE(FindSparseValue(blob, 1, widths, &value));
  EXPECT_EQ(value, "hello");
  ASSERT_TRUE(FindSparseValue(blob, 2, widths, &value));
  EXPECT_EQ(value, "12345678");
  EXPECT_FALSE(FindSparseValue(blob.substr(0, blob.size() - 1), 2, widths, &value));
  EXPECT_FALSE(FindSparseValue("", 0, widths, &value));
  EXPECT_FALSE(FindSparseValue(std::string("\xff\xff", 2), 0, widths, &value));
  std::vector<std::pair<uint16_t, std::string_view>> entries;
  SparseEntries(blob, widths, &entries);
  EXPECT_EQ(entries.size(), 3u);
  SparseEntries(blob.substr(0, 9), widths, &entries);
  EXPECT_TRUE(entries.empty());
}

TEST(SparseTableTest, WritesSetClearAndMergeValues) {
  auto table = ValueOrFail(Table::Make("t", SchemaFromJson(kSchema)));
  ValueOrFail(
      table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b", "c"])"},
                                    {"dense", arrow::float32(), "[1, 2, 3]"},
                                    {"f", arrow::float32(), "[0.5, null, 2.5]"},
                                    {"s", arrow::utf8(), R"(["x", null, "a longer text"])"}})));
  // A later write sets other columns: the earlier values stay. A null clears one.
  ValueOrFail(table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b", "c", "a"])"},
                                            {"n", arrow::int64(), "[7, 8, null, 9]"},
                                            {"b", arrow::boolean(), "[true, null, false, null]"},
                                            {"s", arrow::utf8(), R"([null, "y", null, null])"}})));
  const ReadResult read =
      ValueOrFail(table->Read(*ArrayFromJson(arrow::utf8(), R"(["a", "b", "c", "zz"])")));
  ExpectColumn(read, "dense", arrow::float32(), "[1, 2, 3, null]");
  ExpectColumn(read, "f", arrow::float32(), "[0.5, null, 2.5, null]");
  ExpectColumn(read, "n", arrow::int64(), "[9, 8, null, null]");
  ExpectColumn(read, "b", arrow::boolean(), "[null, null, false, null]");
  ExpectColumn(read, "s", arrow::utf8(), R"([null, "y", null, null])");
  ExpectColumn(read, "d", arrow::date32(), "[null, null, null, null]");
  // Floats under nulls read as NaN, as dense columns' do.
  EXPECT_TRUE(std::isnan(
      static_cast<const arrow::FloatArray&>(*read.batch->GetColumnByName("f")).Value(1)));
  // Scans see the same.
  auto scanned = ValueOrFail(table->Scan(2))->ToTable().ValueOrDie();
  EXPECT_EQ(scanned->num_rows(), 3);
  EXPECT_EQ(scanned->GetColumnByName("n")->null_count(), 1);
  // A row with every sparse column null holds no blob.
  ValueOrFail(table->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["c"])"},
                                            {"f", arrow::float32(), "[null]"},
                                            {"b", arrow::boolean(), "[null]"}})));
  ExpectColumn(ValueOrFail(table->Read(*ArrayFromJson(arrow::utf8(), R"(["c"])"), {"f", "b"})), "f",
               arrow::float32(), "[null]");
}

TEST(SparseTableTest, RewritesSurviveHeapCompactionAndSchemaChanges) {
  auto table = ValueOrFail(Table::Make("t", SchemaFromJson(kSchema)));
  for (int round = 0; round < 30; ++round) {
    arrow::StringBuilder ids, texts;
    arrow::Int64Builder ns;
    for (int i = 0; i < 400; ++i) {
      (void)ids.Append("key-" + std::to_string(i));
      (void)texts.Append("text of round " + std::to_string(round) + " for row " +
                         std::to_string(i));
      (void)ns.Append(round * 1000 + i);
    }
    auto batch = arrow::RecordBatch::Make(
        arrow::schema({arrow::field("id", arrow::utf8()), arrow::field("s", arrow::utf8()),
                       arrow::field("n", arrow::int64())}),
        400, {ids.Finish().ValueOrDie(), texts.Finish().ValueOrDie(), ns.Finish().ValueOrDie()});
    ValueOrFail(table->Upsert(*batch));
  }
  EXPECT_GT(table->Stats().heap_compactions, 0u);
  const auto keys = ArrayFromJson(arrow::utf8(), R"(["key-5", "key-399"])");
  ExpectColumn(ValueOrFail(table->Read(*keys, {"n", "s"})), "s", arrow::utf8(),
               R"(["text of round 29 for row 5", "text of round 29 for row 399"])");
  // Add a sparse column, rename one and make a dense one sparse: the rows are copied.
  const ChangedSchema changed = ValueOrFail(ApplySchemaChange(
      table->schema(), ChangeFromJson(R"({"add": {"g": {"dtype": "float64", "sparse": true}},
                         "rename": {"n": "count"}})")));
  auto successor = ValueOrFail(
      table->Rebuild(changed, 1, [](const std::shared_ptr<Table>&) { return Status::OK(); }));
  const ReadResult read = ValueOrFail(successor->Read(*keys, {"count", "g"}));
  ExpectColumn(read, "count", arrow::int64(), "[29005, 29399]");
  ExpectColumn(read, "g", arrow::float64(), "[null, null]");
}

// 500 optional float32 features, 10 set per row, against 10 dense float32 columns.
TEST(SparseTableTest, AMostlyNullRowCostsAboutWhatItsSetValuesDo) {
  std::string sparse_json = R"({"key": "id", "columns": {"id": {"dtype": "utf8"})";
  for (int c = 0; c < 500; ++c) {
    sparse_json += R"(, "f)" + std::to_string(c) + R"(": {"dtype": "float32", "sparse": true})";
  }
  std::string dense_json = R"({"key": "id", "columns": {"id": {"dtype": "utf8"})";
  for (int c = 0; c < 10; ++c)
    dense_json += R"(, "f)" + std::to_string(c) + R"(": {"dtype": "float32"})";
  auto sparse = ValueOrFail(Table::Make("s", SchemaFromJson(sparse_json + "}}")));
  auto dense = ValueOrFail(Table::Make("d", SchemaFromJson(dense_json + "}}")));
  constexpr int kRows = 20'000;
  std::mt19937 rng(3);
  for (int first = 0; first < kRows; first += 1000) {
    // Per batch: 10 random features per row, as separate writes of the set columns.
    arrow::StringBuilder ids;
    for (int i = first; i < first + 1000; ++i) (void)ids.Append("k" + std::to_string(i));
    auto id_array = ids.Finish().ValueOrDie();
    std::vector<std::vector<float>> values(500, std::vector<float>(1000, 0));
    std::vector<std::vector<bool>> set(500, std::vector<bool>(1000, false));
    for (int i = 0; i < 1000; ++i) {
      for (int k = 0; k < 10; ++k) {
        const int c = static_cast<int>(rng() % 500);
        set[c][i] = true;
        values[c][i] = static_cast<float>(i + k);
      }
    }
    arrow::FieldVector fields = {arrow::field("id", arrow::utf8())};
    arrow::ArrayVector arrays = {id_array};
    for (int c = 0; c < 500; ++c) {
      arrow::FloatBuilder builder;
      for (int i = 0; i < 1000; ++i) {
        (void)(set[c][i] ? builder.Append(values[c][i]) : builder.AppendNull());
      }
      fields.push_back(arrow::field("f" + std::to_string(c), arrow::float32()));
      arrays.push_back(builder.Finish().ValueOrDie());
    }
    ValueOrFail(sparse->Upsert(*arrow::RecordBatch::Make(arrow::schema(fields), 1000, arrays)));
    arrow::FieldVector dense_fields(fields.begin(), fields.begin() + 11);
    arrow::ArrayVector dense_arrays(arrays.begin(), arrays.begin() + 11);
    ValueOrFail(
        dense->Upsert(*arrow::RecordBatch::Make(arrow::schema(dense_fields), 1000, dense_arrays)));
  }
  // Live bytes: rows in use, the index and the heap's live values.
  const double sparse_bytes = static_cast<double>(sparse->UsedMemory()) / kRows;
  const double dense_bytes = static_cast<double>(dense->UsedMemory()) / kRows;
  EXPECT_LE(sparse_bytes, 2 * dense_bytes) << sparse_bytes << " vs " << dense_bytes;
  EXPECT_LE(sparse->layout().row_width(), 40u) << "the row holds no sparse value itself";
}

}  // namespace
}  // namespace quiver
