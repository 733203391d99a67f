// Randomized model test: long random sequences of upsert / delete / read / scan over every value
// type, with nulls, partial columns and repeated keys, checked at every read against a plain
// reference model (a std::map of keys to rows of Arrow scalars).
#include <arrow/api.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>

#include "engine/table.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ValueOrFail;

constexpr char kSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "utf8"},
    "b": {"dtype": "bool"}, "i8": {"dtype": "int8"}, "u16": {"dtype": "uint16"},
    "i32": {"dtype": "int32", "nullable": false}, "u64": {"dtype": "uint64"},
    "f32": {"dtype": "float32"}, "f64": {"dtype": "float64"}, "s": {"dtype": "utf8"},
    "bin": {"dtype": "binary"}, "ts": {"dtype": "timestamp[ns, tz=UTC]"}, "d": {"dtype": "date32"},
    "emb": {"dtype": "fixed_size_list[float32, 4]"}, "hist": {"dtype": "list[int16]"}}})";

using Row = std::vector<std::shared_ptr<arrow::Scalar>>;  // by schema column index; key unused

class ModelTest : public ::testing::TestWithParam<uint32_t> {
 protected:
  void SetUp() override {
    table_ = ValueOrFail(Table::Make("model", testing::SchemaFromJson(kSchema)));
    rng_.seed(GetParam());
    for (int i = 0; i < 300; ++i) {
      // Keys of 1 to 20 bytes: some inline in the row, some in the heap.
      std::string key = "k" + std::to_string(i);
      if (i % 3 == 0) key += "-with-a-longer-tail";
      key_pool_.push_back(key);
    }
  }

