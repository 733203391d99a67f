// What a TableReader maps of a published table (shm/reader.h): the control block, checked once,
// and Views of its regions, each a consistent picture of the manifest at one generation. Reads
// run against one View inside the reader's ReaderGate section; a refresh builds the next View
// (mapping the regions it adds, keeping the ones it shares) and unmaps what only the old one held
// once no read can still use it.
//
// Nothing here trusts the control block: every offset and size is checked against the mappings,
// and a probe or seqlock wait is bounded, so a corrupt or hostile block yields an error, never a
// read outside the mappings or a hang.
//
// Thread safety: a View is immutable once published.
#pragma once

#include <arrow/type_fwd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "engine/control_block.h"
#include "engine/row_format.h"
#include "engine/row_layout.h"
#include "engine/schema.h"

namespace quiver::shm {

// A read-only shared mapping of a descriptor; unmapped when the last owner lets go.
class Mapping {
 public:
  // Maps `bytes` of `fd` (which it does not close); kCorruption when the object behind `fd` is
  // smaller (a hostile size would fault).
  static Result<std::shared_ptr<Mapping>> Map(int fd, uint64_t bytes, uint64_t id, bool populate);
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  uint64_t id() const { return id_; }

 private:
  Mapping(const std::byte* data, size_t size, uint64_t id) : data_(data), size_(size), id_(id) {}
  const std::byte* data_;
  size_t size_;
  uint64_t id_;
};

// The control block, checked: the table's schema and row layout (computed from the schema by the
// engine's own RowLayout, and checked against the block's column records).
struct ControlInfo {
  std::shared_ptr<Mapping> mapping;
  const ControlHeader* header = nullptr;
  uint64_t table_id = 0;
  uint64_t instance_id = 0;
  uint32_t row_width = 0;
  uint32_t bitmap_bytes = 0;
  RowChunkGeometry geometry;
  std::shared_ptr<const TableSchema> table_schema;
  std::shared_ptr<const RowLayout> layout;
  std::shared_ptr<arrow::Schema> schema;  // as published: the TableSchema JSON in its metadata

  // Checks the mapped block; kCorruption naming what is wrong.
  static Result<ControlInfo> Parse(std::shared_ptr<Mapping> mapping);
  const ManifestEntry* manifest() const {
    return reinterpret_cast<const ManifestEntry*>(mapping->data() + header->manifest_offset);
  }
};

struct Span {
  const std::byte* base = nullptr;
  size_t size = 0;
};

struct View {
  uint64_t generation = 0;
  PublishedState state = PublishedState::kLive;
  std::vector<Span> rows;  // by chunk number; base null: not listed
  std::vector<Span> heap;  // by chunk number
  const std::atomic<uint64_t>* slots = nullptr;
  uint64_t index_mask = 0;
  int index_shift = 32;
  uint64_t mapped_bytes = 0;
  std::vector<std::shared_ptr<Mapping>> owned;  // every region this view maps

  // The row `id`, or nullptr when its chunk is not mapped here.
  [[gnu::always_inline]] const std::byte* Row(const RowChunkGeometry& geometry, uint32_t row_width,
                                              uint32_t id) const {
    size_t chunk, position;
    geometry.Locate(id, &chunk, &position);
    if (chunk >= rows.size() || rows[chunk].base == nullptr) return nullptr;
    return rows[chunk].base + position * row_width;
  }
  // `size` bytes at a heap reference, or nullptr when not inside a chunk mapped here.
  const std::byte* Heap(HeapRef ref, size_t size) const {
    const size_t chunk = HeapChunkOf(ref);
    if (chunk >= heap.size() || heap[chunk].base == nullptr) return nullptr;
    return HeapBytesIn(heap[chunk].base, heap[chunk].size, HeapOffsetOf(ref), size);
  }
};

// Copies the listed manifest while the generation holds still (even and unchanged); false when
// it did not within `patience` (a writer that died mid-change, or a hostile block).
bool CopyManifest(const ControlInfo& control, uint64_t* generation, PublishedState* state,
                  std::vector<ManifestEntry>* entries,
                  std::chrono::milliseconds patience = std::chrono::seconds(2));
// Checks copied entries: known kinds, sane chunk numbers, distinct ids, exactly one index of a
// power-of-two capacity. kCorruption naming table `name` and what is wrong.
Status CheckManifest(const std::vector<ManifestEntry>& entries, const std::string& name);
// Fills `view`'s regions from checked `entries` and their mappings (by region id, every one
// present), each checked against what the control block says it holds.
Status AssembleView(const ControlInfo& control, const std::vector<ManifestEntry>& entries,
                    const std::map<uint64_t, std::shared_ptr<Mapping>>& mappings, View* view);

// The values of `columns` (schema indices) for `keys` (normalized: engine/keys.h NormalizeKeys)
// read from `view` as Arrow arrays, with the found bitmap. False (nothing read) when the
// view is behind the table (a row or heap chunk it has not mapped): refresh and read again.
// TableReader::Read calls it inside its gate; the fuzzer on a hostile view.
Result<bool> ReadFromView(const ControlInfo& control, const View& view, const arrow::Array& keys,
                          const std::vector<int>& columns, std::string_view name,
                          arrow::ArrayVector* arrays, std::shared_ptr<arrow::Buffer>* found_bits,
                          int64_t* found_count);

}  // namespace quiver::shm
