// The keyspace's lookups without the network (docs/benchmarks.md): GET and SET of random keys
// among 1,000,000 (16-byte keys `key:%012d`, 3-byte values, redis-benchmark's shape), one at a
// time and as pipelines of 16 with Keyspace::Prefetch first, as the RESP server runs them.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kv/keyspace.h"

namespace quiver::kv {
namespace {

constexpr int kKeys = 1'000'000;
constexpr int kPipeline = 16;

std::string KeyName(int i) {
  char buffer[24];
  std::snprintf(buffer, sizeof(buffer), "key:%012d", i);
  return buffer;
}

// One keyspace of kKeys keys, built once, and random keys to look up in it.
struct Fixture {
  Keyspace keyspace;
  std::vector<std::string> lookups;
  Fixture() {
    for (int i = 0; i < kKeys; ++i) {
      const std::string key = KeyName(i);
      keyspace.Lock(key).SetString(key, "xxx");
    }
    std::mt19937 rng(1);
    for (int i = 0; i < 1 << 20; ++i) lookups.push_back(KeyName(static_cast<int>(rng() % kKeys)));
  }
};

Fixture& Shared() {
  static Fixture fixture;
  return fixture;
}

// state.range(0): 1 to prefetch each pipeline's keys first.
void BM_Get(benchmark::State& state) {
  Fixture& f = Shared();
  const bool prefetch = state.range(0) != 0;
  std::vector<std::string_view> keys(kPipeline);
  size_t next = 0, found = 0;
  for (auto _ : state) {
    for (auto& key : keys) key = f.lookups[next++ & (f.lookups.size() - 1)];
    if (prefetch) f.keyspace.Prefetch(keys);
    for (std::string_view key : keys) {
      auto view = f.keyspace.Lock(key);
      const Entry* entry = view.Find(key);
      found += entry != nullptr && entry->string().size() == 3;
    }
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(state.iterations() * kPipeline);
}
BENCHMARK(BM_Get)->Arg(0)->Arg(1);

void BM_Set(benchmark::State& state) {
  Fixture& f = Shared();
  const bool prefetch = state.range(0) != 0;
  std::vector<std::string_view> keys(kPipeline);
  size_t next = 0;
  for (auto _ : state) {
    for (auto& key : keys) key = f.lookups[next++ & (f.lookups.size() - 1)];
    if (prefetch) f.keyspace.Prefetch(keys);
    for (std::string_view key : keys) {
      f.keyspace.Lock(key).SetString(key, "yyy");
    }
  }
  state.SetItemsProcessed(state.iterations() * kPipeline);
}
BENCHMARK(BM_Set)->Arg(0)->Arg(1);

// Builds one hash of 2^20 fields, one HSET at a time as HSET commands do; counters: the slowest
// single HSET (`max_us`) and the mean. The slowest is the one whose insert grows the hash's index.
void BM_HashGrowth(benchmark::State& state) {
  constexpr int kFields = 1 << 20;
  std::vector<std::string> fields;
  for (int i = 0; i < kFields; ++i) fields.push_back("field:" + std::to_string(i));
  double max_us = 0;
  for (auto _ : state) {
    Keyspace keyspace;
    {
      auto view = keyspace.Lock("big");
      view.NewHash("big");
    }
    for (const std::string& field : fields) {
      const auto start = std::chrono::steady_clock::now();
      auto view = keyspace.Lock("big");
      view.HashSet("big", view.Find("big"), field, "v");
      const auto took = std::chrono::steady_clock::now() - start;
      max_us = std::max(max_us, std::chrono::duration<double, std::micro>(took).count());
    }
  }
  state.counters["max_us"] = max_us;
  state.SetItemsProcessed(state.iterations() * kFields);
}
BENCHMARK(BM_HashGrowth)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace quiver::kv

BENCHMARK_MAIN();
