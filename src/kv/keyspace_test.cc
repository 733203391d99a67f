// Tests of the keyspace: expiry (passive and active) against a controlled clock, the TTL index
// under random operations, SCAN's guarantee while the keyspace grows, glob patterns.
#include "kv/keyspace.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <random>
#include <set>
#include <thread>

namespace quiver::kv {
namespace {

struct FakeClock {
  Millis now = 1'000'000;
  std::function<Millis()> Function() {
    return [this] { return now; };
  }
};

void Put(Keyspace& keyspace, const std::string& key, const std::string& value, Millis expire_at) {
  auto view = keyspace.Lock(key);
  Entry* entry = view.Insert(key, Type::kString);
  const uint64_t before = Keyspace::View::BytesOf(key, *entry);
  entry->string = value;
  view.Resized(key, *entry, before);
  if (expire_at != 0) view.SetExpire(key, entry, expire_at);
}

bool Present(Keyspace& keyspace, const std::string& key) {
  auto view = keyspace.Lock(key);
  return view.Find(key) != nullptr;
}

TEST(KeyspaceTest, PassiveExpiryHidesAKeyAtOnce) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  Put(keyspace, "a", "1", clock.now + 10);
  Put(keyspace, "b", "2", 0);
  EXPECT_TRUE(Present(keyspace, "a"));
  clock.now += 10;  // due exactly now: gone
  EXPECT_FALSE(Present(keyspace, "a"));
  EXPECT_TRUE(Present(keyspace, "b"));
  EXPECT_EQ(keyspace.Size(), 1);
  EXPECT_EQ(keyspace.Stats().expired, 1);
  EXPECT_EQ(keyspace.Keys("*"), std::vector<std::string>{"b"});
}

TEST(KeyspaceTest, ActiveExpiryReclaimsOnlyExpiredKeys) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  for (int i = 0; i < 20000; ++i) {
    // Half expire at +100, a quarter at +10^9, a quarter never.
    const Millis at = i % 2 == 0 ? clock.now + 100 : i % 4 == 1 ? clock.now + 1'000'000'000 : 0;
    Put(keyspace, "k" + std::to_string(i), "v", at);
  }
  EXPECT_EQ(keyspace.Stats().keys_with_ttl, 15000);
  clock.now += 100;
  // Cycles until the sampled expired fraction drops under 25% everywhere.
  int64_t deleted = 0;
  for (int i = 0; i < 100; ++i) deleted += keyspace.ActiveExpireCycle(1'000'000);
  const KeyspaceStats stats = keyspace.Stats();
  EXPECT_GT(deleted, 9000);  // most of the 10,000 reclaimed without any access
  EXPECT_EQ(stats.keys, 20000 - deleted);
  EXPECT_EQ(keyspace.Size(), 10000);  // and the rest are invisible already
  for (int i = 1; i < 20000; i += 2) EXPECT_TRUE(Present(keyspace, "k" + std::to_string(i)));
}

TEST(KeyspaceTest, TtlIndexStaysConsistentUnderRandomOperations) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  std::map<std::string, Millis> model;  // key -> expiry (0: none)
  std::mt19937 rng(5);
  for (int step = 0; step < 50000; ++step) {
    const std::string key = "k" + std::to_string(rng() % 500);
    const int op = static_cast<int>(rng() % 5);
    auto view = keyspace.Lock(key);
    Entry* entry = view.Find(key);
    auto it = model.find(key);
    if (it != model.end() && it->second != 0 && it->second <= clock.now) {
      model.erase(it);
      it = model.end();
    }
    ASSERT_EQ(entry != nullptr, it != model.end()) << key;
    if (op == 0) {
      Entry* fresh = view.Insert(key, Type::kString);
      (void)fresh;
      model[key] = 0;
    } else if (op == 1 && entry != nullptr) {
      const Millis at = clock.now + 1 + static_cast<Millis>(rng() % 50);
      view.SetExpire(key, entry, at);
      model[key] = at;
    } else if (op == 2 && entry != nullptr) {
      view.SetExpire(key, entry, 0);
      model[key] = 0;
    } else if (op == 3) {
      view.Erase(key);
      model.erase(key);
    } else {
      clock.now += 1;
    }
  }
  int64_t with_ttl = 0;
  for (const auto& [key, at] : model) with_ttl += at != 0;
  const KeyspaceStats stats = keyspace.Stats();
  // Keys due but untouched are still held (and indexed) until touched or sampled.
  EXPECT_GE(stats.keys_with_ttl, with_ttl);
  keyspace.ActiveExpireCycle(1'000'000);
  int64_t live = 0;
  for (const auto& [key, at] : model) live += at == 0 || at > clock.now;
  EXPECT_EQ(keyspace.Size(), live);
}

