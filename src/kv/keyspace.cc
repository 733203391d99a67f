#include "kv/keyspace.h"

#include <malloc.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <chrono>
#include <cstring>
#include <limits>
#include <utility>

#include "common/active_expiry.h"

namespace quiver::kv {

// One decoded operation of a log record or dump (its Op and what it carries).
struct Operation {
  uint8_t op = 0;
  std::string_view key, field, value;
  Millis expire_at = 0;
  std::vector<std::pair<std::string_view, std::string_view>> fields;  // kPutHash
};

namespace {

// The bytes usable in `memory`, which malloc handed out for a request of `request` bytes: up to
// the end of the chunk such a request takes (ChunkBytes). Not malloc_usable_size alone: a free
// chunk 16 bytes larger than asked for is sometimes handed out whole, and the count would then
// depend on the heap's history (sanitizers' allocators give no room past the request at all).
size_t ChunkRoom(void* memory, size_t request) {
  return std::min<size_t>(malloc_usable_size(memory), ChunkBytes(request) - 8);
}

// A packed hash's field: [u8 name size][u8 value size][name][value] (keyspace.h).
constexpr size_t kPackedHeader = Hash::kFieldHeader;
size_t PackedBytesAt(const char* at) {
  return kPackedHeader + static_cast<uint8_t>(at[0]) + static_cast<uint8_t>(at[1]);
}
// The offset of `field` in packed fields, or npos.
size_t PackedFind(std::string_view packed, std::string_view field) {
  for (size_t at = 0; at < packed.size(); at += PackedBytesAt(packed.data() + at)) {
    const size_t name = static_cast<uint8_t>(packed[at]);
    if (name == field.size() &&
        std::memcmp(packed.data() + at + kPackedHeader, field.data(), name) == 0) {
      return at;
    }
  }
  return std::string_view::npos;
}

// LFU words keep 16 bits of minutes (Redis's).
constexpr int kLfuMinuteBits = 16;

// ---------------------------------------------------------------------------------------------
// Log records and dumps: a sequence of operations, integers little-endian, bytes as a u32 length
// and the bytes (docs/durability.md).

enum Op : uint8_t {
  kPutString = 1,   // key, expire_at (i64), value
  kPutHash = 2,     // key, expire_at, field count (u32), field and value each
  kDelete = 3,      // key
  kExpire = 4,      // key, expire_at (0: none)
  kHashSet = 5,     // key, field, value
  kHashDelete = 6,  // key, field
  kClear = 7,       // every key
};

constexpr std::string_view kDumpMagic = "QUIVERKV";
constexpr uint32_t kDumpVersion = 1;

template <typename T>
void PutInt(std::string* out, T value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(value));
}
void PutBytes(std::string* out, std::string_view bytes) {
  PutInt(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes);
}
void PutKeyOp(std::string* out, Op op, std::string_view key) {
  out->push_back(static_cast<char>(op));
  PutBytes(out, key);
}

// The whole state of a key: kPutString or kPutHash.
void PutState(std::string* out, std::string_view key, const Entry& entry) {
  PutKeyOp(out, entry.type() == Type::kString ? kPutString : kPutHash, key);
  PutInt<int64_t>(out, entry.expire_at());
  if (entry.type() == Type::kString) {
    PutBytes(out, entry.string());
    return;
  }
  const Hash hash = entry.hash();
  PutInt(out, static_cast<uint32_t>(hash.size()));
  for (const auto& [field, value] : hash) {
    PutBytes(out, field);
    PutBytes(out, value);
  }
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}
  template <typename T>
  bool Int(T* value) {
    if (rest_.size() < sizeof(T)) return false;
    std::memcpy(value, rest_.data(), sizeof(T));
    rest_.remove_prefix(sizeof(T));
    return true;
  }
  bool Bytes(std::string_view* bytes) {
    uint32_t size;
    if (!Int(&size) || rest_.size() < size) return false;
    *bytes = rest_.substr(0, size);
    rest_.remove_prefix(size);
    return true;
  }
  bool empty() const { return rest_.empty(); }
  size_t left() const { return rest_.size(); }

 private:
  std::string_view rest_;
};

bool ReadOperation(Reader& in, Operation* out) {
  uint8_t op;
  if (!in.Int(&op) || op < kPutString || op > kClear) return false;
  out->op = op;
  if (out->op == kClear) return true;
  if (!in.Bytes(&out->key)) return false;
  switch (out->op) {
    case kPutString:
      return in.Int(&out->expire_at) && in.Bytes(&out->value);
    case kPutHash: {
      uint32_t count;
      if (!in.Int(&out->expire_at) || !in.Int(&count) || count > in.left() / 8) return false;
      out->fields.resize(count);
      for (auto& [field, value] : out->fields) {
        if (!in.Bytes(&field) || !in.Bytes(&value)) return false;
      }
      return true;
    }
    case kExpire:
      return in.Int(&out->expire_at);
    case kHashSet:
      return in.Bytes(&out->field) && in.Bytes(&out->value);
    case kHashDelete:
      return in.Bytes(&out->field);
    default:
      return true;
  }
}

