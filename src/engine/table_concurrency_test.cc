// Concurrency: one writer keeps rewriting rows between states whose columns must agree, inserts
// new keys (so the index and the regions grow underneath the readers) and deletes some; reader
// threads check every row they read, and a scanner checks every row it scans. A quarter of the
// writes give their rows a TTL of a few milliseconds, and an expiry thread runs the active expiry
// cycle all along. Run under ThreadSanitizer by `make test-tsan`.
//
// Row invariant for value a: b == 7 * a, s == "v<a>" padded with (a % 23) dots (so some values
// are inline and some in the heap), e[j] == a + j.
#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "engine/table.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::ValueOrFail;

constexpr int kEmbedding = 16;

std::string StringFor(int64_t a) { return "v" + std::to_string(a) + std::string(a % 23, '.'); }

std::shared_ptr<arrow::RecordBatch> MakeBatch(const std::vector<int64_t>& keys,
                                              const std::vector<int64_t>& values) {
  arrow::Int64Builder key_builder, a_builder, b_builder;
  arrow::StringBuilder s_builder;
  auto e_values = std::make_shared<arrow::Int32Builder>();
  arrow::FixedSizeListBuilder e_builder(arrow::default_memory_pool(), e_values, kEmbedding);
  for (size_t i = 0; i < keys.size(); ++i) {
    const int64_t a = values[i];
    EXPECT_TRUE(key_builder.Append(keys[i]).ok());
    EXPECT_TRUE(a_builder.Append(a).ok());
    EXPECT_TRUE(b_builder.Append(7 * a).ok());
    EXPECT_TRUE(s_builder.Append(StringFor(a)).ok());
    EXPECT_TRUE(e_builder.Append().ok());
    for (int j = 0; j < kEmbedding; ++j) {
      EXPECT_TRUE(e_values->Append(static_cast<int32_t>(a + j)).ok());
    }
  }
  auto schema =
      arrow::schema({arrow::field("id", arrow::int64()), arrow::field("a", arrow::int64()),
                     arrow::field("b", arrow::int64()), arrow::field("s", arrow::utf8()),
                     arrow::field("e", arrow::fixed_size_list(arrow::int32(), kEmbedding))});
  return arrow::RecordBatch::Make(
      schema, keys.size(),
      {key_builder.Finish().ValueOrDie(), a_builder.Finish().ValueOrDie(),
       b_builder.Finish().ValueOrDie(), s_builder.Finish().ValueOrDie(),
       e_builder.Finish().ValueOrDie()});
}

// Checks rows [0, batch.num_rows()) of a batch with columns a, b, s, e; returns the number of
// valid rows, or -1 (after recording a failure) when a row is torn.
int64_t CheckRows(const arrow::RecordBatch& batch, const arrow::BooleanArray* found) {
  const auto& a = static_cast<const arrow::Int64Array&>(*batch.GetColumnByName("a"));
  const auto& b = static_cast<const arrow::Int64Array&>(*batch.GetColumnByName("b"));
  const auto& s = static_cast<const arrow::StringArray&>(*batch.GetColumnByName("s"));
  const auto& e = static_cast<const arrow::FixedSizeListArray&>(*batch.GetColumnByName("e"));
  const auto& e_values = static_cast<const arrow::Int32Array&>(*e.values());
  int64_t valid = 0;
  for (int64_t i = 0; i < batch.num_rows(); ++i) {
    if (found != nullptr && !found->Value(i)) {
      if (a.IsValid(i)) {
        ADD_FAILURE() << "missing row " << i << " has a value";
        return -1;
      }
      continue;
    }
    const int64_t value = a.Value(i);
    bool ok = a.IsValid(i) && b.IsValid(i) && s.IsValid(i) && e.IsValid(i) &&
              b.Value(i) == 7 * value && s.GetView(i) == StringFor(value);
    for (int j = 0; ok && j < kEmbedding; ++j) {
      ok = e_values.Value(i * kEmbedding + j) == value + j;
    }
    if (!ok) {
      ADD_FAILURE() << "torn row " << i << ": a=" << value << " b=" << b.Value(i)
                    << " s=" << s.GetView(i);
      return -1;
    }
    ++valid;
  }
  return valid;
}

