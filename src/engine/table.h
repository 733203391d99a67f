// Table: one feature table held in memory: rows in a RowStore, variable-length values in a Heap,
// a HashIndex from key to row. Batch-first: every operation takes or returns Arrow data.
//
// Semantics
//   Upsert   key column(s) + any subset of value columns. A column left out keeps its stored value
//            for existing keys and is null for new keys. A batch behaves as if its rows were
//            applied one after another (so the last occurrence of a repeated key wins), and it is
//            applied whole or not at all: every check runs and every allocation is made before
//            the first row changes. With an event-time column, a row whose event time is older
//            than the stored row's is skipped and counted (a batch without that column is not
//            checked).
//   Read     one output row per requested key, in request order (duplicates allowed); a missing
//            key gives a row of nulls and found[i] = false. Output fields are all nullable.
//   Delete   removes keys; returns how many were present.
//   Scan     every live row (every column, schema order), in batches.
//   TTL      a written row expires the write's TTL (WriteOptions) or the table's default TTL
//            (TableSchema::ttl_ms) after the write; a write without either makes it never
//            expire. An expired row is gone at once for every operation (passive expiry: a read
//            finds nothing, an upsert writes a new row, a delete does not count it); its memory
//            is reclaimed by the next write of its key or by ExpireCycle (Redis's active expiry
//            over the rows that carry a TTL). Expiry deletes nothing in the journal: the expiry
//            time is logged with each write, with the writer's clock, so replay decides alike.
//
// Concurrency: any number of threads may Read / Scan / Stats while one thread at a time writes
// (Upsert / Delete take the table's write mutex). Readers never block: each row is read under its
// seqlock (row_layout.h) and retried if the writer changed it meanwhile, so no reader sees half an
// updated row; structures that grow (index, region directories) are replaced and the old ones
// freed only after a ReaderGate grace period. Readers may see some rows of a batch in flight
// already applied and others not yet.
//
// Publication: a table made with `publish` lists its regions (all memfds) in a control block
// that readers in other processes map read-only (engine/publication.h, docs/shm.md). Dropping or
// destroying the table marks it so there.
//
// Durability: a table made with a Journal (engine/journal.h) records each Upsert and Delete there
// after its checks and before its first change, and acknowledges it once the journal commits it.
// Replay() and ReplayDelete() apply recorded changes again at recovery, without recording them.
//
// Errors name the table, the column and, where it applies, the row. No exception escapes.
#pragma once

#include <arrow/type_fwd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "common/eviction.h"
#include "common/metrics.h"
#include "common/reader_gate.h"
#include "common/result.h"
#include "engine/hash_index.h"
#include "engine/heap.h"
#include "engine/journal.h"
#include "engine/limits.h"
#include "engine/publication.h"
#include "engine/row_layout.h"
#include "engine/row_store.h"
#include "engine/schema.h"
#include "engine/tier.h"
#include "engine/write_cast.h"

