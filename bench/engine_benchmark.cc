// Engine benchmarks (docs/benchmarks.md):
//   BM_ReadFloat32x10     1000 (and 1) random keys x 10 float32 columns, 8-character string keys
//   BM_ReadEmbedding128   1000 random keys x one fixed_size_list<float32, 128>
//   BM_ReadComposite10    as BM_ReadFloat32x10 under a composite key (int64 + the same strings)
//   BM_ReadSparse10       1000 random keys x f0..f9 of 500 sparse float32 columns (10 set a row)
//   BM_ReadDense10Small   1000 random keys x 10 float32, a table as large as BM_ReadSparse10's
//   BM_Upsert10Float32    bulk upsert of N rows x 10 float32 from Arrow record batches
// Table size: BENCH_ROWS (default 10,000,000) rows. Read latencies are measured per call; the
// p50 / p99 / p999 counters are in microseconds. bytes_per_row = TableStats::bytes / rows.
#include <arrow/api.h>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>

#include "bench/table_data.h"
#include "engine/table.h"

namespace quiver {
namespace {

std::shared_ptr<Table> LoadTable(Shape shape, int64_t rows) {
  auto table = Table::Make("bench", TableSchema::FromJson(SchemaJson(shape)).value()).value();
  // The sparse shape's batches are 500 columns wide: smaller ones.
  const int64_t batch_rows = shape == Shape::kSparse500 ? 65536 : kBatchRows;
  for (int64_t first = 0; first < rows; first += batch_rows) {
    auto result = table->Upsert(*MakeBatch(shape, first, std::min(batch_rows, rows - first)));
    if (!result.ok()) {
      std::fprintf(stderr, "load failed: %s\n", result.status().ToString().c_str());
      std::abort();
    }
  }
  return table;
}

// Rows of the sparse benchmark's tables: its batches are 500 columns wide.
int64_t SparseRows() { return std::min<int64_t>(BenchRows(), 2'000'000); }

// Tables are built once per process, shape and size.
std::shared_ptr<Table> SharedTable(Shape shape, int64_t rows) {
  static std::map<std::pair<Shape, int64_t>, std::shared_ptr<Table>> tables;
  auto& table = tables[{shape, rows}];
  if (!table) table = LoadTable(shape, rows);
  return table;
}

void SetPercentiles(benchmark::State& state, std::vector<double>& micros) {
  if (micros.empty()) return;
  std::sort(micros.begin(), micros.end());
  auto at = [&](double q) { return micros[static_cast<size_t>(q * (micros.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["p999_us"] = at(0.999);
}

void RunReads(benchmark::State& state, Shape shape, int64_t rows = BenchRows()) {
  const int keys_per_read = static_cast<int>(state.range(0));
  auto table = SharedTable(shape, rows);
  // The sparse table's reads ask for f0..f9, as the dense tables' give theirs.
  std::vector<std::string> columns;
  if (shape == Shape::kSparse500) {
    for (int c = 0; c < 10; ++c) columns.push_back("f" + std::to_string(c));
  }
  std::mt19937_64 rng(7);
  std::vector<std::shared_ptr<arrow::Array>> key_sets;
  for (int s = 0; s < kKeySets; ++s) {
    arrow::StringBuilder builder;
    arrow::Int64Builder users;
    char buffer[24];
    for (int k = 0; k < keys_per_read; ++k) {
      const auto row = static_cast<long long>(rng() % rows);
      std::snprintf(buffer, sizeof(buffer), "%08lld", row);
      (void)builder.Append(buffer, 8);
      (void)users.Append(row / 10);
    }
    std::shared_ptr<arrow::Array> keys = builder.Finish().ValueOrDie();
    if (shape == Shape::kComposite10) {
      keys = arrow::StructArray::Make({users.Finish().ValueOrDie(), keys},
                                      std::vector<std::string>{"user", "key"})
                 .ValueOrDie();
    }
    key_sets.push_back(std::move(keys));
  }
  std::vector<double> micros;
  micros.reserve(1 << 20);
  size_t next = 0;
  for (auto _ : state) {
    const auto start = std::chrono::steady_clock::now();
    auto result = table->Read(*key_sets[next++ % kKeySets], columns);
    const auto end = std::chrono::steady_clock::now();
    if (!result.ok() || result->found_count != keys_per_read) {
      state.SkipWithError("read failed or keys missing");
      break;
    }
    benchmark::DoNotOptimize(result->batch);
    const double seconds = std::chrono::duration<double>(end - start).count();
    state.SetIterationTime(seconds);
    micros.push_back(seconds * 1e6);
  }
  state.SetItemsProcessed(state.iterations() * keys_per_read);
  SetPercentiles(state, micros);
  const TableStats stats = table->Stats();
  state.counters["rows"] = static_cast<double>(stats.rows);
  state.counters["bytes_per_row"] = static_cast<double>(stats.bytes) / stats.rows;
  state.counters["used_bytes_per_row"] = static_cast<double>(stats.used_bytes) / stats.rows;
}

void BM_ReadFloat32x10(benchmark::State& state) { RunReads(state, Shape::kFloat32x10); }
void BM_ReadEmbedding128(benchmark::State& state) { RunReads(state, Shape::kEmbedding128); }
void BM_ReadComposite10(benchmark::State& state) { RunReads(state, Shape::kComposite10); }
void BM_ReadSparse10(benchmark::State& state) { RunReads(state, Shape::kSparse500, SparseRows()); }
void BM_ReadDense10Small(benchmark::State& state) {
  RunReads(state, Shape::kFloat32x10, SparseRows());
}

void BM_Upsert10Float32(benchmark::State& state) {
  const int64_t rows = BenchRows();
  std::vector<std::shared_ptr<arrow::RecordBatch>> batches;
  for (int64_t first = 0; first < rows; first += kBatchRows) {
    batches.push_back(MakeBatch(Shape::kFloat32x10, first, std::min(kBatchRows, rows - first)));
  }
  double bytes_per_row = 0;
  for (auto _ : state) {
    auto table =
        Table::Make("bench", TableSchema::FromJson(SchemaJson(Shape::kFloat32x10)).value()).value();
    const auto start = std::chrono::steady_clock::now();
    for (const auto& batch : batches) {
      auto result = table->Upsert(*batch);
      if (!result.ok()) state.SkipWithError(result.status().ToString().c_str());
    }
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    const TableStats stats = table->Stats();
    bytes_per_row = static_cast<double>(stats.bytes) / stats.rows;
    state.PauseTiming();
    table.reset();  // unmapping is not part of the upsert
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * rows);
  state.counters["bytes_per_row"] = bytes_per_row;
}

// The bulk load runs first, in a fresh process: after the big read tables were built and freed,
// huge-page faults pay for memory compaction (see docs/benchmarks.md).
BENCHMARK(BM_Upsert10Float32)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->Repetitions(3);
// Argument: keys per read.
BENCHMARK(BM_ReadFloat32x10)
    ->Arg(1000)
    ->Arg(1)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(3.0);
BENCHMARK(BM_ReadEmbedding128)
    ->Arg(1000)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(3.0);
BENCHMARK(BM_ReadComposite10)
    ->Arg(1000)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(3.0);
BENCHMARK(BM_ReadDense10Small)
    ->Arg(1000)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(3.0);
BENCHMARK(BM_ReadSparse10)->Arg(1000)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(3.0);

}  // namespace
}  // namespace quiver

BENCHMARK_MAIN();
