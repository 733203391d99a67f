#include "kv/keyspace.h"

#include <algorithm>
#include <chrono>

namespace quiver::kv {
namespace {

// Estimated bytes of an entry beyond its key and value bytes: the map node, the Entry, the
// allocator's headers.
constexpr uint64_t kEntryOverhead = 96;
constexpr uint64_t kFieldOverhead = 64;

}  // namespace

Millis SystemMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view TypeName(Type type) { return type == Type::kString ? "string" : "hash"; }

Keyspace::Keyspace(std::function<Millis()> clock) : clock_(std::move(clock)) {}

Keyspace::~Keyspace() {
  {
    std::lock_guard lock(loop_mutex_);
    stop_ = true;
  }
  loop_wake_.notify_all();
  if (expiry_thread_.joinable()) expiry_thread_.join();
}

// ---------------------------------------------------------------------------------------------
// Views.

Keyspace::View::View(Keyspace& keyspace, std::vector<size_t> shards)
    : keyspace_(keyspace), shards_(std::move(shards)) {
  for (size_t shard : shards_) locks_.emplace_back(keyspace_.shards_[shard].mutex);
  now_ = keyspace_.clock_();
}

Keyspace::View Keyspace::Lock(const std::vector<std::string_view>& keys) {
  std::vector<size_t> shards;
  shards.reserve(keys.size());
  for (std::string_view key : keys) shards.push_back(ShardOf(key));
  std::sort(shards.begin(), shards.end());
  shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
  return View(*this, std::move(shards));
}

uint64_t Keyspace::View::BytesOf(std::string_view key, const Entry& entry) {
  uint64_t bytes = kEntryOverhead + key.size() + entry.string.capacity();
  if (entry.hash) {
    for (const auto& [field, value] : *entry.hash) {
      bytes += kFieldOverhead + field.size() + value.size();
    }
  }
  return bytes;
}

Entry* Keyspace::View::Find(std::string_view key) {
  Shard& shard = keyspace_.shards_[ShardOf(key)];
  auto it = shard.map.find(key);
  if (it == shard.map.end() || keyspace_.ExpireIfDue(shard, it, now_)) return nullptr;
  return &it->second;
}

Entry* Keyspace::View::Insert(std::string_view key, Type type) {
  Shard& shard = keyspace_.shards_[ShardOf(key)];
  auto it = shard.map.find(key);
  if (it != shard.map.end()) keyspace_.EraseIt(shard, it);
  it = shard.map.emplace(std::string(key), Entry{}).first;
  it->second.type = type;
  if (type == Type::kHash) it->second.hash = std::make_unique<HashValue>();
  shard.bytes += BytesOf(key, it->second);
  return &it->second;
}

bool Keyspace::View::Erase(std::string_view key) {
  Shard& shard = keyspace_.shards_[ShardOf(key)];
  auto it = shard.map.find(key);
  if (it == shard.map.end()) return false;
  const bool live = !keyspace_.ExpireIfDue(shard, it, now_);
  if (live) keyspace_.EraseIt(shard, it);
  return live;
}

std::optional<Entry> Keyspace::View::Take(std::string_view key) {
  Shard& shard = keyspace_.shards_[ShardOf(key)];
  auto it = shard.map.find(key);
  if (it == shard.map.end() || keyspace_.ExpireIfDue(shard, it, now_)) return std::nullopt;
  auto node = shard.map.extract(it);
  Entry& entry = node.mapped();
  keyspace_.Unindex(shard, node.key(), entry);
  return std::move(entry);
}

void Keyspace::View::SetExpire(std::string_view key, Entry* entry, Millis expire_at) {
  Shard& shard = keyspace_.shards_[ShardOf(key)];
  if ((entry->expire_at != 0) == (expire_at != 0)) {
    entry->expire_at = expire_at;
    return;
  }
  if (expire_at != 0) {  // joins the keys with a TTL
    auto it = shard.map.find(key);
    entry->volatile_index = static_cast<uint32_t>(shard.volatile_keys.size());
    shard.volatile_keys.push_back(&it->first);
  } else {  // leaves them: the last one takes its place
    const uint32_t index = entry->volatile_index;
    const std::string* last = shard.volatile_keys.back();
    shard.volatile_keys[index] = last;
    shard.map.find(*last)->second.volatile_index = index;
    shard.volatile_keys.pop_back();
  }
  entry->expire_at = expire_at;
}

void Keyspace::View::Resized(std::string_view key, const Entry& entry, uint64_t before) {
  Shard& shard = keyspace_.shards_[ShardOf(key)];
  shard.bytes = shard.bytes - before + BytesOf(key, entry);
}

void Keyspace::Unindex(Shard& shard, const std::string& key, const Entry& entry) {
  if (entry.expire_at != 0) {
    const uint32_t index = entry.volatile_index;
    const std::string* last = shard.volatile_keys.back();
    shard.volatile_keys[index] = last;
    if (last != &key) shard.map.find(*last)->second.volatile_index = index;
    shard.volatile_keys.pop_back();
  }
  shard.bytes -= View::BytesOf(key, entry);
}

void Keyspace::EraseIt(Shard& shard, decltype(Shard::map)::iterator it) {
  Unindex(shard, it->first, it->second);
  shard.map.erase(it);
}

bool Keyspace::ExpireIfDue(Shard& shard, decltype(Shard::map)::iterator it, Millis now) {
  if (it->second.expire_at == 0 || it->second.expire_at > now) return false;
  EraseIt(shard, it);
  ++shard.expired;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Whole-keyspace operations.

bool Keyspace::Match(std::string_view pattern, std::string_view text) {
  size_t p = 0, t = 0, star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      const char c = pattern[p];
      if (c == '*') {
        star_p = p++;
        star_t = t;
        continue;
      }
      if (c == '?') {
        ++p, ++t;
        continue;
      }
      if (c == '[') {
        size_t q = p + 1;
        const bool negate = q < pattern.size() && pattern[q] == '^';
        if (negate) ++q;
        bool matched = false;
        bool closed = false;
        while (q < pattern.size()) {
          if (pattern[q] == ']') {
            closed = true;
            break;
          }
          if (pattern[q] == '\\' && q + 1 < pattern.size()) {
            matched |= pattern[++q] == text[t];
            ++q;
          } else if (q + 2 < pattern.size() && pattern[q + 1] == '-' && pattern[q + 2] != ']') {
            char low = pattern[q], high = pattern[q + 2];
            if (low > high) std::swap(low, high);
            matched |= text[t] >= low && text[t] <= high;
            q += 3;
          } else {
            matched |= pattern[q++] == text[t];
          }
        }
        if (closed && matched != negate) {
          p = q + 1;
          ++t;
          continue;
        }
      } else if (c == '\\' && p + 1 < pattern.size()) {
        if (pattern[p + 1] == text[t]) {
          p += 2, ++t;
          continue;
        }
      } else if (c == text[t]) {
        ++p, ++t;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p + 1;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<std::string> Keyspace::Keys(std::string_view pattern) {
  std::vector<std::string> keys;
  const Millis now = clock_();
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, entry] : shard.map) {
      if (entry.expire_at != 0 && entry.expire_at <= now) continue;
      if (Match(pattern, key)) keys.push_back(key);
    }
  }
  return keys;
}

uint64_t Keyspace::Scan(uint64_t cursor, size_t count, std::string_view pattern,
                        std::optional<Type> type, std::vector<std::string>* out) {
  // Cursor: shard (6 bits), bucket (29 bits), and the shard's bucket count when it was issued
  // (29 bits). Buckets are walked in order; a key stays in its bucket until the map rehashes, and
  // after a rehash (a different bucket count) the shard is walked again from its first bucket:
  // keys may come twice, but none present for the whole scan is missed.
  constexpr uint64_t kBucketBits = 29;
  constexpr uint64_t kMask = (uint64_t{1} << kBucketBits) - 1;
  size_t shard_index = cursor % kShards;
  uint64_t bucket = (cursor >> 6) & kMask;
  uint64_t tag = cursor >> (6 + kBucketBits);
  const Millis now = clock_();
  size_t visited = 0, empty = 0;
  for (; shard_index < kShards; ++shard_index, bucket = 0) {
    Shard& shard = shards_[shard_index];
    std::lock_guard lock(shard.mutex);
    const size_t buckets = shard.map.bucket_count();
    if (bucket != 0 && tag != (buckets & kMask)) bucket = 0;
    for (; bucket < buckets; ++bucket) {
      if (visited >= count || empty >= 10 * count) {
        return (static_cast<uint64_t>(buckets & kMask) << (6 + kBucketBits)) | (bucket << 6) |
               shard_index;
      }
      if (shard.map.bucket_size(bucket) == 0) {
        ++empty;
        continue;
      }
      for (auto it = shard.map.begin(bucket); it != shard.map.end(bucket); ++it) {
        ++visited;
        const Entry& entry = it->second;
        if (entry.expire_at != 0 && entry.expire_at <= now) continue;
        if (type && entry.type != *type) continue;
        if (Match(pattern, it->first)) out->push_back(it->first);
      }
    }
  }
  return 0;
}

std::optional<std::string> Keyspace::RandomKey() {
  const Millis now = clock_();
  for (int attempt = 0; attempt < 100; ++attempt) {
    uint64_t pick;
    {
      std::lock_guard lock(rng_mutex_);
      pick = rng_();
    }
    Shard& shard = shards_[pick % kShards];
    std::lock_guard lock(shard.mutex);
    if (shard.map.empty()) continue;
    const size_t buckets = shard.map.bucket_count();
    for (size_t i = 0; i < buckets; ++i) {
      const size_t b = (pick / kShards + i) % buckets;
      for (auto it = shard.map.begin(b); it != shard.map.end(b); ++it) {
        if (it->second.expire_at == 0 || it->second.expire_at > now) return it->first;
      }
    }
  }
  // Sparse or mostly expired: a full walk.
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, entry] : shard.map) {
      if (entry.expire_at == 0 || entry.expire_at > now) return key;
    }
  }
  return std::nullopt;
}

