#include "engine/catalog.h"

#include <algorithm>
#include <chrono>
#include <mutex>

#include "common/active_expiry.h"

namespace quiver {

Result<std::shared_ptr<Table>> Catalog::CreateTable(std::string_view name, TableSchema schema) {
  QUIVER_RETURN_NOT_OK(CheckTableName(name));
  QUIVER_RETURN_NOT_OK(CheckTimeZones(schema));
  uint64_t lsn = 0;
  std::shared_ptr<Table> table;
  {
    std::lock_guard ddl(ddl_mutex_);
    uint64_t id;
    {
      std::shared_lock lock(mutex_);
      if (tables_.find(name) != tables_.end()) {
        return Status::AlreadyExists("table '" + std::string(name) + "' already exists");
      }
      id = next_id_;
    }
    // Built outside the map lock: creating regions may take a moment.
    QUIVER_ASSIGN_OR_RETURN(table, MakeTable(name, std::move(schema), id));
    if (options_.journal != nullptr) {
      QUIVER_ASSIGN_OR_RETURN(lsn, options_.journal->LogCreate(id, name, table->schema()));
      table->set_applied_lsn(lsn);
    }
    table->AttachMemoryLimit(options_.memory_limit);
    {
      std::unique_lock lock(mutex_);
      tables_.emplace(std::string(name), table);
      next_id_ = id + 1;
    }
    if (options_.journal != nullptr) options_.journal->CatalogChanged(lsn);
  }
  if (lsn != 0) QUIVER_RETURN_NOT_OK(options_.journal->Commit(lsn));
  return table;
}

Status Catalog::DropTable(std::string_view name) {
  std::shared_ptr<Table> dropped;  // destroyed after the locks are released
  uint64_t lsn = 0;
  {
    std::lock_guard ddl(ddl_mutex_);
    {
      std::shared_lock lock(mutex_);
      auto it = tables_.find(name);
      if (it == tables_.end()) {
        return Status::NotFound("table '" + std::string(name) + "' does not exist");
      }
      dropped = it->second;
    }
    if (options_.journal != nullptr) {
      QUIVER_ASSIGN_OR_RETURN(lsn, options_.journal->LogDrop(dropped->id(), name));
    }
    {
      std::unique_lock lock(mutex_);
      tables_.erase(tables_.find(name));
    }
    if (options_.journal != nullptr) options_.journal->CatalogChanged(lsn);
  }
  dropped->AttachMemoryLimit(nullptr);  // its memory no longer counts (nor may it be evicted)
  if (dropped->publication() != nullptr) dropped->publication()->SetState(PublishedState::kDropped);
  if (lsn != 0) return options_.journal->Commit(lsn);
  return Status::OK();
}

Result<std::shared_ptr<Table>> Catalog::AlterTable(std::string_view name,
                                                   const SchemaChange& change) {
  uint64_t lsn = 0;
  std::shared_ptr<Table> table;
  {
    std::lock_guard ddl(ddl_mutex_);
    std::shared_ptr<Table> old;
    uint64_t id;
    {
      std::shared_lock lock(mutex_);
      auto it = tables_.find(name);
      if (it == tables_.end()) {
        return Status::NotFound("table '" + std::string(name) + "' does not exist");
      }
      old = it->second;
      id = next_id_;
    }
    QUIVER_ASSIGN_OR_RETURN(table, Alter(old, change, id, options_.journal != nullptr, &lsn));
    if (options_.journal != nullptr) options_.journal->CatalogChanged(lsn);
  }
  if (lsn != 0) QUIVER_RETURN_NOT_OK(options_.journal->Commit(lsn));
  return table;
}

Result<std::shared_ptr<Table>> Catalog::RestoreAlter(uint64_t id, uint64_t new_id,
                                                     const SchemaChange& change) {
  std::lock_guard ddl(ddl_mutex_);
  std::shared_ptr<Table> old;
  {
    std::shared_lock lock(mutex_);
    for (const auto& [name, table] : tables_) {
      if (table->id() == id) old = table;
    }
  }
  if (old == nullptr) {
    return Status::Corruption("a schema change names table " + std::to_string(id) +
                              ", which does not exist");
  }
  uint64_t unused = 0;
  return Alter(old, change, new_id, /*journal=*/false, &unused);
}

Result<std::shared_ptr<Table>> Catalog::Alter(const std::shared_ptr<Table>& old,
                                              const SchemaChange& change, uint64_t new_id,
                                              bool journal, uint64_t* lsn) {
  QUIVER_ASSIGN_OR_RETURN(ChangedSchema changed,
                          ApplySchemaChange(old->schema(), change, options_.limits));
  const std::string change_json = change.ToJson();
  QUIVER_ASSIGN_OR_RETURN(
      std::shared_ptr<Table> table,
      old->Rebuild(changed, new_id, [&](const std::shared_ptr<Table>& next) -> Status {
        // Under the old table's write lock: no write between the last one copied and the switch.
        if (journal) {
          QUIVER_ASSIGN_OR_RETURN(*lsn, options_.journal->LogAlter(old->id(), new_id, old->name(),
                                                                   change_json, next->schema()));
          next->set_applied_lsn(*lsn);
        }
        std::unique_lock lock(mutex_);
        tables_[old->name()] = next;
        next_id_ = std::max(next_id_, new_id + 1);
        return Status::OK();
      }));
  old->AttachMemoryLimit(nullptr);
  table->AttachMemoryLimit(options_.memory_limit);
  if (old->publication() != nullptr) old->publication()->SetState(PublishedState::kDropped);
  return table;
}

Result<std::shared_ptr<Table>> Catalog::MakeTable(std::string_view name, TableSchema schema,
                                                  uint64_t id) {
  QUIVER_ASSIGN_OR_RETURN(
      std::shared_ptr<Table> table,
      Table::Make(std::string(name), std::move(schema), options_.limits, options_.backing, id,
                  options_.journal, UnixMillis, options_.publish));
  if (options_.tier) QUIVER_RETURN_NOT_OK(table->AttachTier(*options_.tier));
  return table;
}

Result<std::shared_ptr<Table>> Catalog::RestoreTable(uint64_t id, std::string_view name,
                                                     TableSchema schema) {
  QUIVER_RETURN_NOT_OK(CheckTableName(name));
  std::lock_guard ddl(ddl_mutex_);
  {
    std::shared_lock lock(mutex_);
    if (tables_.find(name) != tables_.end()) {
      return Status::AlreadyExists("table '" + std::string(name) + "' already exists");
    }
  }
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, MakeTable(name, std::move(schema), id));
  table->AttachMemoryLimit(options_.memory_limit);
  std::unique_lock lock(mutex_);
  tables_.emplace(std::string(name), table);
  next_id_ = std::max(next_id_, id + 1);
  return table;
}

