// Keyspace: Quiver's plain key-value data, with Redis's semantics: binary-safe keys holding a
// string or a hash, each with an optional expiry time (Unix milliseconds).
//
// Expiry: a key whose time has come is gone for every operation at once (passive expiry, checked
// on each access), and its memory is reclaimed by the active expiry cycle (ActiveExpireCycle),
// Redis's algorithm: sample 20 keys that carry a TTL, delete the expired ones, and go on while
// more than 25% of a sample was expired and the time budget lasts. Only keys with a TTL are
// sampled, so the cost follows their number, not the keyspace's size.
//
// Structure: kShards shards, each a hash map under its own mutex, chosen by the key's hash; an
// operation on one key locks one shard; multi-key operations lock the shards they touch in shard
// order (so MSET, DEL and RENAME are atomic). Each shard keeps the keys that carry a TTL in a
// vector for uniform sampling (an entry knows its position there: O(1) removal).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/hash.h"

namespace quiver::kv {

using Millis = int64_t;  // Unix time in milliseconds
Millis SystemMillis();

enum class Type : uint8_t { kString, kHash };
std::string_view TypeName(Type type);  // "string", "hash"

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view bytes) const { return HashBytes(bytes); }
};
using HashValue = std::unordered_map<std::string, std::string, StringHash, std::equal_to<>>;

struct Entry {
  Type type = Type::kString;
  std::string string;               // kString
  std::unique_ptr<HashValue> hash;  // kHash
  Millis expire_at = 0;             // 0: no TTL
  uint32_t volatile_index = 0;      // position in its shard's volatile_ while expire_at != 0
};

struct KeyspaceStats {
  int64_t keys = 0;
  int64_t keys_with_ttl = 0;
  int64_t expired = 0;  // keys removed because their time came (passively or actively)
  uint64_t bytes = 0;   // keys and values, plus a fixed estimate per entry
};

class Keyspace {
 public:
  static constexpr size_t kShards = 64;

  // `clock`: the time used for expiry (tests pass their own).
  explicit Keyspace(std::function<Millis()> clock = SystemMillis);
  ~Keyspace();
  Keyspace(const Keyspace&) = delete;
  Keyspace& operator=(const Keyspace&) = delete;

  // A locked view of the shards an operation touches. Find() applies passive expiry; Insert()
  // creates a key (no TTL); SetExpire(0) clears a TTL. Pointers stay valid while the view lives
  // and the key is not erased.
  class View {
   public:
    Entry* Find(std::string_view key);
    Entry* Insert(std::string_view key, Type type);  // replaces an existing key (and its TTL)
    bool Erase(std::string_view key);
    // Removes a live key and returns its entry (value and TTL), or nullopt.
    std::optional<Entry> Take(std::string_view key);
    void SetExpire(std::string_view key, Entry* entry, Millis expire_at);
    // Call after changing a value's size in place, with the bytes it had before.
    void Resized(std::string_view key, const Entry& entry, uint64_t before);
    static uint64_t BytesOf(std::string_view key, const Entry& entry);
    Millis now() const { return now_; }

   private:
    friend class Keyspace;
    View(Keyspace& keyspace, std::vector<size_t> shards);
    Keyspace& keyspace_;
    std::vector<size_t> shards_;  // sorted, unique
    std::vector<std::unique_lock<std::mutex>> locks_;
    Millis now_;
  };

  // Locks the shards of `keys` (in shard order) for one atomic operation.
  View Lock(const std::vector<std::string_view>& keys);
  View Lock(std::string_view key) { return Lock(std::vector<std::string_view>{key}); }

  // Every live key matching a glob pattern (Redis's KEYS patterns), in no order.
  std::vector<std::string> Keys(std::string_view pattern);
  // Cursor iteration (SCAN): keys of the shard and position `cursor` encodes, up to about
  // `count`; returns the next cursor (0: done). Every key present for the whole scan is returned
  // at least once.
  uint64_t Scan(uint64_t cursor, size_t count, std::string_view pattern, std::optional<Type> type,
                std::vector<std::string>* out);
  std::optional<std::string> RandomKey();
  int64_t Size();
  void Clear();
  KeyspaceStats Stats();

  // One active expiry pass over every shard, within `budget_us` microseconds; returns the keys
  // deleted. The background thread (StartActiveExpiry) runs it `hz` times a second.
  int64_t ActiveExpireCycle(int64_t budget_us);
  void StartActiveExpiry(int hz = 10);

  Millis Now() const { return clock_(); }
  // Redis's glob patterns: * ? [abc] [^a] [a-z] and \ escapes.
  static bool Match(std::string_view pattern, std::string_view text);

 private:
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> map;
    std::vector<const std::string*> volatile_keys;  // keys with a TTL (point into `map`)
    uint64_t bytes = 0;
    int64_t expired = 0;
  };

  static size_t ShardOf(std::string_view key) { return HashBytes(key) >> 58; }  // top 6 bits
  // Under the shard's lock.
  void EraseIt(Shard& shard, decltype(Shard::map)::iterator it);
  // Takes a key's entry out of the TTL index and the byte count (before it leaves the map).
  void Unindex(Shard& shard, const std::string& key, const Entry& entry);
  bool ExpireIfDue(Shard& shard, decltype(Shard::map)::iterator it, Millis now);

  const std::function<Millis()> clock_;
  Shard shards_[kShards];
  std::mt19937_64 rng_{0x9e3779b97f4a7c15ULL};  // under rng_mutex_
  std::mutex rng_mutex_;

  std::mutex loop_mutex_;
  std::condition_variable loop_wake_;
  bool stop_ = false;
  std::thread expiry_thread_;
};

}  // namespace quiver::kv
