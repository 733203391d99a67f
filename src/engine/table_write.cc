#include <arrow/api.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string>
#include <unordered_map>

#include "common/arrow_status.h"
#include "common/hash.h"
#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {
namespace {

// Writes a VarRef / KeyRef of `width` bytes (and, for values over 8 bytes, appends them to the
// heap).
void WriteVarRef(std::byte* destination, uint32_t width, const void* bytes, size_t size,
                 Heap& heap) {
  VarRef ref{static_cast<uint32_t>(size), {}};
  if (size <= kVarInlineBytes) {
    if (size > 0) std::memcpy(ref.payload, bytes, size);
  } else {
    HeapRef heap_ref = heap.Append(bytes, size);
    std::memcpy(ref.payload, &heap_ref, sizeof(heap_ref));
  }
  StoreVarRef(destination, width, ref);
}

void ReleaseVarRef(const std::byte* source, uint32_t width, Heap& heap) {
  const VarRef ref = LoadVarRef(source, width);
  if (ref.length > kVarInlineBytes) heap.Release(HeapRefOf(ref), ref.length);
}

// An integer of schema metadata (a logged write's clock or expiry); 0 when absent.
int64_t MetadataInt(const arrow::Schema& schema, std::string_view key) {
  if (schema.metadata() == nullptr) return 0;
  auto value = schema.metadata()->Get(std::string(key));
  int64_t number = 0;
  if (value.ok()) std::from_chars(value->data(), value->data() + value->size(), number);
  return number;
}

bool IsExpiryField(const arrow::Field& field) {
  return field.metadata() != nullptr &&
         field.metadata()->Get(std::string(kExpireAtMetadata)).ValueOr("") == "true";
}

}  // namespace

// The write path: upserts, deletes, and replaying them.

uint32_t Table::FindRowForWriter(uint64_t hash, std::string_view key) const {
  const HashIndex::Array& index = *index_->current();
  size_t position = HashIndex::Home(index, hash);
  for (uint32_t row = HashIndex::NextCandidate(index, hash, &position); row != HashIndex::kNoRow;
       row = HashIndex::NextCandidate(index, hash, &position)) {
    // A cold entry is another key's: the write promoted its own keys' (PromoteKeys).
    if (!IsColdRow(row) && KeyMatches(rows_.Row(row), layout_, key, heap_)) return row;
  }
  return HashIndex::kNoRow;
}

void Table::Reclaim(uint32_t row_id, uint64_t hash) {
  std::byte* row = rows_.Row(row_id);
  const uint32_t sequence = SeqlockWriteBegin(row);
  ReleaseVarValues(row);
  SeqlockWriteEnd(row, sequence, /*live=*/false);
  index_->Erase(hash, row_id);
  free_rows_.push_back(row_id);
  row_count_.fetch_sub(1, std::memory_order_relaxed);
  TrackExpiry(row_id, false);
}

void Table::ReleaseVarValues(const std::byte* row) {
  for (const ColumnLayout& layout : layout_.var_slots()) {
    ReleaseVarRef(row + layout.offset, layout.width, heap_);
  }
}