namespace quiver {

struct GatherColumn;
struct ChangedSchema;
class KeyColumn;

struct WriteOptions {
  int64_t ttl_ms = 0;  // the rows' time to live; 0: the table's default (none without one)
  // How the batch's columns may be converted (engine/write_cast.h); none: the table's
  // (TableSchema::cast_mode). Replay always converts as "safe", which takes whatever was taken.
  std::optional<CastMode> cast;
};

// Field metadata marking the extra column of Scan(…, with_expiry): each row's expiry time.
inline constexpr std::string_view kExpireAtMetadata = "quiver.expire_at";
// Schema metadata of a logged upsert: its expiry time and its writer's clock (Unix ms).
inline constexpr std::string_view kLoggedExpireAtMetadata = "quiver.expire_at_ms";
inline constexpr std::string_view kLoggedNowMetadata = "quiver.now_ms";

struct UpsertResult {
  int64_t rows_written = 0;  // inserted or updated
  int64_t rows_skipped = 0;  // older than the stored event time
};

struct ReadResult {
  // One row per requested key, request order; the requested columns (all value columns when
  // none were named), every field nullable.
  std::shared_ptr<arrow::RecordBatch> batch;
  // found->Value(i): whether key i was present. Never null, no nulls.
  std::shared_ptr<arrow::BooleanArray> found;
  int64_t found_count = 0;
  // With ReadOptions::with_ttl: each found row's remaining time to live in milliseconds at the
  // read (at least 1); null for a row that never expires and for a missing key. Otherwise null.
  std::shared_ptr<arrow::Int64Array> ttl_ms;
};

struct ReadOptions {
  bool with_ttl = false;  // ReadResult::ttl_ms
};

struct TableStats {
  int64_t rows = 0;
  uint64_t bytes = 0;      // everything the table holds: rows + index + heap
  uint64_t row_bytes = 0;  // row chunks (including free capacity)
  uint64_t index_bytes = 0;
  uint64_t heap_bytes = 0;          // heap chunks
  uint64_t heap_garbage_bytes = 0;  // heap bytes no longer referenced
  uint64_t heap_compactions = 0;
  uint64_t heap_moved_bytes = 0;  // value bytes compactions copied out of chunks they freed
  uint64_t row_capacity = 0;
  uint32_t row_width = 0;
  int64_t rows_with_ttl =
      0;  // stored rows carrying an expiry time (expired ones not yet reclaimed included)
  int64_t expired = 0;      // rows reclaimed because they expired, since the table was loaded
  int64_t evicted = 0;      // rows evicted to stay under the memory limit, since it was loaded
  uint64_t used_bytes = 0;  // what counts towards the memory limit (Table::UsedMemory)
  // The disk tier (engine/tier.h); zero without one.
  bool tiered = false;
  int64_t cold_rows = 0;            // rows whose values are on disk only (in `rows`)
  uint64_t cold_bytes = 0;          // their records' bytes
  int64_t demoted = 0;              // rows moved to disk, since the table was loaded
  int64_t promoted = 0;             // rows moved back to memory
  int64_t cold_reads = 0;           // records read from disk (reads, writes and scans)
  uint64_t tier_disk_bytes = 0;     // bytes of the tier file in use (live records and garbage)
  uint64_t tier_written_bytes = 0;  // bytes written to the tier file since it was made
  uint64_t tier_read_ios = 0;       // reads issued to the disk
  uint64_t tier_read_bytes = 0;
};

class Table final : public std::enable_shared_from_this<Table>, public EvictionSource {
 public:
  // `id` identifies this table (this incarnation of the name) in the journal; `journal` may be
  // null (nothing is recorded) and must outlive the table. `clock`: the time of expiry and of the
  // rows' access stamps (tests pass their own).
  static Result<std::shared_ptr<Table>> Make(std::string name, TableSchema schema,
                                             EngineLimits limits = {},
                                             RegionBacking backing = RegionBacking::kAnonymous,
                                             uint64_t id = 0, Journal* journal = nullptr,
                                             UnixClock clock = UnixMillis, bool publish = false);
  ~Table() override;

  const std::string& name() const { return name_; }
  uint64_t id() const { return id_; }
  // The LSN of the last recorded change applied to this table (its creation's at first).
  uint64_t applied_lsn() const { return applied_lsn_.load(std::memory_order_acquire); }
  void set_applied_lsn(uint64_t lsn) { applied_lsn_.store(lsn, std::memory_order_release); }
  // For snapshots: {applied_lsn(), position()} read under the write lock, where no change is
  // between being journaled and applied; so every change of this table with an LSN up to the
  // returned position is applied.
  std::pair<uint64_t, uint64_t> QuiescedLsn(const std::function<uint64_t()>& position);
  const TableSchema& schema() const { return schema_; }
  const RowLayout& layout() const { return layout_; }
  // The table's memory offered to readers in other processes (engine/publication.h), when it was
  // made with `publish` (and shared-memory backing); null otherwise.
  const std::shared_ptr<Publication>& publication() const { return publication_; }

