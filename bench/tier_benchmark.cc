// Tier benchmark (docs/tiering.md, docs/benchmarks.md): a table larger than its memory budget on
// the disk tier, against the same table all in memory, on the disk holding --dir (default
// build/bench-tier).
//
//   1. ingest: BENCH_ROWS rows (default 10,000,000; 8-character keys, 10 float32 and a
//      128-float32 embedding: 576-byte rows) in 65,536-row batches (fewer for a small budget)
//      into a tiered table whose
//      memory limit holds its index and BENCH_RESIDENT (default 0.2) of its rows; rows/s, and the
//      latency of 1000-key reads a second thread makes meanwhile (p50 / p99 / max: the stalls).
//   2. the disk itself, fio-style, on the tier's own file: random 4 KiB direct reads one at a
//      time (latency p50 / p99, IOPS) and 1000 at a time through io_uring (the batch's p50 / p99,
//      IOPS): what a 1000-key read of cold rows can cost at best.
//   3. 1000-key reads (BENCH_READS of each, default 2000) with Zipf(0.99) keys (ranks scattered
//      over the table) and with uniform keys, through io_uring and through pread, on the tiered
//      table (promotions running as quiverd runs them) and on the all-memory table: p50 / p99 /
//      p999 in µs, cold rows per read, memory per cold row.
//
//   tier_benchmark [--dir DIR] [--skip-ram]
#include <arrow/api.h>
#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/table_data.h"
#include "common/eviction.h"
#include "engine/catalog.h"

namespace {

using namespace quiver;  // NOLINT(google-build-using-namespace): a benchmark program
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

template <typename T>
T Check(Result<T> result, const char* what) {
  if (!result.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, result.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(result).value();
}

double Micros(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

struct Percentiles {
  double p50, p99, p999, max;
};
Percentiles Of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const auto at = [&](double q) {
    return values[std::min(values.size() - 1, static_cast<size_t>(q * values.size()))];
  };
  return {at(0.5), at(0.99), at(0.999), values.back()};
}

// Zipf(s) over ranks 0..n-1 by inversion of its CDF (kept as float: 40 MB for 10M ranks).
class Zipf {
 public:
  Zipf(int64_t n, double s) : cdf_(static_cast<size_t>(n)) {
    double total = 0;
    for (int64_t k = 0; k < n; ++k) total += 1.0 / std::pow(static_cast<double>(k + 1), s);
    double running = 0;
    for (int64_t k = 0; k < n; ++k) {
      running += 1.0 / std::pow(static_cast<double>(k + 1), s) / total;
      cdf_[static_cast<size_t>(k)] = static_cast<float>(running);
    }
  }
  int64_t operator()(std::mt19937_64& rng) const {
    const float u = std::uniform_real_distribution<float>(0, 1)(rng);
    return std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin();
  }

 private:
  std::vector<float> cdf_;
};

// Rank r's row: ranks scattered over the table (a multiplicative hash, a bijection mod n when
// the multiplier is prime to n).
int64_t Scatter(int64_t rank, int64_t n) {
  return static_cast<int64_t>((static_cast<unsigned __int128>(rank) * 2654435761ULL) %
                              static_cast<uint64_t>(n));
}

std::shared_ptr<arrow::Array> KeysOf(const std::vector<int64_t>& rows) {
  arrow::StringBuilder builder;
  char text[24];
  for (const int64_t row : rows) {
    std::snprintf(text, sizeof(text), "%08lld", static_cast<long long>(row));
    (void)builder.Append(text, 8);
  }
  return builder.Finish().ValueOrDie();
}

struct Disk {
  Percentiles single;  // µs
  double single_iops;
  Percentiles batch;  // µs per 1000
  double batch_iops;
};

// fio-style random 4 KiB direct reads of `path`'s first `bytes`.
Disk MeasureDisk(const std::string& path, uint64_t bytes) {
  Disk disk{};
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) {
    std::perror("open for the disk baseline");
    return disk;
  }
  const uint64_t blocks = bytes / 4096;
  void* memory = nullptr;
  if (posix_memalign(&memory, 4096, 1000 * 4096) != 0) std::exit(1);
  auto* buffer = static_cast<char*>(memory);
  std::mt19937_64 rng(7);
  std::vector<double> single;
  const auto start = Clock::now();
  for (int i = 0; i < 2000; ++i) {
    const auto t = Clock::now();
    if (::pread(fd, buffer, 4096, static_cast<off_t>((rng() % blocks) * 4096)) != 4096) break;
    single.push_back(Micros(t));
  }
  disk.single = Of(single);
  disk.single_iops = single.size() / (Micros(start) / 1e6);
  io_uring ring;
  if (io_uring_queue_init(1024, &ring, 0) == 0) {
    std::vector<double> batches;
    for (int b = 0; b < 100; ++b) {
      const auto t = Clock::now();
      for (int i = 0; i < 1000; ++i) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, fd, buffer + i * 4096, 4096, (rng() % blocks) * 4096);
      }
      io_uring_submit_and_wait(&ring, 1000);
      for (int i = 0; i < 1000; ++i) {
        io_uring_cqe* cqe;
        io_uring_wait_cqe(&ring, &cqe);
        io_uring_cqe_seen(&ring, cqe);
      }
      batches.push_back(Micros(t));
    }
    io_uring_queue_exit(&ring);
    disk.batch = Of(batches);
    disk.batch_iops = 1000 / (disk.batch.p50 / 1e6);
  }
  std::free(memory);
  ::close(fd);
  return disk;
}

