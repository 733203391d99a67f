// Tests of the keyspace: expiry (passive and active) against a controlled clock, the TTL index
// under random operations, SCAN's guarantee while the keyspace grows, glob patterns.
#include "kv/keyspace.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <new>
#include <random>
#include <set>
#include <thread>

#include "kv/keyspace_test_util.h"

namespace quiver::kv {
namespace {

using testing::CountsAgree;
using testing::Describe;
using testing::FakeClock;
using testing::Present;
using testing::Put;

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
      view.SetString(key, "v");
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
  EXPECT_TRUE(CountsAgree(keyspace));
  keyspace.ActiveExpireCycle(1'000'000);
  EXPECT_TRUE(CountsAgree(keyspace));
  int64_t live = 0;
  for (const auto& [key, at] : model) live += at == 0 || at > clock.now;
  EXPECT_EQ(keyspace.Size(), live);
}

// Shards whose index is being rebuilt incrementally when the writes stop finish under lookups
// alone: the old arrays' bytes leave the count, as a full SCAN (which finishes rebuilds) shows.
TEST(KeyspaceTest, LookupsAloneFinishRebuildsUnderWay) {
  constexpr int kKeys = 200'000;  // shards past 1,024 slots: rebuilt incrementally
  auto build = [](Keyspace& keyspace) {
    for (int i = 0; i < kKeys; ++i) Put(keyspace, "k" + std::to_string(i), "v", 0);
  };
  auto scan_all = [](Keyspace& keyspace) {
    uint64_t cursor = 0;
    std::vector<std::string> keys;
    do cursor = keyspace.Scan(cursor, 1000, "*", std::nullopt, &keys);
    while (cursor != 0);
    return keys.size();
  };
  Keyspace scanned;
  build(scanned);
  const uint64_t built = scanned.UsedMemory();
  EXPECT_GE(scan_all(scanned), static_cast<size_t>(kKeys));
  ASSERT_LT(scanned.UsedMemory(), built) << "some shards were rebuilding when writes stopped";

  Keyspace looked_up;
  build(looked_up);
  for (int i = 0; i < kKeys; ++i) EXPECT_TRUE(Present(looked_up, "k" + std::to_string(i)));
  EXPECT_EQ(looked_up.UsedMemory(), scanned.UsedMemory());
  scan_all(looked_up);
  EXPECT_EQ(looked_up.UsedMemory(), scanned.UsedMemory()) << "nothing was left to finish";
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

TEST(KeyspaceConcurrencyTest, WritersReadersActiveExpiryAndEviction) {
  Keyspace keyspace;
  keyspace.StartActiveExpiry(1000);  // a cycle every millisecond, racing the writers
  keyspace.SetPolicy(EvictionPolicy::kAllKeysLfu);
  keyspace.SetMaxMemory(16 * 1024);  // about 100 of the 300 keys fit
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) {
        const std::string key = "k" + std::to_string(rng() % 300);
        const std::string other = "k" + std::to_string(rng() % 300);
        if (t % 2 == 0) (void)keyspace.MakeRoom();
        // As a pipeline does, racing other threads' index rebuilds.
        const std::string_view both[] = {key, other};
        keyspace.Prefetch(both);
        auto view = keyspace.Lock({key, other});
        Entry* entry = view.Find(key);
        switch (rng() % 4) {
          case 0:
            view.SetString(key, std::to_string(i) + std::string(rng() % 40, 'x'),
                           rng() % 2 ? view.now() + static_cast<Millis>(rng() % 5) : 0);
            break;
          case 1:
            if (entry != nullptr && entry->type() == Type::kString) {
              errors += entry->string().empty();
              if (rng() % 2) view.Append(entry, std::string(rng() % 100, 'a'));
            }
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
  EXPECT_GT(stats.evicted, 0);
  keyspace.Clear();
  EXPECT_EQ(keyspace.UsedMemory(), 0u) << "every change was counted";
}

TEST(KeyspaceTest, RenameMovesValueAndTtlAndCountsAsIfWrittenThere) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  Put(keyspace, "a", std::string(1000, 'x'), clock.now + 100);
  Put(keyspace, "b", "small", 0);
  {
    auto view = keyspace.Lock({"a", "b"});
    EXPECT_TRUE(view.Rename("a", "b"));
    EXPECT_FALSE(view.Rename("a", "b"));
    const Entry* b = view.Find("b");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->string(), std::string(1000, 'x'));
    EXPECT_EQ(b->expire_at(), clock.now + 100);
    EXPECT_EQ(view.Find("a"), nullptr);
  }
  // A packed hash and a table.
  for (const auto& [from, to, fields] : {std::tuple{"h", "g", 100}, std::tuple{"t", "u", 300}}) {
    auto view = keyspace.Lock({from, to});
    Entry* hash = view.NewHash(from);
    for (int f = 0; f < fields; ++f) hash = view.HashSet(from, hash, "f" + std::to_string(f), "v");
    EXPECT_TRUE(view.Rename(from, to));
    const Hash renamed = view.Find(to)->hash();
    EXPECT_EQ(renamed.size(), static_cast<size_t>(fields));
    EXPECT_EQ(renamed.packed(), fields <= 128);
    EXPECT_EQ(renamed.Find("f7"), "v");
  }
  // The same keys written where they ended (after "a", "h" and "t" came and went, for the same
  // index and TTL vector sizes): the same count.
  Keyspace direct(clock.Function());
  Put(direct, "a", "", clock.now + 100);
  Put(direct, "h", "", 0);
  Put(direct, "t", "", 0);
  direct.Lock({"a", "h"}).Erase("a");
  direct.Lock("h").Erase("h");
  direct.Lock("t").Erase("t");
  Put(direct, "b", std::string(1000, 'x'), clock.now + 100);
  for (const auto& [key, fields] : {std::pair{"g", 100}, std::pair{"u", 300}}) {
    auto view = direct.Lock(key);
    Entry* hash = view.NewHash(key);
    for (int f = 0; f < fields; ++f) hash = view.HashSet(key, hash, "f" + std::to_string(f), "v");
  }
  EXPECT_EQ(keyspace.Stats().keys, 3);
  EXPECT_EQ(keyspace.Stats().keys_with_ttl, 1);
  EXPECT_EQ(keyspace.UsedMemory(), direct.UsedMemory());
}

TEST(KeyspaceTest, AppendAndRewriteMoveTheNodeAndKeepItsState) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  Put(keyspace, "k", "", clock.now + 1000);
  std::string expected;
  std::mt19937 rng(5);
  for (int i = 0; i < 2000; ++i) {
    auto view = keyspace.Lock("k");
    Entry* entry = view.Find("k");
    const std::string tail(rng() % 64, static_cast<char>('a' + i % 26));
    entry = view.Append(entry, tail);
    expected += tail;
    ASSERT_EQ(entry, view.Find("k")) << "the index points at the node the entry moved to";
    ASSERT_EQ(entry->string(), expected);
    ASSERT_EQ(entry->expire_at(), clock.now + 1000);
  }
  // Rewrites to shorter and longer values move it to nodes of their size.
  for (const size_t size : {1, 5000, 40, 40, 100000, 0}) {
    auto view = keyspace.Lock("k");
    Entry* entry = view.Rewrite(view.Find("k"), std::string(size, 'r'));
    EXPECT_EQ(entry->string(), std::string(size, 'r'));
    EXPECT_EQ(entry->expire_at(), clock.now + 1000);
  }
  EXPECT_EQ(keyspace.Stats().keys_with_ttl, 1);
  Keyspace direct(clock.Function());
  Put(direct, "k", "", clock.now + 1000);
  EXPECT_EQ(keyspace.UsedMemory(), direct.UsedMemory()) << "no room kept from larger values";
  clock.now += 1000;
  EXPECT_EQ(keyspace.ActiveExpireCycle(1'000'000), 1) << "the TTL index holds the moved node";
  direct.Lock("k").Erase("k");
  EXPECT_EQ(keyspace.UsedMemory(), direct.UsedMemory());
}

