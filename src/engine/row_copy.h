// Byte copies into and out of row memory that readers access optimistically (seqlock).
//
// A seqlock reader may copy bytes while the writer changes them, then discards the copy when the
// sequence word moved. That is a data race in the C++ memory model, benign on every target we
// support; under ThreadSanitizer (QUIVER_TSAN) the copies become relaxed atomic byte accesses so
// that the race is formally defined and TSan checks everything else.
//
// Thread safety: the caller follows the seqlock protocol of row_layout.h.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace quiver {

inline void CopyFromRow(void* dst, const std::byte* src, size_t size) {
#if defined(QUIVER_TSAN)
  auto* out = static_cast<uint8_t*>(dst);
  for (size_t i = 0; i < size; ++i) {
    out[i] = std::atomic_ref<uint8_t>(*reinterpret_cast<uint8_t*>(const_cast<std::byte*>(src + i)))
                 .load(std::memory_order_relaxed);
  }
#else
  std::memcpy(dst, src, size);
#endif
}

inline void CopyToRow(std::byte* dst, const void* src, size_t size) {
#if defined(QUIVER_TSAN)
  auto* in = static_cast<const uint8_t*>(src);
  for (size_t i = 0; i < size; ++i) {
    std::atomic_ref<uint8_t>(*reinterpret_cast<uint8_t*>(dst + i))
        .store(in[i], std::memory_order_relaxed);
  }
#else
  std::memcpy(dst, src, size);
#endif
}

inline void ZeroRow(std::byte* dst, size_t size) {
#if defined(QUIVER_TSAN)
  for (size_t i = 0; i < size; ++i) {
    std::atomic_ref<uint8_t>(*reinterpret_cast<uint8_t*>(dst + i))
        .store(0, std::memory_order_relaxed);
  }
#else
  std::memset(dst, 0, size);
#endif
}

template <typename T>
T LoadFromRow(const std::byte* src) {
  T value;
  CopyFromRow(&value, src, sizeof(T));
  return value;
}

template <typename T>
void StoreToRow(std::byte* dst, T value) {
  CopyToRow(dst, &value, sizeof(T));
}

}  // namespace quiver
