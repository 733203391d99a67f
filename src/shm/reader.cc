// TableReader: reads of a published table from another process (shm/reader.h).
#include "shm/reader.h"

#include <arrow/api.h>
#include <arrow/util/bit_util.h>
#include <arrow/util/key_value_metadata.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include "common/arrow_status.h"
#include "common/hash.h"
#include "common/reader_gate.h"
#include "engine/index_format.h"
#include "engine/key_column.h"
#include "engine/keys.h"
#include "engine/row_gather.h"
#include "engine/tier_format.h"
#include "shm/mapped_table.h"

namespace quiver::shm {
namespace {

// How long a reader trusts a silent server: past this age of the control block's heartbeat it
// asks the kernel whether the server's socket is still open (a system call, at most every
// kLivenessCheckMs).
constexpr int64_t kHeartbeatStaleMs = 1000;
constexpr int64_t kLivenessCheckMs = 100;
// Bounds on waiting and retrying, so that a dead writer or a hostile block cannot hang a reader.
constexpr int kSeqlockSpins = 1 << 20;  // pauses on a row marked mid-write (tens of ms)
constexpr int kRefreshTries = 16;
constexpr int kRowTries = 1 << 10;  // torn copies of one row in a row

int64_t CoarseMillis() {
  timespec now;
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

int64_t PreciseMillis() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

enum class Outcome : uint8_t { kFound, kMissing, kRefresh, kCold };

// Next's answer for a candidate on the table's disk tier (engine/tier_format.h): its row is not
// in shared memory.
const std::byte kColdMark{};
const std::byte* const kColdCandidate = &kColdMark;

// A read that met a cold row fails with this (docs/shm.md: cold rows are read through the server).
Status ColdRowError(std::string_view table) {
  return Status::NotImplemented(
      "table '" + std::string(table) +
      "': a key read is on the server's disk tier (a cold row), which shared-memory readers do "
      "not read; read it through the server (HTTP, Flight, RESP)");
}

// A copy of `size` bytes out of a row without a call to memcpy for the usual sizes (a few
// columns: tens of bytes): 8-byte words, the last one overlapping.
[[gnu::always_inline]] inline void CopyRun(std::byte* destination, const std::byte* source,
                                           size_t size) {
#if defined(QUIVER_TSAN)
  CopyFromRow(destination, source, size);
#else
  if (size < 8 || size > 256) {
    std::memcpy(destination, source, size);
    return;
  }
  size_t at = 0;
  for (; at + 8 < size; at += 8) std::memcpy(destination + at, source + at, 8);
  std::memcpy(destination + size - 8, source + size - 8, 8);
#endif
}

// The time for passive expiry, read once per call and only when a row carries an expiry.
class Now {
 public:
  bool Due(uint64_t meta) {
    const int64_t expire_at = static_cast<int64_t>(meta & kRowExpiryMask);
    if (expire_at == 0) return false;
    if (now_ == 0) now_ = PreciseMillis();
    return expire_at <= now_;
  }

 private:
  int64_t now_ = 0;
};

// One lookup of a key against a view: probe, copy under the seqlock, confirm. Two kinds, so that
// a single key's lookups carry nothing of a composite key's (WithProber picks).
template <bool kComposite>
struct Prober {
  const View& view;
  const ControlInfo& control;
  const ColumnLayout& key_layout;  // a single key's column
  bool int_keys;
  const std::vector<ColumnLayout>& key_parts;  // a composite key's columns

  Prober(const View& view_in, const ControlInfo& control_in)
      : view(view_in),
        control(control_in),
        key_layout(control_in.layout->key()),
        int_keys(key_layout.physical == Physical::kFixed),
        key_parts(control_in.layout->key_parts()) {}

  // The first candidate for `hash` from *pos on (advancing it), nullptr at the end of the run;
  // *unmapped set when a candidate's chunk is not mapped (the view is behind).
  [[gnu::always_inline]] const std::byte* Next(uint64_t hash, size_t* pos, size_t* steps,
                                               bool* unmapped) const {
    const uint32_t tag = IndexTag(hash);
    for (size_t i = *pos; *steps <= view.index_mask; i = (i + 1) & view.index_mask) {
      ++*steps;
      const uint64_t slot = view.slots[i].load(std::memory_order_acquire);
      if (slot == kIndexEmpty) break;
      if (slot == kIndexTombstone || (slot >> 32) != tag) continue;
      *pos = (i + 1) & view.index_mask;
      if (IsColdRow(static_cast<uint32_t>(slot))) return kColdCandidate;
      const std::byte* row =
          view.Row(control.geometry, control.row_width, static_cast<uint32_t>(slot));
      if (row == nullptr) *unmapped = true;
      return row;
    }
    return nullptr;
  }

  // A key column's reference as copied under the seqlock (an int64's 8 bytes as its payload).
  [[gnu::always_inline]] static VarRef CopyKeyColumn(const std::byte* row,
                                                     const ColumnLayout& layout, bool fixed) {
    if (!fixed) return LoadVarRef(row + layout.offset, layout.width);
    VarRef ref;
    ref.length = sizeof(int64_t);
    CopyFromRow(ref.payload, row + layout.offset, sizeof(int64_t));
    return ref;
  }

  // Whether `stored` (CopyKeyColumn's, after the seqlock check) holds `key`: kRefresh when a long
  // value lies outside the view.
  [[gnu::always_inline]] Outcome Holds(const VarRef& stored, bool fixed,
                                       std::string_view key) const {
    if (fixed) {
      return ShortBytesEqual(stored.payload, key.data(), 8) ? Outcome::kFound : Outcome::kMissing;
    }
    if (stored.length != key.size()) return Outcome::kMissing;
    if (stored.length <= kVarInlineBytes) {
      return ShortBytesEqual(stored.payload, key.data(), stored.length) ? Outcome::kFound
                                                                        : Outcome::kMissing;
    }
    HeapRef ref;
    std::memcpy(&ref, stored.payload, sizeof(ref));
    const std::byte* bytes = view.Heap(ref, stored.length);
    if (bytes == nullptr) return Outcome::kRefresh;
    return std::memcmp(bytes, key.data(), stored.length) == 0 ? Outcome::kFound : Outcome::kMissing;
  }

  // Whether a composite key's copied columns hold `key` (its parts encoded, engine/keys.h).
  Outcome PartsHold(const VarRef* stored, std::string_view key) const {
    Outcome outcome = Outcome::kFound;
    const bool all = ForEachKeyPart(key_parts, key, [&](size_t i, std::string_view bytes) {
      outcome = Holds(stored[i], key_parts[i].physical == Physical::kFixed, bytes);
      return outcome == Outcome::kFound;
    });
    if (outcome == Outcome::kRefresh) return outcome;
    return all ? Outcome::kFound : Outcome::kMissing;
  }

  // Reads candidate `row` for `key`: `copy(row)` runs in each seqlock attempt of a live row.
  template <typename Copy>
  [[gnu::always_inline]] Outcome Candidate(const std::byte* row, std::string_view key, Copy&& copy,
                                           Now& now, bool* matched) const {
    *matched = false;
    uint64_t meta = 0;
    VarRef stored[kComposite ? kMaxKeyParts : 1] = {};  // set under the seqlock before use
    bool live = false;
    for (int attempt = 0;; ++attempt) {
      if (attempt == kRowTries) return Outcome::kRefresh;
      uint32_t sequence = 0;
      int spins = 0;
      for (;; ++spins) {
        sequence = RowSeq(row).load(std::memory_order_acquire);
        if ((sequence & kSeqWriting) == 0) break;
        if (spins == kSeqlockSpins) return Outcome::kRefresh;  // a writer that died mid-write?
        __builtin_ia32_pause();
      }
      live = (sequence & kSeqLive) != 0;
      if (live) {
        meta = LoadFromRow<uint64_t>(row + kRowMetaOffset);
        if constexpr (kComposite) {
          for (size_t i = 0; i < key_parts.size(); ++i) {
            const ColumnLayout& part = key_parts[i];
            stored[i] = CopyKeyColumn(row, part, part.physical == Physical::kFixed);
          }
        } else {
          stored[0] = CopyKeyColumn(row, key_layout, int_keys);
        }
        copy(row);
      }
      if (StillEqualShared(RowSeq(row), sequence)) break;
    }
    if (!live) return Outcome::kMissing;
    Outcome held;
    if constexpr (kComposite) {
      held = PartsHold(stored, key);
    } else {
      held = Holds(stored[0], int_keys, key);
    }
    if (held != Outcome::kFound) return held;
    *matched = true;
    return now.Due(meta) ? Outcome::kMissing : Outcome::kFound;
  }

  // The whole lookup of one key from its first candidate.
  template <typename Copy>
  [[gnu::always_inline]] Outcome Find(std::string_view key, uint64_t hash, const std::byte* row,
                                      size_t pos, size_t steps, bool unmapped, Copy&& copy,
                                      Now& now) const {
    for (;;) {
      if (unmapped) return Outcome::kRefresh;
      if (row == nullptr) return Outcome::kMissing;
      if (row == kColdCandidate) return Outcome::kCold;
      bool matched;
      const Outcome outcome = Candidate(row, key, copy, now, &matched);
      if (outcome == Outcome::kRefresh || matched) return outcome;
      row = Next(hash, &pos, &steps, &unmapped);
    }
  }
};

// Runs the lookups of keys [0, n) as a software pipeline (as the engine's Table::Read does):
// key i is hashed and its slot prefetched, key i - D has its first candidate found and
// prefetched, key i - 2D is read. `visit(i, outcome)` gets each result; a kRefresh stops the run.
template <typename P, typename KeyAt, typename CopyAt, typename Visit>
bool PipelinedLookups(const P& prober, size_t n, const KeyAt& key_at, const CopyAt& copy_at,
                      const Visit& visit, Now& now) {
  constexpr size_t kDistance = 12;
  constexpr size_t kRing = 32;  // > 2 * kDistance
  struct Slot {
    uint64_t hash;
    const std::byte* row;
    size_t pos, steps;
    bool unmapped;
  };
  Slot ring[kRing];
  const View& view = prober.view;
  for (size_t step = 0; step < n + 2 * kDistance; ++step) {
    if (step < n) {
      Slot& s = ring[step % kRing];
      const std::string_view key = key_at(step);
      s.hash = HashBytes(key.data(), key.size());
      __builtin_prefetch(&view.slots[IndexHome(s.hash, view.index_shift) & view.index_mask]);
    }
    if (step >= kDistance && step - kDistance < n) {
      Slot& s = ring[(step - kDistance) % kRing];
      s.pos = IndexHome(s.hash, view.index_shift) & view.index_mask;
      s.steps = 0;
      s.unmapped = false;
      s.row = prober.Next(s.hash, &s.pos, &s.steps, &s.unmapped);
      if (s.row != nullptr && s.row != kColdCandidate) {  // its first line, and its last too
        __builtin_prefetch(s.row);
        const std::byte* last = s.row + prober.control.row_width - 1;
        if ((reinterpret_cast<uintptr_t>(last) >> 6) != (reinterpret_cast<uintptr_t>(s.row) >> 6)) {
          __builtin_prefetch(last);
        }
      }
    }
    if (step >= 2 * kDistance) {
      const size_t i = step - 2 * kDistance;
      const Slot& s = ring[i % kRing];
      const Outcome outcome =
          prober.Find(key_at(i), s.hash, s.row, s.pos, s.steps, s.unmapped, copy_at(i), now);
      if (!visit(i, outcome)) return false;
    }
  }
  return true;
}

// A single lookup, without the pipeline's bookkeeping.
template <typename P, typename Copy>
Outcome LookupOne(const P& prober, std::string_view key, Copy&& copy, Now& now) {
  const uint64_t hash = HashBytes(key.data(), key.size());
  size_t pos = IndexHome(hash, prober.view.index_shift) & prober.view.index_mask;
  size_t steps = 0;
  bool unmapped = false;
  const std::byte* row = prober.Next(hash, &pos, &steps, &unmapped);
  return prober.Find(key, hash, row, pos, steps, unmapped, copy, now);
}

// `lookups(prober)` with the prober for the view's key.
template <typename Lookups>
bool WithProber(const View& view, const ControlInfo& control, Lookups&& lookups) {
  if (control.layout->composite_key()) return lookups(Prober<true>(view, control));
  return lookups(Prober<false>(view, control));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct TableReader::View : shm::View {
  std::shared_ptr<const ControlInfo> control;
};

struct TableReader::State {
  uint64_t instance_id = 0;
  uint64_t table_id = 0;
  // Of the first attach: a re-attach keeps them (a table changed since is another table).
  std::shared_ptr<arrow::Schema> schema;
  std::shared_ptr<const TableSchema> table_schema;
  std::vector<std::string> key_names;
  bool int64_keys = false;
  mutable ReaderGate gate;
  std::atomic<const View*> view{nullptr};
  std::mutex mutex;  // refreshes, re-attaches
  std::unique_ptr<const View> owned;
  Status failed;  // under mutex: a permanent error (dropped)
  std::atomic<bool> has_failed{false};
  std::atomic<int64_t> next_liveness_ms{0};
  std::atomic<uint64_t> refreshes{0}, reattaches{0};
};

TableReader::TableReader(std::shared_ptr<Client> client, std::string name)
    : client_(std::move(client)), name_(std::move(name)), state_(std::make_unique<State>()) {}

TableReader::~TableReader() {
  if (state_->owned != nullptr) client_->Detach(state_->table_id, state_->instance_id);
}

const std::shared_ptr<arrow::Schema>& TableReader::schema() const { return state_->schema; }

std::string TableReader::table_schema_json() const {
  const auto& metadata = state_->schema->metadata();
  if (metadata == nullptr) return "";
  auto json = metadata->Get(kTableSchemaMetadata);
  return json.ok() ? *json : "";
}

// Fixed at the first attach, as the schema is (a re-created table is an error): no view is read,
// which another thread's refresh may free meanwhile.
const std::string& TableReader::key_name() const { return state_->key_names[0]; }

const std::vector<std::string>& TableReader::key_names() const { return state_->key_names; }

bool TableReader::composite_key() const { return state_->key_names.size() > 1; }

bool TableReader::int64_keys() const { return state_->int64_keys; }

Result<std::shared_ptr<arrow::Array>> TableReader::NormalizeKeys(const arrow::Array& keys) const {
  return quiver::NormalizeKeys(*state_->table_schema, keys, name_, "read");
}

ReaderStats TableReader::stats() const {
  ReaderStats stats;
  State& state = *state_;
  stats.refreshes = state.refreshes.load(std::memory_order_relaxed);
  stats.reattaches = state.reattaches.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(state.mutex);
  if (state.owned != nullptr) {
    stats.mapped_bytes = state.owned->mapped_bytes + state.owned->control->mapping->size();
    stats.generation = state.owned->generation;
  }
  return stats;
}

Result<std::shared_ptr<TableReader>> Client::Attach(std::string_view name) {
  std::shared_ptr<TableReader> reader(new TableReader(shared_from_this(), std::string(name)));
  std::lock_guard<std::mutex> lock(reader->state_->mutex);
  QUIVER_RETURN_NOT_OK(reader->RefreshLocked(/*reattach=*/true));
  return reader;
}

Status TableReader::RefreshLocked(bool reattach) {
  State& state = *state_;
  Client& client = *client_;
  const std::string& name = name_;
  if (!state.failed.ok()) return state.failed;
  std::shared_ptr<const ControlInfo> control =
      state.owned != nullptr ? state.owned->control : nullptr;
  for (int attempt = 0; attempt < kRefreshTries; ++attempt) {
    if (reattach || control == nullptr) {
      QUIVER_ASSIGN_OR_RETURN(Client::Attached attached, client.AttachRaw(name));
      auto mapped = Mapping::Map(attached.control_fd, attached.control_bytes, 0, false);
      close(attached.control_fd);
      QUIVER_RETURN_NOT_OK(mapped.status());
      QUIVER_ASSIGN_OR_RETURN(ControlInfo info, ControlInfo::Parse(*std::move(mapped)));
      if (state.owned != nullptr && info.table_id != state.table_id) {
        state.failed = Status::NotFound("table '" + name +
                                        "' was dropped (and created again) while attached; "
                                        "attach again");
        state.has_failed.store(true, std::memory_order_release);
        return state.failed;
      }
      if (state.owned != nullptr) state.reattaches.fetch_add(1, std::memory_order_relaxed);
      state.table_id = info.table_id;
      state.instance_id = attached.instance_id;
      if (state.schema == nullptr) {
        state.schema = info.schema;
        state.table_schema = info.table_schema;
        for (int index : info.table_schema->key_columns()) {
          state.key_names.push_back(info.table_schema->columns()[index].name);
        }
        state.int64_keys = !info.table_schema->composite_key() &&
                           info.table_schema->key().type->id() == arrow::Type::INT64;
      }
      control = std::make_shared<const ControlInfo>(std::move(info));
      reattach = false;
    }
    uint64_t generation;
    PublishedState published;
    std::vector<ManifestEntry> entries;
    if (!CopyManifest(*control, &generation, &published, &entries)) {
      return Status::Corruption("table '" + name + "': its control block never held still");
    }
    if (published == PublishedState::kDropped) {
      state.failed = Status::NotFound("table '" + name + "' was dropped");
      state.has_failed.store(true, std::memory_order_release);
      return state.failed;
    }
    if (published != PublishedState::kLive) {  // closed: the server shut down or restarts
      reattach = true;
      continue;
    }
    QUIVER_RETURN_NOT_OK(CheckManifest(entries, name));
    // Regions this view shares with the last one are not mapped again.
    std::map<uint64_t, std::shared_ptr<Mapping>> known;
    if (state.owned != nullptr && state.owned->control == control) {
      for (const auto& mapping : state.owned->owned) known[mapping->id()] = mapping;
    }
    std::vector<uint64_t> wanted;
    std::vector<uint64_t> wanted_bytes;  // as listed, by position in `wanted`
    for (const ManifestEntry& entry : entries) {
      if (known.find(entry.id) != known.end()) continue;
      wanted.push_back(entry.id);
      wanted_bytes.push_back(entry.bytes);
    }
    Result<std::vector<int>> fds = client.MapRaw(control->table_id, state.instance_id, wanted);
    if (!fds.ok()) {
      if (fds.status().code() == StatusCode::kIOError) {  // the server went away: try again
        reattach = true;
        continue;
      }
      return fds.status();
    }
    bool gone = false;
    Status mapped = Status::OK();
    for (size_t i = 0; i < wanted.size(); ++i) {
      const int fd = (*fds)[i];
      if (fd < 0) {
        gone = true;
        continue;
      }
      if (mapped.ok() && !gone) {
        auto mapping = Mapping::Map(fd, wanted_bytes[i], wanted[i], /*populate=*/true);
        if (mapping.ok()) {
          known[wanted[i]] = *std::move(mapping);
        } else {
          mapped = mapping.status();
        }
      }
      close(fd);
    }
    QUIVER_RETURN_NOT_OK(mapped);
    if (gone) continue;  // freed since the manifest was copied: copy it again
    auto view = std::make_unique<View>();
    view->control = control;
    view->generation = generation;
    QUIVER_RETURN_NOT_OK(AssembleView(*control, entries, known, view.get()));
    state.view.store(view.get(), std::memory_order_release);
    std::unique_ptr<const View> old = std::move(state.owned);
    state.owned = std::move(view);
    state.gate.Synchronize();  // no read uses the old view now
    old.reset();               // unmaps what only it held
    state.refreshes.fetch_add(1, std::memory_order_relaxed);
    client.Report(state.table_id, state.instance_id, generation,
                  state.owned->mapped_bytes + control->mapping->size());
    return Status::OK();
  }
  return Status::IOError("table '" + name + "' could not be attached through " +
                         client.socket_path() + ": it kept changing or the server is gone");
}

// Whether the view must be brought up to date before a read (a fast check: one load of the
// generation, one of the coarse clock); and the liveness check when its time has come.
bool TableReader::Stale(const View& view, bool* reattach) {
  State& state = *state_;
  Client& client = *client_;
  if (view.control->header->generation.load(std::memory_order_acquire) != view.generation) {
    return true;
  }
  const int64_t now = CoarseMillis();
  if (now < state.next_liveness_ms.load(std::memory_order_relaxed)) return false;
  state.next_liveness_ms.store(now + kLivenessCheckMs, std::memory_order_relaxed);
  const int64_t beat = view.control->header->heartbeat_ms.load(std::memory_order_acquire);
  if (now - beat < kHeartbeatStaleMs) return false;
  if (client.ServerAlive(view.control->instance_id)) return false;
  *reattach = true;
  return true;
}

template <typename Body>
Status TableReader::WithView(Body&& body) {
  State& state = *state_;
  const std::string& name = name_;
  bool force = false, reattach = false;
  for (int attempt = 0; attempt < kRefreshTries; ++attempt) {
    if (state.has_failed.load(std::memory_order_acquire) || force) {
      std::lock_guard<std::mutex> lock(state.mutex);
      QUIVER_RETURN_NOT_OK(RefreshLocked(reattach));
      force = reattach = false;
    }
    {
      ReaderGate::Section section = state.gate.Enter();
      const TableReader::View* view = state.view.load(std::memory_order_acquire);
      if (!Stale(*view, &reattach)) {
        Result<bool> done = body(*view);
        QUIVER_RETURN_NOT_OK(done.status());
        if (*done) return Status::OK();
      }
    }
    force = true;
  }
  return Status::IOError("table '" + name + "' changed too often to be read");
}

Result<FixedPlan> TableReader::PlanFixed(const std::vector<std::string>& columns) const {
  // In the gate: a refresh on another thread frees the view it replaces once no section holds it.
  ReaderGate::Section section = state_->gate.Enter();
  const View* view = state_->view.load(std::memory_order_acquire);
  const ControlInfo& control = *view->control;
  FixedPlan plan;
  plan.table_id_ = control.table_id;
  for (const std::string& column : columns) {
    const int index = state_->schema->GetFieldIndex(column);
    if (index < 0) {
      return Status::NotFound("table '" + name_ + "' has no column '" + column + "'");
    }
    const ColumnLayout& layout = control.layout->column(index);
    const auto& type = state_->schema->field(index)->type();
    // A composite key's columns are ordinary columns in the row; a single key's is not.
    if (index == control.table_schema->key_index() ||
        (layout.physical != Physical::kFixed && layout.physical != Physical::kBool)) {
      return Status::InvalidArgument("column '" + column + "' of table '" + name_ +
                                     "' is not a fixed-width value column (" +
                                     (layout.physical == Physical::kSparse ? "a sparse " : "") +
                                     type->ToString() + "): read it with Read()");
    }
    const arrow::DataType& element =
        type->id() == arrow::Type::FIXED_SIZE_LIST
            ? *static_cast<const arrow::FixedSizeListType&>(*type).value_type()
            : *type;
    uint8_t fill = 0;
    if (element.id() == arrow::Type::HALF_FLOAT) fill = 2;
    if (element.id() == arrow::Type::FLOAT) fill = 4;
    if (element.id() == arrow::Type::DOUBLE) fill = 8;
    plan.copies_.push_back(
        FixedPlan::Copy{layout.offset, layout.width, plan.row_bytes_, layout.valid_bit, fill,
                        layout.element_width ? layout.element_width : layout.width});
    plan.names_.push_back(column);
    plan.offsets_.push_back(plan.row_bytes_);
    plan.widths_.push_back(layout.width);
    plan.types_.push_back(type);
    plan.row_bytes_ += layout.width;
  }
  for (const FixedPlan::Copy& copy : plan.copies_) {
    if (copy.valid_bit < 0) continue;
    const auto byte = static_cast<uint32_t>(copy.valid_bit / 8);
    const auto bit = static_cast<uint8_t>(1u << (copy.valid_bit % 8));
    auto it = std::find_if(plan.valid_masks_.begin(), plan.valid_masks_.end(),
                           [&](const FixedPlan::ValidMask& mask) { return mask.byte == byte; });
    if (it == plan.valid_masks_.end()) {
      plan.valid_masks_.push_back(FixedPlan::ValidMask{byte, bit});
    } else {
      it->bits |= bit;
    }
  }
  // Columns adjacent in the row and in the output (f0..f9 read in schema order) are one copy.
  for (const FixedPlan::Copy& copy : plan.copies_) {
    FixedPlan::Run* last = plan.runs_.empty() ? nullptr : &plan.runs_.back();
    if (last != nullptr && last->row_offset + last->width == copy.row_offset &&
        last->out_offset + last->width == copy.out_offset) {
      last->width += copy.width;
    } else {
      plan.runs_.push_back(FixedPlan::Run{copy.row_offset, copy.width, copy.out_offset});
    }
  }
  return plan;
}

namespace {

void FillMissing(std::byte* out, uint32_t width, uint8_t fill, uint32_t element) {
  if (fill == 0) {
    std::memset(out, 0, width);
    return;
  }
  for (uint32_t at = 0; at + element <= width; at += element) {
    if (fill == 2) {
      const uint16_t nan = 0x7e00;
      std::memcpy(out + at, &nan, 2);
    } else if (fill == 4) {
      const float nan = std::numeric_limits<float>::quiet_NaN();
      std::memcpy(out + at, &nan, 4);
    } else {
      const double nan = std::numeric_limits<double>::quiet_NaN();
      std::memcpy(out + at, &nan, 8);
    }
  }
}

}  // namespace

template <typename KeyAt>
Status TableReader::ReadFixed(const FixedPlan& plan, size_t n, KeyAt key_at, std::byte* out,
                              size_t out_stride, uint8_t* found, uint8_t* valid) {
  if (plan.table_id_ != state_->table_id) {
    return Status::InvalidArgument("the plan was made for another table");
  }
  if (out_stride < plan.row_bytes_) {
    return Status::InvalidArgument("the output stride is smaller than a plan's row (" +
                                   std::to_string(plan.row_bytes_) + " bytes)");
  }
  const size_t columns = plan.copies_.size();
  return WithView([&](const View& view) -> Result<bool> {
    const ControlInfo& control = *view.control;
    uint8_t bitmap[512];  // a table has at most 4096 columns
    const uint32_t bitmap_bytes = std::min<uint32_t>(control.bitmap_bytes, sizeof(bitmap));
    auto copy_at = [&](size_t i) {
      std::byte* destination = out + i * out_stride;
      return [&, destination](const std::byte* row) {
        if (bitmap_bytes != 0) CopyFromRow(bitmap, row + kRowHeaderBytes, bitmap_bytes);
        for (const FixedPlan::Run& run : plan.runs_) {
          CopyRun(destination + run.out_offset, row + run.row_offset, run.width);
        }
      };
    };
    // A row found with every wanted column valid (its bits checked a byte at a time) needs no
    // look per column, unless validity is asked for.
    bool cold = false;
    auto finish = [&](size_t i, Outcome outcome) {
      if (outcome == Outcome::kCold) cold = true;
      if (outcome == Outcome::kRefresh || outcome == Outcome::kCold) return false;
      const bool hit = outcome == Outcome::kFound;
      found[i] = hit ? 1 : 0;
      if (hit && valid == nullptr) {
        bool all_valid = true;
        for (const FixedPlan::ValidMask& mask : plan.valid_masks_) {
          all_valid &= (bitmap[mask.byte] & mask.bits) == mask.bits;
        }
        if (all_valid) return true;
      }
      std::byte* destination = out + i * out_stride;
      for (size_t j = 0; j < columns; ++j) {
        const FixedPlan::Copy& copy = plan.copies_[j];
        const bool present =
            hit &&
            (copy.valid_bit < 0 || ((bitmap[copy.valid_bit / 8] >> (copy.valid_bit % 8)) & 1) != 0);
        if (!present) {
          FillMissing(destination + copy.out_offset, copy.width, copy.null_fill,
                      copy.element_width);
        }
        if (valid != nullptr) valid[i * columns + j] = present ? 1 : 0;
      }
      return true;
    };
    Now now;
    const bool done = WithProber(view, control, [&](const auto& prober) {
      if (n == 1) return finish(0, LookupOne(prober, key_at(0), copy_at(0), now));
      return PipelinedLookups(prober, n, key_at, copy_at, finish, now);
    });
    if (cold) return ColdRowError(name_);
    return done;
  });
}

Status TableReader::ReadInto(const FixedPlan& plan, std::span<const int64_t> keys, std::byte* out,
                             size_t out_stride, uint8_t* found, uint8_t* valid) {
  if (!int64_keys()) {
    return Status::InvalidArgument("table '" + name_ + "' has utf8 keys, not int64");
  }
  const int64_t* data = keys.data();
  return ReadFixed(
      plan, keys.size(),
      [data](size_t i) {
        return std::string_view(reinterpret_cast<const char*>(data + i), sizeof(int64_t));
      },
      out, out_stride, found, valid);
}

Status TableReader::ReadInto(const FixedPlan& plan, std::span<const std::string_view> keys,
                             std::byte* out, size_t out_stride, uint8_t* found, uint8_t* valid) {
  if (int64_keys()) {
    return Status::InvalidArgument("table '" + name_ + "' has int64 keys, not utf8");
  }
  // A composite key's keys come encoded (NormalizeKeys); a malformed one matches no row.
  const std::string_view* data = keys.data();
  return ReadFixed(
      plan, keys.size(), [data](size_t i) { return data[i]; }, out, out_stride, found, valid);
}

Result<bool> ReadFromView(const ControlInfo& control, const View& view, const arrow::Array& keys,
                          const std::vector<int>& columns, std::string_view name,
                          arrow::ArrayVector* arrays, std::shared_ptr<arrow::Buffer>* found_bits,
                          int64_t* found_count) {
  const int64_t n = keys.length();
  const KeyColumn key_column(keys);
  auto key_at = [&key_column](size_t i) { return key_column.Bytes(static_cast<int64_t>(i)); };
  std::vector<GatherColumn> outputs;
  outputs.reserve(columns.size());
  for (int index : columns) {
    outputs.push_back(GatherColumn{&control.layout->column(index),
                                   control.schema->field(index)->type(),
                                   control.schema->field(index)->name()});
  }
  const HeapResolver heap{&view, [](const void* context, HeapRef ref, size_t size) {
                            return static_cast<const View*>(context)->Heap(ref, size);
                          }};
  RowGather gather(outputs, control.bitmap_bytes, n, heap, name, &control.layout->sparse_widths());
  QUIVER_RETURN_NOT_OK(gather.Init());
  QUIVER_ASSIGN_OR_RETURN_ARROW(*found_bits,
                                arrow::AllocateBuffer(arrow::bit_util::BytesForBits(n)));
  uint8_t* found = (*found_bits)->mutable_data();
  std::memset(found, 0, static_cast<size_t>((*found_bits)->size()));
  *found_count = 0;
  auto copy_at = [&](size_t i) {
    return [&gather, i](const std::byte* row) { gather.Copy(row, static_cast<int64_t>(i)); };
  };
  bool cold = false;
  auto visit = [&](size_t i, Outcome outcome) {
    const auto at = static_cast<int64_t>(i);
    if (outcome == Outcome::kFound && !gather.HeapRefsResolve(at)) outcome = Outcome::kRefresh;
    if (outcome == Outcome::kCold) cold = true;
    if (outcome == Outcome::kRefresh || outcome == Outcome::kCold) return false;
    if (outcome == Outcome::kFound) {
      arrow::bit_util::SetBit(found, at);
      ++*found_count;
    } else {
      gather.SetMissing(at);
    }
    return true;
  };
  Now now;
  if (!WithProber(view, control, [&](const auto& prober) {
        return PipelinedLookups(prober, static_cast<size_t>(n), key_at, copy_at, visit, now);
      })) {
    if (cold) return ColdRowError(name);
    return false;
  }
  QUIVER_ASSIGN_OR_RETURN(*arrays, gather.Finish(n, found));
  return true;
}

Result<ReadBatch> TableReader::Read(const arrow::Array& keys_in,
                                    const std::vector<std::string>& columns) {
  const std::shared_ptr<arrow::Schema>& schema = state_->schema;
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> keys, NormalizeKeys(keys_in));
  std::vector<int> indices;
  if (columns.empty()) {
    for (int i = 0; i < schema->num_fields(); ++i) {
      if (!state_->table_schema->IsKeyColumn(i)) indices.push_back(i);
    }
  }
  for (const std::string& column : columns) {
    const int index = schema->GetFieldIndex(column);
    if (index < 0) {
      return Status::NotFound("table '" + name_ + "' has no column '" + column + "'");
    }
    indices.push_back(index);
  }
  const int64_t n = keys->length();
  ReadBatch result;
  arrow::ArrayVector arrays;
  std::shared_ptr<arrow::Buffer> found_bits;
  QUIVER_RETURN_NOT_OK(WithView([&](const View& view) -> Result<bool> {
    return ReadFromView(*view.control, view, *keys, indices, name_, &arrays, &found_bits,
                        &result.found_count);
  }));
  arrow::FieldVector fields;
  for (int index : indices) {
    fields.push_back(arrow::field(schema->field(index)->name(), schema->field(index)->type(),
                                  /*nullable=*/true));
  }
  result.batch = arrow::RecordBatch::Make(arrow::schema(std::move(fields)), n, std::move(arrays));
  result.found = std::make_shared<arrow::BooleanArray>(n, found_bits);
  return result;
}

}  // namespace quiver::shm
