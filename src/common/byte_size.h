// Sizes in bytes as people write them, read one way everywhere (flags, the YAML file, QUIVER_*
// variables, CONFIG SET), Redis's way: a plain number is bytes; k, m, g multiply by 10^3, 10^6,
// 10^9 and kb, mb, gb by 2^10, 2^20, 2^30, in any case ("20m" is 20,000,000, "20mb" 20 MiB).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace quiver {

// False for anything else (a sign, a fraction, an unknown unit, an overflow).
bool ParseByteSize(std::string_view text, uint64_t* bytes);

// "64 MiB", "1.5 GiB", "512 bytes": for messages.
std::string FormatBytes(uint64_t bytes);

}  // namespace quiver
