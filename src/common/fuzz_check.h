// The assertion of fuzz targets: a property that must hold for every input. On failure it names
// the target and the property and aborts, which libFuzzer and the fuzz driver report as a crash.
// Thread safety: a pure function.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace quiver {

inline void FuzzCheck(bool condition, const char* target, const char* property) {
  if (!condition) {
    std::fprintf(stderr, "%s: %s\n", target, property);
    std::abort();
  }
}

}  // namespace quiver
