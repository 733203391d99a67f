#include "common/eviction.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <utility>

namespace quiver {
namespace {

constexpr std::pair<EvictionPolicy, std::string_view> kPolicies[] = {
    {EvictionPolicy::kNoEviction, "noeviction"},
    {EvictionPolicy::kAllKeysLru, "allkeys-lru"},
    {EvictionPolicy::kAllKeysLfu, "allkeys-lfu"},
    {EvictionPolicy::kAllKeysRandom, "allkeys-random"},
    {EvictionPolicy::kVolatileLru, "volatile-lru"},
    {EvictionPolicy::kVolatileLfu, "volatile-lfu"},
    {EvictionPolicy::kVolatileRandom, "volatile-random"},
    {EvictionPolicy::kVolatileTtl, "volatile-ttl"},
};

constexpr double kLfuLogFactor = 10;
constexpr size_t kMaxVictimsPerRound = 64;
constexpr int kMaxFruitlessRounds = 64;

uint32_t Minutes(int64_t now_ms, int minute_bits) {
  return static_cast<uint32_t>(now_ms / 60'000) & ((uint32_t{1} << minute_bits) - 1);
}

}  // namespace

std::string_view PolicyName(EvictionPolicy policy) {
  for (const auto& [value, name] : kPolicies) {
    if (value == policy) return name;
  }
  return "noeviction";
}

std::optional<EvictionPolicy> ParsePolicy(std::string_view name) {
  for (const auto& [value, known] : kPolicies) {
    if (known.size() == name.size() &&
        std::equal(known.begin(), known.end(), name.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      return value;
    }
  }
  return std::nullopt;
}

uint32_t LfuNew(int64_t now_ms, int minute_bits) {
  return Minutes(now_ms, minute_bits) << 8 | kLfuInitial;
}

uint32_t LfuCounter(uint32_t word, int64_t now_ms, int minute_bits) {
  const uint32_t modulus = uint32_t{1} << minute_bits;
  const uint32_t last = (word >> 8) & (modulus - 1), counter = word & 0xff;
  const uint32_t elapsed = (Minutes(now_ms, minute_bits) + modulus - last) & (modulus - 1);
  return elapsed > counter ? 0 : counter - elapsed;
}

uint32_t LfuTouched(uint32_t word, int64_t now_ms, int minute_bits) {
  uint32_t counter = LfuCounter(word, now_ms, minute_bits);
  if (counter < 255) {
    const double base = counter > kLfuInitial ? counter - kLfuInitial : 0;
    const double r = static_cast<double>(FastRandom() >> 11) * 0x1.0p-53;
    if (r < 1.0 / (base * kLfuLogFactor + 1)) ++counter;
  }
  return Minutes(now_ms, minute_bits) << 8 | counter;
}

uint64_t FastRandom() {
  thread_local uint64_t state = 0x9e3779b97f4a7c15ULL ^ reinterpret_cast<uintptr_t>(&state);
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return state;
}

void MemoryLimit::SetMaxMemory(uint64_t bytes) {
  std::lock_guard lock(hook_mutex_);
  max_memory_.store(bytes);
  if (on_set_max_memory_) on_set_max_memory_(bytes);
}

void MemoryLimit::OnSetMaxMemory(std::function<void(uint64_t bytes)> hook) {
  std::lock_guard lock(hook_mutex_);
  on_set_max_memory_ = std::move(hook);
}

void MemoryLimit::SetSamples(int samples) { samples_.store(std::clamp(samples, 1, 64)); }

void MemoryLimit::AddSource(EvictionSource* source) {
  std::lock_guard evict(evict_mutex_);
  std::unique_lock lock(sources_mutex_);
  sources_.push_back(source);
}

void MemoryLimit::RemoveSource(EvictionSource* source) {
  std::lock_guard evict(evict_mutex_);
  std::unique_lock lock(sources_mutex_);
  sources_.erase(std::remove(sources_.begin(), sources_.end(), source), sources_.end());
  pool_.clear();  // its entries name sources by position
}

uint64_t MemoryLimit::UsedMemory() const {
  std::shared_lock lock(sources_mutex_);
  return UsedLocked();
}

uint64_t MemoryLimit::UsedLocked() const {
  uint64_t used = 0;
  for (const EvictionSource* source : sources_) used += source->UsedMemory();
  return used;
}

bool MemoryLimit::MakeRoom(uint64_t need, bool demote_only) {
  const uint64_t limit = MaxMemory();
  if (limit == 0) return true;
  if (need > limit) return false;
  if (UsedMemory() + need <= limit) return true;
  const EvictionPolicy policy = Policy();
  std::lock_guard evict(evict_mutex_);
  std::shared_lock lock(sources_mutex_);
  // Each source's weight in sampling, taken once per call (counts change slowly meanwhile); a
  // lone source needs none. Under noeviction only sources that demote (to a disk tier) take part.
  demote_only = demote_only || policy == EvictionPolicy::kNoEviction;
  std::vector<int64_t> weights;
  weights.reserve(sources_.size());
  bool any = false;
  for (EvictionSource* source : sources_) {
    int64_t weight = 0;
    if (!demote_only || source->Demotes()) {
      weight = sources_.size() == 1 ? 1 : std::max<int64_t>(0, source->EvictableKeys(policy));
      any = true;
    }
    weights.push_back(weight);
  }
  if (!any) return false;
  int fruitless = 0;
  for (;;) {
    const uint64_t used = UsedLocked();
    if (used + need <= limit) return true;
    const int64_t before = evicted_.load(std::memory_order_relaxed) + Demoted();
    if (!EvictRound(policy, used + need - limit, weights)) return false;
    // Every candidate may have gone since it was sampled (a racing delete): sample again, a
    // bounded number of times.
    if (evicted_.load(std::memory_order_relaxed) + Demoted() == before &&
        ++fruitless > kMaxFruitlessRounds) {
      return false;
    }
  }
}

size_t MemoryLimit::PickSource(const std::vector<int64_t>& weights) {
  int64_t total = 0;
  for (int64_t weight : weights) total += weight;
  if (total == 0) return SIZE_MAX;
  auto pick = static_cast<int64_t>(rng_() % static_cast<uint64_t>(total));
  for (size_t i = 0; i < weights.size(); ++i) {
    if (pick < weights[i]) return i;
    pick -= weights[i];
  }
  return SIZE_MAX;
}

bool MemoryLimit::EvictRound(EvictionPolicy policy, uint64_t excess,
                             const std::vector<int64_t>& initial_weights) {
  std::vector<int64_t> weights = initial_weights;
  const int64_t now = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }();
  // Draws one candidate from a weighted source; false when no source has one.
  auto sample = [&](EvictionCandidate* out) {
    for (;;) {
      const size_t source = PickSource(weights);
      if (source == SIZE_MAX) return false;
      if (sources_[source]->Sample(policy, rng_(), now, out)) {
        out->source = source;
        return true;
      }
      weights[source] = 0;  // nothing to evict there any more
    }
  };

  std::vector<EvictionCandidate> drawn;
  EvictionCandidate first;
  if (!sample(&first)) {
    if (pool_.empty()) return false;
  } else {
    drawn.push_back(std::move(first));
  }
  // As many victims as the excess is candidates' worth (judged by the first), within bounds.
  const uint64_t per_key = drawn.empty() ? 1 : std::max<uint64_t>(1, drawn.front().bytes);
  const size_t wanted =
      std::clamp<uint64_t>((excess + per_key - 1) / per_key, 1, kMaxVictimsPerRound);
  const size_t draws = IsRandom(policy) ? wanted : wanted * static_cast<size_t>(Samples());
  while (drawn.size() < draws) {
    EvictionCandidate candidate;
    if (!sample(&candidate)) break;
    drawn.push_back(std::move(candidate));
  }

  std::vector<EvictionCandidate> victims;
  if (IsRandom(policy)) {
    victims = std::move(drawn);
  } else {
    const size_t capacity = std::max(kPoolSize, 2 * wanted);
    for (EvictionCandidate& candidate : drawn) {
      const bool known = std::any_of(pool_.begin(), pool_.end(), [&](const EvictionCandidate& c) {
        return c.source == candidate.source && c.id == candidate.id && c.key == candidate.key;
      });
      if (known) continue;
      if (pool_.size() >= capacity) {
        if (candidate.score <= pool_.front().score) continue;
        pool_.erase(pool_.begin());
      }
      auto at = std::upper_bound(
          pool_.begin(), pool_.end(), candidate.score,
          [](uint64_t score, const EvictionCandidate& c) { return score < c.score; });
      pool_.insert(at, std::move(candidate));
    }
    uint64_t freed = 0;
    while (!pool_.empty() && victims.size() < wanted && freed < excess) {
      freed += pool_.back().bytes;
      victims.push_back(std::move(pool_.back()));
      pool_.pop_back();
    }
  }
  if (victims.empty()) return false;
  // One Evict call per source, so that a table evicts its rows as one change.
  std::map<size_t, std::vector<EvictionCandidate>> by_source;
  for (EvictionCandidate& victim : victims) by_source[victim.source].push_back(std::move(victim));
  for (auto& [source, group] : by_source) {
    EvictionSource& from = *sources_[source];
    (from.Demotes() ? demoted_ : evicted_)
        .fetch_add(from.Evict(policy, group), std::memory_order_relaxed);
  }
  return true;
}

}  // namespace quiver
