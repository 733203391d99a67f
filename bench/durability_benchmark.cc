// Durability benchmark (docs/durability.md): the storage layer in this process, on the disk that
// holds --dir (default build/bench-durability).
//
//   1. write throughput: BENCH_BATCH_ROWS-row batches (default 1000; 8-character keys x 10
//      float32) upserted for BENCH_SECONDS (default 3) by 1 and by 4 writer threads, under each
//      fsync policy and without a data directory; rows/s, write latency p50 / p99 / p999, fsyncs.
//   2. restart time of BENCH_ROWS (default 10,000,000) rows x 10 float32: from a snapshot (the
//      usual case: what a restart after a snapshot loads), and from the log alone; median of 3.
//
//   durability_benchmark [--dir DIR] [--skip-writes] [--skip-restart]
#include <arrow/api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_server.h"
#include "common/log.h"
#include "storage/database.h"

namespace {

namespace bench = quiver::bench;
namespace fs = std::filesystem;
using quiver::Catalog;
using quiver::Table;
using quiver::TableSchema;
using quiver::storage::Database;
using quiver::storage::DatabaseOptions;
using quiver::storage::FsyncPolicy;
using Clock = std::chrono::steady_clock;

using bench::Check;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::shared_ptr<Table> CreateTable(Catalog& catalog) {
  return Check(catalog.CreateTable(
                   "bench", Check(TableSchema::FromJson(bench::TableSchemaJson()), "schema")),
               "create");
}

DatabaseOptions Options(const fs::path& dir, FsyncPolicy fsync) {
  DatabaseOptions options;
  options.data_dir = dir.string();
  options.fsync = fsync;
  options.snapshot_wal_bytes = 0;  // snapshots only where the benchmark asks
  options.snapshot_interval_seconds = 0;
  return options;
}

// Writers upsert `batch_rows`-row batches (prepared beforehand) for `seconds`.
void WriteThroughput(const fs::path& root, const char* label, std::optional<FsyncPolicy> fsync,
                     int writers, double seconds, int batch_rows) {
  const fs::path dir = root / (std::string("write-") + label + "-" + std::to_string(writers));
  fs::remove_all(dir);
  std::unique_ptr<Database> db;
  std::unique_ptr<Catalog> memory;
  Catalog* catalog;
  if (fsync) {
    db = Check(Database::Open(Options(dir, *fsync)), "open");
    catalog = &db->catalog();
  } else {
    memory = std::make_unique<Catalog>();
    catalog = memory.get();
  }
  std::shared_ptr<Table> table = CreateTable(*catalog);
  constexpr int kBatches = 64;
  std::vector<std::vector<std::shared_ptr<arrow::RecordBatch>>> batches(writers);
  std::mt19937 rng(1);
  for (int w = 0; w < writers; ++w) {
    for (int b = 0; b < kBatches; ++b) {
      batches[w].push_back(
          bench::TableRows((static_cast<int64_t>(w) * kBatches + b) * batch_rows, batch_rows, rng));
    }
  }
  std::atomic<bool> stop{false};
  std::vector<std::vector<double>> micros(writers);
  std::vector<std::thread> threads;
  const uint64_t fsyncs_before = db ? db->Stats().wal_fsyncs : 0;
  const auto start = Clock::now();
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        const auto begin = Clock::now();
        Check(table->Upsert(*batches[w][i % kBatches]), "upsert");
        micros[w].push_back(Seconds(begin) * 1e6);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& thread : threads) thread.join();
  const double elapsed = Seconds(start);
  std::vector<double> all;
  for (const auto& each : micros) all.insert(all.end(), each.begin(), each.end());
  const double rows_per_second = static_cast<double>(all.size()) * batch_rows / elapsed;
  const uint64_t fsyncs = db ? db->Stats().wal_fsyncs - fsyncs_before : 0;
  char name[96];
  std::snprintf(name, sizeof(name), "%-8s %d writer%s  %6.2f M rows/s  %6.0f fsyncs/s", label,
                writers, writers == 1 ? " " : "s", rows_per_second / 1e6,
                static_cast<double>(fsyncs) / elapsed);
  bench::PrintPercentiles(name, all);
  db.reset();
  fs::remove_all(dir);
}