  Result<UpsertResult> Upsert(const arrow::RecordBatch& batch, const WriteOptions& options = {});
  Result<UpsertResult> Upsert(const arrow::Table& table, const WriteOptions& options = {});
  // `keys`: an array of the key type (or one castable to it), no nulls; for a composite key a
  // struct array of the key columns (engine/keys.h).
  Result<int64_t> Delete(const arrow::Array& keys);
  // Recovery: applies the change recorded as `lsn` again, without the journal. A row whose key is
  // new here but existed when the change was first made (a snapshot may hold later changes) is
  // inserted even when a non-nullable column is missing; the later changes replayed after it
  // restore the row as it was. The batch's schema metadata gives the write's expiry and clock
  // (as logged); a last column marked kExpireAtMetadata (a snapshot's) gives each row's expiry.
  Result<UpsertResult> Replay(const arrow::RecordBatch& batch, uint64_t lsn);
  Result<int64_t> ReplayDelete(const arrow::Array& keys, uint64_t lsn);
  Result<ReadResult> Read(const arrow::Array& keys, const std::vector<std::string>& columns = {},
                          const ReadOptions& options = {}) const;
  // A reader over every live row (expired ones left out). Each batch reflects the table at the
  // time it is produced. `with_expiry`: a last column (int64, Unix ms, null: never; field
  // metadata kExpireAtMetadata) holds each row's expiry time, as snapshots keep it.
  Result<std::shared_ptr<arrow::RecordBatchReader>> Scan(int64_t max_batch_rows = 65536,
                                                         bool with_expiry = false) const;
  // For SCAN-like listings: the stored keys (KeyColumn's bytes; a composite key's encoded) of the
  // live rows among row positions [cursor, cursor + count); returns the next position, 0 after
  // the last. Positions are stable while a row lives: a row present for a whole walk is listed
  // (once, unless it is deleted and written again meanwhile). Takes the write lock briefly.
  uint32_t ScanKeys(uint32_t cursor, size_t count, std::vector<std::string>* keys) const;
  TableStats Stats() const;
  // Active expiry, Redis's cycle: samples 20 rows among those with an expiry time, reclaims the
  // expired ones, and goes on while more than 25% of a sample had expired and `budget_us`
  // lasts. Returns the rows reclaimed. Costs follow the rows with a TTL, not the table's size.
  int64_t ExpireCycle(int64_t budget_us);

  // Memory limit: from AttachMemoryLimit until it is detached (null) or the table goes away, the
  // table counts towards `limit` and may be evicted from by it; each Upsert first makes room for
  // what it may add (or fails with kOutOfMemory, changing nothing), reads and writes keep each
  // row's access clock for LRU / LFU. Call detached before the table is dropped.
  void AttachMemoryLimit(MemoryLimit* limit);
  // EvictionSource. UsedMemory: the rows in use (row width each, expired ones not yet reclaimed
  // included), the index, and the heap's live bytes (not its garbage, compacted sooner under a
  // limit, nor the untouched rest of its newest chunk: docs/engine.md).
  uint64_t UsedMemory() const override;
  int64_t EvictableKeys(EvictionPolicy policy) override;
  bool Sample(EvictionPolicy policy, uint64_t random, int64_t now_ms,
              EvictionCandidate* out) override;
  // Deletes the victims still unchanged since they were sampled, as one journaled delete; with a
  // disk tier, moves them there instead (AttachTier).
  int64_t Evict(EvictionPolicy policy, const std::vector<EvictionCandidate>& victims) override;
  bool Demotes() const override { return tier_.load(std::memory_order_acquire) != nullptr; }

  // Disk tier (docs/tiering.md): from now on, rows the memory limit takes from this table move
  // to a file in `options.directory` instead of being dropped, and stay readable: a read, write,
  // delete or scan of a cold row reads its record from disk; a read of one queues it to be
  // promoted back (PromoteQueued). Once per table, before it is shared.
  Status AttachTier(const TierOptions& options);
  // Moves the cold rows reads asked for back to memory (making room for them first); returns
  // how many. For a background thread (Catalog's maintenance).
  int64_t PromoteQueued();
  // How the tier reads from now on (a benchmark compares them); nothing without a tier.
  void SetTierIo(TierIo io) {
    if (TierFile* file = tier(); file != nullptr) file->set_io(io);
  }
  // How long reads waited for their cold rows (one observation per batch read from disk), in
  // seconds.
  const HistogramMetric& cold_read_seconds() const { return cold_read_seconds_; }

  // Online schema change (engine/schema_change.h): builds the table this one becomes under
  // `changed` (the same name, id `id`), copying every row while reads and writes go on; writes
  // made meanwhile are recorded and applied to the copy too. Then, under the write lock,
  // `switch_over(successor)` logs the change and puts the successor in this table's place. An
  // error (from the copy or from switch_over) changes nothing. From then on this table hands every
  // write to its successor (so a write racing the change lands after it); its reads go on with the
  // old schema for whoever still holds it.
  Result<std::shared_ptr<Table>> Rebuild(
      const ChangedSchema& changed, uint64_t id,
      const std::function<Status(const std::shared_ptr<Table>&)>& switch_over);
  // The table that replaced this one in a schema change; null while it has not been replaced.
  std::shared_ptr<Table> successor() const;

