#include "engine/hash_index.h"

#include <gtest/gtest.h>

#include <set>

#include "common/hash.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

std::set<uint32_t> Candidates(const HashIndex& index, uint64_t hash) {
  std::set<uint32_t> rows;
  const HashIndex::Array& array = *index.current();
  size_t position = HashIndex::Home(array, hash);
  for (uint32_t row = HashIndex::NextCandidate(array, hash, &position); row != HashIndex::kNoRow;
       row = HashIndex::NextCandidate(array, hash, &position)) {
    rows.insert(row);
  }
  return rows;
}

TEST(HashIndexTest, InsertFindEraseAcrossGrowth) {
  auto index = testing::ValueOrFail(HashIndex::Create());
  const size_t initial_capacity = index->capacity();
  constexpr uint32_t kCount = 50000;
  for (uint32_t i = 0; i < kCount; ++i) {
    QUIVER_ASSERT_OK(index->Reserve(1));
    index->Insert(HashInt64(i), i);
  }
  index->FreeRetired();
  EXPECT_EQ(index->size(), kCount);
  EXPECT_GT(index->capacity(), initial_capacity);
  EXPECT_LE(index->size() * 4, index->capacity() * 3);  // load limit
  for (uint32_t i = 0; i < kCount; ++i) {
    ASSERT_TRUE(Candidates(*index, HashInt64(i)).count(i)) << i;
  }
  for (uint32_t i = 0; i < kCount; i += 2) ASSERT_TRUE(index->Erase(HashInt64(i), i));
  EXPECT_FALSE(index->Erase(HashInt64(0), 0));
  EXPECT_EQ(index->size(), kCount / 2);
  for (uint32_t i = 0; i < kCount; ++i) {
    EXPECT_EQ(Candidates(*index, HashInt64(i)).count(i), i % 2) << i;
  }
}

TEST(HashIndexTest, TombstonesDoNotGrowTheIndexForever) {
  auto index = testing::ValueOrFail(HashIndex::Create());
  // Insert and delete many distinct keys while at most 100 are live.
  for (uint32_t i = 0; i < 200000; ++i) {
    QUIVER_ASSERT_OK(index->Reserve(1));
    index->Insert(HashInt64(i), i % 1000);
    if (i >= 100) {
      ASSERT_TRUE(index->Erase(HashInt64(i - 100), (i - 100) % 1000));
    }
  }
  index->FreeRetired();
  EXPECT_EQ(index->size(), 100u);
  EXPECT_LE(index->capacity(), 1024u);
}

}  // namespace
}  // namespace quiver