// The fields of `key`'s hash, in the order it yields them.
std::vector<std::pair<std::string, std::string>> FieldsOf(Keyspace& keyspace,
                                                          const std::string& key) {
  auto view = keyspace.Lock(key);
  const Hash hash = view.Find(key)->hash();
  return {hash.begin(), hash.end()};
}

// Sets fields of `key`'s hash (made when missing) in one view.
void HashPut(Keyspace& keyspace, const std::string& key,
             const std::vector<std::pair<std::string, std::string>>& fields) {
  auto view = keyspace.Lock(key);
  Entry* entry = view.Find(key);
  if (entry == nullptr) entry = view.NewHash(key);
  for (const auto& [field, value] : fields) {
    entry = view.HashSet(key, entry, field, value);
    ASSERT_EQ(entry, view.Find(key)) << "the index points at the node the hash moved to";
  }
}

TEST(KeyspaceTest, SmallHashesArePackedInOrderAndChangedInPlace) {
  Keyspace keyspace;
  HashPut(keyspace, "h", {{"f1", "one"}, {"f10", "ten"}, {"", "empty name"}, {"f", ""}});
  using Fields = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(FieldsOf(keyspace, "h"),
            (Fields{{"f1", "one"}, {"f10", "ten"}, {"", "empty name"}, {"f", ""}}));
  // Values rewritten longer, shorter and alike keep their place; a deleted field leaves none.
  HashPut(keyspace, "h", {{"f10", std::string(64, 'x')}, {"f1", "1"}, {"f", "f"}});
  {
    auto view = keyspace.Lock("h");
    bool deleted;
    Entry* entry = view.HashDelete("h", view.Find("h"), "", &deleted);
    EXPECT_TRUE(deleted);
    view.HashDelete("h", entry, "f100", &deleted);
    EXPECT_FALSE(deleted);
    const Hash hash = view.Find("h")->hash();
    EXPECT_TRUE(hash.packed());
    EXPECT_EQ(hash.size(), 3u);
    EXPECT_EQ(hash.Find("f1"), "1");
    EXPECT_EQ(hash.Find("f10"), std::string(64, 'x'));
    EXPECT_EQ(hash.Find("f"), "f");
    EXPECT_EQ(hash.Find(""), std::nullopt);
    EXPECT_EQ(hash.Find("f2"), std::nullopt);
  }
  EXPECT_EQ(FieldsOf(keyspace, "h"),
            (Fields{{"f1", "1"}, {"f10", std::string(64, 'x')}, {"f", "f"}}));
  // The same fields set directly take the same bytes: nothing is kept from longer values; nor
  // when the node was made with room for them (as HSET makes it).
  const Fields fields = {{"f1", "1"}, {"f10", std::string(64, 'x')}, {"f", "f"}};
  Keyspace direct;
  HashPut(direct, "h", fields);
  EXPECT_EQ(keyspace.UsedMemory(), direct.UsedMemory());
  Keyspace roomy;
  {
    auto view = roomy.Lock("h");
    size_t room = 0;
    for (const auto& [field, value] : fields) room += HashPackedBytes(field, value);
    Entry* entry = view.NewHash("h", room);
    for (const auto& [field, value] : fields) {
      Entry* now = view.HashSet("h", entry, field, value);
      EXPECT_EQ(now, entry) << "set in the room made for it";
      entry = now;
    }
  }
  EXPECT_EQ(roomy.UsedMemory(), direct.UsedMemory());
  EXPECT_EQ(FieldsOf(roomy, "h"), fields);
}

