#include "server/codec/table_export.h"

#include <arrow/io/interfaces.h>
#include <arrow/ipc/writer.h>
#include <arrow/record_batch.h>
#include <parquet/arrow/writer.h>
#include <parquet/properties.h>

#include "common/arrow_status.h"

namespace quiver::codec {

// An output stream whose bytes wait in a string until Next() hands them on.
class TableExport::Sink : public arrow::io::OutputStream {
 public:
  arrow::Status Close() override {
    closed_ = true;
    return arrow::Status::OK();
  }
  bool closed() const override { return closed_; }
  arrow::Result<int64_t> Tell() const override { return position_; }
  arrow::Status Write(const void* data, int64_t size) override {
    pending_.append(static_cast<const char*>(data), static_cast<size_t>(size));
    position_ += size;
    return arrow::Status::OK();
  }
  std::string Take() { return std::exchange(pending_, std::string()); }
  size_t pending() const { return pending_.size(); }

 private:
  std::string pending_;
  int64_t position_ = 0;
  bool closed_ = false;
};

bool ParseExportFormat(std::string_view text, ExportFormat* format) {
  if (text == "parquet") {
    *format = ExportFormat::kParquet;
  } else if (text == "arrow" || text == "ipc" || text == "arrow-stream") {
    *format = ExportFormat::kArrowStream;
  } else {
    return false;
  }
  return true;
}

std::string_view ExportContentType(ExportFormat format) {
  return format == ExportFormat::kParquet ? "application/vnd.apache.parquet"
                                          : "application/vnd.apache.arrow.stream";
}

std::string_view ExportExtension(ExportFormat format) {
  return format == ExportFormat::kParquet ? ".parquet" : ".arrows";
}

Result<std::unique_ptr<TableExport>> TableExport::Make(std::shared_ptr<Table> table,
                                                       ExportFormat format) {
  std::unique_ptr<TableExport> out(new TableExport());
  out->table_ = std::move(table);
  out->format_ = format;
  out->sink_ = std::make_shared<Sink>();
  QUIVER_ASSIGN_OR_RETURN(out->scan_, out->table_->Scan(65536));
  const std::shared_ptr<arrow::Schema> schema = out->scan_->schema();
  if (format == ExportFormat::kParquet) {
    // One row group per scanned batch: the writer holds one batch, not the table.
    auto properties = parquet::WriterProperties::Builder()
                          .max_row_group_length(65536)
                          ->compression(parquet::Compression::ZSTD)
                          ->build();
    auto writer = parquet::arrow::FileWriter::Open(*schema, arrow::default_memory_pool(),
                                                   out->sink_, properties);
    if (!writer.ok()) return FromArrow(writer.status());
    out->parquet_ = std::move(*writer);
  } else {
    auto writer = arrow::ipc::MakeStreamWriter(out->sink_, schema);
    if (!writer.ok()) return FromArrow(writer.status());
    out->ipc_ = std::move(*writer);
  }
  return out;
}

TableExport::~TableExport() = default;

Status TableExport::Finish() {
  finished_ = true;
  if (parquet_ != nullptr) QUIVER_RETURN_NOT_OK(FromArrow(parquet_->Close()));
  if (ipc_ != nullptr) QUIVER_RETURN_NOT_OK(FromArrow(ipc_->Close()));
  return Status::OK();
}

Result<std::string> TableExport::Next(size_t min_bytes) {
  while (!finished_ && sink_->pending() < min_bytes) {
    std::shared_ptr<arrow::RecordBatch> batch;
    QUIVER_RETURN_NOT_OK(FromArrow(scan_->ReadNext(&batch)));
    if (batch == nullptr) {
      QUIVER_RETURN_NOT_OK(Finish());
      break;
    }
    rows_ += batch->num_rows();
    if (parquet_ != nullptr) {
      QUIVER_RETURN_NOT_OK(FromArrow(parquet_->WriteRecordBatch(*batch)));
    } else {
      QUIVER_RETURN_NOT_OK(FromArrow(ipc_->WriteRecordBatch(*batch)));
    }
  }
  return sink_->Take();
}

}  // namespace quiver::codec
