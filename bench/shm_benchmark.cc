// Shared-memory reader benchmarks (docs/benchmarks.md, docs/shm.md): the same reads of one table
// of BENCH_ROWS (default 10,000,000) rows x 10 float32 columns with 8-character string keys
// (bench/table_data.h),
//   BM_Engine           Table::Read in process, the table in anonymous memory (as unpublished)
//   BM_EnginePublished  Table::Read in process, the table published (memfd regions)
//   BM_ShmArrow         shm::TableReader::Read: Arrow arrays, as Table::Read returns them
//   BM_ShmInto          shm::TableReader::ReadInto: the 10 floats into a caller's buffer
// for 1 and 1000 random keys; and, with 1000 keys, Table::Read against shm::TableReader::Read of
//   BM_*Composite       the same table under a composite key (int64 + the same strings)
//   BM_*Sparse          f0..f9 of 500 sparse float32 columns, 10 set a row (at most 2,000,000 rows)
// (the engine's reads of these published tables too). The reader attaches through the real socket
// and maps the regions a second time (as another process would); it runs in this process so that
// the engine's reads and its own alternate on one machine state. Latencies are timed per call (p50
// / p99 / p999 in microseconds; each includes two reads of the clock, clock_ns).
#include <arrow/api.h>
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/table_data.h"
#include "engine/catalog.h"
#include "server/shm/shm_server.h"
#include "shm/reader.h"

namespace quiver {
namespace {

TableSchema Schema(Shape shape = Shape::kFloat32x10) {
  return TableSchema::FromJson(SchemaJson(shape)).value();
}

int64_t RowsOf(Shape shape) {
  return shape == Shape::kSparse500 ? std::min<int64_t>(BenchRows(), 2'000'000) : BenchRows();
}

void Load(Table& table, Shape shape = Shape::kFloat32x10) {
  const int64_t rows = RowsOf(shape);
  // The sparse shape's batches are 500 columns wide: smaller ones.
  const int64_t batch_rows = shape == Shape::kSparse500 ? 65536 : kBatchRows;
  for (int64_t first = 0; first < rows; first += batch_rows) {
    auto result = table.Upsert(*MakeBatch(shape, first, std::min(batch_rows, rows - first)));
    if (!result.ok()) {
      std::fprintf(stderr, "load failed: %s\n", result.status().ToString().c_str());
      std::abort();
    }
  }
}

// Everything the benchmarks share, built once.
struct World {
  std::filesystem::path dir;
  std::shared_ptr<Table> anonymous;
  std::unique_ptr<Catalog> catalog;
  std::unique_ptr<ShmServer> server;
  std::shared_ptr<Table> published;
  std::shared_ptr<shm::Client> client;
  std::shared_ptr<shm::TableReader> reader;
  shm::FixedPlan plan;