thread_local LogOutcome tls_outcome;

}  // namespace

// The record a View builds: single operations as they happen, then the whole state of the keys
// it created or rewrote (`dirty`), appended when it ends. One per thread, reused.
struct ViewLog {
  std::string ops;
  std::vector<Entry*> dirty;
  bool busy = false;
  bool owned = false;  // a nested View's own (the thread's is busy)
};

namespace {
thread_local ViewLog tls_view_log;
}  // namespace

LogOutcome TakeLogOutcome() { return std::exchange(tls_outcome, LogOutcome{}); }

std::string_view TypeName(Type type) { return type == Type::kString ? "string" : "hash"; }

Keyspace::Keyspace(UnixClock clock) : clock_(std::move(clock)) { own_limit_.AddSource(this); }

Keyspace::~Keyspace() {
  expiry_.Stop();
  limit_->RemoveSource(this);
  for (Shard& shard : shards_) FreeNodes(shard.index);
}

// ---------------------------------------------------------------------------------------------
// Hashes.

std::optional<std::string_view> Hash::Find(std::string_view field) const {
  if (table_ != nullptr) {
    const HashField* found = table_->Find(field);
    if (found == nullptr) return std::nullopt;
    return found->value();
  }
  const size_t at = PackedFind(packed_, field);
  if (at == std::string_view::npos) return std::nullopt;
  const char* bytes = packed_.data() + at;
  return std::string_view(bytes + kPackedHeader + field.size(), static_cast<uint8_t>(bytes[1]));
}

HashTable::~HashTable() {
  index_.ForEach([](HashField* field) {
    field->~HashField();
    ::operator delete(field);
  });
}

HashField* HashTable::NewField(std::string_view name, size_t capacity) {
  const size_t request = sizeof(HashField) + name.size() + capacity;
  void* memory = ::operator new(request);
  HashField* field = new (memory) HashField;
  field->name_size_ = static_cast<uint32_t>(name.size());
  field->capacity_ =
      static_cast<uint32_t>(ChunkRoom(memory, request) - sizeof(HashField) - name.size());
  std::memcpy(field + 1, name.data(), name.size());
  return field;
}

uint64_t HashTable::FieldBytes(const HashField& field) {
  return ChunkBytes(sizeof(HashField) + field.name_size_ + field.capacity_);
}

const HashField* HashTable::Find(std::string_view field) const {
  return index_.Find(field, HashBytes(field));
}

bool HashTable::Set(std::string_view field, std::string_view value) {
  const uint64_t hash = HashBytes(field);
  const uint64_t slots = index_.SlotBytes();
  HashField* found = index_.Find(field, hash);
  const bool added = found == nullptr;
  const size_t header = sizeof(HashField) + field.size();
  if (added) {
    found = NewField(field, value.size());
    index_.Insert(hash, found);
    bytes_ += FieldBytes(*found);
  } else if (value.size() > found->capacity_ ||
             ChunkBytes(header + value.size()) != ChunkBytes(header + found->capacity_)) {
    // Not in its room, or a smaller chunk would do: a new field in the same slot.
    HashField* fresh = NewField(field, value.size());
    index_.Replace(found, fresh, hash);
    bytes_ += FieldBytes(*fresh) - FieldBytes(*found);
    found->~HashField();
    ::operator delete(found);
    found = fresh;
  }
  std::memcpy(reinterpret_cast<char*>(found + 1) + field.size(), value.data(), value.size());
  found->value_size_ = static_cast<uint32_t>(value.size());
  bytes_ = bytes_ + index_.SlotBytes() - slots;
  return added;
}

