// The reader against a real publication and socket server, in one process (the mappings are
// real memfds and the descriptors really cross the socket). Cross-process tests:
// tests/e2e/test_shm.py; concurrency: shm_concurrency_test.cc.
#include "shm/reader.h"

#include <arrow/api.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/catalog.h"
#include "engine/test_util.h"
#include "server/shm/shm_server.h"

namespace quiver::shm {
namespace {

using testing::ArrayFromJson;
using testing::BatchFromJson;
using testing::SchemaFromJson;
using testing::ValueOrFail;

class ShmReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("quiver-shm-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    EngineLimits limits;
    limits.heap_compaction_min_garbage = 4096;  // compactions at test sizes
    catalog_ = std::make_unique<Catalog>(CatalogOptions{.limits = limits, .publish = true});
    server_ = ValueOrFail(
        ShmServer::Start(*catalog_, ShmServerOptions{.path = (dir_ / "quiver.sock").string()}));
  }
  void TearDown() override {
    server_.reset();
    catalog_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::shared_ptr<Table> MakeUsers() {
    auto table = ValueOrFail(catalog_->CreateTable(
        "users", SchemaFromJson(R"({"key": "id", "columns": {"id": {"dtype": "int64"},
          "age": {"dtype": "int32"}, "score": {"dtype": "float32"},
          "name": {"dtype": "utf8"}, "emb": {"dtype": "fixed_size_list[float32, 4]"},
          "tags": {"dtype": "list[int64]"}}})")));
    QUIVER_ASSERT_OK_RESULT(table->Upsert(*BatchFromJson(
        {{"id", arrow::int64(), "[1, 2, 3]"},
         {"age", arrow::int32(), "[30, null, 50]"},
         {"score", arrow::float32(), "[0.5, 1.5, null]"},
         {"name", arrow::utf8(), R"(["ann", "a much longer name than eight bytes", null])"},
         {"emb", arrow::fixed_size_list(arrow::float32(), 4), "[[1, 2, 3, 4], [5, 6, 7, 8], null]"},
         {"tags", arrow::list(arrow::int64()), "[[1, 2], [], null]"}})));
    return table;
  }
  static void QUIVER_ASSERT_OK_RESULT(const Result<UpsertResult>& result) {
    ASSERT_TRUE(result.ok()) << result.status().ToString();
  }
  std::shared_ptr<Client> Connect() {
    return ValueOrFail(Client::Connect((dir_ / "quiver.sock").string()));
  }

  std::filesystem::path dir_;
  std::unique_ptr<Catalog> catalog_;
  std::unique_ptr<ShmServer> server_;
};

TEST_F(ShmReaderTest, ReadsWhatTheEngineReads) {
  auto table = MakeUsers();
  auto client = Connect();
  EXPECT_EQ(ValueOrFail(client->ListTables()), std::vector<std::string>{"users"});
  auto reader = ValueOrFail(client->Attach("users"));
  EXPECT_TRUE(reader->int64_keys());
  EXPECT_EQ(reader->key_name(), "id");
  auto keys = ArrayFromJson(arrow::int64(), "[3, 9, 1, 2, 1]");
  ReadBatch got = ValueOrFail(reader->Read(*keys));
  ReadResult want = ValueOrFail(table->Read(*keys));
  EXPECT_TRUE(got.batch->Equals(*want.batch)) << got.batch->ToString() << want.batch->ToString();
  EXPECT_TRUE(got.found->Equals(*want.found));
  EXPECT_EQ(got.found_count, 4);
  // Some columns, keys of another integer type.
  auto narrow = ArrayFromJson(arrow::int32(), "[2, 7]");
  got = ValueOrFail(reader->Read(*narrow, {"name", "score"}));
  want = ValueOrFail(table->Read(*narrow, {"name", "score"}));
  EXPECT_TRUE(got.batch->Equals(*want.batch));
  QUIVER_EXPECT_ERROR(reader->Read(*keys, {"nope"}), StatusCode::kNotFound, "no column 'nope'");
  QUIVER_EXPECT_ERROR(reader->Read(*ArrayFromJson(arrow::utf8(), R"(["a"])")),
                      StatusCode::kInvalidArgument, "keys must be int64");
}

TEST_F(ShmReaderTest, ReadsFixedColumnsIntoCallerBuffers) {
  MakeUsers();
  auto reader = ValueOrFail(Connect()->Attach("users"));
  FixedPlan plan = ValueOrFail(reader->PlanFixed({"score", "age", "emb"}));
  EXPECT_EQ(plan.row_bytes(), 4u + 4u + 16u);
  QUIVER_EXPECT_ERROR(reader->PlanFixed({"name"}), StatusCode::kInvalidArgument,
                      "not a fixed-width value column");
  const std::vector<int64_t> keys = {2, 5, 1, 3};
  std::vector<std::byte> out(keys.size() * plan.row_bytes());
  std::vector<uint8_t> found(keys.size()), valid(keys.size() * 3);
  QUIVER_ASSERT_OK(
      reader->ReadInto(plan, keys, out.data(), plan.row_bytes(), found.data(), valid.data()));
  EXPECT_EQ(found, (std::vector<uint8_t>{1, 0, 1, 1}));
  auto at = [&](size_t row, size_t offset) {
    float value;
    std::memcpy(&value, out.data() + row * plan.row_bytes() + offset, 4);
    return value;
  };
  auto int_at = [&](size_t row, size_t offset) {
    int32_t value;
    std::memcpy(&value, out.data() + row * plan.row_bytes() + offset, 4);
    return value;
  };
  EXPECT_EQ(at(0, 0), 1.5f);
  EXPECT_EQ(int_at(0, 4), 0);  // null age: zero, valid 0
  EXPECT_EQ(valid[1], 0);
  EXPECT_EQ(at(0, 8), 5.0f);
  EXPECT_EQ(at(0, 20), 8.0f);
  EXPECT_TRUE(std::isnan(at(1, 0)));  // missing key: NaN floats
  EXPECT_TRUE(std::isnan(at(1, 12)));
  EXPECT_EQ(int_at(2, 4), 30);
  EXPECT_TRUE(std::isnan(at(3, 0)));  // null score
  EXPECT_TRUE(std::isnan(at(3, 8)));  // null embedding
  EXPECT_EQ(int_at(3, 4), 50);
  // One key at a time too.
  QUIVER_ASSERT_OK(reader->ReadInto(plan, std::span<const int64_t>(&keys[2], 1), out.data(),
                                    plan.row_bytes(), found.data()));
  EXPECT_EQ(found[0], 1);
  EXPECT_EQ(int_at(0, 4), 30);
}

TEST_F(ShmReaderTest, ReadsCompositeKeysAndSparseColumnsAsTheEngineDoes) {
  auto table = ValueOrFail(
      catalog_->CreateTable("events", SchemaFromJson(R"({"key": ["user", "item"], "columns": {
        "user": {"dtype": "int64"}, "item": {"dtype": "utf8"}, "f": {"dtype": "float32"},
        "sp0": {"dtype": "float32", "sparse": true}, "sp1": {"dtype": "utf8", "sparse": true},
        "sp2": {"dtype": "int64", "sparse": true}}})")));
  const auto row_fields = std::vector<testing::ColumnJson>{
      {"user", arrow::int64(), "[1, 1, 2, 3]"},
      {"item", arrow::utf8(), R"(["a", "an item name longer than eight bytes", "a", "b"])"},
      {"f", arrow::float32(), "[0.5, 1.5, 2.5, 3.5]"},
      {"sp0", arrow::float32(), "[10, null, 30, null]"},
      {"sp1", arrow::utf8(), R"([null, "a sparse string past the inline bytes", "s", null])"},
      {"sp2", arrow::int64(), "[null, null, 7, null]"}};
  ASSERT_TRUE(table->Upsert(*BatchFromJson(row_fields)).ok());
  auto reader = ValueOrFail(Connect()->Attach("events"));
  EXPECT_TRUE(reader->composite_key());
  EXPECT_FALSE(reader->int64_keys());
  EXPECT_EQ(reader->key_names(), (std::vector<std::string>{"user", "item"}));
  // Keys as a struct of the key columns, in any field order; misses on either part.
  const auto key_type =
      arrow::struct_({arrow::field("item", arrow::utf8()), arrow::field("user", arrow::int64())});
  auto keys = ArrayFromJson(key_type, R"([{"item": "an item name longer than eight bytes",
    "user": 1}, {"item": "a", "user": 3}, {"item": "a", "user": 2}, {"item": "b", "user": 3},
    {"item": "an item name longer than eight bytes", "user": 2}, {"item": "a", "user": 1}])");
  for (const std::vector<std::string>& columns :
       {std::vector<std::string>{}, std::vector<std::string>{"sp1", "f", "user", "sp2", "sp0"}}) {
    ReadBatch got = ValueOrFail(reader->Read(*keys, columns));
    ReadResult want = ValueOrFail(table->Read(*keys, columns));
    EXPECT_TRUE(got.batch->Equals(*want.batch)) << got.batch->ToString() << want.batch->ToString();
    EXPECT_TRUE(got.found->Equals(*want.found));
    EXPECT_EQ(got.found_count, 4);
  }
  // A sparse value cleared and another set: the reader follows.
  ASSERT_TRUE(table
                  ->Upsert(*BatchFromJson({{"user", arrow::int64(), "[2]"},
                                           {"item", arrow::utf8(), R"(["a"])"},
                                           {"sp0", arrow::float32(), "[null]"},
                                           {"sp1", arrow::utf8(), R"(["changed"])"}}))
                  .ok());
  ReadBatch got = ValueOrFail(reader->Read(*keys, {"sp0", "sp1", "sp2", "f"}));
  ReadResult want = ValueOrFail(table->Read(*keys, {"sp0", "sp1", "sp2", "f"}));
  EXPECT_TRUE(got.batch->Equals(*want.batch)) << got.batch->ToString() << want.batch->ToString();
  EXPECT_TRUE(got.batch->column(0)->IsNull(2));
  // Bad keys name what is wrong.
  QUIVER_EXPECT_ERROR(reader->Read(*ArrayFromJson(arrow::int64(), "[1]")),
                      StatusCode::kInvalidArgument, "one array per key column");
  QUIVER_EXPECT_ERROR(
      reader->Read(*ArrayFromJson(arrow::struct_({arrow::field("user", arrow::int64())}),
                                  R"([{"user": 1}])")),
      StatusCode::kInvalidArgument, "lack key column 'item'");
  // The hot path: encoded keys; the key's columns are ordinary columns, sparse ones are not.
  QUIVER_EXPECT_ERROR(reader->PlanFixed({"sp0"}), StatusCode::kInvalidArgument, "a sparse float");
  FixedPlan plan = ValueOrFail(reader->PlanFixed({"f", "user"}));
  auto encoded = ValueOrFail(reader->NormalizeKeys(*keys));
  const auto& binary = static_cast<const arrow::BinaryArray&>(*encoded);
  std::vector<std::string_view> views;
  for (int64_t i = 0; i < binary.length(); ++i) views.push_back(binary.GetView(i));
  views.push_back("not an encoded key");
  std::vector<std::byte> out(views.size() * plan.row_bytes());
  std::vector<uint8_t> found(views.size());
  QUIVER_ASSERT_OK(reader->ReadInto(plan, views, out.data(), plan.row_bytes(), found.data()));
  EXPECT_EQ(found, (std::vector<uint8_t>{1, 0, 1, 1, 0, 1, 0}));
  float f;
  int64_t user;
  std::memcpy(&f, out.data() + 3 * plan.row_bytes(), 4);
  std::memcpy(&user, out.data() + 3 * plan.row_bytes() + 4, 8);
  EXPECT_EQ(f, 3.5f);
  EXPECT_EQ(user, 3);
}

