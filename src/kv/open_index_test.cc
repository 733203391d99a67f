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
    if (step % 1000 == 0) {  // a walk meets every item once, a rebuild under way or not
      std::map<std::string, const Item*> expected;
      for (const auto& [name, item] : reference) expected.emplace(name, item.get());
      ASSERT_EQ(Contents(index), expected) << step;
    }
  }
  std::map<std::string, const Item*> expected;
  for (const auto& [key, item] : reference) expected.emplace(key, item.get());
  EXPECT_EQ(Contents(index), expected);
  // Deleting shrank the array: at most 8 slots per item left (or the minimum).
  index.FinishRebuild();
  EXPECT_LE(index.positions(), std::max<size_t>(OpenIndex<Item>::kMinCapacity, 8 * index.size()));
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
    for (size_t i = 0; i < index.positions(); ++i) {
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

TEST(OpenIndexTest, ALargeArrayIsRebuiltAFewSlotsPerChange) {
  using Index = OpenIndex<Item>;
  Index index;
  std::vector<std::unique_ptr<Item>> items;
  auto add = [&] {
    items.push_back(std::make_unique<Item>(Item{"key" + std::to_string(items.size())}));
    index.Insert(HashBytes(items.back()->name), items.back().get());
  };
  while (!index.rebuilding()) add();
  // The new array was made; the old one (more than kIncrementalFrom slots) empties over the
  // following changes, kMigrateStep old slots each, and every item stays found meanwhile.
  const size_t old_slots = index.positions() / 3;  // the old array is half the new one
  ASSERT_GT(old_slots, Index::kIncrementalFrom);
  size_t changes = 0;
  Item* replaced = items[1].get();
  Item replacement{replaced->name};
  index.Replace(replaced, &replacement, HashBytes(replaced->name));
  while (index.rebuilding()) {
    if (changes % 2 == 0) {
      add();
    } else {  // erase one, still in the old array or moved
      const size_t victim = 2 + changes;
      index.Erase(items[victim].get(), HashBytes(items[victim]->name));
      items[victim]->name.clear();
    }
    ++changes;
    if (changes % 7 == 0) {
      size_t walked = 0;
      index.ForEach([&](const Item*) { ++walked; });
      ASSERT_EQ(walked, index.size()) << "a walk meets each item once";
    }
    for (size_t i = 0; i < items.size(); i += 97) {
      if (items[i]->name.empty()) continue;
      const Item* expected = i == 1 ? &replacement : items[i].get();
      ASSERT_EQ(index.Find(items[i]->name, HashBytes(items[i]->name)), expected) << i;
    }
  }
  EXPECT_LE(changes, old_slots / Index::kMigrateStep + 1);
  size_t found = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i]->name.empty()) continue;  // erased
    const Item* expected = i == 1 ? &replacement : items[i].get();
    EXPECT_EQ(index.Find(items[i]->name, HashBytes(items[i]->name)), expected);
    ++found;
  }
  EXPECT_EQ(found, index.size());
}

// Inserts items until the index starts an incremental rebuild (past kIncrementalFrom slots).
void InsertUntilRebuilding(OpenIndex<Item>& index, std::vector<std::unique_ptr<Item>>* items) {
  while (!index.rebuilding()) {
    items->push_back(std::make_unique<Item>(Item{"key" + std::to_string(items->size())}));
    index.Insert(HashBytes(items->back()->name), items->back().get());
  }
}

TEST(OpenIndexTest, FinishRebuildMovesTheRestAtOnce) {
  OpenIndex<Item> index;
  std::vector<std::unique_ptr<Item>> items;
  InsertUntilRebuilding(index, &items);
  const uint64_t bytes = index.SlotBytes();
  index.FinishRebuild();
  EXPECT_FALSE(index.rebuilding());
  EXPECT_LT(index.SlotBytes(), bytes) << "the old array is freed";
  EXPECT_EQ(index.SlotBytes(), ChunkBytes(index.positions() * 16));
  for (const auto& item : items)
    EXPECT_EQ(index.Find(item->name, HashBytes(item->name)), item.get());
}

TEST(OpenIndexTest, RebuildStepsEndARebuildWithoutChanges) {
  OpenIndex<Item> index;
  std::vector<std::unique_ptr<Item>> items;
  InsertUntilRebuilding(index, &items);
  const size_t old_capacity = index.positions() / 3;  // positions: the new array (2x), the old
  const size_t step = OpenIndex<Item>::kMigrateStep;
  size_t steps = 0;
  while (index.rebuilding()) {
    index.RebuildStep();
    ++steps;
    ASSERT_LE(steps, (old_capacity + step - 1) / step) << "a step moves 64 old slots";
  }
  EXPECT_EQ(index.size(), items.size());
  for (const auto& item : items) {
    EXPECT_EQ(index.Find(item->name, HashBytes(item->name)), item.get());
  }
  index.RebuildStep();  // none under way: nothing to do
  EXPECT_EQ(Contents(index).size(), items.size());
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
