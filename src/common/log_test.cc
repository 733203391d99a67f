#include "common/log.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace quiver {
namespace {

TEST(LogRateLimiterTest, OneLineAnIntervalCountingTheRest) {
  LogRateLimiter limiter(/*interval_ms=*/50);
  uint64_t repeated = 99;
  ASSERT_TRUE(limiter.Allow(&repeated));
  EXPECT_EQ(repeated, 0u);
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.Allow(&repeated));
  // Waited for as a condition: the next line comes once the interval has passed.
  while (!limiter.Allow(&repeated)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_GE(repeated, 1000u);
}

}  // namespace
}  // namespace quiver
