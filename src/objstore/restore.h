// What a leader's bootstrap (Backup) and a follower (Follower) share: the data directory's
// markers, emptying it, finding the newest manifest of a prefix, and restoring a manifest's set of
// files into a data directory (docs/object-storage.md#bootstrap).
//
// Thread safety: functions.
#pragma once

#include <optional>
#include <string>

#include "common/result.h"
#include "objstore/manifest.h"
#include "objstore/object_store.h"

namespace quiver::objstore {

// The data directory's record of its prefix (JSON: format, role, store, epoch).
inline constexpr const char* kStateFile = "objstore";
// Present while a restore fills the directory; a start that finds it restores again.
inline constexpr const char* kRestoringFile = "restoring";

struct RestoreReport {
  bool restored = false;
  std::string manifest;  // its key
  uint64_t lsn = 0;
  size_t files = 0;
  uint64_t bytes = 0;
  double seconds = 0;
};

// True when the directory holds no catalog, log segment or snapshot.
bool DataDirectoryIsEmpty(const std::string& data_dir);
// Removes the catalog, the log segments, the snapshots and the state file.
void EmptyDataDirectory(const std::string& data_dir);

// The newest manifest that reads (null when the prefix has none), and the highest epoch any
// manifest names (`*max_epoch`, 0 when none).
Result<std::optional<Manifest>> NewestManifest(ObjectStore& store, uint64_t* max_epoch);

// Downloads every file of `manifest` into the (empty) data directory, each part checked, behind
// the `restoring` marker; the caller writes its state file, then FinishRestore.
Status RestoreFiles(ObjectStore& store, const std::string& data_dir, const Manifest& manifest,
                    RestoreReport* report);
// Writes the manifest's catalog and removes the marker: the directory is whole.
Status FinishRestore(const std::string& data_dir, const Manifest& manifest);

}  // namespace quiver::objstore
