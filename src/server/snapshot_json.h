// The answer to a snapshot request (HTTP's POST /api/v1/admin/snapshot, Flight's "snapshot"
// action), the same JSON from both.
#pragma once

#include <string>

#include "storage/database.h"

namespace quiver::server {

// {"tables": [{"table", "written", "rows", "bytes", "lsn", "seconds"}, ...],
//  "keyspace": {"written", "keys", "bytes", "lsn", "seconds"} (when it was part of it),
//  "wal_segments_removed": N, "seconds": S}
std::string SnapshotReportToJson(const storage::SnapshotReport& report);

}  // namespace quiver::server