  // The Arrow schema of Read results for `columns` (all value columns when empty).
  Result<std::shared_ptr<arrow::Schema>> ReadSchema(const std::vector<std::string>& columns) const;

 private:
  class Scanner;
  struct PreparedBatch;

  enum class WriteMode { kJournaled, kReplay };
  // A write made while a Rebuild copies the table, recorded to be applied to the copy too: an
  // upsert's batch (its clock and expiry in the schema metadata, as Replay reads them) or the
  // keys of a delete.
  struct CapturedWrite {
    std::shared_ptr<arrow::RecordBatch> upsert;
    std::shared_ptr<arrow::Array> deleted;
  };
  struct Capture {
    std::vector<CapturedWrite> writes;
    Status status;  // not OK: a write could not be recorded (the change then fails)
  };

  Table(std::string name, TableSchema schema, EngineLimits limits, RegionBacking backing,
        uint64_t id, Journal* journal, UnixClock clock);

  // `locked(mode, &lsn)` (UpsertLocked or DeleteLocked) under the write lock; then a journaled
  // write waits for its commit, and a replayed one marks `lsn` applied. A table replaced by a
  // schema change gives the write to its successor instead: `forward(successor)`.
  template <typename T, typename Locked, typename Forward>
  Result<T> Journaled(Locked locked, Forward forward);
  template <typename T, typename Locked>
  Result<T> Replayed(uint64_t lsn, Locked locked);
  // Replay without making room first: for a caller that may hold a lock the memory limit takes
  // (Rebuild's last catch-up holds this table's write lock).
  Result<UpsertResult> ReplayWithoutRoom(const arrow::RecordBatch& batch, uint64_t lsn);
  // Under the write lock. `lsn` receives the journal's LSN (0 when nothing was recorded).
  Result<UpsertResult> UpsertLocked(const arrow::RecordBatch& batch, WriteMode mode, uint64_t* lsn,
                                    const WriteOptions& options);
  Result<int64_t> DeleteLocked(const arrow::Array& keys, WriteMode mode, uint64_t* lsn);

  Status Prepare(const arrow::RecordBatch& batch, CastMode cast, PreparedBatch* prepared) const;
  // One column of a write (`as_default`: a default, for the batch's new rows), of its stored type,
  // checked and added to `prepared`.
  Status AddInput(int index, const std::shared_ptr<arrow::Array>& array, const std::string& where,
                  bool as_default, PreparedBatch* prepared) const;
  // Writer, during a Rebuild: records an applied write (its own copy: a request's buffers go
  // with the request), with the clock and expiry it was applied with.
  void CaptureUpsert(const arrow::RecordBatch& batch, int64_t now, int64_t expire_at);
  void CaptureDelete(const arrow::Array& keys);
  // Rebuild: applies recorded writes to `successor` (whose schema is `changed`).
  Status ApplyCaptured(const std::vector<CapturedWrite>& writes, const ChangedSchema& changed,
                       Table& successor) const;
  // The normalized keys of a write's batch, from its key column(s).
  Result<std::shared_ptr<arrow::Array>> KeysOfBatch(const arrow::RecordBatch& batch,
                                                    std::string_view what) const;
  Result<std::vector<int>> ResolveColumns(const std::vector<std::string>& columns) const;
  // ReadSchema of columns already resolved (schema indices).
  std::shared_ptr<arrow::Schema> ReadSchemaOf(const std::vector<int>& columns) const;
  // The RowGather outputs of the columns named by schema index.
  std::vector<GatherColumn> GatherColumns(const std::vector<int>& columns) const;
  // Writer-side lookup (no seqlock needed: only the writer changes rows).
  uint32_t FindRowForWriter(uint64_t hash, std::string_view key) const;
  // The writer's clock for the rows' access times, once per write.
  struct WriteClock {
    bool lfu;  // the policy keeps LFU words
    int64_t now_ms;
  };
  void WriteRow(uint32_t row_id, bool is_new, const PreparedBatch& batch, int64_t i,
                std::string_view key, int64_t expire_at, const WriteClock& clock);
  // Inside WriteRow: the row's sparse blob with batch row i's sparse values set or cleared.
  void WriteSparse(std::byte* row, bool is_new, const PreparedBatch& batch, int64_t i);
  // Before a write: asks the memory limit for room for what `batch` may add (kOutOfMemory when
  // it cannot be had).
  // `demote_only`: only by moving rows to a disk tier (replay).
  Status MakeRoomFor(const arrow::RecordBatch& batch, bool demote_only = false);
  // How many of `keys` (normalized) are stored and live now (a reader's view).
  int64_t CountLive(const arrow::Array& keys) const;
  // The bytes a row's variable-length values take in the heap.
  uint64_t HeapBytesOf(const std::byte* row) const;
  // Writer: whether the row's expiry time has come at `now` (0: never checked).
  bool ExpiredAt(uint32_t row_id, int64_t now) const;
  // Writer: removes an expired row (not journaled: its expiry is).
  void Reclaim(uint32_t row_id, uint64_t hash);
  // Writer: keeps `expiring_` in step with a row's expiry time.
  void TrackExpiry(uint32_t row_id, bool expires);
  void ReleaseVarValues(const std::byte* row);
  // Writer, at the end of every write: compacts the heap when due, frees what was retired once
  // no reader can use it, publishes statistics.
  void FinishWrite();
  // Writer: re-appends every live heap value in the chunks marked in `victims` (by chunk number)
  // outside them, swapping references under the rows' seqlocks; the chunks may be freed after a
  // ReaderGate grace period. An error leaves every row valid.
  Status MoveHeapValues(const std::vector<bool>& victims);

