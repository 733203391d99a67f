// The clock of expiry and of the eviction access stamps: Unix time in milliseconds. Tables and
// the keyspace take one as a function, so tests can advance time instead of sleeping.
#pragma once

#include <cstdint>
#include <functional>

namespace quiver {

using UnixClock = std::function<int64_t()>;

// The system clock, in Unix milliseconds.
int64_t UnixMillis();

}  // namespace quiver
