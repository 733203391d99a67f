// The sparse blob: the values of a row's sparse columns that are set, as one byte string held by
// the row's sparse slot (a VarRef: inline up to 8 bytes, else in the table's heap). A sparse
// column that is null takes no room at all.
//
//   uint16 count
//   uint16 ids[count]      the columns' sparse ids (RowLayout: ColumnLayout::sparse_id), ascending
//   then, in id order, each value: a fixed-width value's bytes (its RowLayout::sparse_widths
//   entry; bool: one byte 0 or 1), or a uint32 length and that many bytes (utf8, binary)
//
// All little-endian and unaligned. An empty set is the empty string (a zero VarRef). The writer
// (table_write.cc) builds it; readers (row_gather.h) find one value in it. Readers may be given
// bytes that were never a blob (a reader in another process, a damaged heap): every access is
// bounds-checked and a malformed blob reads as all null.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quiver {

// Calls `entry(id, value)` for each value of `blob` in order while it returns true; false when
// the blob is malformed (the entries before the fault were given).
template <typename Entry>
[[gnu::always_inline]] inline bool ForEachSparseEntry(std::string_view blob,
                                                      const std::vector<uint32_t>& widths,
                                                      Entry entry) {
  if (blob.empty()) return true;
  if (blob.size() < 2) return false;
  uint16_t count;
  std::memcpy(&count, blob.data(), 2);
  size_t at = 2 + size_t{count} * 2;
  if (blob.size() < at) return false;
  for (uint16_t j = 0; j < count; ++j) {
    uint16_t id;
    std::memcpy(&id, blob.data() + 2 + size_t{j} * 2, 2);
    if (id >= widths.size()) return false;
    size_t size = widths[id];
    if (size == 0) {  // length-prefixed
      uint32_t length;
      if (blob.size() - at < 4) return false;
      std::memcpy(&length, blob.data() + at, 4);
      at += 4;
      size = length;
    }
    if (blob.size() - at < size) return false;
    if (!entry(id, blob.substr(at, size))) return true;
    at += size;
  }
  return true;
}

// The value of sparse column `id` in `blob`; false when it is not set (or the blob is malformed).
inline bool FindSparseValue(std::string_view blob, uint16_t id, const std::vector<uint32_t>& widths,
                            std::string_view* value) {
  bool found = false;
  ForEachSparseEntry(blob, widths, [&](uint16_t entry, std::string_view bytes) {
    if (entry == id) {
      *value = bytes;
      found = true;
    }
    return entry < id;  // ascending: past `id`, it is not there
  });
  return found;
}

// The (id, value) entries of `blob`, in id order, into `entries` (cleared first; left empty for
// an empty or malformed blob).
inline void SparseEntries(std::string_view blob, const std::vector<uint32_t>& widths,
                          std::vector<std::pair<uint16_t, std::string_view>>* entries) {
  entries->clear();
  const bool whole = ForEachSparseEntry(blob, widths, [&](uint16_t id, std::string_view value) {
    entries->emplace_back(id, value);
    return true;
  });
  if (!whole) entries->clear();
}

// Appends the blob of `entries` (ids ascending, unique) to `out`; nothing for no entries.
inline void AppendSparseBlob(const std::vector<std::pair<uint16_t, std::string_view>>& entries,
                             const std::vector<uint32_t>& widths, std::string* out) {
  if (entries.empty()) return;
  const auto count = static_cast<uint16_t>(entries.size());
  out->append(reinterpret_cast<const char*>(&count), 2);
  for (const auto& [id, value] : entries) out->append(reinterpret_cast<const char*>(&id), 2);
  for (const auto& [id, value] : entries) {
    if (widths[id] == 0) {
      const auto length = static_cast<uint32_t>(value.size());
      out->append(reinterpret_cast<const char*>(&length), 4);
    }
    out->append(value);
  }
}

// The bytes one value adds to a blob: its id, a length prefix for length-prefixed values, and the
// value itself.
inline size_t SparseEntryBytes(uint32_t width, size_t value_bytes) {
  return 2 + (width == 0 ? 4 : 0) + value_bytes;
}

}  // namespace quiver
