// Keyspace persistence: dumps (a DumpWriter's sections, shard by shard) and recovery (a dump
// restored, the log's operations replayed). The bytes are storage's (storage/log_records.h).
#include <mutex>
#include <string_view>

#include "kv/keyspace.h"

namespace quiver::kv {

void StateOf(std::string_view key, const Entry& entry, Operation* op) {
  op->key = key;
  op->expire_at = entry.expire_at();
  op->fields.clear();
  if (entry.type() == Type::kString) {
    op->code = OpCode::kPutString;
    op->value = entry.string();
    return;
  }
  op->code = OpCode::kPutHash;
  const Hash hash = entry.hash();
  op->fields.reserve(hash.size());
  for (const auto& [field, value] : hash) op->fields.emplace_back(field, value);
}

Result<int64_t> Keyspace::Dump(DumpWriter& writer) {
  int64_t keys = 0;
  Operation state;
  for (Shard& shard : shards_) {
    {
      std::lock_guard lock(shard.mutex);
      // Every record touching this shard up to here is applied, and no later one is: records are
      // appended under the shard's lock.
      writer.BeginSection(log_ != nullptr ? log_->LastLsn() : 0);
      const Millis now = clock_();
      uint64_t count = 0;
      shard.index.ForEach([&](const Entry* node) {
        if (node->expire_at_ != 0 && node->expire_at_ <= now) return;
        StateOf(node->key(), *node, &state);
        writer.Add(state);
        ++count;
      });
      writer.EndSection(count);
      keys += static_cast<int64_t>(count);
    }
    QUIVER_RETURN_NOT_OK(writer.Flush());
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

void Keyspace::Restore(const Operation& key_state) { Apply(key_state); }

void Keyspace::RestoredShard(size_t shard, uint64_t lsn) { floors_[shard] = lsn; }

void Keyspace::Replay(const Operation& op, uint64_t lsn) {
  if (op.code != OpCode::kClear) {
    if (lsn > floors_[ShardOfKey(op.key)]) Apply(op);
    return;
  }
  for (size_t s = 0; s < kShards; ++s) {
    if (lsn <= floors_[s]) continue;
    OpenIndex<Entry> doomed;
    {
      std::lock_guard lock(shards_[s].mutex);
      ClearShard(shards_[s], &doomed);
    }
    FreeNodes(doomed);
  }
}

void Keyspace::Replayed(uint64_t lsn) {
  // A later snapshot must know that the keyspace holds changes up to here.
  NoteLogged(lsn, /*report=*/false);
}

void Keyspace::Apply(const Operation& op) {
  View view(*this, uint64_t{1} << ShardOfKey(op.key), /*replaying=*/true);
  const bool whole = op.code == OpCode::kPutString || op.code == OpCode::kPutHash;
  Entry* entry = whole || op.code == OpCode::kDelete ? nullptr : view.Find(op.key);
  switch (op.code) {
    case OpCode::kPutString:
      entry = view.SetString(op.key, op.value);
      break;
    case OpCode::kPutHash: {
      size_t packed_bytes = 0;
      for (const auto& [field, value] : op.fields) packed_bytes += HashPackedBytes(field, value);
      entry = view.NewHash(op.key, packed_bytes);
      for (const auto& [field, value] : op.fields) {
        entry = view.HashSet(op.key, entry, field, value);
      }
      break;
    }
    case OpCode::kDelete:
      view.Erase(op.key);
      break;
    case OpCode::kExpire:
      if (entry != nullptr) view.SetExpire(op.key, entry, op.expire_at);
      break;
    case OpCode::kHashSet:
      if (entry == nullptr || entry->type_ != Type::kHash) entry = view.NewHash(op.key);
      entry = view.HashSet(op.key, entry, op.field, op.value);
      break;
    case OpCode::kHashDelete:
      if (entry != nullptr && entry->type_ == Type::kHash) {
        entry = view.HashDelete(op.key, entry, op.field);
        if (entry->hash().empty()) view.Erase(op.key);
      }
      break;
    case OpCode::kClear:
      break;
  }
  if (whole && op.expire_at != 0) {
    view.SetExpire(op.key, entry, op.expire_at);
  }
}

}  // namespace quiver::kv
