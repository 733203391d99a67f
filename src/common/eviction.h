// Eviction: one memory limit over every place Quiver holds data (the key-value keyspace and the
// feature tables), with Redis's maxmemory policies.
//
// MemoryLimit holds the limit (maxmemory, bytes; 0: none), the policy and the sample size, and
// the sources that count towards it (EvictionSource: the keyspace, each table). MakeRoom(need),
// called before a write that may grow memory (and never while the caller holds a lock a source
// takes), evicts until the sources' used memory plus `need` is within the limit, or answers that
// it cannot (noeviction; a volatile-* policy with no key carrying a TTL; a write larger than the
// limit itself).
//
// Sampling, as Redis: LRU, LFU and TTL policies draw `samples` random keys per round, each from a
// source chosen in proportion to the keys it may evict, and keep the best 16 candidates seen in a
// pool (higher score: better to evict; scores of different sources compare: idle milliseconds,
// 255 minus the LFU counter, or how soon the key expires); the best ones still present are
// evicted. Random policies evict random keys. A round evicts several keys when the room needed is
// many keys' worth (a batch of table rows), so a source can evict them as one change. The cost of
// an eviction does not depend on the number of keys.
//
// Thread safety: every method may be called from any thread. Sources are called under the
// limit's eviction mutex, one call at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace quiver {

enum class EvictionPolicy : uint8_t {
  kNoEviction,
  kAllKeysLru,
  kAllKeysLfu,
  kAllKeysRandom,
  kVolatileLru,
  kVolatileLfu,
  kVolatileRandom,
  kVolatileTtl,
};
std::string_view PolicyName(EvictionPolicy policy);                // "allkeys-lru", ...
std::optional<EvictionPolicy> ParsePolicy(std::string_view name);  // case-insensitive
inline bool IsLfu(EvictionPolicy policy) {
  return policy == EvictionPolicy::kAllKeysLfu || policy == EvictionPolicy::kVolatileLfu;
}
inline bool IsLru(EvictionPolicy policy) {
  return policy == EvictionPolicy::kAllKeysLru || policy == EvictionPolicy::kVolatileLru;
}
inline bool IsVolatile(EvictionPolicy policy) { return policy >= EvictionPolicy::kVolatileLru; }
inline bool IsRandom(EvictionPolicy policy) {
  return policy == EvictionPolicy::kAllKeysRandom || policy == EvictionPolicy::kVolatileRandom;
}

// Redis's LFU word: (minutes << 8) | counter, the minutes of the last decay taken modulo
// 2^minute_bits. The counter is logarithmic: new keys start at kLfuInitial, it grows with
// probability 1/((c - 5) * 10 + 1) (lfu-log-factor 10) and loses one per idle minute
// (lfu-decay-time 1).
inline constexpr uint32_t kLfuInitial = 5;
uint32_t LfuNew(int64_t now_ms, int minute_bits);
// The counter after decaying to `now_ms`.
uint32_t LfuCounter(uint32_t word, int64_t now_ms, int minute_bits);
// The word after an access at `now_ms`: decayed, perhaps incremented, stamped.
uint32_t LfuTouched(uint32_t word, int64_t now_ms, int minute_bits);

// A fast thread-local random number (xorshift), for sampling decisions.
uint64_t FastRandom();

// A key a source proposes for eviction.
struct EvictionCandidate {
  uint64_t score = 0;  // higher: better to evict
  uint64_t bytes = 0;  // about what evicting it frees
  uint64_t id = 0;     // the source's own (a shard, a row)
  uint64_t version = 0;
  std::string key;
  size_t source = 0;  // set by MemoryLimit
};