bool HashTable::Delete(std::string_view field) {
  const uint64_t hash = HashBytes(field);
  HashField* found = index_.Find(field, hash);
  if (found == nullptr) return false;
  const uint64_t slots = index_.SlotBytes();
  bytes_ -= FieldBytes(*found);
  index_.Erase(found, hash);
  bytes_ = bytes_ + index_.SlotBytes() - slots;
  found->~HashField();
  ::operator delete(found);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Views.

Keyspace::View::View(Keyspace& keyspace, uint64_t shards, bool replaying, std::string_view key,
                     uint64_t key_hash)
    : keyspace_(keyspace), locked_(shards), replaying_(replaying), key_(key), key_hash_(key_hash) {
  for (uint64_t rest = locked_; rest != 0; rest &= rest - 1) {
    keyspace_.shards_[std::countr_zero(rest)].mutex.lock();
  }
  now_ = keyspace_.clock_();
  if (keyspace_.log_ != nullptr && !replaying) {
    if (!tls_view_log.busy) {
      log_ = &tls_view_log;
    } else {
      log_ = new ViewLog;
      log_->owned = true;
    }
    log_->busy = true;
  }
}

Keyspace::View::~View() {
  if (log_ != nullptr) {
    for (const Entry* node : log_->dirty) PutState(&log_->ops, node->key(), *node);
    if (!log_->ops.empty()) keyspace_.NoteLogged(keyspace_.log_->Append(log_->ops), true);
    log_->ops.clear();
    log_->dirty.clear();
    if (log_->owned) {
      delete log_;
    } else {
      log_->busy = false;
    }
  }
  for (uint64_t rest = locked_; rest != 0; rest &= rest - 1) {
    keyspace_.shards_[std::countr_zero(rest)].mutex.unlock();
  }
}

std::string* Keyspace::View::ops() { return log_ != nullptr ? &log_->ops : nullptr; }

bool Keyspace::View::IsDirty(const Entry* entry) const {
  return std::find(log_->dirty.begin(), log_->dirty.end(), entry) != log_->dirty.end();
}

void Keyspace::View::MarkDirty(Entry* node) {
  if (log_ != nullptr && !IsDirty(node)) log_->dirty.push_back(node);
}

void Keyspace::View::Forget(const Entry* node, bool log_delete) {
  if (log_ == nullptr) return;
  auto& dirty = log_->dirty;
  auto it = std::find(dirty.begin(), dirty.end(), node);
  const bool was_dirty = it != dirty.end();
  if (was_dirty) dirty.erase(it);
  if (log_delete || was_dirty) PutKeyOp(&log_->ops, kDelete, node->key());
}

bool Keyspace::View::Expired(Entry* node, uint64_t hash) {
  if (replaying_ || node->expire_at_ == 0 || node->expire_at_ > now_) return false;
  Forget(node, /*log_delete=*/false);  // logged only when changed in this view
  Shard& shard = keyspace_.shards_[ShardOfHash(hash)];
  keyspace_.Remove(shard, node, hash);
  ++shard.expired;
  return true;
}

Entry* Keyspace::View::FindNode(std::string_view key, uint64_t* hash) {
  *hash = HashOf(key);
  Shard& shard = keyspace_.shards_[ShardOfHash(*hash)];
  if (shard.index.rebuilding()) {  // lookups move a rebuild on too (reads alone end it)
    shard.index.RebuildStep();
    keyspace_.Restructure(shard);
  }
  Entry* node = shard.index.Find(key, *hash);
  return node == nullptr || Expired(node, *hash) ? nullptr : node;
}

void Keyspace::NoteLogged(const Result<uint64_t>& appended, bool report) {
  if (!appended.ok()) {
    if (report && tls_outcome.error.ok()) tls_outcome.error = appended.status();
    return;
  }
  const uint64_t lsn = *appended;
  uint64_t last = last_logged_.load(std::memory_order_relaxed);
  while (last < lsn && !last_logged_.compare_exchange_weak(last, lsn)) {
  }
  if (report) tls_outcome.lsn = std::max(tls_outcome.lsn, lsn);
}

void Keyspace::LogDelete(std::string_view key) {
  if (log_ == nullptr) return;
  std::string record;
  PutKeyOp(&record, kDelete, key);
  NoteLogged(log_->Append(record), /*report=*/false);  // an eviction: no command waits for it
}

Keyspace::View Keyspace::Lock(std::span<const std::string_view> keys) {
  uint64_t shards = 0;
  for (std::string_view key : keys) shards |= uint64_t{1} << ShardOf(key);
  return View(*this, shards);
}

void Keyspace::Prefetch(std::span<const std::string_view> keys) {
  constexpr size_t kBatch = 64;
  uint64_t hashes[kBatch];
  for (size_t begin = 0; begin < keys.size(); begin += kBatch) {
    const size_t n = std::min(kBatch, keys.size() - begin);
    for (size_t i = 0; i < n; ++i) {
      hashes[i] = HashBytes(keys[begin + i]);
      shards_[ShardOfHash(hashes[i])].index.PrefetchSlot(hashes[i]);
    }
    for (size_t i = 0; i < n; ++i) {
      Shard& shard = shards_[ShardOfHash(hashes[i])];
      std::lock_guard lock(shard.mutex);
      shard.index.PrefetchItem(hashes[i]);
    }
  }
}

uint64_t Keyspace::View::BytesOf(const Entry& entry) {
  return ChunkBytes(sizeof(Entry) + entry.key_size_ + entry.capacity_) +
         (entry.table_ ? entry.table()->bytes() : 0);
}

Entry* Keyspace::NewNode(std::string_view key, size_t capacity) {
  // The whole chunk: the room past the value is free to grow into, and the count (BytesOf) is
  // the chunk's size.
  const size_t request = sizeof(Entry) + key.size() + capacity;
  void* memory = ::operator new(request);
  const size_t room = ChunkRoom(memory, request);
  Entry* node = new (memory) Entry;
  node->key_size_ = static_cast<uint32_t>(key.size());
  node->capacity_ = static_cast<uint32_t>(room - sizeof(Entry) - key.size());
  std::memcpy(reinterpret_cast<char*>(node + 1), key.data(), key.size());
  return node;
}

bool Keyspace::Fits(const Entry& node, size_t capacity) {
  const size_t header = sizeof(Entry) + node.key_size_;
  return capacity <= node.capacity_ &&
         ChunkBytes(header + capacity) == ChunkBytes(header + node.capacity_);
}

void Keyspace::FreeNode(Entry* node) {
  if (node->table_) delete node->table();
  node->~Entry();
  ::operator delete(node);
}

Entry* Keyspace::View::Find(std::string_view key) {
  uint64_t hash;
  Entry* node = FindNode(key, &hash);
  if (node != nullptr) keyspace_.Touch(*node, now_);
  return node;
}

Entry* Keyspace::View::Place(std::string_view key, Type type, std::string_view value,
                             size_t capacity) {
  const uint64_t hash = HashOf(key);
  Shard& shard = keyspace_.shards_[ShardOfHash(hash)];
  Entry* node = shard.index.Find(key, hash);
  if (node != nullptr) {  // a fresh entry, in the same node when its chunk is the one needed
    keyspace_.Unindex(shard, *node);
    if (node->table_) delete node->table();
    node->table_ = false;
    node->fields_ = 0;
    node->expire_at_ = 0;
    if (!Fits(*node, capacity)) {
      Entry* fresh = keyspace_.NewNode(key, capacity);
      shard.index.Replace(node, fresh, hash);
      if (log_ != nullptr) std::replace(log_->dirty.begin(), log_->dirty.end(), node, fresh);
      FreeNode(node);
      node = fresh;
    }
  } else {
    node = NewNode(key, capacity);
    shard.index.Insert(hash, node);
  }
  MarkDirty(node);
  node->type_ = type;
  if (!value.empty()) std::memcpy(node->value_bytes(), value.data(), value.size());  // not null
  node->size_ = static_cast<uint32_t>(value.size());
  node->access_ =
      IsLfu(keyspace_.Policy()) ? LfuNew(now_, kLfuMinuteBits) : static_cast<uint32_t>(now_);
  keyspace_.Charge(shard, static_cast<int64_t>(BytesOf(*node)));
  keyspace_.Restructure(shard);
  return node;
}

Entry* Keyspace::View::SetString(std::string_view key, std::string_view value, Millis expire_at) {
  Entry* entry = Place(key, Type::kString, value, value.size());
  if (expire_at != 0) SetExpire(key, entry, expire_at);
  return entry;
}

Entry* Keyspace::View::NewHash(std::string_view key, size_t packed_bytes) {
  // No room for more than the largest packed hash: such fields make a table.
  const size_t largest = size_t{keyspace_.MaxPackedFields()} *
                         (kPackedHeader + 2 * size_t{keyspace_.MaxPackedBytes()});
  return Place(key, Type::kHash, {}, packed_bytes <= largest ? packed_bytes : 0);
}

Entry* Keyspace::View::Move(Entry* node, size_t capacity) {
  const std::string_view key = node->key();
  const uint64_t hash = HashOf(key);
  Shard& shard = keyspace_.shards_[ShardOfHash(hash)];
  Entry* fresh = NewNode(key, capacity);
  fresh->type_ = node->type_;
  fresh->table_ = node->table_;
  fresh->fields_ = node->fields_;
  fresh->access_ = node->access_;
  fresh->expire_at_ = node->expire_at_;
  fresh->volatile_index_ = node->volatile_index_;
  // The value bytes that fit (a Rewrite to a shorter value moves into a smaller node).
  fresh->size_ = std::min(node->size_, fresh->capacity_);
  std::memcpy(fresh->value_bytes(), node->value_bytes(), fresh->size_);
  shard.index.Replace(node, fresh, hash);
  if (node->expire_at_ != 0) shard.volatile_keys[node->volatile_index_] = fresh;
  if (log_ != nullptr) std::replace(log_->dirty.begin(), log_->dirty.end(), node, fresh);
  keyspace_.Charge(shard,
                   static_cast<int64_t>(BytesOf(*fresh)) - static_cast<int64_t>(BytesOf(*node)));
  node->table_ = false;  // the table, if any, is the new node's now
  FreeNode(node);
  return fresh;
}

Entry* Keyspace::View::Rewrite(Entry* entry, std::string_view value) {
  if (!Fits(*entry, value.size())) entry = Move(entry, value.size());
  std::memcpy(entry->value_bytes(), value.data(), value.size());
  entry->size_ = static_cast<uint32_t>(value.size());
  MarkDirty(entry);
  return entry;
}

Entry* Keyspace::View::Append(Entry* entry, std::string_view tail) {
  const size_t size = entry->size_ + tail.size();
  if (size > entry->capacity_) {
    // Twice the size, or a megabyte more once that is larger (Redis's sds growth).
    constexpr size_t kStep = size_t{1} << 20;
    entry = Move(entry, size < kStep ? 2 * size : size + kStep);
  }
  std::memcpy(entry->value_bytes() + entry->size_, tail.data(), tail.size());
  entry->size_ = static_cast<uint32_t>(size);
  MarkDirty(entry);
  return entry;
}

Entry* Keyspace::View::HashSet(std::string_view key, Entry* entry, std::string_view field,
                               std::string_view value, bool* added) {
  if (log_ != nullptr && !IsDirty(entry)) {
    PutKeyOp(&log_->ops, kHashSet, key);
    PutBytes(&log_->ops, field);
    PutBytes(&log_->ops, value);
  }
  bool fresh;
  if (!entry->table_) {
    const size_t at = PackedFind(entry->value(), field);
    fresh = at == std::string_view::npos;
    const uint32_t max_bytes = keyspace_.MaxPackedBytes();
    const bool fits = field.size() <= max_bytes && value.size() <= max_bytes &&
                      (!fresh || entry->fields_ < keyspace_.MaxPackedFields());
    if (fits) {
      if (added != nullptr) *added = fresh;
      return SetPacked(entry, at, field, value);
    }
    entry = Unpack(entry);
  }
  HashTable& table = *entry->table();
  const uint64_t before = table.bytes();
  fresh = table.Set(field, value);
  keyspace_.Charge(keyspace_.shards_[ShardOfHash(HashOf(key))],
                   static_cast<int64_t>(table.bytes()) - static_cast<int64_t>(before));
  if (added != nullptr) *added = fresh;
  return entry;
}

Entry* Keyspace::View::SetPacked(Entry* entry, size_t at, std::string_view field,
                                 std::string_view value) {
  const bool fresh = at == std::string_view::npos;
  if (fresh) at = entry->size_;  // added at the end
  const size_t old_bytes = fresh ? 0 : PackedBytesAt(entry->value_bytes() + at);
  const size_t new_bytes = HashPackedBytes(field, value);
  const size_t size = entry->size_ - old_bytes + new_bytes;
  if (size > entry->capacity_) entry = Move(entry, size);  // exactly: small hashes stay small
  char* bytes = entry->value_bytes();
  std::memmove(bytes + at + new_bytes, bytes + at + old_bytes, entry->size_ - at - old_bytes);
  bytes[at] = static_cast<char>(field.size());
  bytes[at + 1] = static_cast<char>(value.size());
  std::memcpy(bytes + at + kPackedHeader, field.data(), field.size());
  std::memcpy(bytes + at + kPackedHeader + field.size(), value.data(), value.size());
  entry->size_ = static_cast<uint32_t>(size);
  if (fresh) ++entry->fields_;
  // A shorter value: a smaller chunk (a longer one may be filling room made for it: NewHash).
  return new_bytes >= old_bytes || Fits(*entry, size) ? entry : Move(entry, size);
}

Entry* Keyspace::View::Unpack(Entry* entry) {
  auto table = std::make_unique<HashTable>();
  for (const auto& [field, value] : entry->hash()) table->Set(field, value);
  if (!Fits(*entry, sizeof(HashTable*))) entry = Move(entry, sizeof(HashTable*));
  keyspace_.Charge(keyspace_.shards_[ShardOfHash(HashOf(entry->key()))],
                   static_cast<int64_t>(table->bytes()));
  HashTable* owned = table.release();
  std::memcpy(entry->value_bytes(), &owned, sizeof(owned));
  entry->size_ = sizeof(owned);
  entry->table_ = true;
  entry->fields_ = 0;
  return entry;
}

Entry* Keyspace::View::HashDelete(std::string_view key, Entry* entry, std::string_view field,
                                  bool* deleted) {
  bool found;
  if (entry->table_) {
    HashTable& table = *entry->table();
    const uint64_t before = table.bytes();
    found = table.Delete(field);
    keyspace_.Charge(keyspace_.shards_[ShardOfHash(HashOf(key))],
                     static_cast<int64_t>(table.bytes()) - static_cast<int64_t>(before));
  } else {
    const size_t at = PackedFind(entry->value(), field);
    found = at != std::string_view::npos;
    if (found) {
      char* bytes = entry->value_bytes();
      const size_t gone = PackedBytesAt(bytes + at);
      std::memmove(bytes + at, bytes + at + gone, entry->size_ - at - gone);
      entry->size_ -= static_cast<uint32_t>(gone);
      --entry->fields_;
      // A smaller chunk (not for a hash left empty: the caller erases it).
      if (entry->fields_ != 0 && !Fits(*entry, entry->size_)) entry = Move(entry, entry->size_);
    }
  }
  if (found && log_ != nullptr && !IsDirty(entry)) {
    PutKeyOp(&log_->ops, kHashDelete, key);
    PutBytes(&log_->ops, field);
  }
  if (deleted != nullptr) *deleted = found;
  return entry;
}

bool Keyspace::View::Erase(std::string_view key) {
  uint64_t hash;
  Entry* node = FindNode(key, &hash);
  if (node == nullptr) return false;
  Forget(node, /*log_delete=*/true);
  keyspace_.Remove(keyspace_.shards_[ShardOfHash(hash)], node, hash);
  return true;
}

bool Keyspace::View::Rename(std::string_view from, std::string_view to) {
  uint64_t hash;
  Entry* source = FindNode(from, &hash);
  if (source == nullptr) return false;
  if (from == to) return true;
  const Millis expire_at = source->expire_at_;
  // The value's bytes (a large hash's: its table's pointer) go to the target.
  Entry* target = Place(to, source->type_, source->value(), source->size_);
  target->table_ = source->table_;
  target->fields_ = source->fields_;
  keyspace_.Charge(keyspace_.shards_[ShardOfHash(HashOf(to))],
                   target->table_ ? static_cast<int64_t>(target->table()->bytes()) : 0);
  // The source leaves (counted out with its table, which the target now holds).
  Forget(source, /*log_delete=*/true);
  Shard& shard = keyspace_.shards_[ShardOfHash(hash)];
  keyspace_.Unindex(shard, *source);
  source->table_ = false;
  keyspace_.Drop(shard, source, hash);
  if (expire_at != 0) SetExpire(to, target, expire_at);
  return true;
}

void Keyspace::View::SetExpire(std::string_view key, Entry* entry, Millis expire_at) {
  Shard& shard = keyspace_.shards_[ShardOfHash(HashOf(key))];
  if (log_ != nullptr && !IsDirty(entry)) {
    PutKeyOp(&log_->ops, kExpire, key);
    PutInt<int64_t>(&log_->ops, expire_at);
  }
  if ((entry->expire_at_ != 0) == (expire_at != 0)) {
    entry->expire_at_ = expire_at;
    return;
  }
  if (expire_at != 0) {  // joins the keys with a TTL
    entry->volatile_index_ = static_cast<uint32_t>(shard.volatile_keys.size());
    shard.volatile_keys.push_back(entry);
  } else {  // leaves them: the last one takes its place
    const uint32_t index = entry->volatile_index_;
    Entry* last = shard.volatile_keys.back();
    shard.volatile_keys[index] = last;
    last->volatile_index_ = index;
    shard.volatile_keys.pop_back();
  }
  entry->expire_at_ = expire_at;
  keyspace_.Restructure(shard);
}

void Keyspace::Charge(Shard& shard, int64_t delta) {
  shard.bytes += delta;
  used_.fetch_add(delta, std::memory_order_relaxed);
}

void Keyspace::Restructure(Shard& shard) {
  const int64_t structure = static_cast<int64_t>(
      shard.index.SlotBytes() + ChunkBytes(shard.volatile_keys.capacity() * sizeof(void*)));
  Charge(shard, structure - shard.structure);
  shard.structure = structure;
  Recount(shard);
}

void Keyspace::Recount(Shard& shard) {
  const auto keys = static_cast<int64_t>(shard.index.size());
  const auto volatile_keys = static_cast<int64_t>(shard.volatile_keys.size());
  if (keys != shard.counted_keys) {
    keys_.fetch_add(keys - shard.counted_keys, std::memory_order_relaxed);
    shard.counted_keys = keys;
  }
  if (volatile_keys != shard.counted_volatile) {
    volatile_count_.fetch_add(volatile_keys - shard.counted_volatile, std::memory_order_relaxed);
    shard.counted_volatile = volatile_keys;
  }
}

void Keyspace::Unindex(Shard& shard, const Entry& node) {
  if (node.expire_at_ != 0) {
    const uint32_t index = node.volatile_index_;
    Entry* last = shard.volatile_keys.back();
    shard.volatile_keys[index] = last;
    last->volatile_index_ = index;
    shard.volatile_keys.pop_back();
  }
  Charge(shard, -static_cast<int64_t>(View::BytesOf(node)));
}

void Keyspace::Drop(Shard& shard, Entry* node, uint64_t hash) {
  shard.index.Erase(node, hash);
  FreeNode(node);
  Restructure(shard);
}

void Keyspace::Remove(Shard& shard, Entry* node, uint64_t hash) {
  Unindex(shard, *node);
  Drop(shard, node, hash);
}

bool Keyspace::ExpireIfDue(Shard& shard, Entry* node, Millis now) {
  if (node->expire_at_ == 0 || node->expire_at_ > now) return false;
  Remove(shard, node, HashBytes(node->key()));
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
    shard.index.ForEach([&](const Entry* node) {
      if (node->expire_at_ != 0 && node->expire_at_ <= now) return;
      if (Match(pattern, node->key())) keys.emplace_back(node->key());
    });
  }
  return keys;
}

