#include "engine/publication.h"

#include <arrow/buffer.h>
#include <arrow/ipc/writer.h>
#include <arrow/type.h>
#include <arrow/util/key_value_metadata.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>

#include "common/arrow_status.h"
#include "engine/row_layout.h"
#include "engine/schema.h"

namespace quiver {
namespace {

// Room for this many regions: a table of 2^32 64-byte rows has 32768 row chunks; heap chunks are
// 64 KiB to 4 MiB. The block is a sparse memfd: untouched manifest pages take no memory.
constexpr uint32_t kManifestCapacity = 1 << 17;

// A descriptor of the memfd behind `fd` that allows reading only.
Result<int> ReadOnlyFd(int fd) {
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const int read_only = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (read_only < 0) {
    return Status::IOError("cannot reopen a shared-memory region read-only (" + path +
                           "): " + std::strerror(errno));
  }
  return read_only;
}

size_t Align8(size_t n) { return (n + 7) / 8 * 8; }

}  // namespace

uint64_t PublicationInstanceId() {
  static const uint64_t id = [] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32 ^ device()) | 1;
  }();
  return id;
}

Publication::Publication(uint64_t table_id, std::unique_ptr<Region> control, int control_fd)
    : table_id_(table_id), control_(std::move(control)), control_fd_(control_fd) {}

Publication::~Publication() {
  CloseAll();
  close(control_fd_);
}

Result<std::shared_ptr<Publication>> Publication::Make(uint64_t table_id, const TableSchema& schema,
                                                       const RowLayout& layout,
                                                       const RowChunkGeometry& geometry) {
  // The TableSchema itself rides along as metadata, for clients that speak its JSON.
  const std::shared_ptr<arrow::Schema> arrow_schema = schema.ToArrow()->WithMetadata(
      arrow::key_value_metadata({std::string(kTableSchemaMetadata)}, {schema.ToJson()}));
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> ipc,
                                arrow::ipc::SerializeSchema(*arrow_schema));
  const auto columns = static_cast<uint32_t>(schema.num_columns());
  const size_t columns_offset = sizeof(ControlHeader);
  const size_t schema_offset = columns_offset + columns * sizeof(ColumnRecord);
  const size_t manifest_offset = Align8(schema_offset + static_cast<size_t>(ipc->size()));
  const size_t bytes = manifest_offset + size_t{kManifestCapacity} * sizeof(ManifestEntry);
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<Region> control,
                          Region::Create(bytes, RegionBacking::kSharedMemory));
  std::byte* base = control->data();
  auto* header = new (base) ControlHeader{};
  header->magic = kControlMagic;
  header->version = kControlVersion;
  header->header_bytes = sizeof(ControlHeader);
  header->state.store(static_cast<uint32_t>(PublishedState::kLive), std::memory_order_relaxed);
  header->row_width = layout.row_width();
  header->table_id = table_id;
  header->instance_id = PublicationInstanceId();
  header->first_shift = static_cast<uint8_t>(geometry.first_shift);
  header->large_shift = static_cast<uint8_t>(geometry.large_shift);
  header->key_column =
      schema.composite_key() ? kCompositeKeyColumn : static_cast<uint16_t>(schema.key_index());
  header->bitmap_bytes = layout.bitmap_bytes();
  header->columns_offset = static_cast<uint32_t>(columns_offset);
  header->columns_count = columns;
  header->schema_offset = static_cast<uint32_t>(schema_offset);
  header->schema_bytes = static_cast<uint32_t>(ipc->size());
  header->manifest_offset = static_cast<uint32_t>(manifest_offset);
  header->manifest_capacity = kManifestCapacity;
  auto* records = reinterpret_cast<ColumnRecord*>(base + columns_offset);
  for (uint32_t i = 0; i < columns; ++i) {
    const ColumnLayout& column = layout.column(static_cast<int>(i));
    const ColumnSpec& spec = schema.columns()[i];
    records[i] = ColumnRecord{
        .physical = static_cast<uint8_t>(column.physical),
        .flags = static_cast<uint8_t>((schema.IsKeyColumn(static_cast<int>(i)) ? kColumnIsKey : 0) |
                                      (spec.nullable ? kColumnNullable : 0)),
        .reserved = 0,
        .offset = column.offset,
        .width = column.width,
        .valid_bit = column.valid_bit,
        .element_width = column.element_width,
        .reserved2 = 0};
  }
  std::memcpy(base + schema_offset, ipc->data(), static_cast<size_t>(ipc->size()));
  QUIVER_ASSIGN_OR_RETURN(int control_fd, ReadOnlyFd(control->fd()));
  header->generation.store(2, std::memory_order_release);
  return std::shared_ptr<Publication>(new Publication(table_id, std::move(control), control_fd));
}

ManifestEntry* Publication::manifest() const {
  return reinterpret_cast<ManifestEntry*>(control_->data() + header().manifest_offset);
}

