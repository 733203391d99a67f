#include "engine/region.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstring>

#include "engine/region_list.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

TEST(RegionTest, AnonymousIsZeroedAndAccounted) {
  const uint64_t before = TotalRegionBytes();
  {
    auto region = testing::ValueOrFail(Region::Create(10000));
    EXPECT_EQ(region->size(), 12288u);  // whole pages
    EXPECT_EQ(region->fd(), -1);
    for (size_t i = 0; i < region->size(); ++i) ASSERT_EQ(region->data()[i], std::byte{0});
    std::memset(region->data(), 0xAB, region->size());
    EXPECT_EQ(TotalRegionBytes(), before + 12288);
  }
  EXPECT_EQ(TotalRegionBytes(), before);
}

TEST(RegionTest, SharedMemoryCanBeMappedAgainThroughItsFd) {
  auto region = testing::ValueOrFail(Region::Create(4096, RegionBacking::kSharedMemory));
  ASSERT_GE(region->fd(), 0);
  std::memcpy(region->data(), "quiver", 6);
  void* view = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, region->fd(), 0);
  ASSERT_NE(view, MAP_FAILED);
  EXPECT_EQ(std::memcmp(view, "quiver", 6), 0);
  munmap(view, 4096);
}

TEST(RegionTest, FileMappingKeepsItsBytes) {
  const std::string path = ::testing::TempDir() + "/quiver_region_test.bin";
  std::remove(path.c_str());
  {
    auto region = testing::ValueOrFail(Region::MapFile(path, 5000));
    EXPECT_EQ(region->size(), 8192u);
    EXPECT_EQ(region->backing(), RegionBacking::kFile);
    std::memcpy(region->data() + 4096, "on disk", 7);
  }
  {
    // Mapped again, smaller request: the file keeps its size and contents.
    auto region = testing::ValueOrFail(Region::MapFile(path, 10));
    EXPECT_EQ(region->size(), 8192u);
    EXPECT_EQ(std::memcmp(region->data() + 4096, "on disk", 7), 0);
  }
  QUIVER_EXPECT_ERROR(Region::MapFile("/nonexistent-dir/x.bin", 10), StatusCode::kIOError,
                      "open /nonexistent-dir/x.bin");
  QUIVER_EXPECT_ERROR(Region::Create(10, RegionBacking::kFile), StatusCode::kInvalidArgument,
                      "MapFile");
  std::remove(path.c_str());
}

TEST(RegionTest, ImpossibleSizeFailsCleanly) {
  auto region = Region::Create(size_t{1} << 62);
  EXPECT_EQ(region.status().code(), StatusCode::kOutOfMemory);
}

TEST(RegionListTest, GrowsItsDirectoryAndKeepsBases) {
  RegionList list;
  std::vector<std::byte*> bases;
  for (int i = 0; i < 40; ++i) {
    std::byte* base = testing::ValueOrFail(list.Append(4096));
    *base = std::byte(i);
    bases.push_back(base);
  }
  EXPECT_TRUE(list.has_retired());  // the 8-entry directory was replaced
  list.FreeRetired();
  ASSERT_EQ(list.published_count(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(list.Base(i), bases[i]);
    EXPECT_EQ(*list.Base(i), std::byte(i));
  }
  EXPECT_EQ(list.Base(40), nullptr);
  EXPECT_GE(list.bytes(), 40u * 4096);
}

}  // namespace
}  // namespace quiver
