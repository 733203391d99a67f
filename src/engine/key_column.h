// KeyColumn: the bytes of each key of a normalized key array (utf8, int64 as its 8 bytes, or a
// composite key's encoded bytes: binary; engine/keys.h), as
// the index hashes them and rows hold them; the engine's reads and writes and the shared-memory
// readers (src/shm/) take keys through it.
//
// Thread safety: a view over an immutable array.
#pragma once

#include <arrow/array.h>

#include <cstdint>
#include <string_view>

namespace quiver {

// The bytes of key i of a normalized key array, for hashing and comparing.
class KeyColumn {
 public:
  explicit KeyColumn(const arrow::Array& keys) {
    const arrow::ArrayData& data = *keys.data();
    if (keys.type_id() == arrow::Type::STRING || keys.type_id() == arrow::Type::BINARY) {
      offsets_ = data.GetValues<int32_t>(1);
      bytes_ = data.buffers[2] ? data.buffers[2]->data() : nullptr;
    } else {
      ints_ = data.GetValues<int64_t>(1);
    }
  }
  [[gnu::always_inline]] std::string_view Bytes(int64_t i) const {
    if (ints_ != nullptr) return {reinterpret_cast<const char*>(ints_ + i), sizeof(int64_t)};
    return {reinterpret_cast<const char*>(bytes_) + offsets_[i],
            static_cast<size_t>(offsets_[i + 1] - offsets_[i])};
  }

 private:
  const int32_t* offsets_ = nullptr;
  const uint8_t* bytes_ = nullptr;
  const int64_t* ints_ = nullptr;
};

}  // namespace quiver
