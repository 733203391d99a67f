#include "objstore/restore.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/log.h"
#include "objstore/history.h"
#include "storage/file.h"
#include "storage/wal.h"

namespace quiver::objstore {
namespace {

namespace fs = std::filesystem;

bool HasFiles(const std::string& dir) {
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (entry.is_regular_file()) return true;
  }
  return false;
}

}  // namespace

bool DataDirectoryIsEmpty(const std::string& data_dir) {
  return !fs::exists(data_dir + "/catalog") && !HasFiles(data_dir + "/wal") &&
         !HasFiles(data_dir + "/snapshots");
}

void EmptyDataDirectory(const std::string& data_dir) {
  std::error_code error;
  for (const char* sub : {"wal", "snapshots"}) {
    for (const auto& entry : fs::directory_iterator(data_dir + "/" + sub, error)) {
      fs::remove(entry.path(), error);
    }
  }
  // The change history's position is a position in the log replaced here.
  for (const char* name : {"catalog", kStateFile, "sources.json", kHistoryStateFile}) {
    fs::remove(data_dir + "/" + name, error);
  }
}

Result<std::optional<Manifest>> NewestManifest(ObjectStore& store, uint64_t* max_epoch) {
  QUIVER_ASSIGN_OR_RETURN(const std::vector<ObjectInfo> objects,
                          store.List(std::string(kManifestDir)));
  *max_epoch = 0;
  const ObjectInfo* newest = nullptr;
  for (const ObjectInfo& object : objects) {  // sorted by key: by epoch, then sequence
    uint64_t epoch, sequence;
    if (!ParseManifestKey(object.key, &epoch, &sequence)) continue;
    *max_epoch = std::max(*max_epoch, epoch);
    newest = &object;
  }
  if (newest == nullptr) return std::optional<Manifest>();
  QUIVER_ASSIGN_OR_RETURN(const std::string text, store.Get(newest->key));
  QUIVER_ASSIGN_OR_RETURN(Manifest manifest, DecodeManifest(newest->key, text));
  return std::optional<Manifest>(std::move(manifest));
}

Status RestoreFiles(ObjectStore& store, const std::string& data_dir, const Manifest& manifest,
                    RestoreReport* report) {
  const auto start = std::chrono::steady_clock::now();
  QUIVER_RETURN_NOT_OK(storage::WriteFileAtomically(
      data_dir + "/" + kRestoringFile, manifest.Key() + "\n", storage::FileOps::Default()));
  std::vector<DownloadJob> jobs;
  for (const ManifestFile& file : manifest.files) {
    const char* sub = file.kind == ManifestFile::Kind::kSnapshot ? "snapshots" : "wal";
    jobs.push_back({file.stored, data_dir + "/" + sub + "/" + file.name});
  }
  Result<uint64_t> bytes = store.Download(jobs);
  if (!bytes.ok()) {
    return Status(bytes.status().code(),
                  "restoring " + manifest.Key() + ": " + bytes.status().message());
  }
  const bool has_log = std::any_of(manifest.files.begin(), manifest.files.end(), [](const auto& f) {
    return f.kind == ManifestFile::Kind::kWal;
  });
  if (!has_log && manifest.lsn > 0) {
    // Every record is in the snapshots; the log goes on after them.
    QUIVER_RETURN_NOT_OK(storage::CreateEmptySegment(data_dir + "/wal", manifest.lsn + 1));
  }
  QUIVER_RETURN_NOT_OK(storage::SyncDirectory(data_dir + "/wal"));
  QUIVER_RETURN_NOT_OK(storage::SyncDirectory(data_dir + "/snapshots"));
  report->restored = true;
  report->manifest = manifest.Key();
  report->lsn = manifest.lsn;
  report->files = jobs.size();
  report->bytes = *bytes;
  report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char seconds[32];
  std::snprintf(seconds, sizeof(seconds), "%.3f", report->seconds);
  QUIVER_LOG(kInfo, "restored from the object store",
             {{"store", store.name()},
              {"manifest", manifest.Key()},
              {"lsn", std::to_string(manifest.lsn)},
              {"files", std::to_string(jobs.size())},
              {"bytes", std::to_string(*bytes)},
              {"download_s", seconds}});
  return Status::OK();
}

Status FinishRestore(const std::string& data_dir, const Manifest& manifest) {
  // The catalog last: only now does the directory hold a set recovery can start from.
  QUIVER_RETURN_NOT_OK(storage::WriteFileAtomically(data_dir + "/catalog", manifest.catalog,
                                                    storage::FileOps::Default()));
  QUIVER_RETURN_NOT_OK(storage::RemoveFile(data_dir + "/" + kRestoringFile));
  return storage::SyncDirectory(data_dir);
}

}  // namespace quiver::objstore