void Table::WriteRow(uint32_t row_id, bool is_new, const PreparedBatch& batch, int64_t i,
                     std::string_view key, int64_t expire_at, const WriteClock& clock) {
  std::byte* row = rows_.Row(row_id);
  const uint32_t sequence = SeqlockWriteBegin(row);
  std::atomic<uint64_t>& meta = RowMeta(row);
  const uint64_t access =
      AccessAfter(meta.load(std::memory_order_relaxed), clock.lfu, is_new, clock.now_ms);
  // An expiry past the meta word's range (a damaged snapshot) is kept as the furthest it holds.
  const uint64_t expiry = expire_at <= 0 ? 0 : std::min<uint64_t>(expire_at, kRowExpiryMask);
  meta.store(expiry | access << kRowAccessShift, std::memory_order_relaxed);
  if (is_new) {
    ZeroRow(row + kRowHeaderBytes, layout_.row_width() - kRowHeaderBytes);
    // A composite key's columns are written below, as the batch's values.
    if (const ColumnLayout& key_layout = layout_.key(); !layout_.composite_key()) {
      if (key_layout.physical == Physical::kFixed) {
        CopyToRow(row + key_layout.offset, key.data(), sizeof(int64_t));
      } else {
        WriteVarRef(row + key_layout.offset, key_layout.width, key.data(), key.size(), heap_);
      }
    }
  }

  std::byte* bitmap = row + kRowHeaderBytes;
  const auto write = [&](const PreparedBatch::Input& input, int64_t at) {
    const ColumnLayout& layout = *input.layout;
    const bool valid = input.IsValid(at);
    if (layout.valid_bit >= 0) {
      std::byte* byte = bitmap + layout.valid_bit / 8;
      uint8_t bits = LoadFromRow<uint8_t>(byte);
      const uint8_t mask = static_cast<uint8_t>(1u << (layout.valid_bit % 8));
      StoreToRow<uint8_t>(byte, valid ? (bits | mask) : (bits & ~mask));
    }
    std::byte* destination = row + layout.offset;
    switch (layout.physical) {
      case Physical::kFixed:
        if (valid) CopyToRow(destination, input.fixed + at * layout.width, layout.width);
        break;
      case Physical::kBool:
        StoreToRow<uint8_t>(destination,
                            valid && arrow::bit_util::GetBit(input.fixed, input.offset + at));
        break;
      case Physical::kSparse:  // WriteSparse, below
        break;
      case Physical::kBytes:
      case Physical::kList: {
        if (!is_new) ReleaseVarRef(destination, layout.width, heap_);
        if (!valid) {
          WriteVarRef(destination, layout.width, nullptr, 0, heap_);
          break;
        }
        const int64_t begin = input.offsets[at];
        const int64_t count = input.offsets[at + 1] - begin;
        const uint32_t element_width =
            layout.physical == Physical::kList ? layout.element_width : 1;
        WriteVarRef(destination, layout.width, input.var + begin * element_width,
                    static_cast<size_t>(count) * element_width, heap_);
        break;
      }
    }
  };
  for (const PreparedBatch::Input& input : batch.inputs) write(input, i);
  if (is_new) {
    for (const PreparedBatch::Input& input : batch.defaults) write(input, 0);
  }
  if (!batch.sparse_inputs.empty()) WriteSparse(row, is_new, batch, i);
  SeqlockWriteEnd(row, sequence, /*live=*/true);
  TrackExpiry(row_id, expire_at != 0);
}

void Table::WriteSparse(std::byte* row, bool is_new, const PreparedBatch& batch, int64_t i) {
  const ColumnLayout& slot = layout_.sparse_slot();
  const std::vector<uint32_t>& widths = layout_.sparse_widths();
  VarRef scratch;
  const std::string_view old_blob =
      is_new ? std::string_view() : ColumnBytes(row, slot, heap_, &scratch);
  SparseEntries(old_blob, widths, &sparse_old_);
  const auto& old = sparse_old_;
  sparse_entries_.clear();
  size_t o = 0;
  for (size_t k = 0; k < batch.sparse_inputs.size(); ++k) {
    const PreparedBatch::Input& input = batch.inputs[batch.sparse_inputs[k]];
    const ColumnLayout& layout = *input.layout;
    while (o < old.size() && old[o].first < layout.sparse_id) sparse_entries_.push_back(old[o++]);
    if (o < old.size() && old[o].first == layout.sparse_id) ++o;  // replaced, or cleared
    if (!input.IsValid(i)) continue;
    std::string_view value;
    switch (layout.sparse_physical) {
      case Physical::kBool:
        sparse_bools_[k] = arrow::bit_util::GetBit(input.fixed, input.offset + i) ? 1 : 0;
        value = std::string_view(&sparse_bools_[k], 1);
        break;
      case Physical::kBytes: {
        const int64_t begin = input.offsets[i];
        value = std::string_view(reinterpret_cast<const char*>(input.var) + begin,
                                 static_cast<size_t>(input.offsets[i + 1] - begin));
        break;
      }
      default:
        value =
            std::string_view(reinterpret_cast<const char*>(input.fixed) + i * layout.element_width,
                             layout.element_width);
    }
    sparse_entries_.emplace_back(layout.sparse_id, value);
  }
  while (o < old.size()) sparse_entries_.push_back(old[o++]);
  sparse_blob_.clear();
  AppendSparseBlob(sparse_entries_, widths, &sparse_blob_);  // copied: the old bytes may go
  std::byte* destination = row + slot.offset;
  if (!is_new) ReleaseVarRef(destination, slot.width, heap_);
  WriteVarRef(destination, slot.width, sparse_blob_.data(), sparse_blob_.size(), heap_);
}

