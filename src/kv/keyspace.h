// Keyspace: Quiver's plain key-value data, with Redis's semantics: binary-safe keys holding a
// string or a hash, each with an optional expiry time (Unix milliseconds).
//
// Expiry: a key whose time has come is gone for every operation at once (passive expiry, checked
// on each access), and its memory is reclaimed by the active expiry cycle (ActiveExpireCycle),
// Redis's algorithm: sample 20 keys that carry a TTL, delete the expired ones, and go on while
// more than 25% of a sample was expired and the time budget lasts. Only keys with a TTL are
// sampled, so the cost follows their number, not the keyspace's size.
//
// Structure: kShards shards, each an OpenIndex (kv/open_index.h) of nodes under its own mutex,
// chosen by the top bits of the key's hash; a node is one allocation holding the Entry, the key's
// bytes and a string's value or a small hash's packed fields (a 16-byte key with a 16-byte value
// takes one 80-byte chunk, where Redis takes three allocations); a large hash's fields are a
// HashTable of their own. An operation on one key locks one shard; multi-key operations
// lock the shards they touch in shard order (so MSET, DEL and RENAME are atomic). Each shard keeps
// its nodes that carry a TTL in a vector for uniform sampling (a node knows its position there:
// O(1) removal).
//
// Memory: every allocation the keyspace makes is counted as the chunk glibc's malloc takes for it
// (nodes, hash tables and their fields, slot arrays), so UsedMemory() is exact, not an estimate
// (keyspace_test checks it against mallinfo2). The keyspace is an EvictionSource of a MemoryLimit
// (common/eviction.h), its own or one shared with the feature tables: MakeRoom() — called before
// every write that may grow memory — evicts keys (of every source) by the policy until the usage is
// under the limit again, or reports that it cannot (noeviction, or a volatile-* policy with no key
// carrying a TTL).
//
// Persistence: with a KeyspaceLog attached (SetLog), every change is logged as one record per
// View — the whole new state of each key it created or rewrote, and single operations (a field
// set or deleted, a TTL changed, a key deleted) for the rest — appended while the View still holds
// its shards' locks, so the log orders the changes of each shard as they were applied. The
// keyspace emits operations (kv/operation.h), never bytes: the log's format encodes them
// (storage/log_records.h). Dump() hands a DumpWriter the keyspace shard by shard, each section
// with the log position it was taken at, while writers go on; recovery restores a dump
// (Restore, RestoredShard) and replays the log after it (Replay), skipping in each shard the
// operations its section already holds: the result is exact, not merely idempotent.
// Keys whose time comes are not logged (their expiry time is); evicted keys are.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/eviction.h"
#include "common/hash.h"
#include "common/periodic.h"
#include "common/result.h"
#include "kv/entry.h"
#include "kv/keyspace_log.h"
#include "kv/open_index.h"
#include "kv/operation.h"

namespace quiver::kv {

using quiver::EvictionPolicy;
using quiver::ParsePolicy;
using quiver::PolicyName;

struct KeyspaceStats {
  int64_t keys = 0;
  int64_t keys_with_ttl = 0;
  int64_t expired = 0;  // keys removed because their time came (passively or actively)
  int64_t evicted = 0;  // keys removed to stay under the memory limit
  uint64_t bytes = 0;   // UsedMemory()
};

struct ViewLog;  // a View's record under construction (keyspace.cc)

// A bit no cursor of Keyspace::Scan has: RESP's SCAN marks its cursors over a feature table's rows
// with it.
inline constexpr uint64_t kScanTableCursor = uint64_t{1} << 63;

class Keyspace final : public EvictionSource {
 public:
  static constexpr size_t kShards = 64;  // a View's lock mask is one 64-bit word

  // `clock`: the time used for expiry (tests pass their own).
  explicit Keyspace(UnixClock clock = UnixMillis);
  ~Keyspace() override;
  Keyspace(const Keyspace&) = delete;
  Keyspace& operator=(const Keyspace&) = delete;

