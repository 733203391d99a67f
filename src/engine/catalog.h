// Catalog: the named tables of one Quiver instance.
//
// Thread safety: every method may be called from any thread. Lookups take a shared lock for the
// time of a map lookup only and return a shared_ptr, so a table dropped while a request uses it
// stays alive until that request ends.
#pragma once

#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "engine/limits.h"
#include "engine/region.h"
#include "engine/schema.h"
#include "engine/table.h"

namespace quiver {

struct CatalogOptions {
  EngineLimits limits;
  RegionBacking backing = RegionBacking::kAnonymous;
};

class Catalog {
 public:
  explicit Catalog(CatalogOptions options = {}) : options_(options) {}

  // kAlreadyExists when the name is taken; kInvalidArgument for a bad name.
  Result<std::shared_ptr<Table>> CreateTable(std::string_view name, TableSchema schema);
  // kNotFound when absent.
  Status DropTable(std::string_view name);
  Result<std::shared_ptr<Table>> GetTable(std::string_view name) const;
  // Sorted by name.
  std::vector<std::string> ListTables() const;
  std::vector<std::shared_ptr<Table>> Tables() const;

  const CatalogOptions& options() const { return options_; }

 private:
  const CatalogOptions options_;
  mutable std::shared_mutex mutex_;
  std::map<std::string, std::shared_ptr<Table>, std::less<>> tables_;
};

}  // namespace quiver
