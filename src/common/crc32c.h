// CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected), as used by iSCSI, ext4 and leveldb.
// Uses the SSE 4.2 crc32 instruction when the CPU has it, a table otherwise; both give the same
// values. Crc32c("123456789") == 0xE3069283.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace quiver {

// The CRC of `size` bytes at `data`, continuing from `crc` (the CRC of the bytes before; 0 to
// start), so Crc32c(a + b) == Crc32c(b, Crc32c(a)).
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t Crc32c(std::string_view bytes, uint32_t crc = 0) {
  return Crc32c(bytes.data(), bytes.size(), crc);
}

}  // namespace quiver
