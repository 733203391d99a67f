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

thread_local LogOutcome tls_outcome;

}  // namespace

// The record a View builds: single operations as they happen, then the whole state of the keys
// it created or rewrote (`dirty`), appended when it ends. One per thread, reused.
struct ViewLog {
  std::unique_ptr<KeyspaceRecord> record;
  KeyspaceLog* maker = nullptr;  // the log `record` is of
  std::vector<Entry*> dirty;
  Operation state;  // scratch for a dirty key's state
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
    if (log_->maker != keyspace_.log_) {
      log_->record = keyspace_.log_->NewRecord();
      log_->maker = keyspace_.log_;
    }
  }
}

Keyspace::View::~View() {  // NOLINT(bugprone-exception-escape): keyspace.h
  if (log_ != nullptr) {
    try {
      for (const Entry* node : log_->dirty) {
        StateOf(node->key(), *node, &log_->state);
        log_->record->Add(log_->state);
      }
      if (!log_->record->empty()) {
        keyspace_.NoteLogged(keyspace_.log_->Append(*log_->record), true);
      }
    } catch (const std::bad_alloc&) {
      // Applied in memory, but its record could not be built: the command is answered MISCONF
      // (TakeLogOutcome), not taken as done.
      keyspace_.NoteLogged(Status::OutOfMemory("no memory for the change's log record"), true);
    }
    log_->record->Clear();
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

void Keyspace::View::Log(const Operation& op) {
  if (log_ != nullptr) log_->record->Add(op);
}

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
  if (log_delete || was_dirty) Log({.code = OpCode::kDelete, .key = node->key()});
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
  std::unique_ptr<KeyspaceRecord> record = log_->NewRecord();
  record->Add({.code = OpCode::kDelete, .key = key});
  NoteLogged(log_->Append(*record), /*report=*/false);  // an eviction: no command waits for it
}

Keyspace::View Keyspace::Lock(std::span<const std::string_view> keys) {
  uint64_t shards = 0;
  for (std::string_view key : keys) shards |= uint64_t{1} << ShardOfKey(key);
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
    Log({.code = OpCode::kHashSet, .key = key, .field = field, .value = value});
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
  // The node holds the table's pointer, its own bytes (Entry::table()).
  constexpr size_t kPointerBytes = sizeof(HashTable*);  // NOLINT(bugprone-sizeof-expression)
  if (!Fits(*entry, kPointerBytes)) entry = Move(entry, kPointerBytes);
  keyspace_.Charge(keyspace_.shards_[ShardOfHash(HashOf(entry->key()))],
                   static_cast<int64_t>(table->bytes()));
  HashTable* owned = table.release();
  std::memcpy(entry->value_bytes(), &owned, kPointerBytes);
  entry->size_ = kPointerBytes;
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
    Log({.code = OpCode::kHashDelete, .key = key, .field = field});
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
    Log({.code = OpCode::kExpire, .key = key, .expire_at = expire_at});
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
  // Cursor: shard (6 bits), slot position (29 bits), and the low 28 bits of the shard index's
  // generation when it was issued (bit 63 is never set: kScanTableCursor). Positions are walked in
  // order; a key keeps its position until the index is rebuilt, and after a rebuild (another
  // generation) the shard is walked again from its first position: keys may come twice, but none
  // present for the whole scan is missed.
  constexpr uint64_t kPositionBits = 29;
  constexpr uint64_t kMask = (uint64_t{1} << kPositionBits) - 1;
  size_t shard_index = cursor % kShards;
  uint64_t position = (cursor >> 6) & kMask;
  constexpr uint64_t kTagMask = (uint64_t{1} << 28) - 1;
  const uint64_t tag = (cursor >> (6 + kPositionBits)) & kTagMask;
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
    const uint64_t generation = shard.index.generation() & kTagMask;
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
    all.Log({.code = OpCode::kClear});
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

}  // namespace quiver::kv
