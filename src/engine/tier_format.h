// The format of a table's disk tier (engine/tier.h): where a cold row's index slot points and how
// its record is laid out in the tier file. docs/tiering.md specifies it; std-only, like the other
// format headers, so that a reader of another process could decode it.
//
//   index slot of a cold row   tag << 32 | kTierColdBit | location    (index_format.h's row field)
//   location                   the record's offset in the file / kTierUnitBytes (31 bits)
//   segment                    location >> kTierSegmentShift: the file is cut into segments of
//                              kTierSegmentBytes, filled one at a time and freed whole
//
// Record (starts on a kTierUnitBytes boundary, padded to the next one):
//
//   offset 0   uint32 crc        CRC32C of bytes [4, length)
//   offset 4   uint32 length     record bytes (header included, padding not)
//   offset 8   uint64 hash       the key's XXH3-64 hash (its index tag is the upper half)
//   offset 16  uint32 row_bytes  the row image's size: the table's row width
//   offset 20  uint32 magic      kTierRecordMagic
//   offset 24  row image         the row as it was in memory (meta word: expiry and access clock),
//                                its VarRefs of over 8 bytes holding kTierRefBit | the offset of
//                                their bytes from the record's start instead of a heap reference
//   then       value bytes       the heap values of those VarRefs, back to back
//
// Thread safety: constants and pure functions.
#pragma once

#include <cstdint>

namespace quiver {

inline constexpr uint32_t kTierColdBit = 0x80000000;
// Locations stay below the row fields of the index's empty and tombstone slots.
inline constexpr uint32_t kTierMaxLocations = 0x7FFFFFF0;
inline constexpr uint32_t kTierUnitBytes = 64;
inline constexpr int kTierSegmentShift = 20;  // 2^20 units: 64 MiB segments
inline constexpr uint64_t kTierSegmentBytes = uint64_t{kTierUnitBytes} << kTierSegmentShift;
inline constexpr uint32_t kTierMaxSegments = kTierMaxLocations >> kTierSegmentShift;
inline constexpr uint32_t kTierRecordHeaderBytes = 24;
inline constexpr uint32_t kTierRecordMagic = 0x31525451;  // "QTR1"
// A heap reference in a record's row image (and in a read's buffer) with this bit refers to
// bytes of the record (of the buffer), not to the table's heap.
inline constexpr uint64_t kTierRefBit = uint64_t{1} << 63;

inline bool IsColdRow(uint32_t row) { return (row & kTierColdBit) != 0; }
inline uint32_t ColdLocation(uint32_t row) { return row & ~kTierColdBit; }
inline uint32_t ColdRow(uint32_t location) { return location | kTierColdBit; }
inline uint64_t TierOffset(uint32_t location) { return uint64_t{location} * kTierUnitBytes; }
inline uint32_t TierSegmentOf(uint32_t location) { return location >> kTierSegmentShift; }
inline uint32_t TierUnits(uint64_t bytes) {
  return static_cast<uint32_t>((bytes + kTierUnitBytes - 1) / kTierUnitBytes);
}

}  // namespace quiver
