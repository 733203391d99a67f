// Publication: a table's memory offered to readers in other processes. It owns the table's
// control block (engine/control_block.h, a memfd region) and a read-only file descriptor for every
// region the table holds (opened through /proc/self/fd, so a reader given one can only map it
// PROT_READ); the table's RegionLists and HashIndex report each region they add or remove
// (RegionObserver), and the publication lists it in the control block's manifest. The socket
// server (server/shm/) hands the control block and the regions' descriptors to readers.
//
// Nothing has a name in /dev/shm: when every process holding a mapping or descriptor is gone, the
// kernel frees the memory. A region the table frees stays valid for a reader that mapped it,
// until that reader unmaps it.
//
// Thread safety: the RegionObserver calls come from the table's single writer; SetState,
// Stamp and the socket side (RegionFds, Find, ...) from any thread. One mutex serializes them.
#pragma once

#include <arrow/type_fwd.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "common/result.h"
#include "engine/control_block.h"
#include "engine/region.h"
#include "engine/row_format.h"

namespace quiver {

class RowLayout;
class TableSchema;

// This process's random instance id (ControlHeader::instance_id).
uint64_t PublicationInstanceId();

class Publication final : public RegionObserver {
 public:
  // The control block of table `table_id` with `schema`'s columns laid out by `layout`.
  static Result<std::shared_ptr<Publication>> Make(uint64_t table_id, const TableSchema& schema,
                                                   const RowLayout& layout,
                                                   const RowChunkGeometry& geometry);
  ~Publication() override;
  Publication(const Publication&) = delete;
  Publication& operator=(const Publication&) = delete;

  // RegionObserver. Added lists the region (replacing the index entry for kIndex) and keeps a
  // read-only descriptor for it; it fails when the manifest is full or no descriptor can be had.
  // Removed forgets region (kind, number): a chunk leaves the manifest, a replaced index array's
  // descriptor is closed.
  Status Added(RegionKind kind, uint32_t number, const Region& region, uint64_t param) override;
  void Removed(RegionKind kind, uint32_t number) override;

  // Marks the table dropped or closed; the descriptors of its regions are closed (the regions
  // themselves go with the table). Readers that mapped them keep them until they unmap.
  void SetState(PublishedState state);
  PublishedState state() const;
  // Stamps the heartbeat with `now_ms` (the socket server does, about every 100 ms).
  void Stamp(int64_t now_ms);

  uint64_t table_id() const { return table_id_; }
  // A read-only descriptor of the control block (owned by the publication) and its size.
  int control_fd() const { return control_fd_; }
  uint64_t control_bytes() const { return control_->size(); }
  // Calls `use` with the read-only descriptors of the regions named by `ids` (-1 for one the
  // table no longer holds), while they cannot be closed.
  void WithRegionFds(std::span<const uint64_t> ids,
                     const std::function<void(std::span<const int>)>& use) const;
  // The size of region `id` while the table holds it; 0 once it was freed.
  uint64_t RegionBytes(uint64_t id) const;
  // Bytes of the regions the table holds now (the control block included).
  uint64_t PublishedBytes() const;
  // The control block's generation now.
  uint64_t generation() const;
  // Bytes that a reader which mapped the manifest of `generation` (and nothing since) still maps
  // but the table no longer lists: regions freed, replaced or dropped since. The publication
  // remembers a region it stopped listing until PruneRetired says no reader is that old.
  uint64_t RetiredBytesAt(uint64_t generation) const;
  // A reader maps the manifest of `generation` now: what stops being listed after it is
  // remembered (until PruneRetired says otherwise).
  void NoteReaderAt(uint64_t generation);
  // Forgets the regions stopped being listed at or before `oldest_generation`, the oldest
  // generation a reader still maps (UINT64_MAX: no reader).
  void PruneRetired(uint64_t oldest_generation);

  // The control block's writable view (tests that play a hostile or corrupt writer).
  std::byte* control_for_testing() const { return control_->data(); }

 private:
  struct Held {
    RegionKind kind;
    uint32_t number;
    uint64_t id;
    uint64_t bytes;
    int fd;                              // read-only
    uint64_t listed_from;                // the generation that listed it first
    uint64_t listed_until = UINT64_MAX;  // the first generation that did not (a replaced index)
  };
  struct Retired {
    uint64_t bytes;
    uint64_t listed_from, listed_until;
  };

  Publication(uint64_t table_id, std::unique_ptr<Region> control, int control_fd);
  ControlHeader& header() const { return *reinterpret_cast<ControlHeader*>(control_->data()); }
  ManifestEntry* manifest() const;
  // Under mutex_: the manifest between BeginChange and EndChange is odd-generation.
  void BeginChange();
  void EndChange();
  // Under mutex_: removes region `id` from the manifest (if listed).
  void RemoveEntry(uint64_t id);
  // Under mutex_: closes the descriptor of `held` and remembers it as retired.
  void Forget(const Held& held);
  void CloseAll();

  const uint64_t table_id_;
  std::unique_ptr<Region> control_;
  const int control_fd_;
  mutable std::mutex mutex_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Held> held_;  // by id
  uint64_t held_bytes_ = 0;
  std::vector<Retired> retired_;
  uint64_t oldest_reader_generation_ = UINT64_MAX;  // as PruneRetired last said
};

}  // namespace quiver