double Median3(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Loads `rows` rows into a database in `dir`, optionally snapshots, then times three opens.
void RestartTime(const fs::path& dir, int64_t rows, bool snapshot) {
  fs::remove_all(dir);
  {
    auto db = Check(Database::Open(Options(dir, FsyncPolicy::kNo)), "open");
    std::shared_ptr<Table> table = CreateTable(db->catalog());
    std::mt19937 rng(2);
    const auto start = Clock::now();
    constexpr int64_t kBatch = 100'000;
    for (int64_t first = 0; first < rows; first += kBatch) {
      Check(table->Upsert(*bench::TableRows(first, std::min(kBatch, rows - first), rng)), "load");
    }
    std::printf("loaded %lld rows in %.2f s (fsync no, through the log)\n",
                static_cast<long long>(rows), Seconds(start));
    if (snapshot) {
      const auto begin = Clock::now();
      auto report = Check(db->Snapshot(), "snapshot");
      std::printf("snapshot: %lld rows, %.0f MB in %.2f s (log segments removed: %zu)\n",
                  static_cast<long long>(report.tables.at(0).rows),
                  static_cast<double>(report.tables.at(0).bytes) / 1e6, Seconds(begin),
                  report.wal_segments_removed);
    }
  }
  std::vector<double> totals, loads, replays;
  for (int i = 0; i < 3; ++i) {
    const auto start = Clock::now();
    auto db = Check(Database::Open(Options(dir, FsyncPolicy::kNo)), "reopen");
    totals.push_back(Seconds(start));
    loads.push_back(db->recovery().snapshot_seconds);
    replays.push_back(db->recovery().wal_seconds);
    if (Check(db->catalog().GetTable("bench"), "table")->Stats().rows != rows) {
      std::fprintf(stderr, "restart lost rows\n");
      std::exit(1);
    }
  }
  std::printf(
      "restart %-13s %lld rows x 10 float32: %.2f s (snapshot load %.2f s, log replay "
      "%.2f s; median of 3: %.2f / %.2f / %.2f s)\n",
      snapshot ? "from snapshot" : "from log only", static_cast<long long>(rows), Median3(totals),
      Median3(loads), Median3(replays), totals[0], totals[1], totals[2]);
  fs::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = "build/bench-durability";
  bool writes = true, restart = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (arg == "--skip-writes") {
      writes = false;
    } else if (arg == "--skip-restart") {
      restart = false;
    } else {
      std::fprintf(stderr,
                   "usage: durability_benchmark [--dir DIR] [--skip-writes] "
                   "[--skip-restart]\n");
      return 2;
    }
  }
  quiver::SetLogLevel(quiver::LogLevel::kWarn);
  fs::create_directories(dir);
  const char* seconds_text = std::getenv("BENCH_SECONDS");
  const double seconds = seconds_text ? std::atof(seconds_text) : 3.0;
  const char* batch_text = std::getenv("BENCH_BATCH_ROWS");
  const int batch = batch_text ? std::max(1, std::atoi(batch_text)) : 1000;
  if (writes) {
    std::printf("write throughput, %d-row batches (8-char key + 10 float32), %s:\n", batch,
                dir.c_str());
    for (int writers : {1, 4}) {
      WriteThroughput(dir, "memory", std::nullopt, writers, seconds, batch);
      WriteThroughput(dir, "no", FsyncPolicy::kNo, writers, seconds, batch);
      WriteThroughput(dir, "everysec", FsyncPolicy::kEverySec, writers, seconds, batch);
      WriteThroughput(dir, "always", FsyncPolicy::kAlways, writers, seconds, batch);
    }
  }
  if (restart) {
    const int64_t rows = bench::EnvRows();
    RestartTime(dir / "restart", rows, /*snapshot=*/true);
    RestartTime(dir / "restart", rows, /*snapshot=*/false);
  }
  return 0;
}
