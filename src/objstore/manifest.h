// The objects that describe a backup in an object store (format: docs/object-storage.md):
//   manifests/<epoch, 8 digits>-<sequence, 12 digits>.manifest   one restorable set each
//   leader                                                       the lease of the writing node
// A manifest names a catalog (held inline) and every file recovery needs (snapshots and sealed
// log segments, each as parts with their CRC-32C). It is written after every file it names, so
// a set whose upload was cut short is never used. Both are text: one header line with a CRC-32C
// of the rest, then JSON.
//
// Thread safety: functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "objstore/object_store.h"

namespace quiver::objstore {

struct ManifestFile {
  enum class Kind { kSnapshot, kWal };
  Kind kind = Kind::kWal;
  std::string name;  // in the data directory's snapshots/ or wal/
  StoredFile stored;
};

struct Manifest {
  uint64_t epoch = 0;     // of the leader that wrote it
  uint64_t sequence = 0;  // 1, 2, ... within the epoch
  std::string instance;   // the writing process's id
  int64_t created_ms = 0;
  uint64_t lsn = 0;     // the last LSN the set holds
  std::string catalog;  // the catalog file (storage/catalog_file.h), encoded
  std::vector<ManifestFile> files;

  std::string Key() const;  // manifests/<epoch>-<sequence>.manifest
};

std::string EncodeManifest(const Manifest& manifest);
// kCorruption naming `key` when the checksum or the content is wrong.
Result<Manifest> DecodeManifest(const std::string& key, std::string_view text);
// The epoch and sequence in a manifest's key; false for another name.
bool ParseManifestKey(std::string_view key, uint64_t* epoch, uint64_t* sequence);

// The lease of the node that uploads to a prefix: written when it takes the prefix over and
// renewed every lease_ms / 3. A node that finds a newer epoch there stops uploading (fenced).
struct Lease {
  uint64_t epoch = 0;
  std::string instance;
  std::string host;
  int64_t pid = 0;
  int64_t renewed_ms = 0;  // Unix ms
  int64_t lease_ms = 0;
};

inline constexpr std::string_view kLeaseKey = "leader";
inline constexpr std::string_view kManifestDir = "manifests";
inline constexpr std::string_view kDataDir = "data";

std::string EncodeLease(const Lease& lease);
Result<Lease> DecodeLease(std::string_view text);

}  // namespace quiver::objstore
