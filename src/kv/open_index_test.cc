#include "kv/open_index.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/hash.h"

namespace quiver::kv {
namespace {

struct Item {
  std::string name;
  std::string_view key() const { return name; }
};

// The index's view of its items, as key -> item.
std::map<std::string, const Item*> Contents(const OpenIndex<Item>& index) {
  std::map<std::string, const Item*> contents;
  index.ForEach([&](const Item* item) { contents.emplace(item->name, item); });
  return contents;
}

TEST(OpenIndexTest, MatchesAReferenceMapUnderRandomOperations) {
  OpenIndex<Item> index;
  std::map<std::string, std::unique_ptr<Item>> reference;
  std::mt19937 rng(7);
  for (int step = 0; step < 200000; ++step) {
    // A small key range at first (many tombstones reused), then a growing one, then shrinking.
    const int range = step < 50000 ? 100 : step < 150000 ? 20000 : 50;
    const std::string key = "k" + std::to_string(rng() % range);
    const uint64_t hash = HashBytes(key);
    Item* found = index.Find(key, hash);
    auto it = reference.find(key);
    ASSERT_EQ(found, it == reference.end() ? nullptr : it->second.get()) << key;
    if (step < 150000 ? rng() % 3 != 0 : rng() % 4 == 0) {
      if (found == nullptr) {
        auto item = std::make_unique<Item>(Item{key});
        index.Insert(hash, item.get());
        reference.emplace(key, std::move(item));
      }
    } else if (found != nullptr) {
      index.Erase(found, hash);
      reference.erase(it);
    }
    ASSERT_EQ(index.size(), reference.size());
  }
  std::map<std::string, const Item*> expected;
  for (const auto& [key, item] : reference) expected.emplace(key, item.get());
  EXPECT_EQ(Contents(index), expected);
  // Deleting shrank the array: at most 4 slots per item left (or the minimum).
  EXPECT_LE(index.capacity(), std::max<size_t>(OpenIndex<Item>::kMinCapacity, 8 * index.size()));
}

TEST(OpenIndexTest, ItemsKeepTheirPositionsUntilARebuild) {
  OpenIndex<Item> index;
  std::vector<std::unique_ptr<Item>> items;
  for (int i = 0; i < 1000; ++i) {
    items.push_back(std::make_unique<Item>(Item{"key" + std::to_string(i)}));
    index.Insert(HashBytes(items.back()->name), items.back().get());
  }
  auto positions = [&] {
    std::map<const Item*, size_t> at;
    for (size_t i = 0; i < index.capacity(); ++i) {
      if (const Item* item = index.At(i)) at.emplace(item, i);
    }
    return at;
  };
  const auto before = positions();
  const uint64_t generation = index.generation();
  // Deleting a few (no shrink at this fill) moves nothing.
  for (int i = 0; i < 100; ++i) index.Erase(items[i].get(), HashBytes(items[i]->name));
  EXPECT_EQ(index.generation(), generation);
  for (const auto& [item, at] : positions()) EXPECT_EQ(before.at(item), at);
  // Growing rebuilds: a new generation, and every item still found.
  for (int i = 1000; i < 3000; ++i) {
    items.push_back(std::make_unique<Item>(Item{"key" + std::to_string(i)}));
    index.Insert(HashBytes(items.back()->name), items.back().get());
  }
  EXPECT_NE(index.generation(), generation);
  for (int i = 100; i < 3000; ++i) {
    EXPECT_EQ(index.Find(items[i]->name, HashBytes(items[i]->name)), items[i].get());
  }
  EXPECT_EQ(index.size(), 2900u);
}

TEST(OpenIndexTest, EmptyIndexAndNextFrom) {
  OpenIndex<Item> index;
  EXPECT_EQ(index.Find("a", HashBytes("a")), nullptr);
  EXPECT_EQ(index.NextFrom(12345), nullptr);
  EXPECT_EQ(index.SlotBytes(), 0u);
  Item a{"a"};
  index.Insert(HashBytes("a"), &a);
  // From any position, the walk wraps around to the one item.
  for (size_t at = 0; at < 40; ++at) EXPECT_EQ(index.NextFrom(at), &a);
  index.PrefetchSlot(HashBytes("a"));
  index.PrefetchItem(HashBytes("a"));
  index.Erase(&a, HashBytes("a"));
  EXPECT_TRUE(index.empty());
  EXPECT_EQ(index.NextFrom(3), nullptr);
  OpenIndex<Item> moved(std::move(index));
  EXPECT_TRUE(moved.empty());
}

}  // namespace
}  // namespace quiver::kv