TEST(KeyspaceTest, AHashBecomesATableWithManyFieldsOrLongNamesOrValues) {
  const std::string long_text(Hash::kMaxPackedBytes + 1, 'L');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"fields", ""}, {"name", long_text}, {"value", long_text}};
  for (const auto& [why, text] : cases) {
    Keyspace keyspace;
    std::map<std::string, std::string> expected;
    const size_t packed = why == "fields" ? Hash::kMaxPackedFields : 10;
    for (size_t f = 0; f < packed; ++f) {
      expected["field:" + std::to_string(f)] = "value:" + std::to_string(f);
    }
    HashPut(keyspace, "h", {expected.begin(), expected.end()});
    {
      auto view = keyspace.Lock("h");
      EXPECT_TRUE(view.Find("h")->hash().packed()) << why;
    }
    const std::string field = why == "name" ? text : "one more";
    const std::string value = why == "value" ? text : "v";
    HashPut(keyspace, "h", {{field, value}});
    expected[field] = value;
    auto view = keyspace.Lock("h");
    const Hash hash = view.Find("h")->hash();
    EXPECT_FALSE(hash.packed()) << why;
    const std::map<std::string, std::string> fields(hash.begin(), hash.end());
    EXPECT_EQ(fields, expected) << why;
    EXPECT_EQ(hash.Find(field), value) << why;
    // A table stays one as it empties (Redis's hashes never convert back either).
    Entry* entry = view.Find("h");
    for (const auto& [name, ignored] : expected) entry = view.HashDelete("h", entry, name);
    EXPECT_TRUE(entry->hash().empty());
    EXPECT_FALSE(entry->hash().packed());
  }
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
}  // namespace
}  // namespace quiver::kv