  // A locked view of the shards an operation touches. Find() applies passive expiry; SetString()
  // and NewHash() replace whatever the key held (its TTL included); SetExpire(0) clears a TTL.
  // Pointers stay valid while the view lives and the key is neither erased nor moved (Rewrite,
  // Append and a SetString of the same key return where it went).
  class View {
   public:
    Entry* Find(std::string_view key);
    // Sets `key` to a string value with an expiry time (0: none).
    Entry* SetString(std::string_view key, std::string_view value, Millis expire_at = 0);
    // Sets `key` to an empty hash (fill it with HashSet; an empty hash must not outlive the view),
    // with room for `packed_bytes` bytes of packed fields (HashPackedBytes of those to come).
    Entry* NewHash(std::string_view key, size_t packed_bytes = 0);
    // Replaces the value of the string `entry`, keeping its TTL; returns where the entry is now.
    Entry* Rewrite(Entry* entry, std::string_view value);
    // Appends to the value of the string `entry` (its room grows geometrically, so repeated
    // appends take amortized O(1) per byte); returns where the entry is now.
    Entry* Append(Entry* entry, std::string_view tail);
    bool Erase(std::string_view key);
    // Moves the value and TTL of the live key `from` to `to` (which loses what it held); false
    // when `from` is missing.
    bool Rename(std::string_view from, std::string_view to);
    void SetExpire(std::string_view key, Entry* entry, Millis expire_at);
    // Sets a field of the hash `entry` (at `key`); `*added` (when given) says whether the field
    // is new. Returns where the entry is now (a packed hash's node grows, or it becomes a table).
    Entry* HashSet(std::string_view key, Entry* entry, std::string_view field,
                   std::string_view value, bool* added = nullptr);
    // Removes a field; `*deleted` (when given) says whether it was there. Returns where the entry
    // is now (a packed hash's node shrinks). The caller erases a hash left empty.
    Entry* HashDelete(std::string_view key, Entry* entry, std::string_view field,
                      bool* deleted = nullptr);
    // The bytes an entry takes (its node, and a large hash's table and fields), O(1).
    static uint64_t BytesOf(const Entry& entry);
    Millis now() const { return now_; }

    // Appends the view's record to the log (a failure, even for want of memory, becomes the
    // command's MISCONF through TakeLogOutcome) and unlocks. Only copying that error's text can
    // still throw, which ends the process, as any allocation failure in a destructor must.
    ~View();  // NOLINT(bugprone-exception-escape)
    View(const View&) = delete;
    View& operator=(const View&) = delete;

   private:
    friend class Keyspace;
    // Locks the shards of the mask, in order. `replaying`: recovery's view, which neither logs
    // nor expires keys (a key's later records may extend its TTL).
    // `key`, `key_hash`: the one key it is locked for, and its hash (Lock(key)).
    View(Keyspace& keyspace, uint64_t shards, bool replaying = false, std::string_view key = {},
         uint64_t key_hash = 0);
    // Whether the entry's whole state is logged at the end (created or rewritten in this view).
    bool IsDirty(const Entry* entry) const;
    void MarkDirty(Entry* node);
    // A key leaves the keyspace: a DELETE is logged when asked, or when the key was dirty here.
    void Forget(const Entry* node, bool log_delete);
    // Passive expiry through this view; true when the key was due (and is gone).
    bool Expired(Entry* node, uint64_t hash);
    // The live node of `key` (passive expiry applied) and its hash, or null.
    Entry* FindNode(std::string_view key, uint64_t* hash);
    // Makes `key` a fresh entry of `type` (no TTL) with the value bytes `value` (a string's or
    // a packed hash's; the caller sets a hash's encoding) and room for `capacity` >= its size,
    // in its node when the node's chunk fits, else in a new one. Logged whole at the view's end.
    Entry* Place(std::string_view key, Type type, std::string_view value, size_t capacity);
    // Sets a field of a packed hash that stays packed; `at`: the field's offset, or npos (new).
    Entry* SetPacked(Entry* entry, size_t at, std::string_view field, std::string_view value);
    // Makes a packed hash a HashTable.
    Entry* Unpack(Entry* entry);
    // Moves a node to a new one with room for `capacity` value bytes: its value, TTL, place in
    // the index and in this view's dirty list go with it. Returns the new node.
    Entry* Move(Entry* node, size_t capacity);
    // Adds `op` to the record being built (nothing when not logging).
    void Log(const Operation& op);

    Keyspace& keyspace_;
    uint64_t locked_;  // bit i: shard i
    Millis now_;
    bool replaying_;
    ViewLog* log_ = nullptr;  // while the keyspace has a log (and not replaying)
    // A view locked for one key remembers that key's hash (the lookup that follows needs it, and
    // so do the changes to that key, which may name it by its node's copy).
    std::string_view key_;
    uint64_t key_hash_;
    uint64_t HashOf(std::string_view key) const {
      const bool same = key_.data() != nullptr && key == key_;
      return same ? key_hash_ : HashBytes(key);
    }
  };

