#include <arrow/api.h>
#include <arrow/util/byte_size.h>

#include <algorithm>
#include <limits>
#include <string>
#include <unordered_set>

#include "common/active_expiry.h"
#include "common/arrow_status.h"
#include "common/hash.h"
#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {

// Expiry (passive and active) and eviction under a memory limit.

bool Table::ExpiredAt(uint32_t row_id, int64_t now) const {
  return now != 0 && IsDue(ExpiryOf(rows_.Row(row_id)), now);
}

void Table::TrackExpiry(uint32_t row_id, bool expires) {
  if (expires) {
    if (expiring_slot_.size() <= row_id) expiring_slot_.resize(size_t{row_id} + 1);
    if (expiring_slot_[row_id] == 0) {
      expiring_.push_back(row_id);
      expiring_slot_[row_id] = static_cast<uint32_t>(expiring_.size());
    }
  } else if (row_id < expiring_slot_.size() && expiring_slot_[row_id] != 0) {
    const uint32_t slot = expiring_slot_[row_id] - 1;
    const uint32_t last = expiring_.back();
    expiring_[slot] = last;
    expiring_slot_[last] = slot + 1;
    expiring_.pop_back();
    expiring_slot_[row_id] = 0;
  }
}

int64_t Table::ExpireCycle(int64_t budget_us) {
  ActiveExpiry cycle(budget_us);
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (expiring_.empty()) return 0;
  const int64_t now = clock_();
  const int64_t reclaimed = cycle.Run([&] {
    ActiveExpiry::Round round;
    for (; round.sampled < ActiveExpiry::kSample && !expiring_.empty(); ++round.sampled) {
      sample_state_ ^= sample_state_ << 13;
      sample_state_ ^= sample_state_ >> 7;
      sample_state_ ^= sample_state_ << 17;
      const uint32_t row_id = expiring_[sample_state_ % expiring_.size()];
      if (!ExpiredAt(row_id, now)) continue;
      const std::string key = StoredKey(rows_.Row(row_id), layout_, heap_);
      Reclaim(row_id, HashBytes(key));
      ++round.expired;
    }
    return round;
  });
  stat_expired_.fetch_add(reclaimed, std::memory_order_relaxed);
  FinishWrite();
  return reclaimed;
}

// ---------------------------------------------------------------------------------------------
// Memory limit and eviction.

void Table::AttachMemoryLimit(MemoryLimit* limit) {
  std::lock_guard lock(limit_mutex_);
  MemoryLimit* old = limit_.exchange(limit, std::memory_order_acq_rel);
  if (old == limit) return;
  if (old != nullptr) old->RemoveSource(this);
  if (limit != nullptr) limit->AddSource(this);
}

uint64_t Table::UsedMemory() const {
  // Rows in memory: cold rows hold only their index entry here.
  const int64_t resident =
      row_count_.load(std::memory_order_relaxed) - cold_rows_.load(std::memory_order_relaxed);
  return static_cast<uint64_t>(std::max<int64_t>(0, resident)) * layout_.row_width() +
         stat_index_bytes_.load(std::memory_order_relaxed) +
         stat_heap_live_.load(std::memory_order_relaxed);
}

int64_t Table::EvictableKeys(EvictionPolicy policy) {
  // With a tier, any row in memory may move to disk, whatever the policy.
  if (Demotes()) {
    return row_count_.load(std::memory_order_relaxed) - cold_rows_.load(std::memory_order_relaxed);
  }
  return IsVolatile(policy) ? stat_expiring_.load(std::memory_order_relaxed)
                            : row_count_.load(std::memory_order_relaxed);
}

uint64_t Table::HeapBytesOf(const std::byte* row) const {
  uint64_t bytes = 0;
  for (const ColumnLayout& layout : layout_.var_slots()) {
    const VarRef ref = LoadVarRef(row + layout.offset, layout.width);
    if (ref.length > kVarInlineBytes) bytes += ref.length;
  }
  return bytes;
}

bool Table::Sample(EvictionPolicy policy, uint64_t random, int64_t now_ms, EvictionCandidate* out) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  return SampleLocked(policy, random, now_ms, out);
}

