#include "engine/table.h"

#include <arrow/api.h>
#include <arrow/compute/cast.h>
#include <arrow/compute/initialize.h>

#include <algorithm>
#include <string>

#include "common/arrow_status.h"
#include "engine/keys.h"
#include "engine/table_internal.h"

namespace quiver {
namespace {

Status InitializeCompute() {
  static const arrow::Status status = arrow::compute::Initialize();
  return FromArrow(status);
}

}  // namespace

Table::Table(std::string name, TableSchema schema, EngineLimits limits, RegionBacking backing,
             uint64_t id, Journal* journal, UnixClock clock)
    : name_(std::move(name)),
      id_(id),
      journal_(journal),
      schema_(std::move(schema)),
      limits_(limits),
      layout_(schema_),
      clock_(std::move(clock)),
      backing_(backing),
      rows_(layout_.row_width(), backing),
      heap_(backing) {}

Table::~Table() {
  AttachMemoryLimit(nullptr);
  if (publication_ != nullptr) publication_->SetState(PublishedState::kClosed);  // unless dropped
}

Result<std::shared_ptr<Table>> Table::Make(std::string name, TableSchema schema,
                                           EngineLimits limits, RegionBacking backing, uint64_t id,
                                           Journal* journal, UnixClock clock, bool publish) {
  QUIVER_RETURN_NOT_OK(CheckTableName(name));
  QUIVER_RETURN_NOT_OK(InitializeCompute());
  limits.max_key_bytes = std::min(limits.max_key_bytes, kMaxKeyBytes);  // KeyRef length is 16-bit
  std::shared_ptr<Table> table(new Table(std::move(name), std::move(schema), limits, backing, id,
                                         journal, std::move(clock)));
  if (publish) {
    if (backing != RegionBacking::kSharedMemory) {
      return Status::InvalidArgument("a published table needs shared-memory backing");
    }
    QUIVER_ASSIGN_OR_RETURN(
        table->publication_,
        Publication::Make(id, table->schema_, table->layout_, table->rows_.geometry()));
    table->rows_.regions().SetObserver(table->publication_.get(), RegionKind::kRows);
    table->heap_.regions().SetObserver(table->publication_.get(), RegionKind::kHeap);
  }
  QUIVER_ASSIGN_OR_RETURN(table->index_, HashIndex::Create(backing, table->publication_.get()));
  table->FinishWrite();
  return table;
}

Result<std::vector<int>> Table::ResolveColumns(const std::vector<std::string>& columns) const {
  std::vector<int> indices;
  if (columns.empty()) {
    for (int i = 0; i < schema_.num_columns(); ++i) {
      if (!schema_.IsKeyColumn(i)) indices.push_back(i);
    }
    return indices;
  }
  for (const std::string& name : columns) {
    int index = schema_.FindColumn(name);
    if (index < 0) {
      return Status::NotFound("table '" + name_ + "' has no column '" + name + "'");
    }
    indices.push_back(index);
  }
  return indices;
}

Result<std::shared_ptr<arrow::Schema>> Table::ReadSchema(
    const std::vector<std::string>& columns) const {
  QUIVER_ASSIGN_OR_RETURN(std::vector<int> indices, ResolveColumns(columns));
  return ReadSchemaOf(indices);
}

std::shared_ptr<arrow::Schema> Table::ReadSchemaOf(const std::vector<int>& columns) const {
  arrow::FieldVector fields;
  fields.reserve(columns.size());
  for (int index : columns) {
    const ColumnSpec& spec = schema_.columns()[index];
    fields.push_back(arrow::field(spec.name, spec.type, /*nullable=*/true));
  }
  return arrow::schema(std::move(fields));
}

TableStats Table::Stats() const {
  TableStats stats;
  stats.rows = row_count_.load(std::memory_order_relaxed);
  stats.row_bytes = stat_row_bytes_.load(std::memory_order_relaxed);
  stats.index_bytes = stat_index_bytes_.load(std::memory_order_relaxed);
  stats.heap_bytes = stat_heap_bytes_.load(std::memory_order_relaxed);
  stats.heap_garbage_bytes = stat_heap_garbage_.load(std::memory_order_relaxed);
  stats.row_capacity = stat_row_capacity_.load(std::memory_order_relaxed);
  stats.heap_compactions = stat_heap_compactions_.load(std::memory_order_relaxed);
  stats.heap_moved_bytes = stat_heap_moved_.load(std::memory_order_relaxed);
  stats.bytes = stats.row_bytes + stats.index_bytes + stats.heap_bytes;
  stats.row_width = layout_.row_width();
  stats.rows_with_ttl = stat_expiring_.load(std::memory_order_relaxed);
  stats.expired = stat_expired_.load(std::memory_order_relaxed);
  stats.evicted = stat_evicted_.load(std::memory_order_relaxed);
  stats.used_bytes = UsedMemory();
  if (const TierFile* tier = this->tier(); tier != nullptr) {
    const TierFileStats file = tier->Stats();
    stats.tiered = true;
    stats.cold_rows = cold_rows_.load(std::memory_order_relaxed);
    stats.cold_bytes = file.live_bytes;
    stats.demoted = stat_demoted_.load(std::memory_order_relaxed);
    stats.promoted = stat_promoted_.load(std::memory_order_relaxed);
    stats.cold_reads = static_cast<int64_t>(file.reads);
    stats.tier_disk_bytes = file.disk_bytes;
    stats.tier_written_bytes = file.written_bytes;
    stats.tier_read_ios = file.read_ios;
    stats.tier_read_bytes = file.read_bytes;
  }
  return stats;
}

}  // namespace quiver
