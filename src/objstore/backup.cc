#include "objstore/backup.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "objstore/restore.h"
#include "storage/database.h"
#include "storage/file.h"
#include "storage/wal.h"

namespace quiver::objstore {
namespace {

namespace fs = std::filesystem;

constexpr const char* kStageDir = "upload";

std::string RandomInstance() {
  std::random_device random;
  char text[17];
  std::snprintf(text, sizeof(text), "%08x%08x", random(), random());
  return text;
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "";
  return name;
}

}  // namespace

Backup::Backup(BackupOptions options, std::string data_dir, std::unique_ptr<ObjectStore> store)
    : options_(std::move(options)),
      data_dir_(std::move(data_dir)),
      store_(std::move(store)),
      instance_(RandomInstance()) {}

Result<std::unique_ptr<Backup>> Backup::Create(const BackupOptions& options,
                                               const std::string& data_dir) {
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> store,
                          ObjectStore::Open(options.uri, options.part_bytes, options.threads));
  return std::unique_ptr<Backup>(new Backup(options, data_dir, std::move(store)));
}

Backup::~Backup() { Stop(false); }

std::string Backup::Local(const std::string& sub, const std::string& name) const {
  return data_dir_ + "/" + sub + "/" + name;
}

// ---------------------------------------------------------------------------------------------
// Taking the prefix over, and restoring.

Status Backup::Prepare() {
  std::error_code error;
  fs::remove_all(data_dir_ + "/" + kStageDir, error);  // links of an interrupted upload
  if (fs::exists(data_dir_ + "/" + kRestoringFile)) {
    // A restore was cut short (a crash): what it wrote is incomplete. Start it over.
    QUIVER_LOG(kWarn, "an interrupted restore is started over", {{"data_dir", data_dir_}});
    EmptyDataDirectory(data_dir_);
  }
  const bool empty = DataDirectoryIsEmpty(data_dir_);
  Status taken = TakeOver(empty);
  if (taken.ok()) return Status::OK();
  if (empty) {
    return Status(taken.code(), "cannot bootstrap the empty data directory '" + data_dir_ +
                                    "' from the object store: " + taken.message());
  }
  if (taken.code() != StatusCode::kIOError) return taken;  // refused: another node leads
  // The data directory has what it needs; the uploads take the prefix over once the store
  // answers (or, refused then, stay off, and the metrics and the log say why).
  QUIVER_LOG(kWarn, "object store not reachable at start; serving from the data directory",
             {{"store", store_->name()}, {"error", taken.message()}});
  std::lock_guard lock(error_mutex_);
  last_error_ = taken.message();
  return Status::OK();
}

