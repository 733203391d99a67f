#include "objstore/follower.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "storage/database.h"
#include "storage/file.h"
#include "storage/wal.h"

namespace quiver::objstore {
namespace {

namespace fs = std::filesystem;

constexpr const char* kFollowDir = "follow";  // a downloaded segment, while it is applied

// The first LSN a segment holds, from its name (20 digits + ".wal"); 0 when not a segment name.
uint64_t SegmentFirstLsn(const std::string& name) {
  if (name.size() != 24 || !name.ends_with(".wal")) return 0;
  uint64_t lsn = 0;
  for (size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    lsn = lsn * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  return lsn;
}

}  // namespace

Result<std::unique_ptr<Follower>> Follower::Create(const FollowOptions& options,
                                                   const std::string& data_dir) {
  QUIVER_ASSIGN_OR_RETURN(std::unique_ptr<ObjectStore> store,
                          ObjectStore::Open(options.uri, 32 << 20, options.threads));
  return std::unique_ptr<Follower>(new Follower(options, data_dir, std::move(store)));
}

Follower::~Follower() { Stop(); }

std::string Follower::ReadOnlyMessage() const {
  return "this node is a read-only follower of the backups in '" + store_->name() +
         "'; send changes to the leader that uploads there";
}

Status Follower::Prepare() {
  const std::string state_path = data_dir_ + "/" + kStateFile;
  if (!DataDirectoryIsEmpty(data_dir_)) {
    bool follower = false;
    if (fs::exists(state_path)) {
      QUIVER_ASSIGN_OR_RETURN(const std::string text, storage::ReadFile(state_path));
      const nlohmann::json state = nlohmann::json::parse(text, nullptr, false);
      follower = state.is_object() && state.contains("role") && state["role"] == "follower";
    }
    if (!follower && !fs::exists(data_dir_ + "/" + kRestoringFile)) {
      return Status::AlreadyExists(
          "the data directory '" + data_dir_ +
          "' holds data of its own; a follower starts from an empty directory (or one a "
          "follower used: it is rebuilt from the object store at each start)");
    }
    EmptyDataDirectory(data_dir_);
  }
  std::error_code error;
  fs::remove_all(data_dir_ + "/" + kFollowDir, error);
  Status restored = [&]() -> Status {
    QUIVER_RETURN_NOT_OK(store_->Prepare());
    uint64_t epoch = 0;
    QUIVER_ASSIGN_OR_RETURN(std::optional<Manifest> newest, NewestManifest(*store_, &epoch));
    if (newest) QUIVER_RETURN_NOT_OK(RestoreFiles(*store_, data_dir_, *newest, &restore_));
    nlohmann::ordered_json state = {{"format", 1}, {"role", "follower"}, {"store", store_->name()}};
    QUIVER_RETURN_NOT_OK(
        storage::WriteFileAtomically(state_path, state.dump() + "\n", storage::FileOps::Default()));
    if (newest) {
      QUIVER_RETURN_NOT_OK(FinishRestore(data_dir_, *newest));
      applied_manifest_ = newest->Key();
    }
    return Status::OK();
  }();
  if (!restored.ok()) {
    return Status(restored.code(),
                  "cannot start following '" + store_->name() + "': " + restored.message());
  }
  QUIVER_LOG(
      kInfo, "following",
      {{"store", store_->name()},
       {"restored", applied_manifest_.empty() ? "nothing (no manifest yet)" : applied_manifest_}});
  return Status::OK();
}

void Follower::Start(storage::Database* database) {
  database_ = database;
  applied_lsn_ = database->replicated_lsn();
  polls_.StartWithDelays(Tick(), [this] { return RunOnce(); });
}

void Follower::Stop() { polls_.Stop(); }

Status Follower::ApplySegment(const StoredFile& file, const std::string& name) {
  const std::string dir = data_dir_ + "/" + kFollowDir;
  std::error_code error;
  fs::remove_all(dir, error);
  fs::create_directories(dir, error);
  if (error) return Status::IOError("cannot create '" + dir + "': " + error.message());
  QUIVER_RETURN_NOT_OK(store_->Download({{file, dir + "/" + name}}).status());
  Result<storage::WalScan> scan =
      storage::ScanWal(dir, /*truncate_corrupt=*/false, storage::FileOps::Default(),
                       [&](const storage::WalRecord& record) -> Status {
                         if (record.lsn <= applied_lsn_.load()) return Status::OK();
                         QUIVER_RETURN_NOT_OK(database_->ApplyReplicated(record));
                         applied_lsn_ = record.lsn;
                         ++records_applied_;
                         return Status::OK();
                       });
  fs::remove_all(dir, error);
  return scan.status();
}

Status Follower::PollOnce() {
  last_poll_ms_ = UnixMillis();
  QUIVER_ASSIGN_OR_RETURN(const std::vector<ObjectInfo> objects,
                          store_->List(std::string(kManifestDir)));
  std::vector<std::string> newer;
  for (const ObjectInfo& object : objects) {
    uint64_t epoch, sequence;
    if (ParseManifestKey(object.key, &epoch, &sequence) && object.key > applied_manifest_) {
      newer.push_back(object.key);
    }
  }
  if (newer.empty()) {
    behind_since_ms_ = 0;
    return Status::OK();
  }
  for (const std::string& key : newer) {
    QUIVER_ASSIGN_OR_RETURN(const std::string text, store_->Get(key));
    QUIVER_ASSIGN_OR_RETURN(const Manifest manifest, DecodeManifest(key, text));
    if (behind_since_ms_.load() == 0 || key == newer.front()) {
      behind_since_ms_ = manifest.created_ms;
    }
    std::vector<const ManifestFile*> segments;
    for (const ManifestFile& file : manifest.files) {
      if (file.kind == ManifestFile::Kind::kWal && SegmentFirstLsn(file.name) > 0) {
        segments.push_back(&file);
      }
    }
    std::sort(segments.begin(), segments.end(),
              [](const ManifestFile* a, const ManifestFile* b) { return a->name < b->name; });
    for (size_t i = 0; i < segments.size(); ++i) {
      const uint64_t first = SegmentFirstLsn(segments[i]->name);
      const uint64_t last =
          i + 1 < segments.size() ? SegmentFirstLsn(segments[i + 1]->name) - 1 : manifest.lsn;
      if (last <= applied_lsn_.load()) continue;
      if (first > applied_lsn_.load() + 1) {
        stuck_ = true;
        return Status::NotFound(
            "the leader's log from LSN " + std::to_string(applied_lsn_.load() + 1) +
            " is no longer in the store (this follower fell behind its last " +
            "manifests); it serves what it has: restart it to start again from the newest "
            "backup");
      }
      QUIVER_RETURN_NOT_OK(ApplySegment(segments[i]->stored, segments[i]->name));
    }
    if (manifest.lsn > applied_lsn_.load()) {
      stuck_ = true;
      return Status::NotFound(key + " holds the leader's changes up to LSN " +
                              std::to_string(manifest.lsn) + " but its log segments stop at " +
                              std::to_string(applied_lsn_.load()) +
                              "; restart this follower to start again from the newest backup");
    }
    applied_manifest_ = key;
    ++manifests_applied_;
  }
  behind_since_ms_ = 0;
  return Status::OK();
}

std::chrono::microseconds Follower::Tick() const {
  return std::chrono::milliseconds(
      std::max<int64_t>(static_cast<int64_t>(options_.poll_seconds * 1000), 50));
}

std::chrono::microseconds Follower::RunOnce() {
  const std::chrono::microseconds tick = Tick();
  if (stuck_) return tick;
  Status status = PollOnce();
  if (status.ok()) {
    backoff_ms_ = 0;
    std::lock_guard error_lock(error_mutex_);
    last_error_.clear();
    return tick;
  }
  ++failures_;
  backoff_ms_ = stuck_ ? 0 : std::clamp<int64_t>(backoff_ms_ * 2, 1000, 30'000);
  if (stuck_) {
    QUIVER_LOG(kError, "follower: stopped applying the leader's log",
               {{"store", store_->name()}, {"error", status.message()}});
  } else {
    QUIVER_LOG(kWarn, "follower: applying the leader's log failed; retrying",
               {{"store", store_->name()}, {"error", status.message()}});
  }
  std::lock_guard error_lock(error_mutex_);
  last_error_ = status.message();
  return backoff_ms_ > 0 ? std::chrono::milliseconds(backoff_ms_) : tick;
}

FollowerStats Follower::Stats() const {
  FollowerStats stats;
  stats.applied_lsn = applied_lsn_;
  const int64_t since = behind_since_ms_;
  stats.seconds_behind =
      since == 0 ? 0 : std::max<double>(0, static_cast<double>(UnixMillis() - since) / 1000);
  stats.manifests_applied = manifests_applied_;
  stats.records_applied = records_applied_;
  stats.failures = failures_;
  stats.last_poll_ms = last_poll_ms_;
  stats.stuck = stuck_;
  std::lock_guard lock(error_mutex_);
  stats.last_error = last_error_;
  return stats;
}

void Follower::RenderMetrics(std::string* out) const {
  const FollowerStats stats = Stats();
  const MetricFamilySample metrics[] = {
      {"quiver_follow_applied_lsn", "gauge", "The last LSN of the leader's log applied here",
       static_cast<double>(stats.applied_lsn)},
      {"quiver_follow_seconds_behind", "gauge",
       "Age of the oldest uploaded manifest not applied yet (0: caught up with the store)",
       stats.seconds_behind},
      {"quiver_follow_manifests_applied_total", "counter", "Manifests applied since the start",
       static_cast<double>(stats.manifests_applied)},
      {"quiver_follow_records_applied_total", "counter", "Log records applied since the start",
       static_cast<double>(stats.records_applied)},
      {"quiver_follow_failures_total", "counter", "Polls that failed (retried)",
       static_cast<double>(stats.failures)},
      {"quiver_follow_last_poll_timestamp_seconds", "gauge",
       "When the store was last polled (Unix seconds)",
       static_cast<double>(stats.last_poll_ms) / 1000},
      {"quiver_follow_stuck", "gauge",
       "1 when the log this follower needs is no longer in the store (restart it)",
       stats.stuck ? 1.0 : 0.0},
  };
  AppendFamilySamples(out, metrics, {{"store", store_->name()}});
}

}  // namespace quiver::objstore