// This binary's operator new and delete count the chunks glibc's malloc hands out for them
// (malloc_usable_size + the chunk header), to check the keyspace's count against.
namespace {
std::atomic<int64_t> chunk_bytes{0};
}  // namespace
void* operator new(size_t size) {
  void* pointer = std::malloc(size == 0 ? 1 : size);
  if (pointer == nullptr) throw std::bad_alloc();
  chunk_bytes.fetch_add(static_cast<int64_t>(malloc_usable_size(pointer) + 8));
  return pointer;
}
void operator delete(void* pointer) noexcept {
  if (pointer == nullptr) return;
  chunk_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(pointer) + 8));
  std::free(pointer);
}
void operator delete(void* pointer, size_t) noexcept { operator delete(pointer); }

namespace quiver::kv {
namespace {

// The count is exact: it equals the chunks the keyspace's allocations took, up to malloc's
// rare slack (a free chunk at most 16 bytes larger than asked for is handed out whole).
TEST(KeyspaceTest, UsedMemoryEqualsWhatTheAllocatorHandedOut) {
  FakeClock clock;
  auto keyspace = std::make_unique<Keyspace>(clock.Function());
  const int64_t base = chunk_bytes.load();
  std::mt19937 rng(3);
  for (int i = 0; i < 20000; ++i) {
    const std::string key = (i % 3 == 0 ? "a-rather-long-key-name:" : "k") + std::to_string(i);
    Put(*keyspace, key, std::string(rng() % 100, 'v'), i % 7 == 0 ? clock.now + 1000 : 0);
  }
  for (int i = 0; i < 500; ++i) {
    const std::string key = "hash:" + std::to_string(i);
    auto view = keyspace->Lock(key);
    Entry* entry = view.NewHash(key);
    // Packed hashes (a few large enough to become tables), values rewritten longer and
    // shorter, fields deleted.
    const uint32_t fields = 1 + rng() % (i % 10 == 0 ? 200 : 40);
    for (uint32_t f = 0; f < fields; ++f) {
      entry = view.HashSet(key, entry, "field-" + std::to_string(f), std::string(rng() % 40, 'h'));
    }
    entry = view.HashSet(key, entry, "field-0", std::string(rng() % 60, 'i'));
    entry = view.HashDelete(key, entry, "field-1");
    if (i % 3 == 0) entry = view.HashSet(key, entry, "field-2", std::string(200, 'x'));  // a table
    entry = view.HashSet(key, entry, "field-3", "short");
  }
  for (int i = 0; i < 20000; i += 5) {
    const std::string key = (i % 3 == 0 ? "a-rather-long-key-name:" : "k") + std::to_string(i);
    const std::string other = "k" + std::to_string(i + 1);
    auto view = keyspace->Lock({key, other});
    Entry* entry = view.Find(key);
    switch (i % 25) {
      case 0:
        view.Erase(key);
        break;
      case 5:  // appends: in the node's room, then moving to a larger node
        for (int j = 0; j < 8; ++j) entry = view.Append(entry, std::string(rng() % 30, 'a'));
        break;
      case 10:  // rewrites, shorter and longer (INCR)
        entry = view.Rewrite(entry, std::string(rng() % 200, 'r'));
        view.Rewrite(entry, "1");
        break;
      case 15:  // overwritten by a value of another size, then by a hash
        view.SetString(key, std::string(rng() % 300, 'o'), clock.now + 500);
        view.HashSet(key, view.NewHash(key), "f", "v");
        break;
      default:  // renamed, onto a key that exists
        view.Rename(key, other);
    }
  }
  const int64_t allocated = chunk_bytes.load() - base;
  EXPECT_LE(static_cast<int64_t>(keyspace->UsedMemory()), allocated);
  EXPECT_GE(static_cast<double>(keyspace->UsedMemory()), 0.999 * static_cast<double>(allocated));
  keyspace->Clear();
  EXPECT_EQ(keyspace->UsedMemory(), 0u);
  EXPECT_EQ(chunk_bytes.load(), base);
}
#endif

// Fills `keyspace` with `count` keys "prefix<i>" of 100-byte values, advancing the clock 1 ms per
// key; with `ttl`, key i expires at now + ttl + i.
void Fill(Keyspace& keyspace, FakeClock& clock, const std::string& prefix, int count,
          Millis ttl = 0) {
  for (int i = 0; i < count; ++i) {
    ++clock.now;
    Put(keyspace, prefix + std::to_string(i), std::string(100, 'v'),
        ttl == 0 ? 0 : clock.now + ttl + i);
  }
}

int CountPresent(Keyspace& keyspace, const std::string& prefix, int count) {
  int present = 0;
  for (int i = 0; i < count; ++i) present += Present(keyspace, prefix + std::to_string(i));
  return present;
}

TEST(KeyspaceEvictionTest, PolicyNamesRoundTrip) {
  for (const char* name : {"noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
                           "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"}) {
    ASSERT_TRUE(ParsePolicy(name)) << name;
    EXPECT_EQ(PolicyName(*ParsePolicy(name)), name);
  }
  EXPECT_EQ(ParsePolicy("ALLKEYS-LRU"), EvictionPolicy::kAllKeysLru);
  EXPECT_FALSE(ParsePolicy("lru"));
}

TEST(KeyspaceEvictionTest, NoEvictionRefusesAndKeepsEverything) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  Fill(keyspace, clock, "k", 1000);
  keyspace.SetMaxMemory(keyspace.UsedMemory() - 1);
  EXPECT_FALSE(keyspace.MakeRoom());
  EXPECT_EQ(keyspace.Size(), 1000);
  keyspace.SetMaxMemory(keyspace.UsedMemory());
  EXPECT_TRUE(keyspace.MakeRoom());
}

TEST(KeyspaceEvictionTest, AllKeysLruKeepsRecentlyUsedKeys) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  keyspace.SetPolicy(EvictionPolicy::kAllKeysLru);
  Fill(keyspace, clock, "old", 2000);
  clock.now += 1000;
  for (int i = 0; i < 200; ++i) Present(keyspace, "old" + std::to_string(i));  // used again
  keyspace.SetMaxMemory(keyspace.UsedMemory());
  for (int i = 0; i < 1000; ++i) {  // each new key evicts about one
    ++clock.now;
    ASSERT_TRUE(keyspace.MakeRoom());
    Put(keyspace, "new" + std::to_string(i), std::string(100, 'v'), 0);
  }
  ASSERT_TRUE(keyspace.MakeRoom());
  EXPECT_LE(keyspace.UsedMemory(), keyspace.MaxMemory());
  EXPECT_GE(keyspace.Stats().evicted, 900);
  EXPECT_GE(CountPresent(keyspace, "old", 200), 190) << "the recently used keys stay";
  EXPECT_GE(CountPresent(keyspace, "new", 1000), 950);
  EXPECT_LE(CountPresent(keyspace, "old", 2000) - CountPresent(keyspace, "old", 200), 1000);
}

