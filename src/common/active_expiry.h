// Redis's active expiry cycle, shared by the feature tables and the keyspace: sample 20 keys
// among those carrying a TTL, reclaim the expired ones, and go on while more than 25% of a
// sample had expired and the time budget lasts. Only keys with a TTL are sampled, so the cost
// follows their number, not the data's size.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/periodic.h"

namespace quiver {

class ActiveExpiry {
 public:
  static constexpr int kSample = 20;             // keys per round
  static constexpr int kAcceptablePercent = 25;  // a round finding more expired goes on

  // What one round did: keys looked at (at most kSample; fewer when no more carry a TTL) and
  // keys reclaimed among them.
  struct Round {
    int sampled = 0;
    int expired = 0;
  };

  explicit ActiveExpiry(int64_t budget_us)
      : deadline_(std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us)) {}

  // Runs `round()` (one sample, returning a Round) until a round finds at most the acceptable
  // share expired, samples nothing, or the budget is spent. Returns the keys reclaimed. One
  // cycle may Run over several key sets (the keyspace's shards), sharing its budget.
  template <typename Sample>
  int64_t Run(Sample round) {
    int64_t reclaimed = 0;
    for (;;) {
      const Round done = round();
      reclaimed += done.expired;
      if (done.sampled == 0 || done.expired * 100 <= done.sampled * kAcceptablePercent ||
          OutOfTime()) {
        return reclaimed;
      }
    }
  }

  bool OutOfTime() const { return std::chrono::steady_clock::now() >= deadline_; }

  // Runs `cycle(budget_us)` on `task`'s thread `hz` times a second, each within a quarter of
  // its period (Redis's slow cycle).
  template <typename Cycle>
  static void Start(PeriodicTask& task, int hz, Cycle cycle) {
    const auto period = std::chrono::microseconds(1'000'000 / (hz < 1 ? 1 : hz));
    task.Start(period, [cycle, period] { cycle(period.count() / 4); });
  }

 private:
  const std::chrono::steady_clock::time_point deadline_;
};

}  // namespace quiver
