#include "shm/mapped_table.h"

#include <arrow/buffer.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/dictionary.h>
#include <arrow/ipc/reader.h>
#include <arrow/type.h>
#include <arrow/util/key_value_metadata.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

#include "common/huge_map.h"
#include "engine/limits.h"
#include "engine/row_copy.h"

namespace quiver::shm {

Result<std::shared_ptr<Mapping>> Mapping::Map(int fd, uint64_t bytes, uint64_t id, bool populate) {
  struct stat info;
  if (fstat(fd, &info) != 0) {
    return Status::IOError(std::string("stat of a shared-memory region: ") + std::strerror(errno));
  }
  if (bytes == 0 || static_cast<uint64_t>(info.st_size) < bytes) {
    return Status::Corruption("the control block lists region " + std::to_string(id) + " as " +
                              std::to_string(bytes) + " bytes; the region has " +
                              std::to_string(info.st_size));
  }
  // Large regions as the server maps them (engine/region.cc): shmem gets huge pages where
  // shmem_enabled allows.
  void* data = MAP_FAILED;
  if (bytes >= kHugePageBytes) {
    data = MapHugeAligned(bytes, PROT_READ, MAP_SHARED, fd);
#if defined(MADV_POPULATE_READ)
    if (data != MAP_FAILED && populate) {
      madvise(data, bytes, MADV_POPULATE_READ);  // Linux 5.14; advice only
    }
#endif
  } else {
    data = mmap(nullptr, bytes, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  }
  if (data == MAP_FAILED) {
    return Status::IOError("cannot map a shared-memory region of " + std::to_string(bytes) +
                           " bytes: " + std::strerror(errno));
  }
  return std::shared_ptr<Mapping>(
      new Mapping(static_cast<const std::byte*>(data), static_cast<size_t>(bytes), id));
}

Mapping::~Mapping() { munmap(const_cast<std::byte*>(data_), size_); }

namespace {

Status Corrupt(const std::string& what) {
  return Status::Corruption("the table's shared-memory control block is invalid: " + what);
}

// Whether `offset` + `count` * `size` bytes lie within `limit`.
bool Within(uint64_t offset, uint64_t count, uint64_t size, uint64_t limit) {
  return offset <= limit && count <= (limit - offset) / (size == 0 ? 1 : size);
}

}  // namespace

Result<ControlInfo> ControlInfo::Parse(std::shared_ptr<Mapping> mapping) {
  ControlInfo info;
  const uint64_t size = mapping->size();
  if (size < sizeof(ControlHeader)) return Corrupt("shorter than its header");
  const auto* header = reinterpret_cast<const ControlHeader*>(mapping->data());
  if (header->magic != kControlMagic) return Corrupt("bad magic");
  if (header->version != kControlVersion) {
    return Status::NotImplemented("the table's control block has version " +
                                  std::to_string(header->version) + "; this reader reads " +
                                  std::to_string(kControlVersion));
  }
  if (header->header_bytes != sizeof(ControlHeader)) return Corrupt("bad header size");
  if (!Within(header->columns_offset, header->columns_count, sizeof(ColumnRecord), size) ||
      !Within(header->schema_offset, header->schema_bytes, 1, size) ||
      !Within(header->manifest_offset, header->manifest_capacity, sizeof(ManifestEntry), size) ||
      header->manifest_offset % 8 != 0 || header->columns_offset % 8 != 0 ||
      header->schema_offset % 8 != 0) {
    return Corrupt("a section lies outside the block");
  }
  if (header->row_width < kRowHeaderBytes + 8 || header->row_width > (1u << 26) ||
      header->row_width % 8 != 0) {
    return Corrupt("row width " + std::to_string(header->row_width));
  }
  if (header->first_shift < 4 || header->large_shift > 31 ||
      header->first_shift > header->large_shift) {
    return Corrupt("row chunk sizes");
  }
  // A table has at most 4096 columns: 512 bytes of validity bits (readers size buffers by it).
  if (kRowHeaderBytes + uint64_t{header->bitmap_bytes} > header->row_width ||
      header->bitmap_bytes > 512) {
    return Corrupt("validity bitmap");
  }
  auto buffer = std::make_shared<arrow::Buffer>(
      reinterpret_cast<const uint8_t*>(mapping->data() + header->schema_offset),
      header->schema_bytes);
  arrow::io::BufferReader stream(buffer);
  arrow::ipc::DictionaryMemo memo;
  auto schema = arrow::ipc::ReadSchema(&stream, &memo);
  if (!schema.ok()) return Corrupt("its schema: " + schema.status().message());
  info.schema = *schema;
  // The layout is the engine's own, computed from the table's schema (its JSON rides in the Arrow
  // schema's metadata); the block's records must agree with it field by field.
  const auto& metadata = info.schema->metadata();
  const int json_at = metadata == nullptr ? -1 : metadata->FindKey(kTableSchemaMetadata);
  if (json_at < 0) return Corrupt("its schema lacks the table schema");
  EngineLimits limits;  // the server's may exceed the defaults: the block bounds them here
  limits.max_columns = std::max<int>(limits.max_columns, static_cast<int>(header->columns_count));
  limits.max_embedding_elements = static_cast<int>(header->row_width);
  auto table_schema = TableSchema::FromJson(metadata->value(json_at), limits);
  if (!table_schema.ok()) return Corrupt("its table schema: " + table_schema.status().message());
  if (!table_schema->ToArrow()->Equals(*info.schema, /*check_metadata=*/false) ||
      static_cast<uint32_t>(table_schema->num_columns()) != header->columns_count) {
    return Corrupt("its columns do not match its schema");
  }
  const uint16_t key_column = table_schema->composite_key()
                                  ? kCompositeKeyColumn
                                  : static_cast<uint16_t>(table_schema->key_index());
  if (header->key_column != key_column) return Corrupt("its key column");
  auto layout = std::make_shared<const RowLayout>(*table_schema);
  if (layout->row_width() != header->row_width || layout->bitmap_bytes() != header->bitmap_bytes) {
    return Corrupt("its row width or validity bitmap does not match its schema");
  }
  const auto* records =
      reinterpret_cast<const ColumnRecord*>(mapping->data() + header->columns_offset);
  for (uint32_t i = 0; i < header->columns_count; ++i) {
    const ColumnRecord& record = records[i];
    const ColumnLayout& expected = layout->column(static_cast<int>(i));
    if (record.physical != static_cast<uint8_t>(expected.physical) ||
        record.offset != expected.offset || record.width != expected.width ||
        record.valid_bit != expected.valid_bit || record.element_width != expected.element_width ||
        ((record.flags & kColumnIsKey) != 0) != table_schema->IsKeyColumn(static_cast<int>(i))) {
      return Corrupt("column " + std::to_string(i) + " does not match its type");
    }
    // Against the block's own bounds as well (a hostile schema's layout could wrap around).
    if (uint64_t{record.offset} + record.width > header->row_width ||
        record.offset < kRowHeaderBytes + header->bitmap_bytes ||
        record.valid_bit >= static_cast<int32_t>(header->bitmap_bytes * 8) ||
        record.valid_bit < -1) {
      return Corrupt("column " + std::to_string(i) + " lies outside the row");
    }
  }
  info.table_schema = std::make_shared<const TableSchema>(*std::move(table_schema));
  info.layout = std::move(layout);
  info.header = header;
  info.table_id = header->table_id;
  info.instance_id = header->instance_id;
  info.row_width = header->row_width;
  info.bitmap_bytes = header->bitmap_bytes;
  info.geometry.first_shift = header->first_shift;
  info.geometry.large_shift = header->large_shift;
  info.mapping = std::move(mapping);
  return info;
}

bool CopyManifest(const ControlInfo& control, uint64_t* generation, PublishedState* state,
                  std::vector<ManifestEntry>* entries, std::chrono::milliseconds patience) {
  const ControlHeader& header = *control.header;
  // A busy writer may change the manifest while a slow reader copies it: try for a while (2 s
  // by default: a writer stuck mid-change, dead or hostile, is the only way to exhaust that).
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (uint64_t attempt = 1;; ++attempt) {
    if (attempt % 1024 == 0 && std::chrono::steady_clock::now() > deadline) return false;
    const uint64_t before = header.generation.load(std::memory_order_acquire);
    if (before & 1) {
      __builtin_ia32_pause();
      continue;
    }
    const uint32_t count = header.manifest_count.load(std::memory_order_relaxed);
    *state = static_cast<PublishedState>(header.state.load(std::memory_order_relaxed));
    if (count > header.manifest_capacity) return false;
    entries->resize(count);
    if (count > 0) {
      CopyFromRow(entries->data(), reinterpret_cast<const std::byte*>(control.manifest()),
                  count * sizeof(ManifestEntry));
    }
    if (StillEqualShared(header.generation, before)) {
      *generation = before;
      return true;
    }
  }
}

Status CheckManifest(const std::vector<ManifestEntry>& entries, const std::string& name) {
  constexpr uint32_t kMaxChunkNumber = uint32_t{1} << 22;
  int indexes = 0;
  std::vector<uint64_t> ids;
  ids.reserve(entries.size());
  for (const ManifestEntry& entry : entries) {
    const auto kind = static_cast<RegionKind>(entry.kind);
    const bool chunk = kind == RegionKind::kRows || kind == RegionKind::kHeap;
    if ((!chunk && kind != RegionKind::kIndex) || (chunk && entry.number >= kMaxChunkNumber) ||
        entry.bytes == 0 || entry.bytes > (uint64_t{1} << 40)) {
      return Status::Corruption("table '" + name + "': a bad manifest entry");
    }
    if (kind == RegionKind::kIndex) {
      ++indexes;
      if (entry.param < 512 || entry.param > (uint64_t{1} << 32) ||
          (entry.param & (entry.param - 1)) != 0) {
        return Status::Corruption("table '" + name + "': a bad index entry");
      }
    }
    ids.push_back(entry.id);
  }
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return Status::Corruption("table '" + name + "': a region listed twice");
  }
  if (indexes != 1) return Status::Corruption("table '" + name + "': no single index");
  return Status::OK();
}

Status AssembleView(const ControlInfo& control, const std::vector<ManifestEntry>& entries,
                    const std::map<uint64_t, std::shared_ptr<Mapping>>& mappings, View* view) {
  for (const ManifestEntry& entry : entries) {
    auto it = mappings.find(entry.id);
    if (it == mappings.end() || it->second == nullptr) {
      return Status::Internal("region " + std::to_string(entry.id) + " was not mapped");
    }
    const std::shared_ptr<Mapping>& mapping = it->second;
    const Span span{mapping->data(), mapping->size()};
    switch (static_cast<RegionKind>(entry.kind)) {
      case RegionKind::kRows:
        // Every row id the chunk's number stands for lies inside the mapping.
        if (mapping->size() / control.row_width < control.geometry.ChunkRows(entry.number)) {
          return Status::Corruption("a row chunk is smaller than its rows");
        }
        if (view->rows.size() <= entry.number) view->rows.resize(entry.number + 1);
        view->rows[entry.number] = span;
        break;
      case RegionKind::kHeap:
        if (mapping->size() < kHeapChunkHeaderBytes) {
          return Status::Corruption("a heap chunk is smaller than its header");
        }
        if (view->heap.size() <= entry.number) view->heap.resize(entry.number + 1);
        view->heap[entry.number] = span;
        break;
      case RegionKind::kIndex:
        if (mapping->size() / sizeof(uint64_t) < entry.param) {
          return Status::Corruption("the index is smaller than its slots");
        }
        view->slots = reinterpret_cast<const std::atomic<uint64_t>*>(span.base);
        view->index_mask = entry.param - 1;
        view->index_shift = 32 - __builtin_ctzll(entry.param);
        break;
    }
    view->mapped_bytes += mapping->size();
    view->owned.push_back(mapping);
  }
  return Status::OK();
}

}  // namespace quiver::shm