uint64_t Keyspace::Scan(uint64_t cursor, size_t count, std::string_view pattern,
                        std::optional<Type> type, std::vector<std::string>* out) {
  // Cursor: shard (6 bits), slot position (29 bits), and the low 29 bits of the shard index's
  // generation when it was issued. Positions are walked in order; a key keeps its position until
  // the index is rebuilt, and after a rebuild (another generation) the shard is walked again
  // from its first position: keys may come twice, but none present for the whole scan is missed.
  constexpr uint64_t kPositionBits = 29;
  constexpr uint64_t kMask = (uint64_t{1} << kPositionBits) - 1;
  size_t shard_index = cursor % kShards;
  uint64_t position = (cursor >> 6) & kMask;
  const uint64_t tag = cursor >> (6 + kPositionBits);
  const Millis now = clock_();
  size_t visited = 0, empty = 0;
  for (; shard_index < kShards; ++shard_index, position = 0) {
    Shard& shard = shards_[shard_index];
    std::lock_guard lock(shard.mutex);
    // Positions hold from one call to the next only without a rebuild under way.
    if (shard.index.rebuilding()) {
      shard.index.FinishRebuild();
      Restructure(shard);
    }
    const uint64_t generation = shard.index.generation() & kMask;
    if (position != 0 && tag != generation) position = 0;
    for (; position < shard.index.positions(); ++position) {
      if (visited >= count || empty >= 10 * count) {
        return (generation << (6 + kPositionBits)) | (position << 6) | shard_index;
      }
      const Entry* node = shard.index.At(position);
      if (node == nullptr) {
        ++empty;
        continue;
      }
      ++visited;
      if (node->expire_at_ != 0 && node->expire_at_ <= now) continue;
      if (type && node->type_ != *type) continue;
      if (Match(pattern, node->key())) out->emplace_back(node->key());
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
    const Entry* node = shard.index.NextFrom(pick / kShards);
    if (node != nullptr && (node->expire_at_ == 0 || node->expire_at_ > now)) {
      return std::string(node->key());
    }
  }
  // Sparse or mostly expired: a full walk.
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (size_t i = 0; i < shard.index.positions(); ++i) {
      const Entry* node = shard.index.At(i);
      if (node != nullptr && (node->expire_at_ == 0 || node->expire_at_ > now)) {
        return std::string(node->key());
      }
    }
  }
  return std::nullopt;
}