Result<UpsertResult> Table::Upsert(const arrow::Table& table, const WriteOptions& options) {
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::RecordBatch> batch,
                                table.CombineChunksToBatch());
  return Upsert(*batch, options);
}

Result<UpsertResult> Table::Upsert(const arrow::RecordBatch& batch, const WriteOptions& options) {
  QUIVER_RETURN_NOT_OK(MakeRoomFor(batch));
  return Journaled<UpsertResult>(
      [&](WriteMode mode, uint64_t* lsn) { return UpsertLocked(batch, mode, lsn, options); },
      [&](Table& successor) { return successor.Upsert(batch, options); });
}

std::pair<uint64_t, uint64_t> Table::QuiescedLsn(const std::function<uint64_t()>& position) {
  std::lock_guard<std::mutex> lock(write_mutex_);
  return {applied_lsn_.load(std::memory_order_acquire), position()};
}

Result<UpsertResult> Table::Replay(const arrow::RecordBatch& batch, uint64_t lsn) {
  // A tiered table recovers larger than memory: rows move to disk as they come. Without the
  // room (the tier failing), the rows are applied all the same.
  if (Demotes()) (void)MakeRoomFor(batch, /*demote_only=*/true);
  return ReplayWithoutRoom(batch, lsn);
}

Result<UpsertResult> Table::ReplayWithoutRoom(const arrow::RecordBatch& batch, uint64_t lsn) {
  return Replayed<UpsertResult>(lsn, [&](WriteMode mode, uint64_t* unused) {
    return UpsertLocked(batch, mode, unused, WriteOptions{});
  });
}

