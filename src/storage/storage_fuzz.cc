// Fuzz target for what recovery reads from the data directory, the least-trusted bytes after a
// crash, a bad disk or an operator's mistake. The first byte picks the reader; the rest is the
// file:
//   0  the catalog decoder (DecodeCatalog)
//   1  the log segment scanner (ScanWal over one segment), refusing and then truncating
//   2  a table snapshot reader (LoadSnapshot, with the size and checksum matching, so the Arrow
//      file itself is read)
//   3  a keyspace snapshot reader (LoadKeyspaceSnapshot, likewise)
//   4  a whole recovery (Database::Open) of a directory whose log is the input: every record
//      decoded and replayed
// No input may crash, hang, leak or trip a sanitizer; every refusal is kCorruption (or, for a
// log record past the decode limit, kLimitExceeded); a catalog that decodes encodes and decodes
// again to the same.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "common/crc32c.h"
#include "common/fuzz_check.h"
#include "engine/schema.h"
#include "storage/catalog_file.h"
#include "storage/database.h"
#include "storage/snapshot.h"
#include "storage/wal.h"

namespace {

namespace fs = std::filesystem;
using quiver::Status;
using quiver::StatusCode;

void Check(bool condition, const char* property) {
  quiver::FuzzCheck(condition, "storage_fuzz", property);
}

bool Refused(const Status& status) {
  return status.code() == StatusCode::kCorruption || status.code() == StatusCode::kLimitExceeded;
}

// A directory of this process's own, emptied for each input and removed at exit.
struct ScratchDirectory {
  ScratchDirectory() {
    std::string pattern = (fs::temp_directory_path() / "quiver-storage-fuzz-XXXXXX").string();
    const char* made = mkdtemp(pattern.data());
    Check(made != nullptr, "a scratch directory");
    path = made;
  }
  ~ScratchDirectory() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string path;
};

const std::string& Scratch() {
  static const ScratchDirectory directory;
  return directory.path;
}

std::string Fresh(const std::string& name) {
  const std::string path = Scratch() + "/" + name;
  fs::remove_all(path);
  fs::create_directories(path);
  return path;
}

void Write(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void Catalog(std::string_view input) {
  auto decoded = quiver::storage::DecodeCatalog("catalog", input);
  if (!decoded.ok()) {
    Check(decoded.status().code() == StatusCode::kCorruption, "a bad catalog is corruption");
    return;
  }
  const std::string encoded = quiver::storage::EncodeCatalog(*decoded);
  auto again = quiver::storage::DecodeCatalog("catalog", encoded);
  Check(again.ok(), "an encoded catalog decodes");
  Check(quiver::storage::EncodeCatalog(*again) == encoded, "a catalog round-trips");
}

void Segment(std::string_view input) {
  for (bool truncate : {false, true}) {
    const std::string dir = Fresh("wal");
    Write(dir + "/00000000000000000001.wal", input);
    uint64_t records = 0;
    auto scan = quiver::storage::ScanWal(dir, truncate, quiver::storage::FileOps::Default(),
                                         [&](const quiver::storage::WalRecord& record) {
                                           Check(record.lsn == records + 1, "LSNs in order");
                                           ++records;
                                           return Status::OK();
                                         });
    if (!scan.ok()) {
      Check(!truncate && scan.status().code() == StatusCode::kCorruption,
            "a bad segment is corruption, and truncation always recovers");
      continue;
    }
    Check(scan->records == records, "the scan counts what it yielded");
  }
}

quiver::storage::SnapshotFile Named(const std::string& name, std::string_view input) {
  quiver::storage::SnapshotFile file;
  file.name = name;
  file.bytes = input.size();
  file.crc32c = quiver::Crc32c(input);
  return file;
}

void TableSnapshot(std::string_view input) {
  const std::string dir = Fresh("snapshots");
  Write(dir + "/1-1.arrow", input);
  auto schema = quiver::TableSchema::FromJson(
      R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "x": {"dtype": "int64"},
          "s": {"dtype": "utf8"}, "v": {"dtype": "fixed_size_list[float32, 2]"}}})");
  Check(schema.ok(), "the schema");
  quiver::CatalogOptions options;
  quiver::Catalog catalog(options);
  auto table = catalog.CreateTable("t", *schema);
  Check(table.ok(), "the table");
  quiver::storage::SnapshotFile file = Named("1-1.arrow", input);
  file.rows = -1;  // any count: the file says
  Status loaded = quiver::storage::LoadSnapshot(dir, file, table->get());
  Check(loaded.ok() || Refused(loaded), "a bad table snapshot is corruption");
}

void KeyspaceSnapshot(std::string_view input) {
  const std::string dir = Fresh("snapshots");
  Write(dir + "/keyspace-1.kv", input);
  quiver::kv::Keyspace keyspace;
  quiver::storage::SnapshotFile file = Named("keyspace-1.kv", input);
  file.rows = -1;
  Status loaded = quiver::storage::LoadKeyspaceSnapshot(dir, file, &keyspace);
  Check(loaded.ok() || Refused(loaded), "a bad keyspace snapshot is corruption");
}

void Recovery(std::string_view input) {
  const std::string dir = Fresh("data");
  fs::create_directories(dir + "/wal");
  Write(dir + "/wal/00000000000000000001.wal", input);
  quiver::storage::DatabaseOptions options;
  options.data_dir = dir;
  options.fsync = quiver::storage::FsyncPolicy::kNo;
  options.snapshot_wal_bytes = 0;
  options.snapshot_interval_seconds = 0;
  options.limits.max_decode_bytes = 64 << 20;
  auto opened = quiver::storage::Database::Open(options);
  if (!opened.ok()) {
    Check(Refused(opened.status()) || opened.status().code() == StatusCode::kInvalidArgument ||
              opened.status().code() == StatusCode::kNotFound ||
              opened.status().code() == StatusCode::kAlreadyExists,
          "a refused recovery says why");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      Catalog(input);
      break;
    case 1:
      Segment(input);
      break;
    case 2:
      TableSnapshot(input);
      break;
    case 3:
      KeyspaceSnapshot(input);
      break;
    default:
      Recovery(input);
      break;
  }
  return 0;
}