int64_t Keyspace::Size() {
  int64_t size = 0;
  const Millis now = clock_();
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    size += static_cast<int64_t>(shard.index.size());
    // Keys whose time has come but that no one touched yet do not count.
    for (const Entry* node : shard.volatile_keys) size -= node->expire_at_ <= now;
  }
  return size;
}

void Keyspace::Clear() {
  std::vector<OpenIndex<Entry>> doomed(kShards);  // freed outside the locks
  {
    View all(*this, ~uint64_t{0});  // one atomic change, logged as one operation
    for (size_t i = 0; i < kShards; ++i) ClearShard(shards_[i], &doomed[i]);
    if (std::string* ops = all.ops()) ops->push_back(static_cast<char>(kClear));
  }
  for (auto& index : doomed) FreeNodes(index);
}

void Keyspace::ClearShard(Shard& shard, OpenIndex<Entry>* doomed) {
  doomed->swap(shard.index);
  std::vector<Entry*>().swap(shard.volatile_keys);
  Charge(shard, -shard.bytes);
  shard.structure = 0;
  Recount(shard);
}

void Keyspace::FreeNodes(OpenIndex<Entry>& index) {
  index.ForEach(FreeNode);
  index = OpenIndex<Entry>();
}

KeyspaceStats Keyspace::Stats() {
  KeyspaceStats stats;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    stats.keys += static_cast<int64_t>(shard.index.size());
    stats.keys_with_ttl += static_cast<int64_t>(shard.volatile_keys.size());
    stats.expired += shard.expired;
    stats.evicted += shard.evicted;
  }
  stats.bytes = UsedMemory();
  return stats;
}