  // Locks the shards of `keys` (in shard order) for one atomic operation.
  View Lock(std::span<const std::string_view> keys);
  View Lock(std::initializer_list<std::string_view> keys) {
    return Lock({keys.begin(), keys.size()});
  }
  View Lock(std::string_view key) {
    const uint64_t hash = HashBytes(key);
    return View(*this, uint64_t{1} << ShardOfHash(hash), /*replaying=*/false, key, hash);
  }

  // Brings what operations on `keys` will touch (their index slots, then their nodes) towards
  // the CPU's caches: a pipeline's keys, before its commands run, so that their cache misses
  // overlap instead of coming one after another. Changes nothing; locks each key's shard
  // briefly.
  void Prefetch(std::span<const std::string_view> keys);

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

  // The memory limit this keyspace counts towards: its own until SetMemoryLimit names a shared
  // one (storage::Database shares one between the keyspace and the tables). The setters below
  // change that limit.
  void SetMemoryLimit(MemoryLimit* limit);
  MemoryLimit& memory_limit() { return *limit_; }
  void SetMaxMemory(uint64_t bytes) { limit_->SetMaxMemory(bytes); }
  uint64_t MaxMemory() const { return limit_->MaxMemory(); }
  void SetPolicy(EvictionPolicy policy) { limit_->SetPolicy(policy); }
  EvictionPolicy Policy() const { return limit_->Policy(); }
  void SetEvictionSamples(int samples) { limit_->SetSamples(samples); }
  int EvictionSamples() const { return limit_->Samples(); }
  // When a hash stops being packed (Hash): past this many fields (at most
  // Hash::kPackedFieldsCeiling), or with a name or value longer than this many bytes (at most
  // Hash::kPackedBytesCeiling). Hashes already converted stay tables.
  void SetMaxPackedFields(uint32_t fields) {
    max_packed_fields_.store(std::min(fields, Hash::kPackedFieldsCeiling),
                             std::memory_order_relaxed);
  }
  void SetMaxPackedBytes(uint32_t bytes) {
    max_packed_bytes_.store(std::min(bytes, Hash::kPackedBytesCeiling), std::memory_order_relaxed);
  }
  uint32_t MaxPackedFields() const { return max_packed_fields_.load(std::memory_order_relaxed); }
  uint32_t MaxPackedBytes() const { return max_packed_bytes_.load(std::memory_order_relaxed); }
  // This keyspace's bytes (exact accounting).
  uint64_t UsedMemory() const override {
    return static_cast<uint64_t>(std::max<int64_t>(0, used_.load(std::memory_order_relaxed)));
  }
  // Evicts (from every source of the limit) until its used memory is within it; false when still
  // over and nothing more may be evicted. Call without holding a View.
  bool MakeRoom() { return limit_->MakeRoom(0); }

  // EvictionSource, for the limit.
  int64_t EvictableKeys(EvictionPolicy policy) override;
  bool Sample(EvictionPolicy policy, uint64_t random, int64_t now_ms,
              EvictionCandidate* out) override;
  int64_t Evict(EvictionPolicy policy, const std::vector<EvictionCandidate>& victims) override;

  // One active expiry pass over every shard, within `budget_us` microseconds; returns the keys
  // deleted. The background thread (StartActiveExpiry) runs it `hz` times a second.
  int64_t ActiveExpireCycle(int64_t budget_us);
  void StartActiveExpiry(int hz = 10);
  void StopActiveExpiry() { expiry_.Stop(); }  // waits for a cycle in progress

  Millis Now() const { return clock_(); }

  // Persistence (see the top of this file). SetLog before the keyspace is shared; null: none.
  void SetLog(KeyspaceLog* log) { log_ = log; }
  KeyspaceLog* log() const { return log_; }
  // The LSN of the last record this keyspace logged (0: none since it started).
  uint64_t LastLoggedLsn() const { return last_logged_.load(std::memory_order_acquire); }
  // Writes every live key's state to `writer`, one section per shard, taken under that shard's
  // lock with the log position then (log->LastLsn(); 0 without a log). Writers wait only while
  // their shard is encoded. Returns the number of keys. (storage/log_records.h encodes it.)
  Result<int64_t> Dump(DumpWriter& writer);
  // {LastLoggedLsn(), P} where P = position() is read first: the first is then at least the LSN
  // of every keyspace record up to P (a snapshot's "changed since" test).
  std::pair<uint64_t, uint64_t> Quiesced(const std::function<uint64_t()>& position);
  // Recovery (storage/log_records.h decodes dumps and records into these calls). From a dump,
  // into an empty keyspace: Restore puts a key's state (kPutString / kPutHash) and
  // RestoredShard records the log position the section of `shard` was taken at. From the log:
  // Replay applies a logged operation unless the section of its key's shard was taken at or after
  // `lsn` (the result is exact, not merely idempotent); Replayed(lsn) after a record's last.
  void Restore(const Operation& key_state);
  void RestoredShard(size_t shard, uint64_t lsn);
  void Replay(const Operation& op, uint64_t lsn);
  void Replayed(uint64_t lsn);
  // The shard a key belongs to (a dump's section holds only its shard's keys).
  static size_t ShardOfKey(std::string_view key) { return ShardOfHash(HashBytes(key)); }
  // Redis's glob patterns: * ? [abc] [^a] [a-z] and \ escapes.
  static bool Match(std::string_view pattern, std::string_view text);