TEST_F(ShmReaderTest, FollowsGrowthCompactionDeletesAndDrops) {
  auto table = ValueOrFail(
      catalog_->CreateTable("t", SchemaFromJson(R"({"key": "k", "columns": {"k": {"dtype": "utf8"},
        "v": {"dtype": "int64"}, "s": {"dtype": "utf8"}}})")));
  auto client = Connect();
  auto reader = ValueOrFail(client->Attach("t"));
  const uint64_t first_generation = reader->stats().generation;
  // Grow the table 32-fold in steps (index rebuilds, new row and heap chunks), rewriting the
  // long strings so that the heap compacts; read everything after each step.
  int64_t rows = 0;
  for (int round = 0; round < 8; ++round) {
    const int64_t n = round == 0 ? 100 : round < 6 ? rows : 0;  // doubles, then rewrites
    arrow::StringBuilder keys, strings;
    arrow::Int64Builder values;
    for (int64_t i = 0; i < rows + n; ++i) {
      ASSERT_TRUE(keys.Append("key-number-" + std::to_string(i)).ok());
      ASSERT_TRUE(values.Append(i * 10 + round).ok());
      ASSERT_TRUE(strings.Append(std::string(40, static_cast<char>('a' + round))).ok());
    }
    rows += n;
    auto batch = arrow::RecordBatch::Make(
        arrow::schema({arrow::field("k", arrow::utf8()), arrow::field("v", arrow::int64()),
                       arrow::field("s", arrow::utf8())}),
        rows, {*keys.Finish(), *values.Finish(), *strings.Finish()});
    ASSERT_TRUE(table->Upsert(*batch).ok());
    ReadBatch got = ValueOrFail(reader->Read(*batch->column(0)));
    ASSERT_EQ(got.found_count, rows) << "round " << round;
    EXPECT_TRUE(got.batch->column(0)->Equals(*batch->column(1)));
    EXPECT_TRUE(got.batch->column(1)->Equals(*batch->column(2)));
  }
  EXPECT_GT(table->Stats().heap_compactions, 0u);
  EXPECT_GT(reader->stats().generation, first_generation);
  EXPECT_GT(reader->stats().refreshes, 1u);
  // Deletes read as missing.
  ASSERT_TRUE(table->Delete(*ArrayFromJson(arrow::utf8(), R"(["key-number-5"])")).ok());
  ReadBatch got = ValueOrFail(
      reader->Read(*ArrayFromJson(arrow::utf8(), R"(["key-number-5", "key-number-6"])")));
  EXPECT_EQ(got.found_count, 1);
  // A drop fails the handle clearly; attaching again finds the new table.
  QUIVER_ASSERT_OK(catalog_->DropTable("t"));
  QUIVER_EXPECT_ERROR(reader->Read(*ArrayFromJson(arrow::utf8(), R"(["x"])")),
                      StatusCode::kNotFound, "table 't' was dropped");
  QUIVER_EXPECT_ERROR(client->Attach("t"), StatusCode::kNotFound, "does not exist");
}