TEST(KeyspaceEvictionTest, AllKeysLfuKeepsFrequentlyUsedKeys) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  keyspace.SetPolicy(EvictionPolicy::kAllKeysLfu);
  Fill(keyspace, clock, "k", 2000);
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 200; ++i) Present(keyspace, "k" + std::to_string(i));  // the hot keys
  }
  keyspace.SetMaxMemory(keyspace.UsedMemory() / 2);
  ASSERT_TRUE(keyspace.MakeRoom());
  EXPECT_LE(keyspace.UsedMemory(), keyspace.MaxMemory());
  EXPECT_GE(CountPresent(keyspace, "k", 200), 195) << "the hot keys stay";
}

TEST(KeyspaceEvictionTest, VolatileTtlEvictsTheSoonestToExpireAndOnlyKeysWithATtl) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  keyspace.SetPolicy(EvictionPolicy::kVolatileTtl);
  Fill(keyspace, clock, "forever", 1000);
  Fill(keyspace, clock, "ttl", 1000, 1'000'000);  // ttl<i> expires in about 10^6 + 2i ms
  keyspace.SetMaxMemory(keyspace.UsedMemory() * 3 / 4);
  ASSERT_TRUE(keyspace.MakeRoom());
  EXPECT_EQ(CountPresent(keyspace, "forever", 1000), 1000);
  EXPECT_LE(CountPresent(keyspace, "ttl", 300), 60) << "mostly the soonest to expire went";
  EXPECT_GE(CountPresent(keyspace, "ttl", 1000) - CountPresent(keyspace, "ttl", 700), 290);
  // With no key carrying a TTL left, volatile policies cannot make room.
  keyspace.SetMaxMemory(keyspace.UsedMemory() / 4);
  EXPECT_FALSE(keyspace.MakeRoom());
  EXPECT_EQ(CountPresent(keyspace, "forever", 1000), 1000);
  EXPECT_EQ(keyspace.Stats().keys_with_ttl, 0);
}