bool Catalog::RemoveTable(uint64_t id) {
  std::shared_ptr<Table> removed;  // destroyed after the lock is released
  std::lock_guard ddl(ddl_mutex_);
  std::unique_lock lock(mutex_);
  for (auto it = tables_.begin(); it != tables_.end(); ++it) {
    if (it->second->id() == id) {
      it->second->AttachMemoryLimit(nullptr);
      if (it->second->publication() != nullptr) {
        it->second->publication()->SetState(PublishedState::kDropped);
      }
      removed = std::move(it->second);
      tables_.erase(it);
      return true;
    }
  }
  return false;
}

uint64_t Catalog::next_table_id() const {
  std::shared_lock lock(mutex_);
  return next_id_;
}

void Catalog::set_next_table_id(uint64_t id) {
  std::unique_lock lock(mutex_);
  next_id_ = std::max(next_id_, id);
}

Result<std::shared_ptr<Table>> Catalog::GetTable(std::string_view name) const {
  std::shared_lock lock(mutex_);
  auto it = tables_.find(name);
  if (it == tables_.end())
    return Status::NotFound("table '" + std::string(name) + "' does not exist");
  return it->second;
}

std::vector<std::string> Catalog::ListTables() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> names;
  for (const auto& [name, table] : tables_) names.push_back(name);
  return names;
}

std::vector<std::shared_ptr<Table>> Catalog::Tables() const {
  std::shared_lock lock(mutex_);
  std::vector<std::shared_ptr<Table>> tables;
  for (const auto& [name, table] : tables_) tables.push_back(table);
  return tables;
}

Catalog::~Catalog() {
  expiry_.Stop();
  // A table a reader still holds outlives the catalog, not its memory limit.
  for (const auto& [name, table] : tables_) table->AttachMemoryLimit(nullptr);
}

int64_t Catalog::ExpireCycle(int64_t budget_us) {
  const std::vector<std::shared_ptr<Table>> tables = Tables();
  int64_t reclaimed = 0;
  for (const std::shared_ptr<Table>& table : tables) {
    reclaimed += table->ExpireCycle(budget_us / static_cast<int64_t>(tables.size()) + 1);
    table->PromoteQueued();
  }
  return reclaimed;
}

void Catalog::StartActiveExpiry(int hz) {
  ActiveExpiry::Start(expiry_, hz, [this](int64_t budget_us) { ExpireCycle(budget_us); });
}

}  // namespace quiver