TEST_F(ShmReaderTest, ExpiredRowsReadAsMissing) {
  auto table = ValueOrFail(catalog_->CreateTable(
      "ttl", SchemaFromJson(R"({"key": "k", "columns": {"k": {"dtype": "int64"},
        "v": {"dtype": "float64"}}})")));
  auto batch = BatchFromJson({{"k", arrow::int64(), "[1, 2]"}, {"v", arrow::float64(), "[1, 2]"}});
  ASSERT_TRUE(table->Upsert(*batch, WriteOptions{.ttl_ms = 1}).ok());
  ASSERT_TRUE(
      table->Upsert(*BatchFromJson({{"k", arrow::int64(), "[3]"}, {"v", arrow::float64(), "[3]"}}))
          .ok());
  usleep(5000);
  auto reader = ValueOrFail(Connect()->Attach("ttl"));
  ReadBatch got = ValueOrFail(reader->Read(*ArrayFromJson(arrow::int64(), "[1, 2, 3]")));
  EXPECT_EQ(got.found_count, 1);
  EXPECT_FALSE(got.found->Value(0));
  EXPECT_TRUE(got.found->Value(2));
}

TEST_F(ShmReaderTest, UnknownTablesAndSocketsAreClearErrors) {
  auto client = Connect();
  QUIVER_EXPECT_ERROR(client->Attach("missing"), StatusCode::kNotFound,
                      "table 'missing' does not exist");
  QUIVER_EXPECT_ERROR(Client::Connect((dir_ / "nothing.sock").string()), StatusCode::kIOError,
                      "is quiverd running there?");
}

