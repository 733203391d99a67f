// RowLayout: where each column of a table lives inside a row (the row format itself, with its
// header, references and seqlock protocol, is engine/row_format.h). The key goes first, right after
// the header and the validity bitmap, so it shares the first cache line with them; value columns
// follow in schema order. So 10 float32 columns with an 8-byte utf8 key make a 64-byte row: one
// cache line per lookup. A composite key's columns (engine/keys.h) are laid out as value columns,
// in schema order: together they are the key (a lookup compares each with its part of the encoded
// key), and there is no key slot. Sparse columns take no room of their own: the row's last slot, a
// VarRef, holds the values of those that are set (engine/sparse_row.h).
//
// Thread safety: RowLayout is immutable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "engine/dtype.h"
#include "engine/row_format.h"
#include "engine/schema.h"

namespace quiver {

struct ColumnLayout {
  Physical physical = Physical::kFixed;
  uint32_t offset = 0;         // byte offset in the row (kSparse: the sparse slot's)
  uint32_t width = 0;          // bytes in the row
  int32_t valid_bit = -1;      // bit in the validity bitmap; -1: not nullable (always valid)
  uint32_t element_width = 0;  // kList / fixed_size_list: bytes of one element
  // kSparse: the column's number among the sparse columns, and how its value is held in the
  // sparse blob: kFixed (element_width bytes), kBool (1 byte) or kBytes (length-prefixed).
  uint16_t sparse_id = 0;
  Physical sparse_physical = Physical::kFixed;
};

class RowLayout {
 public:
  explicit RowLayout(const TableSchema& schema);

  const ColumnLayout& column(int schema_index) const { return columns_[schema_index]; }
  bool composite_key() const { return key_parts_.size() > 1; }
  // Where a single key lives (the key column's layout).
  const ColumnLayout& key() const { return key_parts_[0]; }
  // The key's columns in key order (one unless the key is composite).
  const std::vector<ColumnLayout>& key_parts() const { return key_parts_; }
  // Every slot whose value may live in the heap (kBytes, kList), the key's included, and the
  // sparse slot.
  const std::vector<ColumnLayout>& var_slots() const { return var_slots_; }
  // The sparse columns' shared slot (a VarRef; physical kBytes); valid when has_sparse().
  bool has_sparse() const { return !sparse_widths_.empty(); }
  const ColumnLayout& sparse_slot() const { return sparse_slot_; }
  // By sparse_id: the bytes of each sparse column's value in the blob (0: length-prefixed).
  const std::vector<uint32_t>& sparse_widths() const { return sparse_widths_; }
  uint32_t row_width() const { return row_width_; }
  uint32_t bitmap_offset() const { return kRowHeaderBytes; }
  uint32_t bitmap_bytes() const { return bitmap_bytes_; }

 private:
  std::vector<ColumnLayout> columns_;
  std::vector<ColumnLayout> key_parts_;
  std::vector<ColumnLayout> var_slots_;
  ColumnLayout sparse_slot_;
  std::vector<uint32_t> sparse_widths_;
  uint32_t row_width_ = 0;
  uint32_t bitmap_bytes_ = 0;
};

// A composite key's parts, in key order, as spans of its encoded bytes (engine/keys.h), `parts`
// being RowLayout::key_parts: calls `part(i, bytes)` for each until it returns false; false when
// `key` ends early or runs over. The engine's lookups and the shared-memory readers' use it.
template <typename Part>
[[gnu::always_inline]] inline bool ForEachKeyPart(const std::vector<ColumnLayout>& parts,
                                                  std::string_view key, Part part) {
  size_t at = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    size_t size;
    if (parts[i].physical == Physical::kFixed) {
      size = sizeof(int64_t);
    } else if (i + 1 == parts.size()) {
      size = key.size() - at;
    } else {
      uint16_t length;
      if (key.size() - at < sizeof(length)) return false;
      std::memcpy(&length, key.data() + at, sizeof(length));
      at += sizeof(length);
      size = length;
    }
    if (key.size() - at < size || !part(i, key.substr(at, size))) return false;
    at += size;
  }
  return at == key.size();
}

}  // namespace quiver