// ---------------------------------------------------------------------------------------------
// Persistence.

Result<int64_t> Keyspace::Dump(const std::function<Status(std::string_view)>& sink) {
  std::string section(kDumpMagic);
  PutInt(&section, kDumpVersion);
  PutInt(&section, static_cast<uint32_t>(kShards));
  QUIVER_RETURN_NOT_OK(sink(section));
  int64_t keys = 0;
  for (Shard& shard : shards_) {
    section.clear();
    {
      std::lock_guard lock(shard.mutex);
      // Every record touching this shard up to here is applied, and no later one is: records are
      // appended under the shard's lock.
      PutInt<uint64_t>(&section, log_ != nullptr ? log_->LastLsn() : 0);
      PutInt<uint64_t>(&section, 0);  // the key count, set below
      const Millis now = clock_();
      uint64_t count = 0;
      shard.index.ForEach([&](const Entry* node) {
        if (node->expire_at_ != 0 && node->expire_at_ <= now) return;
        PutState(&section, node->key(), *node);
        ++count;
      });
      std::memcpy(section.data() + sizeof(uint64_t), &count, sizeof(count));
      keys += static_cast<int64_t>(count);
    }
    QUIVER_RETURN_NOT_OK(sink(section));
  }
  return keys;
}

std::pair<uint64_t, uint64_t> Keyspace::Quiesced(const std::function<uint64_t()>& position) {
  const uint64_t at = position();
  // A record with an LSN up to `at` was appended by a View that held its shards' locks and
  // noted its LSN before releasing them: once each shard was locked after `at` was read, every
  // such LSN is in last_logged_.
  for (Shard& shard : shards_) std::lock_guard lock(shard.mutex);
  return {LastLoggedLsn(), at};
}

