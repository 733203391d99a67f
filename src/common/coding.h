// The byte coding of Quiver's binary files (the write-ahead log, its records, keyspace dumps):
// fixed-width integers, always little-endian whatever the host, and byte strings prefixed with
// their length (u32). ByteReader reads them back with every read bounds-checked: a short or
// damaged input makes a read return false, never read past the end.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace quiver {

namespace coding_internal {
template <typename T>
T ToLittleEndian(T value) {
  static_assert(std::is_unsigned_v<T>);
  if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
    if constexpr (sizeof(T) == 2) return static_cast<T>(__builtin_bswap16(value));
    if constexpr (sizeof(T) == 4) return static_cast<T>(__builtin_bswap32(value));
    if constexpr (sizeof(T) == 8) return static_cast<T>(__builtin_bswap64(value));
  }
  return value;
}
}  // namespace coding_internal

// Writes `value` (an unsigned integer) little-endian at `out`.
template <typename T>
void EncodeFixed(char* out, T value) {
  value = coding_internal::ToLittleEndian(value);
  std::memcpy(out, &value, sizeof(value));
}

// Reads a little-endian unsigned integer at `in`.
template <typename T>
T DecodeFixed(const char* in) {
  T value;
  std::memcpy(&value, in, sizeof(value));
  return coding_internal::ToLittleEndian(value);
}

template <typename T>
void PutFixed(std::string* out, T value) {
  char bytes[sizeof(T)];
  EncodeFixed(bytes, value);
  out->append(bytes, sizeof(T));
}
inline void PutFixed8(std::string* out, uint8_t value) { out->push_back(static_cast<char>(value)); }
inline void PutFixed32(std::string* out, uint32_t value) { PutFixed(out, value); }
inline void PutFixed64(std::string* out, uint64_t value) { PutFixed(out, value); }
// A signed 64-bit integer, as its two's complement.
inline void PutInt64(std::string* out, int64_t value) {
  PutFixed(out, static_cast<uint64_t>(value));
}
// A u32 length and the bytes (at most 4 GiB - 1: callers bound their sizes well below).
void PutLengthPrefixed(std::string* out, std::string_view bytes);

class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : rest_(bytes) {}

  bool ReadFixed8(uint8_t* value) { return ReadFixed(value); }
  bool ReadFixed32(uint32_t* value) { return ReadFixed(value); }
  bool ReadFixed64(uint64_t* value) { return ReadFixed(value); }
  bool ReadInt64(int64_t* value) {
    uint64_t bits;
    if (!ReadFixed(&bits)) return false;
    *value = static_cast<int64_t>(bits);
    return true;
  }
  // The next `size` bytes (a view into the input).
  bool ReadBytes(size_t size, std::string_view* bytes) {
    if (rest_.size() < size) return false;
    *bytes = rest_.substr(0, size);
    rest_.remove_prefix(size);
    return true;
  }
  bool ReadLengthPrefixed(std::string_view* bytes) {
    uint32_t size;
    return ReadFixed(&size) && ReadBytes(size, bytes);
  }

  bool empty() const { return rest_.empty(); }
  size_t remaining() const { return rest_.size(); }
  std::string_view rest() const { return rest_; }

 private:
  template <typename T>
  bool ReadFixed(T* value) {
    if (rest_.size() < sizeof(T)) return false;
    *value = DecodeFixed<T>(rest_.data());
    rest_.remove_prefix(sizeof(T));
    return true;
  }

  std::string_view rest_;
};

}  // namespace quiver
