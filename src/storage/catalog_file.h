// The catalog file `<data dir>/catalog`: the tables (id, name, schema and options), the snapshot
// each was last saved to, and the log position it was written at. Text: one header line with a
// CRC-32C of the rest, then JSON (docs/durability.md). Always replaced atomically.
//
// Thread safety: functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "storage/snapshot_file.h"

namespace quiver::storage {

struct CatalogEntry {
  uint64_t id = 0;
  std::string name;
  std::string schema_json;  // TableSchema JSON
  // Changes up to this LSN are in `snapshot` (or, without one, the table was empty then: the
  // LSN of its creation). Replay applies this table's records after it.
  uint64_t lsn = 0;
  std::optional<SnapshotFile> snapshot;
};

// The key-value keyspace: its changes up to `lsn` are in `snapshot` (or it was empty then).
struct KeyspaceEntry {
  uint64_t lsn = 0;
  std::optional<SnapshotFile> snapshot;  // rows: keys
};

struct CatalogFile {
  // Every log record up to this LSN was synced when the file was written, and every create and
  // drop up to it is reflected in `tables`.
  uint64_t lsn = 0;
  uint64_t next_table_id = 1;  // tables with smaller ids were created before this file
  std::vector<CatalogEntry> tables;
  KeyspaceEntry keyspace;

  // The first LSN recovery must replay: the oldest base (a table's or the keyspace's lsn) + 1.
  uint64_t replay_from() const;
};

std::string EncodeCatalog(const CatalogFile& catalog);
// kCorruption naming `path` when the checksum or the content is wrong.
Result<CatalogFile> DecodeCatalog(const std::string& path, std::string_view text);

}  // namespace quiver::storage