Status Backup::TakeOver(bool empty_dir) {
  QUIVER_RETURN_NOT_OK(store_->Prepare());
  // The lease: who leads the prefix, and since when.
  std::optional<Lease> lease;
  Result<std::string> lease_text = store_->Get(std::string(kLeaseKey));
  if (lease_text.ok()) {
    QUIVER_ASSIGN_OR_RETURN(Lease decoded, DecodeLease(*lease_text));
    lease = decoded;
  } else if (lease_text.status().code() != StatusCode::kNotFound) {
    return lease_text.status();
  }
  // The newest manifest that reads.
  uint64_t manifest_epoch = 0;
  QUIVER_ASSIGN_OR_RETURN(std::optional<Manifest> newest, NewestManifest(*store_, &manifest_epoch));
  const uint64_t remote_epoch = std::max(lease ? lease->epoch : 0, manifest_epoch);
  // This directory's own record of the prefix.
  uint64_t local_epoch = 0;
  const std::string state_path = data_dir_ + "/" + kStateFile;
  if (!empty_dir && fs::exists(state_path)) {
    QUIVER_ASSIGN_OR_RETURN(const std::string text, storage::ReadFile(state_path));
    const nlohmann::json state = nlohmann::json::parse(text, nullptr, false);
    if (state.is_object() && state.contains("store") && state["store"] == store_->name() &&
        state.contains("epoch") && state["epoch"].is_number_unsigned()) {
      local_epoch = state["epoch"].get<uint64_t>();
    }
  }
  const int64_t now = UnixMillis();
  const std::string holder = lease ? "instance " + lease->instance + " on host '" + lease->host +
                                         "' (pid " + std::to_string(lease->pid) + ", epoch " +
                                         std::to_string(lease->epoch) + ")"
                                   : "";
  if (empty_dir) {
    if (lease && now - lease->renewed_ms < lease->lease_ms) {
      return Status::AlreadyExists(
          "object store '" + store_->name() + "' is led by " + holder + ", which renewed its " +
          "lease " + std::to_string((now - lease->renewed_ms) / 1000) +
          " s ago; a second leader would overwrite its backups. Start a read-only node with "
          "--follow, or wait " +
          std::to_string((lease->lease_ms - (now - lease->renewed_ms)) / 1000 + 1) +
          " s for the lease to lapse");
    }
  } else if (local_epoch == 0) {
    if (newest || lease) {
      return Status::AlreadyExists(
          "object store '" + store_->name() + "' holds another data set (written by " +
          (lease ? holder : "epoch " + std::to_string(remote_epoch)) +
          ") than the data directory '" + data_dir_ +
          "', which was never uploaded there. Start with an empty data directory to restore "
          "it, or point --object-store at another prefix");
    }
  } else if (remote_epoch > local_epoch) {
    return Status::AlreadyExists(
        "object store '" + store_->name() + "' was taken over by a newer leader (" +
        (lease ? holder : "epoch " + std::to_string(remote_epoch)) +
        ") since the data directory '" + data_dir_ + "' last uploaded there (epoch " +
        std::to_string(local_epoch) +
        "): its data is newer. Start with an empty data directory to restore it, or point "
        "--object-store at another prefix");
  }
  epoch_ = std::max(remote_epoch, local_epoch) + 1;
  QUIVER_RETURN_NOT_OK(WriteLease(false));
  if (empty_dir && newest) {
    if (Status restored = RestoreFiles(*store_, data_dir_, *newest, &restore_); !restored.ok()) {
      (void)WriteLease(/*release=*/true);  // a retry need not wait for the lease to lapse
      return restored;
    }
  }
  if (newest && (empty_dir || newest->epoch == local_epoch)) {
    // Its objects need no second upload while the local files are the same.
    for (const ManifestFile& file : newest->files) uploaded_[file.name] = file.stored;
    uploaded_lsn_ = newest->lsn;
  }
  nlohmann::ordered_json state;
  state["format"] = 1;
  state["role"] = "leader";
  state["store"] = store_->name();
  state["epoch"] = epoch_.load();
  QUIVER_RETURN_NOT_OK(
      storage::WriteFileAtomically(state_path, state.dump() + "\n", storage::FileOps::Default()));
  if (empty_dir && newest) QUIVER_RETURN_NOT_OK(FinishRestore(data_dir_, *newest));
  taken_over_ = true;
  QUIVER_LOG(kInfo, "object store taken over",
             {{"store", store_->name()},
              {"epoch", std::to_string(epoch_.load())},
              {"instance", instance_},
              {"restored", newest && empty_dir ? newest->Key() : "nothing"}});
  return Status::OK();
}

Status Backup::WriteLease(bool release) {
  Lease lease;
  lease.epoch = epoch_;
  lease.instance = instance_;
  lease.host = HostName();
  lease.pid = getpid();
  lease.renewed_ms = release ? 0 : UnixMillis();
  lease.lease_ms = options_.lease_ms;
  QUIVER_RETURN_NOT_OK(store_->Put(std::string(kLeaseKey), EncodeLease(lease)));
  lease_written_ms_ = UnixMillis();
  return Status::OK();
}