  World() {
    dir = std::filesystem::temp_directory_path() / ("quiver-shm-bench-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    anonymous = Table::Make("bench", Schema()).value();
    Load(*anonymous);
    catalog = std::make_unique<Catalog>(CatalogOptions{.publish = true});
    server = ShmServer::Start(*catalog, ShmServerOptions{.path = (dir / "quiver.sock").string()})
                 .value();
    published = catalog->CreateTable("bench", Schema()).value();
    Load(*published);
    client = shm::Client::Connect((dir / "quiver.sock").string()).value();
    reader = client->Attach("bench").value();
    std::vector<std::string> columns;
    for (int c = 0; c < 10; ++c) columns.push_back("f" + std::to_string(c));
    plan = reader->PlanFixed(columns).value();
  }
  ~World() {
    reader.reset();
    client.reset();
    server.reset();
    std::filesystem::remove_all(dir);
  }
};

World& TheWorld() {
  static World world;
  return world;
}

// A published table of another shape and its reader, built when first asked for.
struct Shaped {
  std::shared_ptr<Table> table;
  std::shared_ptr<shm::TableReader> reader;
};

Shaped& TheShaped(Shape shape) {
  static std::map<Shape, Shaped> tables;
  Shaped& shaped = tables[shape];
  if (shaped.table == nullptr) {
    World& world = TheWorld();
    const std::string name = "shape" + std::to_string(static_cast<int>(shape));
    shaped.table = world.catalog->CreateTable(name, Schema(shape)).value();
    Load(*shaped.table, shape);
    shaped.reader = world.client->Attach(name).value();
  }
  return shaped;
}

struct KeySet {
  std::shared_ptr<arrow::Array> array;
  std::string bytes;  // the keys back to back, as the Arrow array holds them
  std::vector<std::string_view> views;
};

std::vector<KeySet> MakeKeySets(int keys_per_read, Shape shape) {
  std::mt19937_64 rng(7);
  const int64_t rows = RowsOf(shape);
  std::vector<KeySet> sets(kKeySets);
  for (KeySet& set : sets) {
    arrow::StringBuilder builder;
    arrow::Int64Builder users;
    char buffer[24];
    for (int k = 0; k < keys_per_read; ++k) {
      const auto row = static_cast<long long>(rng() % rows);
      std::snprintf(buffer, sizeof(buffer), "%08lld", row);
      (void)builder.Append(buffer, 8);
      (void)users.Append(row / 10);
      set.bytes.append(buffer, 8);
    }
    set.array = builder.Finish().ValueOrDie();
    if (shape == Shape::kComposite10) {
      set.array = arrow::StructArray::Make({users.Finish().ValueOrDie(), set.array},
                                           std::vector<std::string>{"user", "key"})
                      .ValueOrDie();
    }
    for (int k = 0; k < keys_per_read; ++k) {
      set.views.push_back(std::string_view(set.bytes).substr(static_cast<size_t>(k) * 8, 8));
    }
  }
  return sets;
}

double ClockNanos() {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000000; ++i) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start)
             .count() /
         1e6;
}

// Times `read(set)` per call; it returns the keys found.
template <typename Read>
void Run(benchmark::State& state, Read read, Shape shape = Shape::kFloat32x10) {
  const int keys_per_read = static_cast<int>(state.range(0));
  TheWorld();
  const std::vector<KeySet> sets = MakeKeySets(keys_per_read, shape);
  std::vector<double> micros;
  micros.reserve(1 << 22);
  size_t next = 0;
  for (auto _ : state) {
    const KeySet& set = sets[next++ % kKeySets];
    const auto start = std::chrono::steady_clock::now();
    const int64_t found = read(set);
    const auto end = std::chrono::steady_clock::now();
    if (found != keys_per_read) {
      state.SkipWithError("read failed or keys missing");
      break;
    }
    const double seconds = std::chrono::duration<double>(end - start).count();
    state.SetIterationTime(seconds);
    micros.push_back(seconds * 1e6);
  }
  state.SetItemsProcessed(state.iterations() * keys_per_read);
  std::sort(micros.begin(), micros.end());
  if (micros.empty()) return;
  auto at = [&](double q) { return micros[static_cast<size_t>(q * (micros.size() - 1))]; };
  state.counters["p50_us"] = at(0.50);
  state.counters["p99_us"] = at(0.99);
  state.counters["p999_us"] = at(0.999);
  state.counters["clock_ns"] = 2 * ClockNanos();
}

void BM_Engine(benchmark::State& state) {
  Run(state, [](const KeySet& set) {
    auto result = TheWorld().anonymous->Read(*set.array);
    return result.ok() ? result->found_count : -1;
  });
}

void BM_EnginePublished(benchmark::State& state) {
  Run(state, [](const KeySet& set) {
    auto result = TheWorld().published->Read(*set.array);
    return result.ok() ? result->found_count : -1;
  });
}

void BM_ShmArrow(benchmark::State& state) {
  Run(state, [](const KeySet& set) {
    auto result = TheWorld().reader->Read(*set.array);
    return result.ok() ? result->found_count : -1;
  });
}

void BM_ShmInto(benchmark::State& state) {
  World& world = TheWorld();
  std::vector<std::byte> out(1000 * world.plan.row_bytes());
  std::vector<uint8_t> found(1000);
  Run(state, [&](const KeySet& set) -> int64_t {
    if (!world.reader
             ->ReadInto(world.plan, set.views, out.data(), world.plan.row_bytes(), found.data())
             .ok()) {
      return -1;
    }
    int64_t count = 0;
    for (size_t i = 0; i < set.views.size(); ++i) count += found[i];
    return count;
  });
}

// The sparse tables' reads ask for f0..f9, as the dense tables' give theirs.
std::vector<std::string> ColumnsOf(Shape shape) {
  std::vector<std::string> columns;
  if (shape == Shape::kSparse500) {
    for (int c = 0; c < 10; ++c) columns.push_back("f" + std::to_string(c));
  }
  return columns;
}

void EngineShaped(benchmark::State& state, Shape shape) {
  Shaped& shaped = TheShaped(shape);
  const std::vector<std::string> columns = ColumnsOf(shape);
  Run(
      state,
      [&](const KeySet& set) {
        auto result = shaped.table->Read(*set.array, columns);
        return result.ok() ? result->found_count : -1;
      },
      shape);
}

void ShmShaped(benchmark::State& state, Shape shape) {
  Shaped& shaped = TheShaped(shape);
  const std::vector<std::string> columns = ColumnsOf(shape);
  Run(
      state,
      [&](const KeySet& set) {
        auto result = shaped.reader->Read(*set.array, columns);
        return result.ok() ? result->found_count : -1;
      },
      shape);
}

void BM_EngineComposite(benchmark::State& state) { EngineShaped(state, Shape::kComposite10); }
void BM_ShmArrowComposite(benchmark::State& state) { ShmShaped(state, Shape::kComposite10); }
void BM_EngineSparse(benchmark::State& state) { EngineShaped(state, Shape::kSparse500); }
void BM_ShmArrowSparse(benchmark::State& state) { ShmShaped(state, Shape::kSparse500); }

// Argument: keys per read. The four alternate per argument so that drift touches them alike.
#define QUIVER_SHM_BENCHMARK(name) \
  BENCHMARK(name)->ArgName("keys")->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0)

QUIVER_SHM_BENCHMARK(BM_Engine)->Arg(1)->Arg(1000);
QUIVER_SHM_BENCHMARK(BM_EnginePublished)->Arg(1)->Arg(1000);
QUIVER_SHM_BENCHMARK(BM_ShmArrow)->Arg(1)->Arg(1000);
QUIVER_SHM_BENCHMARK(BM_ShmInto)->Arg(1)->Arg(1000);
QUIVER_SHM_BENCHMARK(BM_EngineComposite)->Arg(1000);
QUIVER_SHM_BENCHMARK(BM_ShmArrowComposite)->Arg(1000);
QUIVER_SHM_BENCHMARK(BM_EngineSparse)->Arg(1000);
QUIVER_SHM_BENCHMARK(BM_ShmArrowSparse)->Arg(1000);

}  // namespace
}  // namespace quiver

BENCHMARK_MAIN();