struct ReadFigures {
  Percentiles latency;
  double cold_per_read;
};

ReadFigures MeasureReads(Table& table, const std::vector<std::vector<int64_t>>& sets) {
  std::vector<double> latency;
  const int64_t cold_before = table.Stats().cold_reads;
  for (const auto& rows : sets) {
    const auto keys = KeysOf(rows);
    const auto t = Clock::now();
    auto result = Check(table.Read(*keys), "read");
    latency.push_back(Micros(t));
    if (result.found_count != static_cast<int64_t>(rows.size())) {
      std::fprintf(stderr, "a read found %lld of %zu keys\n",
                   static_cast<long long>(result.found_count), rows.size());
      std::exit(1);
    }
  }
  return {Of(latency), static_cast<double>(table.Stats().cold_reads - cold_before) /
                           static_cast<double>(sets.size())};
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = "build/bench-tier";
  bool skip_ram = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--dir") == 0 && i + 1 < argc) dir = argv[++i];
    if (std::strcmp(argv[i], "--skip-ram") == 0) skip_ram = true;
  }
  const int64_t rows = BenchRows();
  const double resident =
      std::getenv("BENCH_RESIDENT") ? std::atof(std::getenv("BENCH_RESIDENT")) : 0.2;
  const int reads = std::getenv("BENCH_READS") ? std::atoi(std::getenv("BENCH_READS")) : 2000;
  fs::remove_all(dir);
  fs::create_directories(dir);
  const TableSchema schema = Check(TableSchema::FromJson(SchemaJson(Shape::kFeatures)), "schema");

  // The budget: the index (capacity for `rows` at most 3/4 full) and `resident` of the rows.
  uint64_t capacity = 512;
  while (static_cast<uint64_t>(rows) * 4 > capacity * 3) capacity *= 2;
  const uint32_t width = RowLayout(schema).row_width();
  const uint64_t budget =
      capacity * 8 + static_cast<uint64_t>(resident * static_cast<double>(rows) * width);
  MemoryLimit limit;
  limit.SetPolicy(EvictionPolicy::kAllKeysLru);
  limit.SetMaxMemory(budget);
  CatalogOptions options;
  options.memory_limit = &limit;
  options.tier = TierOptions{.directory = dir.string()};
  Catalog catalog(options);
  catalog.StartActiveExpiry(10);  // and the promotions, as quiverd runs them
  auto table = Check(catalog.CreateTable("bench", schema), "create");

  // 1. Ingest, with a reader meanwhile.
  std::atomic<int64_t> written{0};
  std::atomic<bool> done{false};
  std::vector<double> ingest_reads;
  std::thread reader([&] {
    std::mt19937_64 rng(3);
    while (!done.load()) {
      const int64_t upto = written.load();
      if (upto < 1000) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        continue;
      }
      std::vector<int64_t> keys(1000);
      for (int64_t& key : keys) key = static_cast<int64_t>(rng() % static_cast<uint64_t>(upto));
      const auto keys_array = KeysOf(keys);
      const auto t = Clock::now();
      Check(table->Read(*keys_array), "read during ingest");
      ingest_reads.push_back(Micros(t));
    }
  });
  const auto ingest_start = Clock::now();
  // Batches of 65,536 rows, or fewer so that one takes at most a quarter of the budget.
  const int64_t kIngestBatch =
      std::clamp<int64_t>(static_cast<int64_t>(budget / 4 / (width + 64)), 1024, 65536);
  for (int64_t first = 0; first < rows; first += kIngestBatch) {
    const auto batch = MakeBatch(Shape::kFeatures, first, std::min(kIngestBatch, rows - first));
    Check(table->Upsert(*batch), "ingest");
    written.store(first + batch->num_rows());
  }
  const double ingest_seconds = Micros(ingest_start) / 1e6;
  done = true;
  reader.join();
  const Percentiles during = Of(ingest_reads);
  const TableStats stats = table->Stats();
  std::printf(
      "\n## Tiered table: %lld rows of %u bytes, budget %.0f MiB (index %.0f MiB + %.0f%% "
      "of the rows)\n\n",
      static_cast<long long>(rows), width, budget / 1048576.0, capacity * 8 / 1048576.0,
      resident * 100);
  std::printf(
      "ingest: %.0f rows/s (%.1f s); 1000-key reads meanwhile: %zu, p50 %.0f µs, p99 %.0f "
      "µs, max %.0f µs\n",
      rows / ingest_seconds, ingest_seconds, ingest_reads.size(), during.p50, during.p99,
      during.max);
  std::printf(
      "after ingest: %lld cold rows (%.1f%%), used memory %.0f MiB of %.0f MiB, index "
      "%.1f bytes/row, tier file %.0f MiB (written %.0f MiB)\n",
      static_cast<long long>(stats.cold_rows), 100.0 * stats.cold_rows / rows,
      limit.UsedMemory() / 1048576.0, budget / 1048576.0,
      static_cast<double>(stats.index_bytes) / rows, stats.tier_disk_bytes / 1048576.0,
      stats.tier_written_bytes / 1048576.0);

  // 2. The disk.
  const std::string tier_file = (dir / ("bench." + std::to_string(table->id()) + ".tier")).string();
  const Disk disk = MeasureDisk(tier_file, stats.tier_disk_bytes);
  std::printf(
      "\ndisk (random 4 KiB O_DIRECT reads of the tier file): one at a time p50 %.0f µs, "
      "p99 %.0f µs, %.0f IOPS; 1000 at a time (io_uring) p50 %.0f µs, p99 %.0f µs, "
      "%.0f IOPS\n",
      disk.single.p50, disk.single.p99, disk.single_iops, disk.batch.p50, disk.batch.p99,
      disk.batch_iops);

  // 3. Reads.
  std::mt19937_64 rng(11);
  Zipf zipf(rows, 0.99);
  std::vector<std::vector<int64_t>> zipf_sets(static_cast<size_t>(reads)),
      uniform_sets(static_cast<size_t>(reads));
  for (auto& set : zipf_sets) {
    for (int i = 0; i < 1000; ++i) set.push_back(Scatter(zipf(rng), rows));
  }
  for (auto& set : uniform_sets) {
    for (int i = 0; i < 1000; ++i) set.push_back(static_cast<int64_t>(rng() % rows));
  }
  std::printf("\n| 1000-key reads | table | p50 µs | p99 µs | p999 µs | cold rows/read |\n");
  std::printf("|---|---|---:|---:|---:|---:|\n");
  const auto report = [](const char* keys, const char* where, const ReadFigures& f) {
    std::printf("| %s | %s | %.0f | %.0f | %.0f | %.0f |\n", keys, where, f.latency.p50,
                f.latency.p99, f.latency.p999, f.cold_per_read);
  };
  // Zipf: two passes warm the hot set in (a row read a second time is promoted), the third is
  // measured.
  MeasureReads(*table, zipf_sets);
  MeasureReads(*table, zipf_sets);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  report("Zipf(0.99)", "tiered, io_uring", MeasureReads(*table, zipf_sets));
  report("uniform", "tiered, io_uring", MeasureReads(*table, uniform_sets));
  // The same reads with the tier reading one record after another (pread).
  table->SetTierIo(TierIo::kPread);
  report("Zipf(0.99)", "tiered, pread", MeasureReads(*table, zipf_sets));
  report("uniform", "tiered, pread", MeasureReads(*table, uniform_sets));
  table->SetTierIo(TierIo::kAuto);
  const TableStats after = table->Stats();
  std::printf(
      "\nmemory per cold row: %.1f bytes (the index's %llu bytes over %lld rows; a row in "
      "memory costs %u + that)\n",
      static_cast<double>(after.index_bytes) / rows,
      static_cast<unsigned long long>(after.index_bytes), static_cast<long long>(rows), width);
  if (!skip_ram) {
    auto ram = Check(Table::Make("ram", schema), "make");
    for (int64_t first = 0; first < rows; first += kIngestBatch) {
      Check(ram->Upsert(*MakeBatch(Shape::kFeatures, first, std::min(kIngestBatch, rows - first))),
            "ingest all-memory");
    }
    MeasureReads(*ram, zipf_sets);
    report("Zipf(0.99)", "all in memory", MeasureReads(*ram, zipf_sets));
    report("uniform", "all in memory", MeasureReads(*ram, uniform_sets));
  }
  catalog.StopActiveExpiry();
  return 0;
}