Status Backup::CheckLease() {
  Result<std::string> text = store_->Get(std::string(kLeaseKey));
  Status why;
  if (text.ok()) {
    Result<Lease> lease = DecodeLease(*text);
    if (lease.ok() && lease->epoch == epoch_ && lease->instance == instance_) return Status::OK();
    why = lease.ok() ? Status::AlreadyExists("instance " + lease->instance + " on host '" +
                                             lease->host + "' took the prefix over (epoch " +
                                             std::to_string(lease->epoch) + ")")
                     : lease.status();
  } else if (text.status().code() == StatusCode::kNotFound) {
    why = Status::AlreadyExists("the lease object was removed");
  } else {
    return text.status();  // unreachable: retried
  }
  fenced_ = true;
  const std::string message = "object store '" + store_->name() + "': " + why.message() +
                              "; this node stops uploading (its writes stay local)";
  QUIVER_LOG(kError, "object store fenced", {{"error", message}});
  std::lock_guard lock(error_mutex_);
  last_error_ = message;
  return Status::AlreadyExists(message);
}

// ---------------------------------------------------------------------------------------------
// Uploading.

void Backup::Start(storage::Database* database) {
  database_ = database;
  snapshots_seen_ = database->Stats().snapshots;
  // Segments no manifest holds yet stay, even once snapshots cover them: followers replay them.
  database->SetLogRetention("backup", uploaded_lsn_.load() + 1);
  uploads_.StartWithDelays(Tick(), [this] { return RunOnce(); });
}

void Backup::NotePending() {
  if (database_->Stats().wal_last_lsn > uploaded_lsn_.load() && pending_since_ms_ == 0) {
    pending_since_ms_ = UnixMillis();
  }
  pending_since_shared_ = pending_since_ms_;
}

bool Backup::Due() {
  const storage::DatabaseStats stats = database_->Stats();
  const int64_t now = UnixMillis();
  const bool changed = stats.wal_last_lsn > uploaded_lsn_.load();
  if (stats.snapshots != snapshots_seen_) return true;  // lets the store drop old segments
  if (!changed) return false;
  if (stats.wal_sealed_lsn > uploaded_lsn_.load()) return true;  // a segment filled
  return options_.upload_interval_seconds > 0 &&
         static_cast<double>(now - pending_since_ms_) >= options_.upload_interval_seconds * 1000;
}

Status Backup::UploadOnce() {
  const std::string stage = data_dir_ + "/" + kStageDir;
  const uint64_t snapshots = database_->Stats().snapshots;
  const auto is_uploaded = [&](const std::string& name) {
    auto it = uploaded_.find(name);
    if (it == uploaded_.end()) return false;
    std::error_code error;
    for (const char* sub : {"wal", "snapshots"}) {
      const uintmax_t size = fs::file_size(Local(sub, name), error);
      if (!error) return size == it->second.bytes;
    }
    return true;  // gone locally (a snapshot removed it): the uploaded copy stays right
  };
  const int64_t sealed_at = UnixMillis();
  QUIVER_ASSIGN_OR_RETURN(
      const storage::CheckpointFiles files,
      database_->Checkpoint(stage, [&](const std::string& name) { return !is_uploaded(name); }));
  if (files.lsn == uploaded_lsn_.load() && snapshots == snapshots_seen_ && sequence_ > 0) {
    return Status::OK();
  }
  Manifest manifest;
  manifest.epoch = epoch_;
  manifest.sequence = sequence_ + 1;
  manifest.instance = instance_;
  manifest.lsn = files.lsn;
  manifest.catalog = files.catalog;
  char epoch_dir[32];
  std::snprintf(epoch_dir, sizeof(epoch_dir), "%s/%08" PRIu64, std::string(kDataDir).c_str(),
                epoch_.load());
  const auto add = [&](ManifestFile::Kind kind, const std::string& name) -> Status {
    const char* sub = kind == ManifestFile::Kind::kSnapshot ? "snapshots" : "wal";
    ManifestFile file;
    file.kind = kind;
    file.name = name;
    if (is_uploaded(name)) {
      file.stored = uploaded_[name];
    } else {
      const std::string staged = stage + "/" + sub + "/" + name;
      QUIVER_ASSIGN_OR_RETURN(
          file.stored, store_->PutFile(std::string(epoch_dir) + "/" + sub + "/" + name, staged));
      uploaded_[name] = file.stored;
      uploaded_bytes_ += file.stored.bytes;
      ++uploaded_files_;
      QUIVER_RETURN_NOT_OK(storage::RemoveFile(staged));
    }
    manifest.files.push_back(std::move(file));
    return Status::OK();
  };
  for (const std::string& name : files.snapshots) {
    QUIVER_RETURN_NOT_OK(add(ManifestFile::Kind::kSnapshot, name));
  }
  for (const storage::WalSegment& segment : files.segments) {
    QUIVER_RETURN_NOT_OK(add(ManifestFile::Kind::kWal, fs::path(segment.path).filename()));
  }
  QUIVER_RETURN_NOT_OK(CheckLease());
  manifest.created_ms = UnixMillis();
  QUIVER_RETURN_NOT_OK(store_->Put(manifest.Key(), EncodeManifest(manifest)));
  sequence_ = manifest.sequence;
  snapshots_seen_ = snapshots;
  // Forget what the manifest no longer names (the files a snapshot made unnecessary).
  std::set<std::string> named;
  for (const ManifestFile& file : manifest.files) named.insert(file.name);
  std::erase_if(uploaded_, [&](const auto& entry) { return !named.contains(entry.first); });
  uploaded_lsn_ = files.lsn;
  database_->SetLogRetention("backup", files.lsn + 1);
  // Changes after the seal wait for the next upload; their age counts from the seal.
  pending_since_ms_ = database_->Stats().wal_last_lsn > files.lsn ? sealed_at : 0;
  pending_since_shared_ = pending_since_ms_;
  last_manifest_ms_ = manifest.created_ms;
  ++manifests_;
  QUIVER_LOG(kDebug, "manifest uploaded",
             {{"manifest", manifest.Key()},
              {"lsn", std::to_string(files.lsn)},
              {"files", std::to_string(manifest.files.size())}});
  if (Status collected = CollectGarbage(); !collected.ok()) {
    QUIVER_LOG(kWarn, "object store: old objects not deleted", {{"error", collected.message()}});
  }
  return Status::OK();
}

