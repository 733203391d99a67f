#include "engine/heap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

namespace quiver {
namespace {

constexpr uint64_t kNever = UINT64_MAX;  // a threshold no garbage reaches

// Values of 1000 bytes, each filled with its number: 65 fill a 64 KiB chunk.
struct Value {
  HeapRef ref;
  size_t number;
};

std::string Bytes(size_t number) { return std::string(1000, static_cast<char>('a' + number % 26)); }

class HeapTest : public ::testing::Test {
 protected:
  // Appends values until `chunks` chunks are full (the last appended opens the next chunk).
  void FillChunks(size_t chunks) {
    while (true) {
      const std::string bytes = Bytes(values_.size());
      ASSERT_TRUE(heap_.Reserve(bytes.size(), bytes.size()).ok());
      const HeapRef ref = heap_.Append(bytes.data(), bytes.size());
      values_.push_back({ref, values_.size()});
      if (Heap::ChunkOf(ref) == chunks) return;
    }
  }
  std::vector<Value> In(size_t chunk) const {
    std::vector<Value> in;
    for (const Value& value : values_) {
      if (Heap::ChunkOf(value.ref) == chunk) in.push_back(value);
    }
    return in;
  }
  // Releases the first `fraction` of chunk `chunk`'s values.
  void ReleaseShare(size_t chunk, double fraction) {
    const std::vector<Value> in = In(chunk);
    for (size_t i = 0; i < static_cast<size_t>(fraction * in.size()); ++i) Drop(in[i]);
  }
  void Drop(const Value& value) {
    heap_.Release(value.ref, 1000);
    std::erase_if(values_, [&](const Value& v) { return v.ref == value.ref; });
  }
  // What a table does: re-appends every value in a victim elsewhere and releases the old copy.
  void MoveOut(const std::vector<bool>& victims) {
    for (Value& value : values_) {
      const size_t chunk = Heap::ChunkOf(value.ref);
      if (chunk >= victims.size() || !victims[chunk]) continue;
      ASSERT_TRUE(heap_.Reserve(1000, 1000).ok());
      const HeapRef moved = heap_.Append(heap_.View(value.ref, 1000), 1000);
      heap_.Release(value.ref, 1000);
      value.ref = moved;
    }
  }
  void ExpectValuesIntact() {
    for (const Value& value : values_) {
      const std::byte* bytes = heap_.View(value.ref, 1000);
      ASSERT_NE(bytes, nullptr);
      ASSERT_EQ(std::memcmp(bytes, Bytes(value.number).data(), 1000), 0) << value.number;
    }
  }
  static std::vector<size_t> Marked(const std::vector<bool>& victims) {
    std::vector<size_t> marked;
    for (size_t n = 0; n < victims.size(); ++n) {
      if (victims[n]) marked.push_back(n);
    }
    return marked;
  }

  Heap heap_;
  std::vector<Value> values_;
};

TEST_F(HeapTest, AChunkHoldingOnlyGarbageIsFreedWithoutMovingAnything) {
  FillChunks(3);
  const uint64_t bytes = heap_.bytes();
  const uint64_t live = heap_.live_bytes();
  EXPECT_FALSE(heap_.CompactionDue(kNever));
  const HeapRef gone = In(1).front().ref;
  for (const Value& value : In(1)) Drop(value);
  ReleaseShare(0, 0.3);  // some garbage elsewhere stays: not worth a move
  ASSERT_TRUE(heap_.CompactionDue(kNever));
  const std::vector<bool> victims = heap_.ChooseVictims(kNever);
  EXPECT_EQ(Marked(victims), std::vector<size_t>{1});
  EXPECT_EQ(heap_.LiveBytesIn(victims), 0u);
  heap_.FreeChunks(victims);
  EXPECT_EQ(heap_.bytes(), bytes - (64 << 10));
  EXPECT_EQ(heap_.live_bytes(), live - 65 * 1000 - 19 * 1000);
  EXPECT_EQ(heap_.View(gone, 1000), nullptr);
  EXPECT_FALSE(heap_.CompactionDue(kNever));
  ExpectValuesIntact();
}

TEST_F(HeapTest, GarbageAtTheThresholdEmptiesTheChunksWithTheMostForTheirSizeFirst) {
  FillChunks(2);
  for (int i = 0; i < 40; ++i) {  // chunk 2, taking appends, holds 41 values
    ASSERT_TRUE(heap_.Reserve(1000, 1000).ok());
    values_.push_back({heap_.Append(Bytes(values_.size()).data(), 1000), values_.size()});
  }
  ReleaseShare(0, 0.1);   //  6 values and its tail: 10% garbage
  ReleaseShare(1, 0.4);   // 26 values and its tail: 40%
  ReleaseShare(2, 0.45);  // 18 values: 44%
  // Taking chunk 2 (closed, so its tail joins its garbage), then chunk 1, leaves chunk 0's
  // garbage: at most half of a threshold of twice that.
  const uint64_t threshold = 2 * (6 * 1000 + 528);
  EXPECT_FALSE(heap_.CompactionDue(heap_.garbage_bytes() + 1));
  ASSERT_TRUE(heap_.CompactionDue(threshold));
  const std::vector<bool> victims = heap_.ChooseVictims(threshold);
  EXPECT_EQ(Marked(victims), (std::vector<size_t>{1, 2}));
  MoveOut(victims);  // chunk 2 was closed: the moved values go to a fresh chunk
  for (const Value& value : values_) EXPECT_NE(Heap::ChunkOf(value.ref), 2u);
  heap_.FreeChunks(victims);
  EXPECT_EQ(heap_.garbage_bytes(), 6 * 1000 + 528);
  EXPECT_FALSE(heap_.CompactionDue(threshold));
  ExpectValuesIntact();
}

TEST_F(HeapTest, ChunksAreASixteenthOfTheLiveBytesFrom64KiBTo4MiB) {
  FillChunks(100);  // about 55 MB
  std::vector<size_t> first_value(101, SIZE_MAX), values_in(101, 0);
  for (const Value& value : values_) {
    const size_t chunk = Heap::ChunkOf(value.ref);
    first_value[chunk] = std::min(first_value[chunk], value.number);
    ++values_in[chunk];
  }
  const auto size_for = [](uint64_t live) {
    return std::clamp<size_t>(std::bit_ceil(std::max<uint64_t>(live / 16, 1)), 64 << 10, 4 << 20);
  };
  for (size_t chunk = 1; chunk < 100; ++chunk) {
    // Reserved when the chunk before had less than two values' room left: the live bytes
    // then (nothing was released), and the value asked for.
    const uint64_t live = (first_value[chunk] - 1) * 1000;
    const size_t size = values_in[chunk] * 1000 + 8;
    EXPECT_GE(size, size_for(live - 1000) - 999) << "chunk " << chunk;
    EXPECT_LE(size, size_for(live + 1000)) << "chunk " << chunk;
  }
  EXPECT_EQ(values_in[99], ((4u << 20) - 8) / 1000);
}

}  // namespace
}  // namespace quiver