class EvictionSource {
 public:
  virtual ~EvictionSource() = default;
  // Bytes this source holds towards the limit (cheap: read on every MakeRoom).
  virtual uint64_t UsedMemory() const = 0;
  // How many keys `policy` may evict here (all, or those with a TTL); about.
  virtual int64_t EvictableKeys(EvictionPolicy policy) = 0;
  // One random key `policy` may evict, scored (at `now_ms`); false when there is none.
  virtual bool Sample(EvictionPolicy policy, uint64_t random, int64_t now_ms,
                      EvictionCandidate* out) = 0;
  // Evicts those of `victims` (candidates this source gave) that are still present and still
  // qualify; returns how many it evicted.
  virtual int64_t Evict(EvictionPolicy policy, const std::vector<EvictionCandidate>& victims) = 0;
  // Whether Evict moves keys out of memory to somewhere they stay readable (a table with a disk
  // tier, engine/tier.h) rather than dropping them. Such a source is asked for room under every
  // policy, noeviction included, and what it moves counts as demoted, not evicted.
  virtual bool Demotes() const { return false; }
};

class MemoryLimit {
 public:
  MemoryLimit() = default;
  MemoryLimit(const MemoryLimit&) = delete;
  MemoryLimit& operator=(const MemoryLimit&) = delete;

  void SetMaxMemory(uint64_t bytes);
  // `hook` runs (on the setting thread) after every SetMaxMemory from now on, with the new limit:
  // for the process's own adjustments to a limit (quiverd's allocator settings).
  void OnSetMaxMemory(std::function<void(uint64_t bytes)> hook);
  uint64_t MaxMemory() const { return max_memory_.load(std::memory_order_relaxed); }
  void SetPolicy(EvictionPolicy policy) { policy_.store(policy); }
  EvictionPolicy Policy() const { return policy_.load(std::memory_order_relaxed); }
  void SetSamples(int samples);  // clamped to 1..64
  int Samples() const { return samples_.load(std::memory_order_relaxed); }

  // A source counts towards the limit from AddSource until RemoveSource (which waits for an
  // eviction in progress; call it before the source goes away).
  void AddSource(EvictionSource* source);
  void RemoveSource(EvictionSource* source);

  // Every source's UsedMemory(), summed.
  uint64_t UsedMemory() const;
  // Evicts until UsedMemory() + need <= MaxMemory() (always true without a limit). False when
  // that cannot be reached; then some keys may have been evicted already (Redis alike).
  // `demote_only`: only sources that demote take part, whatever the policy (recovery: nothing
  // replayed may be dropped).
  bool MakeRoom(uint64_t need = 0, bool demote_only = false);
  // Keys evicted by this limit so far.
  int64_t Evicted() const { return evicted_.load(std::memory_order_relaxed); }
  // Keys moved to a disk tier by this limit so far (EvictionSource::Demotes).
  int64_t Demoted() const { return demoted_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kPoolSize = 16;
  // Under evict_mutex_ and a shared lock of sources_mutex_.
  uint64_t UsedLocked() const;
  // One round: false when nothing could be evicted.
  bool EvictRound(EvictionPolicy policy, uint64_t excess, const std::vector<int64_t>& weights);
  // The source to sample, weighted by `weights`; SIZE_MAX when all are zero.
  size_t PickSource(const std::vector<int64_t>& weights);

  std::atomic<uint64_t> max_memory_{0};
  std::mutex hook_mutex_;
  std::function<void(uint64_t)> on_set_max_memory_;  // under hook_mutex_
  std::atomic<EvictionPolicy> policy_{EvictionPolicy::kNoEviction};
  std::atomic<int> samples_{5};
  std::atomic<int64_t> evicted_{0}, demoted_{0};

  mutable std::shared_mutex sources_mutex_;
  std::vector<EvictionSource*> sources_;  // under sources_mutex_

  std::mutex evict_mutex_;                      // one eviction at a time
  std::vector<EvictionCandidate> pool_;         // under evict_mutex_, ascending score
  std::mt19937_64 rng_{0x2545f4914f6cdd1dULL};  // under evict_mutex_
};

}  // namespace quiver