Status Backup::CollectGarbage() {
  QUIVER_ASSIGN_OR_RETURN(const std::vector<ObjectInfo> manifests,
                          store_->List(std::string(kManifestDir)));
  std::vector<std::string> keys;
  for (const ObjectInfo& object : manifests) {
    uint64_t epoch, sequence;
    if (ParseManifestKey(object.key, &epoch, &sequence)) keys.push_back(object.key);
  }
  if (keys.size() <= options_.keep_manifests) return Status::OK();
  // Keys sort by epoch, then sequence: the newest are last.
  std::set<std::string> referenced;
  for (size_t i = keys.size() - options_.keep_manifests; i < keys.size(); ++i) {
    QUIVER_ASSIGN_OR_RETURN(const std::string text, store_->Get(keys[i]));
    QUIVER_ASSIGN_OR_RETURN(const Manifest kept, DecodeManifest(keys[i], text));
    for (const ManifestFile& file : kept.files) {
      for (size_t part = 0; part < file.stored.part_crc32c.size(); ++part) {
        referenced.insert(PartKey(file.stored.key, part));
      }
    }
  }
  for (size_t i = 0; i + options_.keep_manifests < keys.size(); ++i) {
    QUIVER_RETURN_NOT_OK(store_->Delete(keys[i]));
  }
  QUIVER_ASSIGN_OR_RETURN(const std::vector<ObjectInfo> data, store_->List(std::string(kDataDir)));
  for (const ObjectInfo& object : data) {
    if (!referenced.contains(object.key)) QUIVER_RETURN_NOT_OK(store_->Delete(object.key));
  }
  return Status::OK();
}