Result<int64_t> Keyspace::Load(std::string_view dump) {
  auto corrupt = [&](const std::string& what) {
    Clear();
    return Status::Corruption("the keyspace dump " + what);
  };
  if (!dump.starts_with(kDumpMagic))
    return corrupt("does not start with " + std::string(kDumpMagic));
  Reader in(dump.substr(kDumpMagic.size()));
  uint32_t version, shards;
  if (!in.Int(&version) || version != kDumpVersion) return corrupt("has an unknown version");
  if (!in.Int(&shards) || shards != kShards) return corrupt("has a different shard count");
  Operation op;
  int64_t keys = 0;
  for (size_t s = 0; s < kShards; ++s) {
    uint64_t lsn, count;
    if (!in.Int(&lsn) || !in.Int(&count)) return corrupt("is cut short");
    for (uint64_t k = 0; k < count; ++k) {
      if (!ReadOperation(in, &op) || (op.op != kPutString && op.op != kPutHash)) {
        return corrupt("has an unreadable key in shard " + std::to_string(s));
      }
      if (ShardOf(op.key) != s) return corrupt("puts a key in the wrong shard");
      Apply(op);
      ++keys;
    }
    floors_[s] = lsn;
  }
  if (!in.empty()) return corrupt("has bytes after its last shard");
  return keys;
}

