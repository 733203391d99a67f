// Test helpers: a clock tests advance, one-line changes, and a keyspace's contents as text for
// comparing keyspaces (tests only).
#pragma once

#include <functional>
#include <map>
#include <string>

#include "kv/keyspace.h"

namespace quiver::kv::testing {

struct FakeClock {
  Millis now = 1'000'000;
  std::function<Millis()> Function() {
    return [this] { return now; };
  }
};

inline void Put(Keyspace& keyspace, const std::string& key, const std::string& value,
                Millis expire_at) {
  keyspace.Lock(key).SetString(key, value, expire_at);
}

inline bool Present(Keyspace& keyspace, const std::string& key) {
  auto view = keyspace.Lock(key);
  return view.Find(key) != nullptr;
}

// Every live key with its type, expiry time and value (hash fields sorted): equal keyspaces
// describe equally.
inline std::map<std::string, std::string> Describe(Keyspace& keyspace) {
  std::map<std::string, std::string> out;
  for (const std::string& key : keyspace.Keys("*")) {
    auto view = keyspace.Lock(key);
    const Entry* entry = view.Find(key);
    if (entry == nullptr) continue;
    std::string text =
        std::string(TypeName(entry->type())) + " ttl=" + std::to_string(entry->expire_at()) + " ";
    if (entry->type() == Type::kString) {
      text += entry->string();
    } else {
      const Hash hash = entry->hash();
      const std::map<std::string, std::string> fields(hash.begin(), hash.end());
      for (const auto& [field, value] : fields) text += field + "=" + value + ",";
    }
    out[key] = text;
  }
  return out;
}

// Whether the key counts the limit reads without locks (EvictableKeys) equal the shards' own.
inline bool CountsAgree(Keyspace& keyspace) {
  const KeyspaceStats stats = keyspace.Stats();
  return keyspace.EvictableKeys(EvictionPolicy::kAllKeysLru) == stats.keys &&
         keyspace.EvictableKeys(EvictionPolicy::kVolatileTtl) == stats.keys_with_ttl;
}

}  // namespace quiver::kv::testing
