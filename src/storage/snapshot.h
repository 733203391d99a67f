// Snapshots. Tables: every live row of a table in one Arrow IPC file (the random-access "file"
// format, readable by any Arrow tool: pyarrow.ipc.open_file, Feather, DuckDB...), written while
// readers and writers go on. Its size and CRC-32C are kept in the catalog and checked on load.
//
// A snapshot taken at LSN S holds every change of the table up to S, and possibly some later
// ones (rows are read as they are when the scan reaches them, each whole); replaying the log
// after S on top of it gives the table as it was (docs/durability.md explains why).
//
// Thread safety: functions; WriteSnapshot scans the table like any reader.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.h"
#include "engine/table.h"
#include "kv/keyspace.h"
#include "storage/file.h"
#include "storage/snapshot_file.h"

namespace quiver::storage {

// "<table id>-<lsn>.arrow"
std::string SnapshotName(uint64_t table_id, uint64_t lsn);

// Writes `table` to `dir`/SnapshotName(...) through a temporary file that is synced and renamed
// (and the directory synced): the file exists whole or not at all.
Result<SnapshotFile> WriteSnapshot(const Table& table, uint64_t lsn, const std::string& dir,
                                   FileOps* ops);

// Checks `dir`/`file.name` against `file` (size, checksum, schema) and upserts its rows into
// `table`, which must be empty. kCorruption (naming the file) when a check fails.
Status LoadSnapshot(const std::string& dir, const SnapshotFile& file, Table* table);

// The key-value keyspace in one file, "keyspace-<lsn>.kv" (kv::Keyspace::Dump's format), written
// the same way while writers go on; `lsn` is the log position before the dump began.
std::string KeyspaceSnapshotName(uint64_t lsn);
Result<SnapshotFile> WriteKeyspaceSnapshot(kv::Keyspace& keyspace, uint64_t lsn,
                                           const std::string& dir, FileOps* ops);
// Checks `dir`/`file.name` (size, checksum, content) and loads it into the empty `keyspace`.
Status LoadKeyspaceSnapshot(const std::string& dir, const SnapshotFile& file,
                            kv::Keyspace* keyspace);

}  // namespace quiver::storage