Status Keyspace::Replay(std::string_view record, uint64_t lsn) {
  Reader in(record);
  Operation op;
  while (!in.empty()) {
    if (!ReadOperation(in, &op)) return Status::Corruption("an unreadable key-value record");
    if (op.op == kClear) {
      for (size_t s = 0; s < kShards; ++s) {
        if (lsn <= floors_[s]) continue;
        OpenIndex<Entry> doomed;
        {
          std::lock_guard lock(shards_[s].mutex);
          ClearShard(shards_[s], &doomed);
        }
        FreeNodes(doomed);
      }
    } else if (lsn > floors_[ShardOf(op.key)]) {
      Apply(op);
    }
  }
  // A later snapshot must know that the keyspace holds changes up to here.
  NoteLogged(lsn, /*report=*/false);
  return Status::OK();
}

void Keyspace::Apply(const Operation& op) {
  View view(*this, uint64_t{1} << ShardOf(op.key), /*replaying=*/true);
  Entry* entry =
      op.op == kPutString || op.op == kPutHash || op.op == kDelete ? nullptr : view.Find(op.key);
  switch (op.op) {
    case kPutString:
      entry = view.SetString(op.key, op.value);
      break;
    case kPutHash: {
      size_t packed_bytes = 0;
      for (const auto& [field, value] : op.fields) packed_bytes += HashPackedBytes(field, value);
      entry = view.NewHash(op.key, packed_bytes);
      for (const auto& [field, value] : op.fields) {
        entry = view.HashSet(op.key, entry, field, value);
      }
      break;
    }
    case kDelete:
      view.Erase(op.key);
      break;
    case kExpire:
      if (entry != nullptr) view.SetExpire(op.key, entry, op.expire_at);
      break;
    case kHashSet:
      if (entry == nullptr || entry->type_ != Type::kHash) entry = view.NewHash(op.key);
      entry = view.HashSet(op.key, entry, op.field, op.value);
      break;
    case kHashDelete:
      if (entry != nullptr && entry->type_ == Type::kHash) {
        entry = view.HashDelete(op.key, entry, op.field);
        if (entry->hash().empty()) view.Erase(op.key);
      }
      break;
    case kClear:
      break;
  }
  if ((op.op == kPutString || op.op == kPutHash) && op.expire_at != 0) {
    view.SetExpire(op.key, entry, op.expire_at);
  }
}

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