TEST(KeyspaceEvictionTest, EveryPolicyStaysUnderTheLimit) {
  for (EvictionPolicy policy :
       {EvictionPolicy::kAllKeysLru, EvictionPolicy::kAllKeysLfu, EvictionPolicy::kAllKeysRandom,
        EvictionPolicy::kVolatileLru, EvictionPolicy::kVolatileLfu, EvictionPolicy::kVolatileRandom,
        EvictionPolicy::kVolatileTtl}) {
    FakeClock clock;
    Keyspace keyspace(clock.Function());
    keyspace.SetPolicy(policy);
    Fill(keyspace, clock, "forever", 500);
    const uint64_t limit = keyspace.UsedMemory() * 2;
    keyspace.SetMaxMemory(limit);
    for (int i = 0; i < 5000; ++i) {
      ++clock.now;
      ASSERT_TRUE(keyspace.MakeRoom()) << PolicyName(policy) << " at " << i;
      Put(keyspace, "ttl" + std::to_string(i), std::string(100, 'v'), clock.now + 100'000);
      // One write past the limit: its node, and maybe its shard's slot array and TTL vector
      // doubling.
      ASSERT_LE(keyspace.UsedMemory(), limit + 2048) << PolicyName(policy);
    }
    EXPECT_GT(keyspace.Stats().evicted, 3000) << PolicyName(policy);
    EXPECT_TRUE(CountsAgree(keyspace)) << PolicyName(policy);
    if (policy >= EvictionPolicy::kVolatileLru) {
      EXPECT_EQ(CountPresent(keyspace, "forever", 500), 500) << PolicyName(policy);
    }
  }
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