Result<UpsertResult> Table::UpsertLocked(const arrow::RecordBatch& input, WriteMode mode,
                                         uint64_t* lsn, const WriteOptions& options) {
  // The write's clock (for the expiry of stored rows) and the written rows' expiry: now, or as
  // logged when replaying; a snapshot's batch carries each row's expiry in a last column.
  int64_t now = 0, expire_at = 0;
  const arrow::RecordBatch* batch_pointer = &input;
  std::shared_ptr<arrow::RecordBatch> without_expiry;
  std::shared_ptr<arrow::Int64Array> row_expiry;
  if (mode == WriteMode::kJournaled) {
    if (options.ttl_ms < 0 || options.ttl_ms > kMaxTtlMs) {
      return Status::InvalidArgument("table '" + name_ +
                                     "': a write's TTL must be from 1 ms to 100 years, not " +
                                     std::to_string(options.ttl_ms) + " ms");
    }
    now = clock_();
    const int64_t ttl = options.ttl_ms != 0 ? options.ttl_ms : schema_.ttl_ms();
    if (ttl != 0) expire_at = now + ttl;
  } else {
    now = MetadataInt(*input.schema(), kLoggedNowMetadata);
    expire_at = MetadataInt(*input.schema(), kLoggedExpireAtMetadata);
    const int last = input.num_columns() - 1;
    if (last > 0 && IsExpiryField(*input.schema()->field(last))) {
      if (input.column(last)->type_id() != arrow::Type::INT64) {
        return Status::Corruption("table '" + name_ + "': the expiry column is not int64");
      }
      row_expiry = std::static_pointer_cast<arrow::Int64Array>(input.column(last));
      QUIVER_ASSIGN_OR_RETURN_ARROW(without_expiry, input.RemoveColumn(last));
      batch_pointer = without_expiry.get();
    }
  }
  const arrow::RecordBatch& batch = *batch_pointer;
  const MemoryLimit* limit = limit_.load(std::memory_order_acquire);
  const WriteClock clock{limit != nullptr && IsLfu(limit->Policy()), clock_()};
  const auto expiry_of = [&](int64_t i) {
    return row_expiry == nullptr ? expire_at : row_expiry->IsNull(i) ? 0 : row_expiry->Value(i);
  };
  PreparedBatch prepared;
  const CastMode cast =
      mode == WriteMode::kJournaled ? options.cast.value_or(schema_.cast_mode()) : CastMode::kSafe;
  QUIVER_RETURN_NOT_OK(Prepare(batch, cast, &prepared));
  const int64_t n = prepared.length;
  KeyColumn key_column(*prepared.keys);

  // Pass 1 (changes nothing): which keys exist, so that every check and allocation happens
  // before the first row changes.
  constexpr int64_t kAhead = 16;
  std::vector<uint64_t> hashes(n);
  std::vector<uint32_t> existing(n);
  for (int64_t i = 0; i < n; ++i) hashes[i] = HashBytes(key_column.Bytes(i));
  // Cold rows the batch writes come back to memory first (their stored values may be kept).
  QUIVER_RETURN_NOT_OK(PromoteKeys(key_column, n, hashes.data()));
  size_t new_keys = 0;
  {
    const HashIndex::Array& index = *index_->current();
    for (int64_t i = 0; i < n; ++i) {
      if (i + kAhead < n) HashIndex::Prefetch(index, hashes[i + kAhead]);
      existing[i] = FindRowForWriter(hashes[i], key_column.Bytes(i));
      // An expired row is gone: its key is written as a new one (pass 2 reclaims the row).
      if (existing[i] == HashIndex::kNoRow || ExpiredAt(existing[i], now)) {
        if (!prepared.missing_required.empty() && mode == WriteMode::kJournaled) {
          return Status::InvalidArgument(
              "table '" + name_ + "' row " + std::to_string(i) + ": new key " +
              KeyForMessage(schema_, key_column.Bytes(i)) +
              " has no value for non-nullable column '" + prepared.missing_required + "'");
        }
        ++new_keys;
      }
    }
  }
  // Sparse blobs: each written row's new blob is at most its old one (or, for a key the batch
  // wrote before, that write's) plus what this row adds.
  size_t sparse_total = 0, sparse_largest = 0;
  if (!prepared.sparse_inputs.empty()) {
    std::unordered_map<std::string_view, size_t> earlier;
    const ColumnLayout& slot = layout_.sparse_slot();
    for (int64_t i = 0; i < n; ++i) {
      const std::string_view key = key_column.Bytes(i);
      size_t old = 0;
      if (auto it = earlier.find(key); it != earlier.end()) {
        old = it->second;
      } else if (existing[i] != HashIndex::kNoRow) {
        old = LoadVarRef(rows_.Row(existing[i]) + slot.offset, slot.width).length;
      }
      const size_t bound = old + prepared.sparse_bytes[static_cast<size_t>(i)];
      earlier[key] = bound;
      if (bound > kVarInlineBytes) sparse_total += bound;
      sparse_largest = std::max(sparse_largest, bound);
    }
    try {  // so that pass 2 allocates nothing
      sparse_entries_.reserve(layout_.sparse_widths().size());
      sparse_old_.reserve(layout_.sparse_widths().size());
      sparse_blob_.reserve(sparse_largest);
      sparse_bools_.resize(prepared.sparse_inputs.size());
    } catch (const std::bad_alloc&) {
      return Status::OutOfMemory("table '" + name_ + "': no memory for sparse values");
    }
  }
  const size_t reused = std::min(free_rows_.size(), new_keys);
  QUIVER_RETURN_NOT_OK(rows_.Reserve(size_t{next_row_} + (new_keys - reused)));
  QUIVER_RETURN_NOT_OK(index_->Reserve(new_keys));
  QUIVER_RETURN_NOT_OK(heap_.Reserve(prepared.heap_bytes + sparse_total,
                                     std::max(prepared.heap_largest, sparse_largest)));
  if (expire_at != 0 || row_expiry != nullptr) {
    try {  // so that pass 2 allocates nothing
      expiring_slot_.resize(std::max(expiring_slot_.size(), size_t{next_row_} + new_keys));
      expiring_.reserve(expiring_.size() + static_cast<size_t>(n));
    } catch (const std::bad_alloc&) {
      return Status::OutOfMemory("table '" + name_ + "': no memory for the TTL index");
    }
  }
  if (journal_ != nullptr && mode == WriteMode::kJournaled && n > 0) {
    const std::shared_ptr<const arrow::KeyValueMetadata>& given = batch.schema()->metadata();
    const auto reserved = [](const std::string& key) {
      return key == kLoggedNowMetadata || key == kLoggedExpireAtMetadata;
    };
    const bool spoofed =
        given != nullptr && std::any_of(given->keys().begin(), given->keys().end(), reserved);
    if (expire_at != 0 || !expiring_.empty() || spoofed) {
      // Replay decides expiry with the writer's clock, and gives the rows this expiry; what a
      // client put under those keys is not kept.
      auto metadata = std::make_shared<arrow::KeyValueMetadata>();
      for (int64_t k = 0; given != nullptr && k < given->size(); ++k) {
        if (!reserved(given->key(k))) metadata->Append(given->key(k), given->value(k));
      }
      if (expire_at != 0 || !expiring_.empty()) {
        metadata->Append(std::string(kLoggedNowMetadata), std::to_string(now));
        metadata->Append(std::string(kLoggedExpireAtMetadata), std::to_string(expire_at));
      }
      QUIVER_ASSIGN_OR_RETURN(*lsn,
                              journal_->LogUpsert(id_, *batch.ReplaceSchemaMetadata(metadata)));
    } else {
      QUIVER_ASSIGN_OR_RETURN(*lsn, journal_->LogUpsert(id_, batch));
    }
  }

  // Pass 2: apply, row after row. Nothing below can fail.
  UpsertResult result;
  const PreparedBatch::Input* event_time =
      prepared.event_time_input >= 0 ? &prepared.inputs[prepared.event_time_input] : nullptr;
  const HashIndex::Array& index = *index_->current();
  for (int64_t i = 0; i < n; ++i) {
    if (i + kAhead < n) {
      if (existing[i + kAhead] != HashIndex::kNoRow) {
        __builtin_prefetch(rows_.Row(existing[i + kAhead]), 1);
      } else {
        HashIndex::Prefetch(index, hashes[i + kAhead]);
      }
    }
    uint32_t row_id = existing[i];
    size_t insert_at = 0;
    if (row_id != HashIndex::kNoRow && ExpiredAt(row_id, now)) {
      // Freed and, below, taken again at once for this key (the last free row is reused first),
      // so a later row of the batch with this key still finds it at existing[].
      Reclaim(row_id, hashes[i]);
      stat_expired_.fetch_add(1, std::memory_order_relaxed);
      row_id = HashIndex::kNoRow;
    }
    if (row_id == HashIndex::kNoRow) {
      // Absent before the batch, but an earlier row of this batch may have inserted it; the same
      // walk finds where to insert it otherwise.
      const std::string_view key = key_column.Bytes(i);
      row_id = index_->FindForInsert(
          hashes[i],
          [&](uint32_t candidate) {
            return !IsColdRow(candidate) && KeyMatches(rows_.Row(candidate), layout_, key, heap_);
          },
          &insert_at);
    }
    if (row_id != HashIndex::kNoRow) {
      if (event_time != nullptr) {
        const std::byte* row = rows_.Row(row_id);
        int64_t stored, incoming;
        std::memcpy(&stored, row + event_time->layout->offset, sizeof(stored));
        std::memcpy(&incoming, event_time->fixed + i * sizeof(int64_t), sizeof(incoming));
        if (incoming < stored) {
          ++result.rows_skipped;
          continue;
        }
      }
      WriteRow(row_id, /*is_new=*/false, prepared, i, key_column.Bytes(i), expiry_of(i), clock);
    } else {
      if (!free_rows_.empty()) {
        row_id = free_rows_.back();
        free_rows_.pop_back();
      } else {
        row_id = next_row_++;
      }
      WriteRow(row_id, /*is_new=*/true, prepared, i, key_column.Bytes(i), expiry_of(i), clock);
      index_->InsertAt(insert_at, hashes[i], row_id);
      row_count_.fetch_add(1, std::memory_order_relaxed);
    }
    ++result.rows_written;
  }
  if (capture_ != nullptr && mode == WriteMode::kJournaled && n > 0) {
    CaptureUpsert(batch, now, expire_at);
  }
  if (*lsn != 0) applied_lsn_.store(*lsn, std::memory_order_release);
  FinishWrite();
  return result;
}

