// SnapshotFile: what the catalog keeps of a snapshot (snapshot.h writes and checks them), apart
// so that the catalog file's code does not include the engine and the keyspace.
#pragma once

#include <cstdint>
#include <string>

namespace quiver::storage {

struct SnapshotFile {
  std::string name;  // in the snapshot directory
  uint64_t lsn = 0;
  int64_t rows = 0;
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
};

}  // namespace quiver::storage