 private:
  struct Shard {
    std::mutex mutex;
    OpenIndex<Entry> index;
    std::vector<Entry*> volatile_keys;  // nodes with a TTL
    int64_t bytes = 0;                  // entries and the structures below
    int64_t structure = 0;              // bytes of the slot array and volatile_keys
    int64_t counted_keys = 0;           // index.size() and volatile_keys.size() as last added
    int64_t counted_volatile = 0;       // to the keyspace's counts (Recount)
    int64_t expired = 0;
    int64_t evicted = 0;
  };
  static size_t ShardOfHash(uint64_t hash) { return hash >> 58; }  // top 6 bits
  static constexpr int kLfuMinuteBits = 16;  // LFU words keep 16 bits of minutes (Redis's)
  // Under its lock: empties a shard into `doomed`, whose nodes FreeNodes then frees.
  void ClearShard(Shard& shard, OpenIndex<Entry>* doomed);
  static void FreeNodes(OpenIndex<Entry>& index);
  // A node for `key` with room for at least `capacity` value bytes (up to its chunk's end).
  static Entry* NewNode(std::string_view key, size_t capacity);
  static void FreeNode(Entry* node);
  // Whether a value of `capacity` bytes belongs in this node: it fits, and a node made for it
  // would take the same chunk (so a shorter value moves to a smaller node).
  static bool Fits(const Entry& node, size_t capacity);
  // Applies one operation of a record or dump (recovery), without logging or expiry.
  void Apply(const Operation& op);
  // Logs a key's deletion outside a View (eviction), under its shard's lock.
  void LogDelete(std::string_view key);
  // Records an appended record's LSN (or error) for LastLoggedLsn and, when `report`, this
  // thread's LogOutcome.
  void NoteLogged(const Result<uint64_t>& appended, bool report);
  // Under the shard's lock: removes a node (with its key's hash) from the shard and frees it.
  void Remove(Shard& shard, Entry* node, uint64_t hash);
  // Remove's second half, for a node already Unindexed.
  void Drop(Shard& shard, Entry* node, uint64_t hash);
  // Takes a node's entry out of the TTL index and the byte count (before it leaves the shard).
  void Unindex(Shard& shard, const Entry& node);
  bool ExpireIfDue(Shard& shard, Entry* node, Millis now);
  // Under the shard's lock: adds `delta` to its bytes and the total.
  void Charge(Shard& shard, int64_t delta);
  // Under the shard's lock: charges a change in the slot array's or volatile_keys' size, and
  // carries a change in the shard's key counts to the keyspace's (Recount). Every change to a
  // shard's index or volatile_keys ends in one of these or in ClearShard.
  void Restructure(Shard& shard);
  void Recount(Shard& shard);
  void Touch(Entry& entry, Millis now);
  uint64_t EvictionScore(const Entry& entry, EvictionPolicy policy, Millis now) const;

  const UnixClock clock_;
  Shard shards_[kShards];
  std::mt19937_64 rng_{0x9e3779b97f4a7c15ULL};  // under rng_mutex_
  std::mutex rng_mutex_;

  std::atomic<int64_t> used_{0};
  // The keys, and those with a TTL, over every shard (EvictableKeys reads them without a lock).
  std::atomic<int64_t> keys_{0};
  std::atomic<int64_t> volatile_count_{0};
  std::atomic<uint32_t> max_packed_fields_{Hash::kMaxPackedFields};
  std::atomic<uint32_t> max_packed_bytes_{Hash::kMaxPackedBytes};
  MemoryLimit own_limit_;
  MemoryLimit* limit_ = &own_limit_;

  KeyspaceLog* log_ = nullptr;
  std::atomic<uint64_t> last_logged_{0};
  uint64_t floors_[kShards] = {};  // recovery: the log position each shard was loaded at

  PeriodicTask expiry_;  // last: stopped first
};

}  // namespace quiver::kv