Result<int64_t> Table::Delete(const arrow::Array& keys) {
  return Journaled<int64_t>(
      [&](WriteMode mode, uint64_t* lsn) { return DeleteLocked(keys, mode, lsn); },
      [&](Table& successor) { return successor.Delete(keys); });
}

Result<int64_t> Table::ReplayDelete(const arrow::Array& keys, uint64_t lsn) {
  return Replayed<int64_t>(
      lsn, [&](WriteMode mode, uint64_t* unused) { return DeleteLocked(keys, mode, unused); });
}

Result<int64_t> Table::DeleteLocked(const arrow::Array& keys_in, WriteMode mode, uint64_t* lsn) {
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> keys,
                          NormalizeKeys(schema_, keys_in, name_, "delete"));
  KeyColumn key_column(*keys);
  std::vector<uint64_t> hashes(static_cast<size_t>(keys->length()));
  for (int64_t i = 0; i < keys->length(); ++i) hashes[i] = HashBytes(key_column.Bytes(i));
  // Cold rows are deleted as rows in memory: promoted first (which changes nothing they hold).
  QUIVER_RETURN_NOT_OK(PromoteKeys(key_column, keys->length(), hashes.data()));
  if (journal_ != nullptr && mode == WriteMode::kJournaled && keys->length() > 0) {
    QUIVER_ASSIGN_OR_RETURN(*lsn, journal_->LogDelete(id_, *keys));
  }
  // Replay only needs the state right, not the count: it never sees a row as expired.
  const int64_t now = mode == WriteMode::kJournaled ? clock_() : 0;
  int64_t deleted = 0;
  for (int64_t i = 0; i < keys->length(); ++i) {
    const uint64_t hash = hashes[i];
    const uint32_t row_id = FindRowForWriter(hash, key_column.Bytes(i));
    if (row_id == HashIndex::kNoRow) continue;
    if (!ExpiredAt(row_id, now)) ++deleted;  // an expired row was gone already
    Reclaim(row_id, hash);
  }
  if (capture_ != nullptr && mode == WriteMode::kJournaled && keys->length() > 0) {
    CaptureDelete(*keys);
  }
  if (*lsn != 0) applied_lsn_.store(*lsn, std::memory_order_release);
  FinishWrite();
  return deleted;
}

}  // namespace quiver