TEST(TableConcurrencyTest, ReadersNeverSeeTornRowsWhileTheTableGrows) {
  EngineLimits limits;
  limits.heap_compaction_min_garbage = 64 << 10;  // compactions happen under the readers too
  // Under a memory limit with an LFU policy, readers stamp rows' access words while the writer
  // writes and evicts them (the limit is set once the table has grown).
  MemoryLimit memory;
  memory.SetPolicy(EvictionPolicy::kAllKeysLfu);
  auto table = ValueOrFail(Table::Make("concurrent", testing::SchemaFromJson(R"({"key": "id",
      "columns": {"id": {"dtype": "int64"}, "a": {"dtype": "int64"}, "b": {"dtype": "int64"},
      "s": {"dtype": "utf8"}, "e": {"dtype": "fixed_size_list[int32, 16]"}}})"),
                                       limits));
  table->AttachMemoryLimit(&memory);
  std::atomic<int64_t> key_limit{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> rows_checked{0}, scans{0}, writes{0};

  auto reader = [&](uint32_t seed) {
    std::mt19937_64 rng(seed);
    while (!stop.load()) {
      const int64_t limit = std::max<int64_t>(1, key_limit.load());
      arrow::Int64Builder keys;
      for (int i = 0; i < 64; ++i) EXPECT_TRUE(keys.Append(rng() % (limit + 10)).ok());
      auto result = table->Read(*keys.Finish().ValueOrDie());
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      const int64_t valid = CheckRows(*result->batch, result->found.get());
      ASSERT_GE(valid, 0);
      ASSERT_EQ(valid, result->found_count);
      rows_checked += valid;
    }
  };
  auto scanner = [&]() {
    while (!stop.load()) {
      auto reader = table->Scan(500);
      ASSERT_TRUE(reader.ok());
      std::shared_ptr<arrow::RecordBatch> batch;
      for (;;) {
        ASSERT_TRUE((*reader)->ReadNext(&batch).ok());
        if (!batch) break;
        ASSERT_GE(CheckRows(*batch, nullptr), 0);
      }
      ++scans;
    }
  };

  std::atomic<int64_t> reclaimed{0};
  auto expirer = [&]() {
    while (!stop.load()) {
      reclaimed += table->ExpireCycle(1000);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };

  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < 3; ++i) threads.emplace_back(reader, i + 1);
  threads.emplace_back(scanner);
  threads.emplace_back(expirer);
  threads.emplace_back([&] {  // evictions from another thread, as a keyspace write makes them
    while (!stop.load()) {
      memory.MakeRoom(4096);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });

  std::mt19937_64 rng(42);
  // At least 2 s, 400 write batches and one heap compaction (sanitizer builds are much slower),
  // and never more than 60 s.
  const auto start = std::chrono::steady_clock::now();
  int64_t next_key = 0;
  for (;;) {
    const auto elapsed = std::chrono::steady_clock::now() - start;
    const bool enough = elapsed > std::chrono::seconds(2) && writes.load() >= 400 &&
                        table->Stats().heap_compactions > 0;
    if (enough || elapsed > std::chrono::seconds(60)) break;
    std::vector<int64_t> keys, values;
    if (next_key < 60000 && rng() % 3 == 0) {
      for (int i = 0; i < 500; ++i) {  // new keys: the index and the row store grow
        keys.push_back(next_key++);
        values.push_back(static_cast<int64_t>(rng() % 1000000));
      }
    } else if (next_key > 0) {
      for (int i = 0; i < 200; ++i) {  // rewrite existing rows, repeats included
        keys.push_back(static_cast<int64_t>(rng() % next_key));
        values.push_back(static_cast<int64_t>(rng() % 1000000));
      }
    }
    if (next_key >= 20000 && memory.MaxMemory() == 0) memory.SetMaxMemory(memory.UsedMemory());
    if (!keys.empty()) {
      const WriteOptions options{rng() % 4 == 0 ? static_cast<int64_t>(1 + rng() % 5) : 0};
      auto written = table->Upsert(*MakeBatch(keys, values), options);
      ASSERT_TRUE(written.ok()) << written.status().ToString();
      key_limit.store(next_key);
      ++writes;
    }
    if (next_key > 0 && rng() % 5 == 0) {  // delete a few; later rewrites bring them back
      arrow::Int64Builder doomed;
      for (int i = 0; i < 20; ++i) ASSERT_TRUE(doomed.Append(rng() % next_key).ok());
      ASSERT_TRUE(table->Delete(*doomed.Finish().ValueOrDie()).ok());
    }
  }
  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  EXPECT_GT(rows_checked.load(), 1000);
  EXPECT_GT(scans.load(), 0);
  EXPECT_GT(writes.load(), 10);
  EXPECT_GT(table->Stats().heap_compactions, 0u);
  EXPECT_GT(reclaimed.load() + table->Stats().expired, 0);
  EXPECT_GT(table->Stats().evicted, 0);
  std::printf("writes %lld, rows checked %lld, full scans %lld, heap compactions %llu, rows %lld\n",
              static_cast<long long>(writes.load()), static_cast<long long>(rows_checked.load()),
              static_cast<long long>(scans.load()),
              static_cast<unsigned long long>(table->Stats().heap_compactions),
              static_cast<long long>(table->Stats().rows));
}

}  // namespace
}  // namespace quiver
