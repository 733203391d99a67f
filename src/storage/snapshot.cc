#include "storage/snapshot.h"

#include <arrow/buffer.h>
#include <arrow/io/api.h>
#include <arrow/ipc/api.h>
#include <arrow/record_batch.h>
#include <arrow/util/key_value_metadata.h>

#include <functional>

#include "common/arrow_status.h"
#include "common/crc32c.h"
#include "storage/log_records.h"

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

namespace {

// Writes `dir`/`name` through a temporary file that `write` fills (checksummed), then syncs and
// renames it, and syncs the directory: the file exists whole or not at all. `what` names it in
// errors.
Result<SnapshotFile> PublishFile(
    const std::string& dir, const std::string& name, FileOps* ops, const std::string& what,
    const std::function<Status(std::shared_ptr<ChecksummedStream>)>& write) {
  SnapshotFile snapshot;
  snapshot.name = name;
  const std::string path = dir + "/" + name;
  const std::string temporary = path + ".tmp";
  QUIVER_RETURN_NOT_OK(RemoveFile(temporary));
  Status written = [&]() -> Status {
    QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<AppendFile> file,
                            AppendFile::Open(temporary, ops, /*exclusive=*/true));
    auto stream = std::make_shared<ChecksummedStream>(file.get());
    QUIVER_RETURN_NOT_OK(write(stream));
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
    return Status(written.code(), "snapshot of " + what + " failed: " + written.message());
  }
  return snapshot;
}

}  // namespace

Result<SnapshotFile> WriteSnapshot(const Table& table, uint64_t lsn, const std::string& dir,
                                   FileOps* ops) {
  int64_t rows = 0;
  QUIVER_ASSIGN_OR_RETURN(
      SnapshotFile snapshot,
      PublishFile(dir, SnapshotName(table.id(), lsn), ops, "table '" + table.name() + "'",
                  [&](const std::shared_ptr<ChecksummedStream>& stream) -> Status {
                    QUIVER_ASSIGN_OR_RETURN_ARROW(
                        auto buffered, arrow::io::BufferedOutputStream::Create(
                                           1 << 20, arrow::default_memory_pool(), stream));
                    auto metadata = arrow::key_value_metadata(
                        {"quiver.table", "quiver.table_id", "quiver.lsn", "quiver.schema"},
                        {table.name(), std::to_string(table.id()), std::to_string(lsn),
                         table.schema().ToJson()});
                    // Rows that expire keep their expiry time in a last column.
                    const bool with_expiry =
                        table.schema().ttl_ms() != 0 || table.Stats().rows_with_ttl > 0;
                    QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::RecordBatchReader> reader,
                                            table.Scan(65536, with_expiry));
                    auto schema = reader->schema()->WithMetadata(metadata);
                    QUIVER_ASSIGN_OR_RETURN_ARROW(auto writer,
                                                  arrow::ipc::MakeFileWriter(buffered, schema));
                    for (;;) {
                      std::shared_ptr<arrow::RecordBatch> batch;
                      QUIVER_RETURN_NOT_OK_ARROW(reader->ReadNext(&batch));
                      if (batch == nullptr) break;
                      QUIVER_RETURN_NOT_OK_ARROW(writer->WriteRecordBatch(*batch));
                      rows += batch->num_rows();
                    }
                    QUIVER_RETURN_NOT_OK_ARROW(writer->Close());
                    QUIVER_RETURN_NOT_OK_ARROW(buffered->Close());
                    return Status::OK();
                  }));
  snapshot.lsn = lsn;
  snapshot.rows = rows;
  return snapshot;
}

std::string KeyspaceSnapshotName(uint64_t lsn) { return "keyspace-" + std::to_string(lsn) + ".kv"; }

Result<SnapshotFile> WriteKeyspaceSnapshot(kv::Keyspace& keyspace, uint64_t lsn,
                                           const std::string& dir, FileOps* ops) {
  int64_t keys = 0;
  QUIVER_ASSIGN_OR_RETURN(
      SnapshotFile snapshot,
      PublishFile(dir, KeyspaceSnapshotName(lsn), ops, "the key-value keyspace",
                  [&](std::shared_ptr<ChecksummedStream> out) -> Status {
                    QUIVER_ASSIGN_OR_RETURN(
                        keys, DumpKeyspace(keyspace, [&](std::string_view bytes) {
                          arrow::Status written =
                              out->Write(bytes.data(), static_cast<int64_t>(bytes.size()));
                          return written.ok() ? Status::OK() : Status::IOError(written.message());
                        }));
                    return Status::OK();
                  }));
  snapshot.lsn = lsn;
  snapshot.rows = keys;
  return snapshot;
}

Status LoadKeyspaceSnapshot(const std::string& dir, const SnapshotFile& expected,
                            kv::Keyspace* keyspace) {
  const std::string path = dir + "/" + expected.name;
  Result<std::string> bytes = ReadFile(path);
  if (!bytes.ok()) {
    return Corrupt(path, "cannot be read (" + bytes.status().message() +
                             "); the catalog refers to it, so the keyspace cannot be restored");
  }
  if (bytes->size() != expected.bytes) {
    return Corrupt(path, "has " + std::to_string(bytes->size()) +
                             " bytes where the catalog recorded " + std::to_string(expected.bytes));
  }
  if (Crc32c(*bytes) != expected.crc32c) {
    return Corrupt(path, "fails its checksum (CRC-32C recorded in the catalog)");
  }
  Result<int64_t> keys = LoadKeyspaceDump(*bytes, *keyspace);
  if (!keys.ok()) return Corrupt(path, keys.status().message());
  if (*keys != expected.rows) {
    keyspace->Clear();
    return Corrupt(path, "holds " + std::to_string(*keys) + " keys where the catalog recorded " +
                             std::to_string(expected.rows));
  }
  return Status::OK();
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
  std::shared_ptr<arrow::Schema> stored = (*reader)->schema();
  if (stored->num_fields() > 0) {  // a last column of expiry times is the rows' TTL, not data
    const auto& last = stored->field(stored->num_fields() - 1);
    if (last->metadata() != nullptr &&
        last->metadata()->Get(std::string(kExpireAtMetadata)).ValueOr("") == "true") {
      QUIVER_ASSIGN_OR_RETURN_ARROW(stored, stored->RemoveField(stored->num_fields() - 1));
    }
  }
  if (!stored->Equals(*table->schema().ToArrow(), /*check_metadata=*/false)) {
    return Corrupt(path, "has the schema " + (*reader)->schema()->ToString() + ", not the table's");
  }
  int64_t rows = 0;
  for (int i = 0; i < (*reader)->num_record_batches(); ++i) {
    auto batch = (*reader)->ReadRecordBatch(i);
    if (!batch.ok())
      return Corrupt(path, "batch " + std::to_string(i) + ": " + batch.status().message());
    // Checked like a client's batch: a file can pass its checksum and still be wrong (written by
    // hand, or by a bug), and the engine reads offsets without bounds checks.
    if (arrow::Status valid = (*batch)->ValidateFull(); !valid.ok()) {
      return Corrupt(path, "batch " + std::to_string(i) + ": " + valid.message());
    }
    if (Status replayed = table->Replay(**batch, expected.lsn).status(); !replayed.ok()) {
      return Corrupt(path, "batch " + std::to_string(i) + ": " + replayed.message());
    }
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
