#include <arrow/api.h>
#include <arrow/compute/api_vector.h>
#include <arrow/compute/cast.h>

#include <algorithm>
#include <string>

#include "common/arrow_status.h"
#include "engine/schema_change.h"
#include "engine/table.h"
#include "engine/table_internal.h"

namespace quiver {
namespace {

// A batch of the old schema's columns (a scan's, or a write's: any subset, the key among them) as
// the changed schema names and types them: dropped columns left out, renamed ones renamed, widened
// ones cast (exactly). Added columns are left to the successor's defaults (null without one):
// every row of a copy is new there. Other fields (a scan's expiry column) pass as they are.
Result<std::shared_ptr<arrow::RecordBatch>> ChangedBatch(const arrow::RecordBatch& batch,
                                                         const TableSchema& from,
                                                         const ChangedSchema& changed) {
  std::vector<int> target(from.num_columns(), -1);
  for (size_t i = 0; i < changed.sources.size(); ++i) {
    if (changed.sources[i] >= 0) target[changed.sources[i]] = static_cast<int>(i);
  }
  arrow::FieldVector fields;
  arrow::ArrayVector arrays;
  for (int c = 0; c < batch.num_columns(); ++c) {
    const std::shared_ptr<arrow::Field>& field = batch.schema()->field(c);
    const int index = from.FindColumn(field->name());
    if (index < 0) {  // not a column (the expiry)
      fields.push_back(field);
      arrays.push_back(batch.column(c));
      continue;
    }
    if (target[index] < 0) continue;  // dropped
    const ColumnSpec& column = changed.schema.columns()[target[index]];
    std::shared_ptr<arrow::Array> array = batch.column(c);
    if (!from.columns()[index].type->Equals(*column.type) && !array->type()->Equals(*column.type)) {
      auto cast = arrow::compute::Cast(*array, column.type, arrow::compute::CastOptions::Safe());
      if (!cast.ok()) {
        return Status::InvalidArgument("column '" + field->name() + "': cannot convert to " +
                                       DtypeName(*column.type) + ": " + cast.status().message());
      }
      array = *cast;
    }
    fields.push_back(
        arrow::field(column.name, array->type(), field->nullable(), field->metadata()));
    arrays.push_back(std::move(array));
  }
  return arrow::RecordBatch::Make(arrow::schema(std::move(fields), batch.schema()->metadata()),
                                  batch.num_rows(), std::move(arrays));
}

// A copy of `array` in buffers of its own.
Result<std::shared_ptr<arrow::Array>> OwnedCopy(const arrow::Array& array) {
  arrow::Int64Builder indices;
  QUIVER_RETURN_NOT_OK_ARROW(indices.Reserve(array.length()));
  for (int64_t i = 0; i < array.length(); ++i) indices.UnsafeAppend(i);
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> order, indices.Finish());
  QUIVER_ASSIGN_OR_RETURN_ARROW(arrow::Datum taken, arrow::compute::Take(array, order));
  return taken.make_array();
}

}  // namespace

// Online schema changes: the table copied into its successor while it serves (schema_change.h).

std::shared_ptr<Table> Table::successor() const {
  std::lock_guard<std::mutex> lock(write_mutex_);
  return successor_;
}

void Table::CaptureUpsert(const arrow::RecordBatch& batch, int64_t now, int64_t expire_at) {
  if (!capture_->status.ok()) return;
  Status status = [&]() -> Status {
    arrow::ArrayVector columns;
    for (const std::shared_ptr<arrow::Array>& column : batch.columns()) {
      QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> copy, OwnedCopy(*column));
      columns.push_back(std::move(copy));
    }
    // As the journal has it, with the clock and expiry always given: the copy's replay decides
    // alike.
    auto metadata = batch.schema()->metadata() != nullptr
                        ? batch.schema()->metadata()->Copy()
                        : std::make_shared<arrow::KeyValueMetadata>();
    QUIVER_RETURN_NOT_OK_ARROW(metadata->Set(std::string(kLoggedNowMetadata), std::to_string(now)));
    QUIVER_RETURN_NOT_OK_ARROW(
        metadata->Set(std::string(kLoggedExpireAtMetadata), std::to_string(expire_at)));
    capture_->writes.push_back({arrow::RecordBatch::Make(batch.schema()->WithMetadata(metadata),
                                                         batch.num_rows(), std::move(columns)),
                                nullptr});
    return Status::OK();
  }();
  if (!status.ok()) capture_->status = status.WithContext("a write made meanwhile");
}

