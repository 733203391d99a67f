// The one hash function of Quiver: XXH3-64 (seedless). Used by the table index; stable across
// processes and versions of xxhash, so hashes may be persisted.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace quiver {

// Flattened so that XXH3's short-input path is inlined into hot loops.
[[gnu::flatten]] inline uint64_t HashBytes(const void* data, size_t size) {
  return XXH3_64bits(data, size);
}
inline uint64_t HashBytes(std::string_view bytes) { return HashBytes(bytes.data(), bytes.size()); }
inline uint64_t HashInt64(int64_t value) { return HashBytes(&value, sizeof(value)); }

}  // namespace quiver
