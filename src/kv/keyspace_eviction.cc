// Keyspace active expiry (common/active_expiry.h) and eviction: the keyspace as an
// EvictionSource of a MemoryLimit (common/eviction.h).
#include <algorithm>
#include <limits>
#include <mutex>

#include "common/active_expiry.h"
#include "kv/keyspace.h"

namespace quiver::kv {
// ---------------------------------------------------------------------------------------------
// Active expiry.

int64_t Keyspace::ActiveExpireCycle(int64_t budget_us) {
  ActiveExpiry cycle(budget_us);
  int64_t deleted = 0;
  for (Shard& shard : shards_) {
    deleted += cycle.Run([&] {
      ActiveExpiry::Round round;
      std::lock_guard lock(shard.mutex);
      const Millis now = clock_();
      for (; round.sampled < ActiveExpiry::kSample && !shard.volatile_keys.empty();
           ++round.sampled) {
        uint64_t pick;
        {
          std::lock_guard rng_lock(rng_mutex_);
          pick = rng_();
        }
        Entry* node = shard.volatile_keys[pick % shard.volatile_keys.size()];
        if (ExpireIfDue(shard, node, now)) ++round.expired;
      }
      return round;
    });
    if (cycle.OutOfTime()) break;
  }
  return deleted;
}

void Keyspace::StartActiveExpiry(int hz) {
  ActiveExpiry::Start(expiry_, hz, [this](int64_t budget_us) { ActiveExpireCycle(budget_us); });
}

// ---------------------------------------------------------------------------------------------
// Eviction.

void Keyspace::Touch(Entry& entry, Millis now) {
  entry.access_ =
      IsLfu(Policy()) ? LfuTouched(entry.access_, now, kLfuMinuteBits) : static_cast<uint32_t>(now);
}

uint64_t Keyspace::EvictionScore(const Entry& entry, EvictionPolicy policy, Millis now) const {
  switch (policy) {
    case EvictionPolicy::kAllKeysLfu:
    case EvictionPolicy::kVolatileLfu:
      return 255 - LfuCounter(entry.access_, now, kLfuMinuteBits);
    case EvictionPolicy::kVolatileTtl:  // the sooner it expires, the better
      return std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(entry.expire_at_);
    default:  // idle milliseconds (the clock's low 32 bits wrap after 49 days)
      return static_cast<uint32_t>(static_cast<uint32_t>(now) - entry.access_);
  }
}

void Keyspace::SetMemoryLimit(MemoryLimit* limit) {
  limit_->RemoveSource(this);
  limit_ = limit != nullptr ? limit : &own_limit_;
  limit_->AddSource(this);
}

int64_t Keyspace::EvictableKeys(EvictionPolicy policy) {
  return (IsVolatile(policy) ? volatile_count_ : keys_).load(std::memory_order_relaxed);
}

bool Keyspace::Sample(EvictionPolicy policy, uint64_t random, int64_t /*now_ms*/,
                      EvictionCandidate* out) {
  const Millis now = clock_();  // the clock the keys' access times come from
  // A random key (with a TTL, for volatile policies) of the first shard with one at or after a
  // random shard: the first key at or after a random position, or a random entry of the shard's
  // TTL index.
  for (size_t i = 0; i < kShards; ++i) {
    const size_t index = (random + i) % kShards;
    Shard& shard = shards_[index];
    std::lock_guard lock(shard.mutex);
    const Entry* node = nullptr;
    if (IsVolatile(policy)) {
      if (shard.volatile_keys.empty()) continue;
      node = shard.volatile_keys[(random >> 6) % shard.volatile_keys.size()];
    } else {
      node = shard.index.NextFrom(random >> 6);
      if (node == nullptr) continue;
    }
    out->score = EvictionScore(*node, policy, now);
    out->bytes = View::BytesOf(*node);
    out->id = index;
    out->key = node->key();
    return true;
  }
  return false;
}

int64_t Keyspace::Evict(EvictionPolicy policy, const std::vector<EvictionCandidate>& victims) {
  int64_t evicted = 0;
  for (const EvictionCandidate& victim : victims) {
    Shard& shard = shards_[victim.id];
    std::lock_guard lock(shard.mutex);
    const uint64_t hash = HashBytes(victim.key);
    Entry* node = shard.index.Find(victim.key, hash);
    // Gone since it was sampled, or (volatile policies) no longer carrying a TTL.
    if (node == nullptr || (IsVolatile(policy) && node->expire_at_ == 0)) continue;
    LogDelete(node->key());
    Remove(shard, node, hash);
    ++shard.evicted;
    ++evicted;
  }
  return evicted;
}

}  // namespace quiver::kv