void Table::CaptureDelete(const arrow::Array& keys) {
  if (!capture_->status.ok()) return;
  Result<std::shared_ptr<arrow::Array>> copy = OwnedCopy(keys);
  if (!copy.ok()) {
    capture_->status = copy.status().WithContext("a delete made meanwhile");
    return;
  }
  capture_->writes.push_back({nullptr, *copy});
}

Status Table::ApplyCaptured(const std::vector<CapturedWrite>& writes, const ChangedSchema& changed,
                            Table& successor) const {
  for (const CapturedWrite& write : writes) {
    if (write.deleted != nullptr) {
      QUIVER_RETURN_NOT_OK(successor.ReplayDelete(*write.deleted, 0).status());
      continue;
    }
    QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatch> batch,
                            ChangedBatch(*write.upsert, schema_, changed));
    // Without making room: the last catch-up holds this table's write lock, which the limit may
    // want (to move this table's rows to disk).
    QUIVER_RETURN_NOT_OK(successor.ReplayWithoutRoom(*batch, 0).status());
  }
  return Status::OK();
}

Result<std::shared_ptr<Table>> Table::Rebuild(
    const ChangedSchema& changed, uint64_t id,
    const std::function<Status(const std::shared_ptr<Table>&)>& switch_over) {
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> next,
                          Make(name_, changed.schema, limits_, backing_, id, journal_, clock_,
                               publication_ != nullptr));
  // A tiered table's copy is tiered from the start, under the same limit: it moves rows to its
  // own tier file as it fills.
  if (tier() != nullptr) {
    QUIVER_RETURN_NOT_OK(next->AttachTier(tier_options_));
    next->AttachMemoryLimit(limit_.load(std::memory_order_acquire));
  }
  // Room for every row now, so that the copy does not grow the index (and hold two of them) as it
  // goes; rows for those in memory.
  const auto expected = static_cast<size_t>(row_count_.load(std::memory_order_relaxed));
  const auto resident = static_cast<size_t>(std::max<int64_t>(
      0, static_cast<int64_t>(expected) - cold_rows_.load(std::memory_order_relaxed)));
  QUIVER_RETURN_NOT_OK(next->rows_.Reserve(resident));
  QUIVER_RETURN_NOT_OK(next->index_->Reserve(expected));
  Capture capture;
  std::vector<CapturedWrite>& captured = capture.writes;
  {
    std::lock_guard<std::mutex> lock(write_mutex_);
    if (successor_ != nullptr || capture_ != nullptr) {
      return Status::Internal("table '" + name_ + "' is already being changed or was replaced");
    }
    capture_ = &capture;
  }
  // The copy: every live row, each with its expiry, as of when the scan reads it; the writes made
  // meanwhile are applied again afterwards (an upsert or delete applied twice leaves what
  // applying it once did, and in order they end where this table is).
  Status status = [&]() -> Status {
    QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatchReader> scan,
                            Scan(65536, /*with_expiry=*/true));
    while (true) {
      std::shared_ptr<arrow::RecordBatch> batch;
      QUIVER_RETURN_NOT_OK_ARROW(scan->ReadNext(&batch));
      if (batch == nullptr) break;
      QUIVER_ASSIGN_OR_RETURN(batch, ChangedBatch(*batch, schema_, changed));
      QUIVER_RETURN_NOT_OK(next->Replay(*batch, 0).status());
    }
    // Catch up without the lock while writes keep coming, then the rest under it.
    for (int round = 0; round < 8; ++round) {
      std::vector<CapturedWrite> pending;
      {
        std::lock_guard<std::mutex> lock(write_mutex_);
        pending.swap(captured);
      }
      if (pending.size() < 16) {
        std::lock_guard<std::mutex> lock(write_mutex_);
        pending.insert(pending.end(), captured.begin(), captured.end());
        captured = std::move(pending);
        break;
      }
      QUIVER_RETURN_NOT_OK(ApplyCaptured(pending, changed, *next));
    }
    return Status::OK();
  }();
  std::lock_guard<std::mutex> lock(write_mutex_);
  if (status.ok()) status = capture.status;
  if (status.ok()) status = ApplyCaptured(captured, changed, *next);
  capture_ = nullptr;
  if (status.ok()) status = switch_over(next);
  if (!status.ok()) return status.WithContext("table '" + name_ + "': schema change");
  successor_ = next;
  return next;
}

}  // namespace quiver
