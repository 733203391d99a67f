#include "engine/catalog.h"

#include <mutex>

namespace quiver {

Result<std::shared_ptr<Table>> Catalog::CreateTable(std::string_view name, TableSchema schema) {
  QUIVER_RETURN_NOT_OK(CheckTableName(name));
  {
    std::shared_lock lock(mutex_);
    if (tables_.find(name) != tables_.end()) {
      return Status::AlreadyExists("table '" + std::string(name) + "' already exists");
    }
  }
  // Built outside the lock: creating regions may take a moment.
  QUIVER_ASSIGN_OR_RETURN(
      std::shared_ptr<Table> table,
      Table::Make(std::string(name), std::move(schema), options_.limits, options_.backing));
  std::unique_lock lock(mutex_);
  auto [it, inserted] = tables_.emplace(std::string(name), table);
  if (!inserted) return Status::AlreadyExists("table '" + std::string(name) + "' already exists");
  return table;
}

Status Catalog::DropTable(std::string_view name) {
  std::shared_ptr<Table> dropped;  // destroyed after the lock is released
  std::unique_lock lock(mutex_);
  auto it = tables_.find(name);
  if (it == tables_.end())
    return Status::NotFound("table '" + std::string(name) + "' does not exist");
  dropped = std::move(it->second);
  tables_.erase(it);
  lock.unlock();
  return Status::OK();
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

}  // namespace quiver
