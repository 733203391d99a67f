// The keyspace's lookups without the network (docs/benchmarks.md): GET and SET of random keys
// among 1,000,000 (16-byte keys `key:%012d`, 3-byte values, redis-benchmark's shape), one at a
// time and as pipelines of 16 with Keyspace::Prefetch first, as the RESP server runs them; HGET
// and HSET in small hashes, packed and as tables; the growth of one large hash.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
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

// Small hashes: 100,000 hashes of state.range(1) fields (`f0`, `f1`, ..., 16-byte values),
// packed (state.range(0) = 1) or as tables (the packed-field limit set to 0). HGET or HSET (a
// value of the same size) of a random field of a random hash, 16 per iteration; the counter
// `bytes_per_field` is the keyspace's used memory over the number of fields.
struct HashFixture {
  static constexpr int kHashes = 100'000;
  Keyspace keyspace;
  int fields;
  std::vector<std::pair<std::string, std::string>> lookups;  // (key, field)
  HashFixture(bool packed, int fields_per_hash) : fields(fields_per_hash) {
    if (!packed) keyspace.SetMaxPackedFields(0);
    for (int i = 0; i < kHashes; ++i) {
      const std::string key = "hash:" + std::to_string(i);
      auto view = keyspace.Lock(key);
      Entry* entry = view.NewHash(key);
      for (int f = 0; f < fields; ++f) {
        char value[17];
        std::snprintf(value, sizeof(value), "%016d", i * fields + f);
        entry = view.HashSet(key, entry, "f" + std::to_string(f), value);
      }
    }
    std::mt19937 rng(2);
    for (int i = 0; i < 1 << 16; ++i) {
      lookups.emplace_back("hash:" + std::to_string(rng() % kHashes),
                           "f" + std::to_string(rng() % fields));
    }
  }
};

HashFixture& SharedHashes(bool packed, int fields) {
  static std::unique_ptr<HashFixture> fixture;
  if (fixture == nullptr || fixture->fields != fields ||
      (fixture->keyspace.MaxPackedFields() != 0) != packed) {
    fixture.reset();
    fixture = std::make_unique<HashFixture>(packed, fields);
  }
  return *fixture;
}

void HashBenchmark(benchmark::State& state, bool write) {
  HashFixture& f = SharedHashes(state.range(0) != 0, static_cast<int>(state.range(1)));
  size_t next = 0, found = 0;
  for (auto _ : state) {
    for (int i = 0; i < kPipeline; ++i) {
      const auto& [key, field] = f.lookups[next++ & (f.lookups.size() - 1)];
      auto view = f.keyspace.Lock(key);
      Entry* entry = view.Find(key);
      if (write) {
        view.HashSet(key, entry, field, "0123456789abcdef");
      } else {
        found += entry->hash().Find(field).has_value();
      }
    }
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(state.iterations() * kPipeline);
  state.counters["bytes_per_field"] = static_cast<double>(f.keyspace.UsedMemory()) /
                                      (static_cast<double>(HashFixture::kHashes) * f.fields);
}
void BM_HashGet(benchmark::State& state) { HashBenchmark(state, /*write=*/false); }
void BM_HashSet(benchmark::State& state) { HashBenchmark(state, /*write=*/true); }
BENCHMARK(BM_HashGet)->ArgNames({"packed", "fields"})->ArgsProduct({{1, 0}, {10, 100}});
BENCHMARK(BM_HashSet)->ArgNames({"packed", "fields"})->ArgsProduct({{1, 0}, {10, 100}});

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
