// TableExport: a whole table as a Parquet file or an Arrow IPC stream, produced piece by piece
// from a scan, so that an export holds a few batches in memory, never a second copy of the table
// (HTTP GET /api/v1/table/{name}/export, docs/http.md). Each batch reflects the table when it is
// read: rows written during a long export may or may not be in it, each row whole.
//
// Thread safety: one thread at a time.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "engine/table.h"

namespace arrow::ipc {
class RecordBatchWriter;
}
namespace parquet::arrow {
class FileWriter;
}

namespace quiver::codec {

enum class ExportFormat { kParquet, kArrowStream };

// "parquet", "arrow" (also "ipc", "arrow-stream"); false for another name.
bool ParseExportFormat(std::string_view text, ExportFormat* format);
std::string_view ExportContentType(ExportFormat format);
std::string_view ExportExtension(ExportFormat format);  // ".parquet", ".arrows"

class TableExport {
 public:
  static Result<std::unique_ptr<TableExport>> Make(std::shared_ptr<Table> table,
                                                   ExportFormat format);
  ~TableExport();
  // The next bytes of the body, at least about `min_bytes` unless it is the last piece; empty at
  // the end (after which it stays empty).
  Result<std::string> Next(size_t min_bytes = 1 << 20);
  int64_t rows() const { return rows_; }

 private:
  class Sink;
  TableExport() = default;
  Status Finish();

  std::shared_ptr<Table> table_;
  ExportFormat format_ = ExportFormat::kParquet;
  std::shared_ptr<Sink> sink_;
  std::shared_ptr<arrow::RecordBatchReader> scan_;
  std::shared_ptr<arrow::ipc::RecordBatchWriter> ipc_;
  std::unique_ptr<parquet::arrow::FileWriter> parquet_;
  int64_t rows_ = 0;
  bool finished_ = false;
};

}  // namespace quiver::codec