void Publication::BeginChange() {
  std::atomic<uint64_t>& generation = header().generation;
#if defined(QUIVER_TSAN)
  generation.fetch_add(1, std::memory_order_acq_rel);  // TSan has no fences (row_format.h)
#else
  generation.store(generation.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
#endif
}

void Publication::EndChange() {
  std::atomic<uint64_t>& generation = header().generation;
  generation.store(generation.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

Status Publication::Added(RegionKind kind, uint32_t number, const Region& region, uint64_t param) {
  std::lock_guard<std::mutex> lock(mutex_);
  ControlHeader& head = header();
  const uint32_t count = head.manifest_count.load(std::memory_order_relaxed);
  ManifestEntry* entries = manifest();
  // A new index array takes the place of the current one in the manifest.
  uint32_t slot = count;
  if (kind == RegionKind::kIndex) {
    for (uint32_t i = 0; i < count; ++i) {
      if (entries[i].kind == static_cast<uint8_t>(RegionKind::kIndex)) slot = i;
    }
  }
  if (slot == head.manifest_capacity) {
    return Status::OutOfMemory("table " + std::to_string(table_id_) +
                               ": its shared-memory publication lists at most " +
                               std::to_string(head.manifest_capacity) + " regions");
  }
  if (region.fd() < 0) {
    return Status::Internal("a published table's region is not shared memory");
  }
  QUIVER_ASSIGN_OR_RETURN(int fd, ReadOnlyFd(region.fd()));
  const uint64_t id = next_id_++;
  const uint64_t listed_from = head.generation.load(std::memory_order_relaxed) + 2;
  held_[id] = Held{kind, number, id, region.size(), fd, listed_from};
  held_bytes_ += region.size();
  if (slot != count) held_[entries[slot].id].listed_until = listed_from;  // the replaced index
  BeginChange();
  entries[slot] = ManifestEntry{.kind = static_cast<uint8_t>(kind),
                                .reserved = {},
                                .number = number,
                                .id = id,
                                .bytes = region.size(),
                                .param = param};
  if (slot == count) head.manifest_count.store(count + 1, std::memory_order_relaxed);
  EndChange();
  return Status::OK();
}

void Publication::RemoveEntry(uint64_t id) {
  ControlHeader& head = header();
  const uint32_t count = head.manifest_count.load(std::memory_order_relaxed);
  ManifestEntry* entries = manifest();
  for (uint32_t i = 0; i < count; ++i) {
    if (entries[i].id != id) continue;
    BeginChange();
    entries[i] = entries[count - 1];
    head.manifest_count.store(count - 1, std::memory_order_relaxed);
    EndChange();
    return;
  }
}

void Publication::Removed(RegionKind kind, uint32_t number) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto it = held_.begin(); it != held_.end(); ++it) {
    if (it->second.kind != kind || it->second.number != number) continue;
    RemoveEntry(it->first);  // a replaced index array is no longer listed: no change
    Forget(it->second);
    held_.erase(it);
    return;
  }
}

void Publication::Forget(const Held& held) {
  close(held.fd);
  held_bytes_ -= held.bytes;
  const uint64_t until =
      std::min(held.listed_until, header().generation.load(std::memory_order_relaxed));
  if (until > oldest_reader_generation_) {  // else no reader can map it
    retired_.push_back(Retired{held.bytes, held.listed_from, until});
  }
}

void Publication::CloseAll() {
  for (auto& [id, held] : held_) Forget(held);
  held_.clear();
}

uint64_t Publication::generation() const {
  return header().generation.load(std::memory_order_acquire);
}

uint64_t Publication::RetiredBytesAt(uint64_t generation) const {
  std::lock_guard<std::mutex> lock(mutex_);
  uint64_t bytes = 0;
  for (const Retired& retired : retired_) {
    if (retired.listed_from <= generation && generation < retired.listed_until) {
      bytes += retired.bytes;
    }
  }
  return bytes;
}

void Publication::NoteReaderAt(uint64_t generation) {
  std::lock_guard<std::mutex> lock(mutex_);
  oldest_reader_generation_ = std::min(oldest_reader_generation_, generation);
}

void Publication::PruneRetired(uint64_t oldest_generation) {
  std::lock_guard<std::mutex> lock(mutex_);
  oldest_reader_generation_ = oldest_generation;
  std::erase_if(retired_,
                [&](const Retired& retired) { return retired.listed_until <= oldest_generation; });
}

void Publication::SetState(PublishedState state) {
  std::lock_guard<std::mutex> lock(mutex_);
  ControlHeader& head = header();
  if (head.state.load(std::memory_order_relaxed) != static_cast<uint32_t>(PublishedState::kLive)) {
    return;  // dropped or closed already: the first word stays
  }
  BeginChange();
  head.state.store(static_cast<uint32_t>(state), std::memory_order_relaxed);
  EndChange();
  CloseAll();
}

PublishedState Publication::state() const {
  return static_cast<PublishedState>(header().state.load(std::memory_order_acquire));
}

void Publication::Stamp(int64_t now_ms) {
  header().heartbeat_ms.store(now_ms, std::memory_order_release);
}

void Publication::WithRegionFds(std::span<const uint64_t> ids,
                                const std::function<void(std::span<const int>)>& use) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<int> fds;
  fds.reserve(ids.size());
  for (uint64_t id : ids) {
    auto it = held_.find(id);
    fds.push_back(it == held_.end() ? -1 : it->second.fd);
  }
  use(fds);
}

uint64_t Publication::RegionBytes(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = held_.find(id);
  return it == held_.end() ? 0 : it->second.bytes;
}

uint64_t Publication::PublishedBytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return held_bytes_ + control_->size();
}

}  // namespace quiver
