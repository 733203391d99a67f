// The reader process of ShmConcurrencyTest (shm_concurrency_test.cc): attaches to table "t" at
// the socket given, and with two threads sharing one TableReader reads every key 0..N-1 over and
// over, alternating Arrow reads and fixed-width reads, checking that each row found is
// self-consistent (a == b == c == version, s == the version's text repeated; with a composite
// key (k, p) and sparse columns x, y: x == version and y == s as well). Stops when its stdin
// closes; prints "checked <rows> torn <rows> refreshes <n>" and exits 0 only when no row
// was torn and no read failed.
#include <arrow/api.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shm/reader.h"

namespace {

std::string Expected(int64_t version, int64_t key) {
  std::string text;
  const std::string digits = std::to_string(version);
  for (int64_t i = 0; i <= key % 4; ++i) text += digits + "-" + digits + "-" + digits + ";";
  return text;
}

// The second key part of key `key` (as shm_concurrency_test.cc writes it).
std::string Part(int64_t key) { return "a-second-key-part-" + std::to_string(key % 5); }

// Keys first..first+n-1 as Read takes them: int64, or structs of (k, p).
std::shared_ptr<arrow::Array> KeysOf(int64_t first, int64_t n, bool composite) {
  arrow::Int64Builder ints;
  arrow::StringBuilder parts;
  for (int64_t i = 0; i < n; ++i) {
    (void)ints.Append(first + i);
    (void)parts.Append(Part(first + i));
  }
  std::shared_ptr<arrow::Array> keys = ints.Finish().ValueOrDie();
  if (!composite) return keys;
  return arrow::StructArray::Make({keys, parts.Finish().ValueOrDie()},
                                  std::vector<std::string>{"k", "p"})
      .ValueOrDie();
}

std::atomic<bool> g_stop{false};
std::atomic<int64_t> g_checked{0}, g_torn{0}, g_failed{0};

void ReadLoop(quiver::shm::TableReader& reader, int64_t keys, int thread, bool composite) {
  auto plan = reader.PlanFixed({"a", "b", "c"});
  if (!plan.ok()) {
    std::fprintf(stderr, "plan: %s\n", plan.status().ToString().c_str());
    g_failed++;
    return;
  }
  constexpr int64_t kBatch = 500;
  std::vector<int64_t> batch_keys(kBatch);
  std::vector<int64_t> out(kBatch * 3);
  std::vector<uint8_t> found(kBatch);
  for (int64_t round = thread; !g_stop.load(); ++round) {
    for (int64_t first = 0; first < keys && !g_stop.load(); first += kBatch) {
      const int64_t n = std::min(kBatch, keys - first);
      if (round % 2 == 0) {
        for (int64_t i = 0; i < n; ++i) batch_keys[i] = first + i;
        quiver::Status status;
        if (composite) {  // encoded keys
          auto encoded = reader.NormalizeKeys(*KeysOf(first, n, true));
          if (!encoded.ok()) {
            std::fprintf(stderr, "NormalizeKeys: %s\n", encoded.status().ToString().c_str());
            g_failed++;
            return;
          }
          const auto& binary = static_cast<const arrow::BinaryArray&>(**encoded);
          std::vector<std::string_view> views;
          for (int64_t i = 0; i < n; ++i) views.push_back(binary.GetView(i));
          status = reader.ReadInto(*plan, views, reinterpret_cast<std::byte*>(out.data()), 24,
                                   found.data());
        } else {
          status = reader.ReadInto(*plan, std::span<const int64_t>(batch_keys.data(), n),
                                   reinterpret_cast<std::byte*>(out.data()), 24, found.data());
        }
        if (!status.ok()) {
          std::fprintf(stderr, "ReadInto: %s\n", status.ToString().c_str());
          g_failed++;
          return;
        }
        for (int64_t i = 0; i < n; ++i) {
          if (!found[i]) continue;
          g_checked++;
          if (out[i * 3] != out[i * 3 + 1] || out[i * 3] != out[i * 3 + 2]) g_torn++;
        }
      } else {
        auto read = reader.Read(*KeysOf(first, n, composite));
        if (!read.ok()) {
          std::fprintf(stderr, "Read: %s\n", read.status().ToString().c_str());
          g_failed++;
          return;
        }
        const auto& batch = *read->batch;
        const auto& a = static_cast<const arrow::Int64Array&>(*batch.GetColumnByName("a"));
        const auto& b = static_cast<const arrow::Int64Array&>(*batch.GetColumnByName("b"));
        const auto& c = static_cast<const arrow::Int64Array&>(*batch.GetColumnByName("c"));
        const auto& s = static_cast<const arrow::StringArray&>(*batch.GetColumnByName("s"));
        for (int64_t i = 0; i < n; ++i) {
          if (!read->found->Value(i)) continue;
          g_checked++;
          bool torn = a.Value(i) != b.Value(i) || a.Value(i) != c.Value(i) ||
                      s.GetView(i) != Expected(a.Value(i), first + i);
          if (composite) {
            const auto& x = static_cast<const arrow::Int64Array&>(*batch.GetColumnByName("x"));
            const auto& y = static_cast<const arrow::StringArray&>(*batch.GetColumnByName("y"));
            torn |= x.IsNull(i) || y.IsNull(i) || x.Value(i) != a.Value(i) ||
                    y.GetView(i) != s.GetView(i);
          }
          if (torn) g_torn++;
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: shm_stress_reader SOCKET KEYS single|composite\n");
    return 2;
  }
  const bool composite = std::strcmp(argv[3], "composite") == 0;
  auto client = quiver::shm::Client::Connect(argv[1]);
  if (!client.ok()) {
    std::fprintf(stderr, "connect: %s\n", client.status().ToString().c_str());
    return 1;
  }
  auto reader = (*client)->Attach("t");
  if (!reader.ok()) {
    std::fprintf(stderr, "attach: %s\n", reader.status().ToString().c_str());
    return 1;
  }
  const int64_t keys = std::atoll(argv[2]);
  std::vector<std::thread> threads;
  threads.reserve(2);
  for (int t = 0; t < 2; ++t)
    threads.emplace_back(ReadLoop, std::ref(**reader), keys, t, composite);
  std::printf("ready\n");
  std::fflush(stdout);
  char byte;
  while (read(0, &byte, 1) > 0) {
  }
  g_stop = true;
  for (std::thread& thread : threads) thread.join();
  std::printf("checked %" PRId64 " torn %" PRId64 " refreshes %" PRIu64 "\n", g_checked.load(),
              g_torn.load(), (*reader)->stats().refreshes);
  return g_torn.load() == 0 && g_failed.load() == 0 ? 0 : 1;
}