bool Table::SampleLocked(EvictionPolicy policy, uint64_t random, int64_t now_ms,
                         EvictionCandidate* out) {
  uint32_t row_id = HashIndex::kNoRow;
  if (IsVolatile(policy) && !Demotes()) {
    if (expiring_.empty()) return false;
    row_id = expiring_[random % expiring_.size()];
  } else {
    if (next_row_ == 0 ||
        row_count_.load(std::memory_order_relaxed) == cold_rows_.load(std::memory_order_relaxed)) {
      return false;
    }
    // The first row in use at or after a random row. Rows in use are dense unless many were
    // deleted (their slots are reused first): the walk is 1 / density rows long on average.
    const uint64_t start = random % next_row_;
    for (uint64_t k = 0; k < next_row_; ++k) {
      const auto candidate = static_cast<uint32_t>((start + k) % next_row_);
      if (RowLiveForWriter(rows_.Row(candidate))) {
        row_id = candidate;
        break;
      }
    }
    if (row_id == HashIndex::kNoRow) return false;
  }
  std::byte* row = rows_.Row(row_id);
  const uint64_t meta = RowMeta(row).load(std::memory_order_relaxed);
  const auto expire_at = static_cast<int64_t>(meta & kRowExpiryMask);
  const auto access = static_cast<uint32_t>(meta >> kRowAccessShift);
  if (IsDue(expire_at, now_ms)) {
    out->score = std::numeric_limits<uint64_t>::max();  // gone already: reclaimed first
  } else if (IsLfu(policy)) {
    out->score = 255 - LfuCounter(access, now_ms, kRowLfuMinuteBits);
  } else if (policy == EvictionPolicy::kVolatileTtl) {
    out->score = std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(expire_at);
  } else {
    // Idle milliseconds, comparable with the keyspace's: the clock counts seconds, so the access
    // is taken to be in the middle of its second.
    const auto seconds = static_cast<uint32_t>(now_ms / 1000) & kRowAccessMask;
    const int64_t idle = int64_t{(seconds - access) & kRowAccessMask} * 1000 + now_ms % 1000 - 500;
    out->score = static_cast<uint64_t>(std::max<int64_t>(0, idle));
  }
  out->bytes = layout_.row_width() + kIndexBytesPerRow + HeapBytesOf(row);
  out->id = row_id;
  out->version = RowSeq(row).load(std::memory_order_relaxed);
  out->key = StoredKey(row, layout_, heap_);
  return true;
}

int64_t Table::Evict(EvictionPolicy policy, const std::vector<EvictionCandidate>& victims) {
  if (Demotes()) {
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (successor_ != nullptr) return 0;  // replaced: the successor does its own
    // A few rows at a time would cost a disk write and a grace period each: more of the coldest
    // go along, up to kMinDemoteBytes in all (the best of 5 samples each, as the limit picks).
    uint64_t bytes = 0;
    for (const EvictionCandidate& victim : victims) bytes += victim.bytes;
    if (bytes >= kMinDemoteBytes) return Demote(victims);
    std::vector<EvictionCandidate> more = victims;
    std::vector<EvictionCandidate> drawn;
    const uint64_t per_row = layout_.row_width() + kIndexBytesPerRow;
    const size_t extra = (kMinDemoteBytes - bytes) / per_row;
    const int64_t now = clock_();
    for (size_t k = 0; k < extra * 5; ++k) {
      EvictionCandidate candidate;
      if (SampleLocked(policy, FastRandom(), now, &candidate))
        drawn.push_back(std::move(candidate));
    }
    std::sort(
        drawn.begin(), drawn.end(),
        [](const EvictionCandidate& a, const EvictionCandidate& b) { return a.score > b.score; });
    std::unordered_set<uint64_t> chosen;
    for (const EvictionCandidate& victim : victims) chosen.insert(victim.id);
    for (EvictionCandidate& candidate : drawn) {
      if (more.size() >= victims.size() + extra) break;
      if (chosen.insert(candidate.id).second) more.push_back(std::move(candidate));
    }
    return Demote(more);
  }
  const bool composite = schema_.composite_key();
  const bool int_keys = !composite && schema_.key().type->id() == arrow::Type::INT64;
  Result<int64_t> evicted = Journaled<int64_t>(
      [&](WriteMode mode, uint64_t* lsn) -> Result<int64_t> {
        const int64_t now = clock_();
        arrow::Int64Builder ints;
        arrow::StringBuilder strings;
        arrow::BinaryBuilder encoded;  // a composite key's
        int64_t reclaimed = 0;
        for (const EvictionCandidate& victim : victims) {
          if (victim.id >= next_row_) continue;
          const auto row_id = static_cast<uint32_t>(victim.id);
          std::byte* row = rows_.Row(row_id);
          // Gone or rewritten since it was sampled (a write is an access: it no longer qualifies).
          if (!RowLiveForWriter(row) ||
              RowSeq(row).load(std::memory_order_relaxed) != victim.version) {
            continue;
          }
          if (IsVolatile(policy) && ExpiryOf(row) == 0) continue;
          if (ExpiredAt(row_id, now)) {  // expired meanwhile: reclaimed, as by active expiry
            Reclaim(row_id, HashBytes(victim.key));
            ++reclaimed;
            continue;
          }
          if (int_keys) {
            int64_t key;
            std::memcpy(&key, victim.key.data(), sizeof(key));
            QUIVER_RETURN_NOT_OK_ARROW(ints.Append(key));
          } else {
            QUIVER_RETURN_NOT_OK_ARROW(composite ? encoded.Append(victim.key)
                                                 : strings.Append(victim.key));
          }
        }
        stat_expired_.fetch_add(reclaimed, std::memory_order_relaxed);
        std::shared_ptr<arrow::Array> keys;
        QUIVER_RETURN_NOT_OK_ARROW(int_keys    ? ints.Finish(&keys)
                                   : composite ? encoded.Finish(&keys)
                                               : strings.Finish(&keys));
        if (keys->length() == 0) {
          FinishWrite();
          return int64_t{0};
        }
        return DeleteLocked(*keys, mode, lsn);
      },
      [](Table&) -> Result<int64_t> { return 0; });  // replaced: the successor evicts for itself
  if (!evicted.ok()) {
    // The journal refused the delete (changed nothing): the limit sees no room made.
    return 0;
  }
  stat_evicted_.fetch_add(*evicted, std::memory_order_relaxed);
  return *evicted;
}