TEST_F(ShmReaderTest, ServerReportsItsReaders) {
  MakeUsers();
  auto reader = ValueOrFail(Connect()->Attach("users"));
  std::vector<ShmReaderInfo> readers;
  for (int i = 0; i < 100; ++i) {  // the report is asynchronous
    readers = server_->Readers();
    if (!readers.empty() && !readers[0].tables.empty() && readers[0].tables[0].mapped_bytes > 0) {
      break;
    }
    usleep(10000);
  }
  ASSERT_EQ(readers.size(), 1u);
  EXPECT_EQ(readers[0].pid, getpid());
  ASSERT_EQ(readers[0].tables.size(), 1u);
  EXPECT_EQ(readers[0].tables[0].name, "users");
  EXPECT_GT(readers[0].tables[0].mapped_bytes, 0u);
  std::string metrics;
  server_->RenderMetrics(&metrics);
  EXPECT_NE(metrics.find("quiver_shm_readers 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("quiver_shm_reader_mapped_bytes{pid=\"" + std::to_string(getpid())),
            std::string::npos);
}

}  // namespace
}  // namespace quiver::shm

namespace quiver::shm {
namespace {

TEST(ShmServerTest, RefusesConnectionsPastItsLimit) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("quiver-shm-limit-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  Catalog catalog(CatalogOptions{.publish = true});
  const std::string path = (dir / "quiver.sock").string();
  auto server = testing::ValueOrFail(
      ShmServer::Start(catalog, ShmServerOptions{.path = path, .max_connections = 2}));
  auto first = testing::ValueOrFail(Client::Connect(path));
  auto second = testing::ValueOrFail(Client::Connect(path));
  QUIVER_EXPECT_ERROR(Client::Connect(path), StatusCode::kIOError, "did not answer");
  first.reset();  // a place frees up
  Result<std::shared_ptr<Client>> third = Status::IOError("not yet");
  for (int i = 0; i < 100 && !third.ok(); ++i) {
    usleep(10000);
    third = Client::Connect(path);
  }
  EXPECT_TRUE(third.ok()) << third.status().ToString();
  server.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace quiver::shm