  const std::string name_;
  const uint64_t id_;
  Journal* const journal_;
  std::atomic<uint64_t> applied_lsn_{0};
  const TableSchema schema_;
  const EngineLimits limits_;
  const RowLayout layout_;
  const UnixClock clock_;
  const RegionBacking backing_;

  mutable ReaderGate gate_;
  std::shared_ptr<Publication> publication_;  // before what it observes: outlives them
  RowStore rows_;
  Heap heap_;
  std::unique_ptr<HashIndex> index_;

  mutable std::mutex write_mutex_;
  Capture* capture_ = nullptr;        // under write_mutex_: during a Rebuild
  std::shared_ptr<Table> successor_;  // under write_mutex_
  std::vector<uint32_t> free_rows_;   // writer only
  // Writer: Sample's, under the write lock.
  bool SampleLocked(EvictionPolicy policy, uint64_t random, int64_t now_ms, EvictionCandidate* out);
  // What a demotion moves at least (Evict adds rows of its own choosing to the limit's victims).
  static constexpr uint64_t kMinDemoteBytes = 1 << 20;
  // Disk tier (table_tier.cc). Writer: demotes the victims still unchanged since they were
  // sampled; returns how many moved.
  int64_t Demote(const std::vector<EvictionCandidate>& victims);
  // Writer: the keys of a write that are cold, moved back to memory first (so that the write
  // path finds every key it touches in memory). `hashes[i]`: key i's.
  Status PromoteKeys(const KeyColumn& keys, int64_t n, const uint64_t* hashes);
  // Any thread: asks for the cold row whose stored key is `key` to be promoted.
  void QueuePromotion(std::string key) const;
  // Writer: a row for the record `image` (its row image, heap references into `heap`), put in
  // place of the cold entry (hash, location). Preconditions: rows and heap reserved.
  template <typename Heap>
  void InstallRecord(const std::byte* image, const Heap& heap, uint64_t hash, uint32_t location,
                     uint32_t record_bytes);
  // The record size a read of a cold row should fetch (about the largest seen).
  uint32_t ExpectedRecordBytes() const;
  TierFile* tier() const { return tier_.load(std::memory_order_acquire); }

  // Writer only: WriteSparse's scratch, reserved before a write's rows change.
  std::vector<std::pair<uint16_t, std::string_view>> sparse_entries_, sparse_old_;
  std::string sparse_blob_;
  std::vector<char> sparse_bools_;
  uint32_t next_row_ = 0;                // writer only: rows [0, next_row_) have been used
  std::atomic<uint32_t> scan_limit_{0};  // published next_row_, for scans
  std::atomic<int64_t> row_count_{0};
  // Published by the writer after each operation, for Stats() from any thread.
  std::atomic<uint64_t> stat_row_bytes_{0}, stat_index_bytes_{0}, stat_heap_bytes_{0},
      stat_heap_garbage_{0}, stat_heap_live_{0}, stat_row_capacity_{0}, stat_heap_compactions_{0},
      stat_heap_moved_{0};
  uint64_t heap_compactions_ = 0;  // writer only
  uint64_t heap_moved_bytes_ = 0;  // writer only
  // Writer only: the rows with an expiry time (for ExpireCycle's samples), and each row's
  // position in it plus one (0: none), grown on demand.
  std::vector<uint32_t> expiring_;
  std::vector<uint32_t> expiring_slot_;
  uint64_t sample_state_ = 0x9e3779b97f4a7c15ULL;
  std::atomic<int64_t> stat_expiring_{0}, stat_expired_{0}, stat_evicted_{0};