int64_t Keyspace::Size() {
  int64_t size = 0;
  const Millis now = clock_();
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    size += static_cast<int64_t>(shard.map.size());
    // Keys whose time has come but that no one touched yet do not count.
    for (const std::string* key : shard.volatile_keys) {
      const Millis at = shard.map.find(*key)->second.expire_at;
      if (at <= now) --size;
    }
  }
  return size;
}

void Keyspace::Clear() {
  for (Shard& shard : shards_) {
    decltype(Shard::map) doomed;  // freed outside the lock
    {
      std::lock_guard lock(shard.mutex);
      doomed.swap(shard.map);
      shard.volatile_keys.clear();
      shard.bytes = 0;
    }
  }
}

KeyspaceStats Keyspace::Stats() {
  KeyspaceStats stats;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    stats.keys += static_cast<int64_t>(shard.map.size());
    stats.keys_with_ttl += static_cast<int64_t>(shard.volatile_keys.size());
    stats.expired += shard.expired;
    stats.bytes += shard.bytes;
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Active expiry.

int64_t Keyspace::ActiveExpireCycle(int64_t budget_us) {
  constexpr int kSample = 20;
  constexpr int kAcceptablePercent = 25;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(budget_us);
  int64_t deleted = 0;
  for (Shard& shard : shards_) {
    for (;;) {
      int sampled = 0, expired = 0;
      {
        std::lock_guard lock(shard.mutex);
        if (shard.volatile_keys.empty()) break;
        const Millis now = clock_();
        for (; sampled < kSample && !shard.volatile_keys.empty(); ++sampled) {
          uint64_t pick;
          {
            std::lock_guard rng_lock(rng_mutex_);
            pick = rng_();
          }
          const std::string* key = shard.volatile_keys[pick % shard.volatile_keys.size()];
          if (ExpireIfDue(shard, shard.map.find(*key), now)) ++expired;
        }
      }
      deleted += expired;
      if (expired * 100 <= sampled * kAcceptablePercent) break;
      if (std::chrono::steady_clock::now() >= deadline) return deleted;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
  }
  return deleted;
}

void Keyspace::StartActiveExpiry(int hz) {
  const auto period = std::chrono::microseconds(1'000'000 / std::max(1, hz));
  expiry_thread_ = std::thread([this, period] {
    std::unique_lock lock(loop_mutex_);
    while (!stop_) {
      loop_wake_.wait_for(lock, period);
      if (stop_) break;
      lock.unlock();
      // At most a quarter of each period, as Redis's slow cycle.
      ActiveExpireCycle(std::chrono::duration_cast<std::chrono::microseconds>(period).count() / 4);
      lock.lock();
    }
  });
}

}  // namespace quiver::kv
