// The format of a table's hash index array, which readers in other processes (src/shm/) probe in
// shared memory as the engine's HashIndex does in its own: depends on the standard library only.
//
//   slot (64 bits) = tag << 32 | row id        tag = upper 32 bits of the key's XXH3-64 hash
//   home slot      = top log2(capacity) bits of the tag; linear probing from there
//   empty = ~0, tombstone = ~0 - 1             (so row ids are < 0xFFFFFFFE)
//
// Capacity is a power of two from 512 to 2^32 slots; the load (entries + tombstones) stays at most
// 3/4, so a probe run always ends at an empty slot.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quiver {

inline constexpr uint64_t kIndexEmpty = ~uint64_t{0};
inline constexpr uint64_t kIndexTombstone = ~uint64_t{0} - 1;
inline constexpr uint32_t kIndexNoRow = 0xFFFFFFFF;

inline uint32_t IndexTag(uint64_t hash) { return static_cast<uint32_t>(hash >> 32); }
// `shift` = 32 - log2(capacity).
inline size_t IndexHome(uint64_t hash, int shift) {
  return shift >= 32 ? 0 : static_cast<size_t>(IndexTag(hash) >> shift);
}
inline uint64_t IndexSlotValue(uint64_t hash, uint32_t row) {
  return (hash & 0xFFFFFFFF00000000ULL) | row;
}

}  // namespace quiver