std::chrono::microseconds Backup::RunOnce() {
  Status status;
  if (!taken_over_ && !fenced_) {
    status = TakeOver(false);
    if (!status.ok() && status.code() != StatusCode::kIOError) {
      // Refused (another node leads the prefix): no uploads from this node.
      fenced_ = true;
      QUIVER_LOG(kError, "object store refused", {{"error", status.message()}});
    }
  }
  NotePending();  // the lag counts while the store is away too
  if (status.ok() && taken_over_ && !fenced_) {
    if (UnixMillis() - lease_written_ms_ >= options_.lease_ms / 3) {
      status = CheckLease();
      if (status.ok()) status = WriteLease(false);
    }
    if (status.ok() && !fenced_ && Due()) status = UploadOnce();
  }
  if (status.ok() || fenced_) {
    backoff_ms_ = 0;
    return Tick();
  }
  ++failures_;
  backoff_ms_ = std::clamp<int64_t>(backoff_ms_ * 2, 1000, 60'000);
  QUIVER_LOG(kWarn, "object store upload failed; retrying",
             {{"store", store_->name()},
              {"error", status.message()},
              {"retry_in_ms", std::to_string(backoff_ms_)}});
  std::lock_guard error_lock(error_mutex_);
  last_error_ = status.message();
  return std::chrono::milliseconds(backoff_ms_);
}

std::chrono::microseconds Backup::Tick() const {
  return std::chrono::milliseconds(std::clamp<int64_t>(
      static_cast<int64_t>(options_.upload_interval_seconds * 1000 / 4), 50, 1000));
}

void Backup::Stop(bool final_upload) {
  if (std::exchange(stopped_, true)) return;
  uploads_.Stop();
  if (!final_upload || database_ == nullptr || !taken_over_ || fenced_) return;
  Status status;
  if (database_->Stats().wal_last_lsn > uploaded_lsn_.load()) status = UploadOnce();
  if (status.ok()) status = CheckLease();
  // Released: a node that takes the prefix over next need not wait for the lease to lapse.
  if (status.ok()) status = WriteLease(/*release=*/true);
  if (!status.ok()) {
    QUIVER_LOG(kWarn, "object store: the last upload failed",
               {{"store", store_->name()}, {"error", status.message()}});
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

BackupStats Backup::Stats() const {
  BackupStats stats;
  stats.epoch = epoch_;
  stats.uploaded_lsn = uploaded_lsn_;
  const int64_t since = pending_since_shared_;
  stats.lag_seconds = since == 0 ? 0 : static_cast<double>(UnixMillis() - since) / 1000;
  stats.uploaded_bytes = uploaded_bytes_;
  stats.uploaded_files = uploaded_files_;
  stats.manifests = manifests_;
  stats.failures = failures_;
  stats.last_manifest_ms = last_manifest_ms_;
  stats.fenced = fenced_;
  std::lock_guard lock(error_mutex_);
  stats.last_error = last_error_;
  return stats;
}

void Backup::RenderMetrics(std::string* out) const {
  const BackupStats stats = Stats();
  const MetricFamilySample metrics[] = {
      {"quiver_object_store_epoch", "gauge", "This node's epoch as the prefix's leader",
       static_cast<double>(stats.epoch)},
      {"quiver_object_store_uploaded_lsn", "gauge",
       "The last log position the newest uploaded manifest holds",
       static_cast<double>(stats.uploaded_lsn)},
      {"quiver_object_store_lag_seconds", "gauge",
       "Age of the oldest change no uploaded manifest holds (0: none)", stats.lag_seconds},
      {"quiver_object_store_uploaded_bytes_total", "counter", "Bytes uploaded since the start",
       static_cast<double>(stats.uploaded_bytes)},
      {"quiver_object_store_uploaded_files_total", "counter",
       "Snapshots and log segments uploaded since the start",
       static_cast<double>(stats.uploaded_files)},
      {"quiver_object_store_manifests_total", "counter", "Manifests written since the start",
       static_cast<double>(stats.manifests)},
      {"quiver_object_store_upload_failures_total", "counter",
       "Uploads that failed and were retried", static_cast<double>(stats.failures)},
      {"quiver_object_store_last_manifest_timestamp_seconds", "gauge",
       "When the newest manifest was written (Unix seconds; 0: none since the start)",
       static_cast<double>(stats.last_manifest_ms) / 1000},
      {"quiver_object_store_fenced", "gauge",
       "1 when another node took the prefix over and this one stopped uploading",
       stats.fenced ? 1.0 : 0.0},
  };
  AppendFamilySamples(out, metrics, {{"store", store_->name()}});
}

}  // namespace quiver::objstore
