#include "storage/snapshot.h"

#include <arrow/buffer.h>
#include <arrow/io/api.h>
#include <arrow/ipc/api.h>
#include <arrow/record_batch.h>
#include <arrow/util/key_value_metadata.h>

#include "common/arrow_status.h"
#include "common/crc32c.h"

namespace quiver::storage {
namespace {

// An Arrow output stream over an AppendFile that computes the CRC-32C of what it writes.
class ChecksummedStream : public arrow::io::OutputStream {
 public:
  explicit ChecksummedStream(AppendFile* file) : file_(file) {}

  arrow::Status Write(const void* data, int64_t size) override {
    const std::string_view bytes(static_cast<const char*>(data), static_cast<size_t>(size));
    Status written = file_->Append(bytes);
    if (!written.ok()) return arrow::Status::IOError(written.message());
    crc_ = Crc32c(bytes, crc_);
    return arrow::Status::OK();
  }
  arrow::Status Close() override {
    closed_ = true;
    return arrow::Status::OK();
  }
  arrow::Result<int64_t> Tell() const override { return static_cast<int64_t>(file_->size()); }
  bool closed() const override { return closed_; }
  uint32_t crc() const { return crc_; }

 private:
  AppendFile* file_;
  uint32_t crc_ = 0;
  bool closed_ = false;
};

Status Corrupt(const std::string& path, const std::string& what) {
  return Status::Corruption("snapshot '" + path + "' " + what);
}

}  // namespace

std::string SnapshotName(uint64_t table_id, uint64_t lsn) {
  return std::to_string(table_id) + "-" + std::to_string(lsn) + ".arrow";
}

Result<SnapshotFile> WriteSnapshot(const Table& table, uint64_t lsn, const std::string& dir,
                                   FileOps* ops) {
  SnapshotFile snapshot;
  snapshot.name = SnapshotName(table.id(), lsn);
  snapshot.lsn = lsn;
  const std::string path = dir + "/" + snapshot.name;
  const std::string temporary = path + ".tmp";
  QUIVER_RETURN_NOT_OK(RemoveFile(temporary));
  Status written = [&]() -> Status {
    QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> file,
                            AppendFile::Open(temporary, ops, /*exclusive=*/true));
    auto stream = std::make_shared<ChecksummedStream>(file.get());
    QUIVER_ASSIGN_OR_RETURN_ARROW(
        auto buffered,
        arrow::io::BufferedOutputStream::Create(1 << 20, arrow::default_memory_pool(), stream));
    auto metadata = arrow::key_value_metadata(
        {"quiver.table", "quiver.table_id", "quiver.lsn", "quiver.schema"},
        {table.name(), std::to_string(table.id()), std::to_string(lsn), table.schema().ToJson()});
    auto schema = table.schema().ToArrow()->WithMetadata(metadata);
    QUIVER_ASSIGN_OR_RETURN_ARROW(auto writer, arrow::ipc::MakeFileWriter(buffered, schema));
    QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatchReader> reader, table.Scan());
    for (;;) {
      std::shared_ptr<arrow::RecordBatch> batch;
      QUIVER_RETURN_NOT_OK_ARROW(reader->ReadNext(&batch));
      if (batch == nullptr) break;
      QUIVER_RETURN_NOT_OK_ARROW(writer->WriteRecordBatch(*batch));
      snapshot.rows += batch->num_rows();
    }
    QUIVER_RETURN_NOT_OK_ARROW(writer->Close());
    QUIVER_RETURN_NOT_OK_ARROW(buffered->Close());
    QUIVER_RETURN_NOT_OK(file->Sync());
    snapshot.bytes = file->size();
    snapshot.crc32c = stream->crc();
    return Status::OK();
  }();
  if (written.ok() && ops->Rename(temporary.c_str(), path.c_str()) != 0) {
    written = IOErrorFor("cannot rename into", path, errno);
  }
  if (written.ok()) written = SyncDirectory(dir);
  if (!written.ok()) {
    (void)RemoveFile(temporary);
    return Status(written.code(),
                  "snapshot of table '" + table.name() + "' failed: " + written.message());
  }
  return snapshot;
}

Status LoadSnapshot(const std::string& dir, const SnapshotFile& expected, Table* table) {
  const std::string path = dir + "/" + expected.name;
  auto opened = arrow::io::MemoryMappedFile::Open(path, arrow::io::FileMode::READ);
  if (!opened.ok()) {
    return Corrupt(path, "cannot be opened (" + opened.status().message() +
                             "); the catalog refers to it, so the table cannot be restored");
  }
  std::shared_ptr<arrow::io::MemoryMappedFile> file = *opened;
  QUIVER_ASSIGN_OR_RETURN_ARROW(int64_t size, file->GetSize());
  if (static_cast<uint64_t>(size) != expected.bytes) {
    return Corrupt(path, "has " + std::to_string(size) + " bytes where the catalog recorded " +
                             std::to_string(expected.bytes));
  }
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Buffer> bytes, file->ReadAt(0, size));
  if (Crc32c(bytes->data(), static_cast<size_t>(size)) != expected.crc32c) {
    return Corrupt(path, "fails its checksum (CRC-32C recorded in the catalog)");
  }
  auto reader = arrow::ipc::RecordBatchFileReader::Open(file);
  if (!reader.ok())
    return Corrupt(path, "is not a valid Arrow IPC file: " + reader.status().message());
  if (!(*reader)->schema()->Equals(*table->schema().ToArrow(), /*check_metadata=*/false)) {
    return Corrupt(path, "has the schema " + (*reader)->schema()->ToString() + ", not the table's");
  }
  int64_t rows = 0;
  for (int i = 0; i < (*reader)->num_record_batches(); ++i) {
    auto batch = (*reader)->ReadRecordBatch(i);
    if (!batch.ok())
      return Corrupt(path, "batch " + std::to_string(i) + ": " + batch.status().message());
    QUIVER_RETURN_NOT_OK((*table).Replay(**batch, expected.lsn).status());
    rows += (*batch)->num_rows();
  }
  if (rows != expected.rows) {
    return Corrupt(path, "holds " + std::to_string(rows) + " rows where the catalog recorded " +
                             std::to_string(expected.rows));
  }
  table->set_applied_lsn(expected.lsn);
  return Status::OK();
}

}  // namespace quiver::storage