TEST(KeyspaceTest, ScanReturnsEveryKeyPresentThroughoutWhileTheKeyspaceGrows) {
  Keyspace keyspace;
  std::set<std::string> original;
  for (int i = 0; i < 3000; ++i) {
    Put(keyspace, "o" + std::to_string(i), "v", 0);
    original.insert("o" + std::to_string(i));
  }
  std::set<std::string> seen;
  uint64_t cursor = 0;
  int added = 0, calls = 0;
  do {
    std::vector<std::string> keys;
    cursor = keyspace.Scan(cursor, 7, "*", std::nullopt, &keys);
    seen.insert(keys.begin(), keys.end());
    for (int i = 0; i < 40; ++i) Put(keyspace, "n" + std::to_string(added++), "v", 0);  // rehashes
    ++calls;
  } while (cursor != 0 && calls < 1'000'000);
  for (const std::string& key : original) EXPECT_TRUE(seen.count(key)) << key;
}

TEST(KeyspaceConcurrencyTest, WritersReadersAndActiveExpiry) {
  Keyspace keyspace;
  keyspace.StartActiveExpiry(1000);  // a cycle every millisecond, racing the writers
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) {
        const std::string key = "k" + std::to_string(rng() % 300);
        const std::string other = "k" + std::to_string(rng() % 300);
        auto view = keyspace.Lock({key, other});
        Entry* entry = view.Find(key);
        switch (rng() % 4) {
          case 0:
            entry = view.Insert(key, Type::kString);
            entry->string = std::to_string(i);
            if (rng() % 2) view.SetExpire(key, entry, view.now() + static_cast<Millis>(rng() % 5));
            break;
          case 1:
            if (entry != nullptr && entry->type == Type::kString && entry->string.empty()) ++errors;
            break;
          case 2:
            view.Erase(other);
            break;
          default:
            if (entry != nullptr) view.SetExpire(key, entry, 0);
        }
      }
    });
  }
  std::thread scanner([&] {
    for (int i = 0; i < 200; ++i) {
      std::vector<std::string> keys;
      uint64_t cursor = 0;
      do {
        cursor = keyspace.Scan(cursor, 50, "*", std::nullopt, &keys);
      } while (cursor != 0);
      (void)keyspace.Size();
    }
  });
  for (auto& thread : threads) thread.join();
  scanner.join();
  EXPECT_EQ(errors, 0);
  // Every TTL given is due by now, so both counts below exclude the same keys.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const KeyspaceStats stats = keyspace.Stats();
  EXPECT_LE(stats.keys_with_ttl, stats.keys);
  EXPECT_EQ(static_cast<int64_t>(keyspace.Keys("*").size()), keyspace.Size());
}

TEST(KeyspaceTest, TakeMovesAValueOutAndKeepsTheCountsExact) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  Put(keyspace, "a", std::string(1000, 'x'), clock.now + 100);
  Put(keyspace, "b", "small", 0);
  {
    auto view = keyspace.Lock("a");
    std::optional<Entry> taken = view.Take("a");
    ASSERT_TRUE(taken);
    EXPECT_EQ(taken->string.size(), 1000u);
    EXPECT_EQ(taken->expire_at, clock.now + 100);
    EXPECT_FALSE(view.Take("a"));
  }
  const KeyspaceStats stats = keyspace.Stats();
  EXPECT_EQ(stats.keys, 1);
  EXPECT_EQ(stats.keys_with_ttl, 0);
  keyspace.Clear();
  Put(keyspace, "b", "small", 0);
  EXPECT_EQ(keyspace.Stats().bytes, stats.bytes) << "what Take removed is no longer counted";
}

TEST(KeyspaceTest, GlobPatterns) {
  EXPECT_TRUE(Keyspace::Match("*", ""));
  EXPECT_TRUE(Keyspace::Match("h?llo", "hello"));
  EXPECT_TRUE(Keyspace::Match("h*llo", "heeeello"));
  EXPECT_TRUE(Keyspace::Match("h[ae]llo", "hallo"));
  EXPECT_FALSE(Keyspace::Match("h[ae]llo", "hillo"));
  EXPECT_TRUE(Keyspace::Match("h[^e]llo", "hallo"));
  EXPECT_FALSE(Keyspace::Match("h[^e]llo", "hello"));
  EXPECT_TRUE(Keyspace::Match("h[a-b]llo", "hbllo"));
  EXPECT_TRUE(Keyspace::Match("user:*:name", "user:42:name"));
  EXPECT_FALSE(Keyspace::Match("user:*:name", "user:42:age"));
  EXPECT_TRUE(Keyspace::Match("a\\*b", "a*b"));
  EXPECT_FALSE(Keyspace::Match("a\\*b", "axb"));
}

}  // namespace
}  // namespace quiver::kv