  std::mutex limit_mutex_;  // AttachMemoryLimit
  std::atomic<MemoryLimit*> limit_{nullptr};

  std::unique_ptr<TierFile> tier_owner_;  // set once, by AttachTier
  TierOptions tier_options_;              // likewise: a successor (Rebuild) gets the same
  std::atomic<TierFile*> tier_{nullptr};
  std::atomic<int64_t> cold_rows_{0};
  std::atomic<uint64_t> record_bytes_sum_{0};  // of every record demoted
  std::mutex tier_error_mutex_;
  std::string tier_error_;  // under tier_error_mutex_: the last demotion's failure
  std::atomic<int64_t> stat_demoted_{0}, stat_promoted_{0};
  // Scans in progress: while any is, rows promoted take fresh row positions (never a freed
  // one a scan may have passed), so that a scan meets every row (table_read.cc).
  mutable std::atomic<int> active_scans_{0};
  // A scan in progress as the rows that move see it: how far it read, and the rows it met
  // already that a move put ahead of it (skipped when met again). `mutex` is held for each of
  // its batches and by the writer moving a row.
  struct ScanState {
    std::mutex mutex;
    uint32_t cursor = 0;                            // row positions below it were read
    uint64_t tier_sequence = 0, tier_position = 0;  // the tier was read up to there
    std::unordered_set<std::string> skip;           // stored keys
  };
  mutable std::mutex scans_mutex_;
  mutable std::vector<ScanState*> scans_;  // under scans_mutex_
  // Writer, about to move rows (in memory to disk or back): the scans in progress, each locked
  // between its batches until this is destroyed. A row moved out of a place a scan has read
  // goes to its `skip`: it lands where that scan has not read yet.
  class ScansLocked {
   public:
    explicit ScansLocked(const Table& table);
    // The scans that read resident position `row` / tier `location` already.
    template <typename Each>
    void PassedResident(uint32_t row, Each&& each) {
      for (ScanState* scan : table_.scans_) {
        if (row < scan->cursor) each(*scan);
      }
    }
    template <typename Each>
    void PassedTier(uint32_t location, Each&& each);

   private:
    const Table& table_;
    std::lock_guard<std::mutex> registry_;
    std::vector<std::unique_lock<std::mutex>> locks_;
  };
  // Cold rows reads found, to be promoted (PromoteQueued): their stored keys.
  mutable HistogramMetric cold_read_seconds_{
      {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}};
  // Second-hit admission of reads' promotions: a cold row read once stays on disk (a scan of
  // cold keys moves nothing); read again while its key is remembered, it is promoted. Keys are
  // remembered by two bits of a 2^20-bit filter, cleared once 2^17 keys were added.
  class PromotionDoor {
   public:
    bool Admit(uint64_t hash) {
      const uint64_t a = hash & (kBits - 1), b = (hash >> 32) & (kBits - 1);
      const uint64_t had_a =
          words_[a / 64].fetch_or(uint64_t{1} << (a % 64), std::memory_order_relaxed);
      const uint64_t had_b =
          words_[b / 64].fetch_or(uint64_t{1} << (b % 64), std::memory_order_relaxed);
      const bool seen = (had_a >> (a % 64) & 1) != 0 && (had_b >> (b % 64) & 1) != 0;
      if (!seen && added_.fetch_add(1, std::memory_order_relaxed) + 1 >= kBits / 8) {
        added_.store(0, std::memory_order_relaxed);
        for (uint64_t w = 0; w < kBits / 64; ++w) words_[w].store(0, std::memory_order_relaxed);
      }
      return seen;
    }

   private:
    static constexpr uint64_t kBits = uint64_t{1} << 20;
    std::unique_ptr<std::atomic<uint64_t>[]> words_ { new std::atomic<uint64_t>[ kBits / 64 ]() };
    std::atomic<uint64_t> added_{0};
  };
  mutable PromotionDoor promotion_door_;
  mutable std::mutex promote_mutex_;
  mutable std::vector<std::string> promote_queue_;  // under promote_mutex_
  mutable size_t promote_queue_bytes_ = 0;          // under promote_mutex_
};

}  // namespace quiver
