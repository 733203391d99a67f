// The control block of a published table: one shared-memory region per table that tells a reader
// in another process how the table's memory is laid out and which regions hold it. The engine
// writes it (engine/publication.h); readers (src/shm/) map it read-only and must not trust it:
// every offset is checked against their mappings. docs/shm.md specifies it; little-endian, and
// this header depends on the standard library only.
//
//   offset 0     ControlHeader (128 bytes)
//   columns      ColumnRecord[columns_count], schema order (the key among them)
//   schema       the table's Arrow schema as an IPC schema message (field i = column i)
//   manifest     ManifestEntry[manifest_capacity], of which the first manifest_count are listed
//
// The header's generation is a seqlock over the manifest, the state and the count: odd while the
// writer changes them. Every change of the set of regions (a row or heap chunk added, a heap
// chunk freed, a new index array) and of the state bumps it, so a reader notices any of them with
// one load per call.
//
// Thread safety: the writer (one per table) changes it under its own lock; readers only load.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace quiver {

// The schema message's metadata key holding the table's TableSchema JSON (engine/schema.h).
inline constexpr const char* kTableSchemaMetadata = "quiver.table_schema";

inline constexpr uint64_t kControlMagic = 0x314D485356495551ULL;  // "QUIVSHM1"
inline constexpr uint32_t kControlVersion = 1;

enum class PublishedState : uint32_t {
  kLive = 1,
  kDropped = 2,  // the table was dropped (or dropped and created again: a new table)
  kClosed = 3,   // the server closed the table (it shut down)
};

enum class RegionKind : uint8_t { kRows = 1, kHeap = 2, kIndex = 3 };

// ControlHeader::key_column of a table whose key has several columns (engine/keys.h): the key
// columns (flagged kColumnIsKey) are laid out as value columns and together are the key.
inline constexpr uint16_t kCompositeKeyColumn = 0xFFFF;

struct ControlHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;                 // sizeof(ControlHeader)
  std::atomic<uint64_t> generation;      // 16: odd while the writer changes what follows it
  std::atomic<uint32_t> state;           // 24: PublishedState
  uint32_t row_width;                    // 28
  uint64_t table_id;                     // 32: the table's id in its catalog (never reused)
  uint64_t instance_id;                  // 40: random per server process: a restart changes it
  uint8_t first_shift;                   // 48: RowChunkGeometry
  uint8_t large_shift;                   // 49
  uint16_t key_column;                   // 50: schema index of the key column, or
                                         //     kCompositeKeyColumn
  uint32_t bitmap_bytes;                 // 52: the rows' validity bitmap
  uint32_t columns_offset;               // 56
  uint32_t columns_count;                // 60
  uint32_t schema_offset;                // 64
  uint32_t schema_bytes;                 // 68
  uint32_t manifest_offset;              // 72
  uint32_t manifest_capacity;            // 76
  std::atomic<uint32_t> manifest_count;  // 80
  uint32_t reserved0;                    // 84
  std::atomic<int64_t> heartbeat_ms;     // 88: the server's clock, stamped about every 100 ms
  uint8_t reserved[32];                  // 96..127
};
static_assert(sizeof(ControlHeader) == 128);
static_assert(offsetof(ControlHeader, generation) == 16 && offsetof(ControlHeader, state) == 24);
static_assert(offsetof(ControlHeader, manifest_count) == 80);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

inline constexpr uint8_t kColumnIsKey = 1;
inline constexpr uint8_t kColumnNullable = 2;

struct ColumnRecord {
  uint8_t physical;  // Physical (engine/row_format.h)
  uint8_t flags;     // kColumnIsKey | kColumnNullable
  uint16_t reserved;
  uint32_t offset;         // in the row
  uint32_t width;          // bytes in the row
  int32_t valid_bit;       // bit in the validity bitmap, -1: not nullable
  uint32_t element_width;  // list / fixed_size_list: bytes of one element
  uint32_t reserved2;
};
static_assert(sizeof(ColumnRecord) == 24);

struct ManifestEntry {
  uint8_t kind;  // RegionKind
  uint8_t reserved[3];
  uint32_t number;  // chunk number (rows, heap); 0 for the index
  uint64_t id;      // the region's id, unique within this table's publication
  uint64_t bytes;   // mapped size
  uint64_t param;   // the index: its capacity in slots
};
static_assert(sizeof(ManifestEntry) == 32);

}  // namespace quiver