int64_t Table::CountLive(const arrow::Array& keys) const {
  KeyColumn key_column(keys);
  const int64_t now = clock_();
  ReaderGate::Section section = gate_.Enter();
  const HashIndex::Array& index = *index_->current();
  int64_t live = 0;
  for (int64_t i = 0; i < keys.length(); ++i) {
    const std::string_view key = key_column.Bytes(i);
    const uint64_t hash = HashBytes(key);
    size_t position = HashIndex::Home(index, hash);
    for (uint32_t candidate = HashIndex::NextCandidate(index, hash, &position);
         candidate != HashIndex::kNoRow;
         candidate = HashIndex::NextCandidate(index, hash, &position)) {
      // A cold row is not counted: a write of it promotes it, which takes room like a new row.
      if (IsColdRow(candidate)) continue;
      std::byte* row = rows_.Row(candidate);
      bool matched;
      uint32_t sequence;
      do {
        sequence = SeqlockReadBegin(row);
        matched = (sequence & kSeqLive) && KeyMatches(row, layout_, key, heap_) &&
                  !IsDue(ExpiryOf(row), now);
      } while (!SeqlockReadValidate(row, sequence));
      if (matched) {
        ++live;
        break;
      }
    }
  }
  return live;
}

Status Table::MakeRoomFor(const arrow::RecordBatch& batch, bool demote_only) {
  MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  if (limit == nullptr || limit->MaxMemory() == 0) return Status::OK();
  // What the batch may add: each row as a new one, and every variable-length value.
  uint64_t need =
      static_cast<uint64_t>(batch.num_rows()) * (layout_.row_width() + kIndexBytesPerRow);
  for (int c = 0; c < batch.num_columns(); ++c) {
    if (!arrow::is_fixed_width(batch.column(c)->type_id())) {
      need += static_cast<uint64_t>(arrow::util::TotalBufferSize(*batch.column_data(c)));
    }
  }
  if (limit->UsedMemory() + need > limit->MaxMemory()) {
    // Near the limit, only new keys count: rewriting stored rows adds about nothing (a value's
    // old bytes become garbage, which is compacted), so it must not evict.
    // (Bad keys are left for the write itself to report.)
    if (batch.num_rows() > 0) {
      Result<std::shared_ptr<arrow::Array>> keys = KeysOfBatch(batch, "write");
      if (keys.ok()) {
        const int64_t fresh = batch.num_rows() - CountLive(**keys);
        need = need * static_cast<uint64_t>(fresh) / static_cast<uint64_t>(batch.num_rows());
      }
    }
  }
  if (limit->MakeRoom(need, demote_only)) return Status::OK();
  const uint64_t max_memory = limit->MaxMemory();
  std::string message = "table '" + name_ + "': out of memory: this write may add about " +
                        std::to_string(need) + " bytes";
  if (need > max_memory) {
    message += ", more than maxmemory (" + std::to_string(max_memory) +
               " bytes) allows; write smaller batches or raise maxmemory";
  } else {
    message += " and used memory is " + std::to_string(limit->UsedMemory()) + " of maxmemory " +
               std::to_string(max_memory) + " bytes with nothing left to evict (maxmemory-policy " +
               std::string(PolicyName(limit->Policy())) + ")";
  }
  if (Demotes()) {
    std::lock_guard lock(tier_error_mutex_);
    if (!tier_error_.empty()) message += "; its disk tier takes no rows: " + tier_error_;
  }
  return Status::OutOfMemory(std::move(message));
}

}  // namespace quiver