  int Uniform(int low, int high) { return std::uniform_int_distribution<int>(low, high)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  std::shared_ptr<arrow::Scalar> RandomValue(const ColumnSpec& column) {
    const auto& type = column.type;
    if (column.nullable && Chance(0.15)) return arrow::MakeNullScalar(type);
    std::string bytes(Uniform(0, 20), 'x');
    for (char& c : bytes) c = static_cast<char>('a' + Uniform(0, 25));
    switch (type->id()) {
      case arrow::Type::BOOL:
        return std::make_shared<arrow::BooleanScalar>(Chance(0.5));
      case arrow::Type::STRING:
        return std::make_shared<arrow::StringScalar>(bytes);
      case arrow::Type::BINARY:
        return std::make_shared<arrow::BinaryScalar>(bytes);
      case arrow::Type::TIMESTAMP:
        return std::make_shared<arrow::TimestampScalar>(
            int64_t{Uniform(-1000000, 1000000)} * 1000003, type);
      case arrow::Type::DATE32:
        return std::make_shared<arrow::Date32Scalar>(Uniform(-5000, 50000));
      case arrow::Type::FIXED_SIZE_LIST:
      case arrow::Type::LIST: {
        const bool fixed = type->id() == arrow::Type::FIXED_SIZE_LIST;
        const int length = fixed ? 4 : Uniform(0, 9);
        auto value_type = type->field(0)->type();
        std::unique_ptr<arrow::ArrayBuilder> builder = arrow::MakeBuilder(value_type).ValueOrDie();
        for (int i = 0; i < length; ++i) {
          auto element = arrow::MakeScalar(value_type, Uniform(-100, 100)).ValueOrDie();
          EXPECT_TRUE(builder->AppendScalar(*element).ok());
        }
        auto values = builder->Finish().ValueOrDie();
        if (fixed) return std::make_shared<arrow::FixedSizeListScalar>(values, type);
        return std::make_shared<arrow::ListScalar>(values, type);
      }
      default:
        return arrow::MakeScalar(type, Uniform(0, 120)).ValueOrDie();
    }
  }

  // A random batch: random keys (repeats allowed), a random subset of the value columns.
  void RandomUpsert() {
    const TableSchema& schema = table_->schema();
    std::vector<int> columns;
    for (int c = 0; c < schema.num_columns(); ++c) {
      if (c != schema.key_index() && (Chance(0.6) || c == required_)) columns.push_back(c);
    }
    const bool has_required = std::find(columns.begin(), columns.end(), required_) != columns.end();
    const int rows = Uniform(0, 40);
    std::vector<std::string> keys;
    for (int r = 0; r < rows; ++r) {
      keys.push_back(key_pool_[Uniform(0, static_cast<int>(key_pool_.size()) - 1)]);
    }
    // Without the required column, only existing keys may be written.
    if (!has_required) {
      std::erase_if(keys, [&](const std::string& key) { return !model_.count(key); });
    }
    std::vector<Row> values(keys.size(), Row(schema.num_columns()));
    arrow::FieldVector fields = {arrow::field("id", arrow::utf8())};
    arrow::StringBuilder key_builder;
    for (const std::string& key : keys) ASSERT_TRUE(key_builder.Append(key).ok());
    arrow::ArrayVector arrays = {key_builder.Finish().ValueOrDie()};
    for (int c : columns) {
      const ColumnSpec& spec = schema.columns()[c];
      fields.push_back(arrow::field(spec.name, spec.type));
      auto builder = arrow::MakeBuilder(spec.type).ValueOrDie();
      for (size_t r = 0; r < keys.size(); ++r) {
        values[r][c] = RandomValue(spec);
        ASSERT_TRUE(builder->AppendScalar(*values[r][c]).ok());
      }
      arrays.push_back(builder->Finish().ValueOrDie());
    }
    auto batch = arrow::RecordBatch::Make(arrow::schema(fields), keys.size(), arrays);
    UpsertResult result = ValueOrFail(table_->Upsert(*batch));
    ASSERT_EQ(result.rows_written, static_cast<int64_t>(keys.size()));
    for (size_t r = 0; r < keys.size(); ++r) {
      auto [it, inserted] = model_.try_emplace(keys[r], Row(schema.num_columns()));
      if (inserted) {
        for (int c = 0; c < schema.num_columns(); ++c) {
          it->second[c] = arrow::MakeNullScalar(schema.columns()[c].type);
        }
      }
      for (int c : columns) it->second[c] = values[r][c];
    }
  }

  void RandomDelete() {
    std::vector<std::string> keys;
    arrow::StringBuilder builder;
    for (int i = Uniform(0, 10); i > 0; --i) {
      keys.push_back(key_pool_[Uniform(0, static_cast<int>(key_pool_.size()) - 1)]);
      ASSERT_TRUE(builder.Append(keys.back()).ok());
    }
    int64_t expected = 0;
    for (const std::string& key : keys) expected += model_.erase(key);
    EXPECT_EQ(ValueOrFail(table_->Delete(*builder.Finish().ValueOrDie())), expected);
  }

  void RandomReadAndCheck() {
    const TableSchema& schema = table_->schema();
    std::vector<std::string> names;
    std::vector<int> columns;
    for (int c = 0; c < schema.num_columns(); ++c) {
      if (c != schema.key_index() && Chance(0.5)) {
        names.push_back(schema.columns()[c].name);
        columns.push_back(c);
      }
    }
    if (names.empty()) {  // all value columns
      for (int c = 0; c < schema.num_columns(); ++c) {
        if (c != schema.key_index()) columns.push_back(c);
      }
    }
    std::vector<std::string> keys;
    arrow::StringBuilder builder;
    for (int i = Uniform(0, 50); i > 0; --i) {
      keys.push_back(Chance(0.1) ? "never-written"
                                 : key_pool_[Uniform(0, static_cast<int>(key_pool_.size()) - 1)]);
      ASSERT_TRUE(builder.Append(keys.back()).ok());
    }
    ReadResult result = ValueOrFail(table_->Read(*builder.Finish().ValueOrDie(), names));
    ASSERT_EQ(result.batch->num_rows(), static_cast<int64_t>(keys.size()));
    ASSERT_EQ(result.batch->num_columns(), static_cast<int>(columns.size()));
    for (size_t r = 0; r < keys.size(); ++r) {
      auto it = model_.find(keys[r]);
      ASSERT_EQ(result.found->Value(r), it != model_.end()) << keys[r];
      for (size_t j = 0; j < columns.size(); ++j) {
        auto got = result.batch->column(j)->GetScalar(r).ValueOrDie();
        if (it == model_.end()) {
          ASSERT_FALSE(got->is_valid);
          continue;
        }
        const auto& want = it->second[columns[j]];
        ASSERT_TRUE(got->Equals(*want))
            << "key " << keys[r] << " column " << schema.columns()[columns[j]].name << ": got "
            << got->ToString() << ", want " << want->ToString();
      }
    }
  }

  void ScanAndCheck() {
    auto reader = ValueOrFail(table_->Scan(Uniform(1, 64)));
    auto scanned = reader->ToTable().ValueOrDie();
    ASSERT_EQ(scanned->num_rows(), static_cast<int64_t>(model_.size()));
    auto keys = scanned->GetColumnByName("id");
    std::set<std::string> seen;
    for (int64_t r = 0; r < keys->length(); ++r) {
      auto key = std::static_pointer_cast<arrow::StringScalar>(keys->GetScalar(r).ValueOrDie());
      seen.insert(key->ToString());
    }
    ASSERT_EQ(seen.size(), model_.size());
    for (const auto& [key, row] : model_) ASSERT_TRUE(seen.count(key)) << key;
    EXPECT_EQ(table_->Stats().rows, static_cast<int64_t>(model_.size()));
  }

  std::shared_ptr<Table> table_;
  std::mt19937 rng_;
  std::vector<std::string> key_pool_;
  std::map<std::string, Row> model_;
  const int required_ = 4;  // i32, not nullable
};

TEST_P(ModelTest, RandomOperationsMatchTheModel) {
  ASSERT_EQ(table_->schema().columns()[required_].name, "i32");
  for (int step = 0; step < 1500; ++step) {
    const int op = Uniform(0, 99);
    if (op < 50) {
      RandomUpsert();
    } else if (op < 65) {
      RandomDelete();
    } else if (op < 98) {
      RandomReadAndCheck();
    } else {
      ScanAndCheck();
    }
    if (HasFatalFailure() || HasFailure()) FAIL() << "seed " << GetParam() << " step " << step;
  }
  ScanAndCheck();
}

INSTANTIATE_TEST_SUITE_P(Seeds, ModelTest, ::testing::Values(1u, 2u, 3u, 4u, 5u));

}  // namespace
}  // namespace quiver
