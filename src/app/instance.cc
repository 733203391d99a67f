#include "app/instance.h"

#include <utility>

namespace quiver {

Result<std::unique_ptr<Instance>> Instance::Open(InstanceOptions options) {
  std::unique_ptr<Instance> instance(new Instance());
  const bool publish = !options.shm_socket.empty();
  std::optional<TierOptions> tier;
  if (!options.tier_dir.empty()) {
    QUIVER_ASSIGN_OR_RETURN(instance->tier_dir_, TierDirectory::Open(options.tier_dir));
    tier = TierOptions{.directory = options.tier_dir, .io = options.tier_io};
  }
  if (options.data_dir) {
    options.durability.data_dir = *options.data_dir;
    options.durability.publish = publish;
    options.durability.tier = tier;
    options.durability.maxmemory = options.maxmemory;
    options.durability.policy = options.policy;
    if (options.backup && options.follow) {
      return Status::InvalidArgument(
          "a node either backs its data up to an object store or follows one, not both");
    }
    if (options.history && options.follow) {
      return Status::InvalidArgument(
          "a follower keeps no change history: its changes are its leader's (give --history to "
          "the leader)");
    }
    if (options.follow) {
      QUIVER_ASSIGN_OR_RETURN(instance->follower_,
                              objstore::Follower::Create(*options.follow, *options.data_dir));
      options.durability.before_recovery = [follower = instance->follower_.get()] {
        return follower->Prepare();
      };
      options.durability.read_only = instance->follower_->ReadOnlyMessage();
    }
    if (options.backup) {
      QUIVER_ASSIGN_OR_RETURN(instance->backup_,
                              objstore::Backup::Create(*options.backup, *options.data_dir));
      options.durability.before_recovery = [backup = instance->backup_.get()] {
        return backup->Prepare();
      };
    }
    QUIVER_ASSIGN_OR_RETURN(instance->database_, storage::Database::Open(options.durability));
    if (instance->backup_) instance->backup_->Start(instance->database_.get());
    if (instance->follower_) instance->follower_->Start(instance->database_.get());
    if (options.history) {
      QUIVER_ASSIGN_OR_RETURN(instance->history_,
                              objstore::History::Create(*options.history, *options.data_dir));
      QUIVER_RETURN_NOT_OK(instance->history_->Start(instance->database_.get()));
    }
    QUIVER_ASSIGN_OR_RETURN(instance->sync_, sync::ParquetSync::Start(*instance->database_));
  } else {
    instance->memory_limit_ = std::make_unique<MemoryLimit>();
    instance->catalog_ =
        std::make_unique<Catalog>(CatalogOptions{.limits = options.durability.limits,
                                                 .publish = publish,
                                                 .memory_limit = instance->memory_limit_.get(),
                                                 .tier = tier});
    instance->keyspace_ = std::make_unique<kv::Keyspace>();
    instance->keyspace_->SetMemoryLimit(instance->memory_limit_.get());
  }
  kv::Keyspace& keyspace = instance->keyspace();
  keyspace.SetMaxMemory(options.maxmemory);
  keyspace.SetPolicy(options.policy);
  keyspace.StartActiveExpiry(options.expiry_hz);
  instance->catalog().StartActiveExpiry(options.expiry_hz);
  instance->kv_ =
      std::make_unique<resp::LocalClient>(keyspace, &instance->catalog(), options.table_separator);
  if (publish) {
    QUIVER_ASSIGN_OR_RETURN(
        instance->shm_,
        ShmServer::Start(instance->catalog(), ShmServerOptions{.path = options.shm_socket,
                                                               .mode = options.shm_socket_mode,
                                                               .lease_ms = options.shm_lease_ms}));
  }
  return instance;
}

Instance::~Instance() { Close(); }

void Instance::Close() {
  if (std::exchange(closed_, true)) return;
  if (shm_ != nullptr) shm_->Stop();  // readers see the tables closed as they go
  // Either may be missing when Open failed.
  if (database_ != nullptr) {
    if (sync_ != nullptr) sync_->Stop();  // before the last upload: its rows go too
    if (follower_ != nullptr) follower_->Stop();
    database_->keyspace().StopActiveExpiry();
    // The history's last write seals a segment the backup's last upload then takes along.
    if (history_ != nullptr) history_->Stop(/*final_write=*/true);
    if (backup_ != nullptr) backup_->Stop(/*final_upload=*/true);
    database_->Close();  // stops the tables' expiry before the log
  } else if (keyspace_ != nullptr) {
    keyspace_->StopActiveExpiry();
    catalog_->StopActiveExpiry();
  }
}

}  // namespace quiver
