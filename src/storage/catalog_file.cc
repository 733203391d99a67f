#include "storage/catalog_file.h"

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/crc32c.h"
#include "common/json_shape.h"

namespace quiver::storage {
namespace {

constexpr std::string_view kMagic = "QUIVER-CATALOG 1 crc32c=";

nlohmann::ordered_json SnapshotJson(const std::optional<SnapshotFile>& snapshot) {
  if (!snapshot) return nullptr;
  return {{"file", snapshot->name},
          {"lsn", snapshot->lsn},
          {"rows", snapshot->rows},
          {"bytes", snapshot->bytes},
          {"crc32c", snapshot->crc32c}};
}

// False when the file is named outside the snapshot directory. Throws on a malformed object.
bool ReadSnapshotJson(const nlohmann::ordered_json& json, std::optional<SnapshotFile>* out) {
  if (json.is_null()) return true;
  SnapshotFile file;
  file.name = json.at("file").get<std::string>();
  file.lsn = json.at("lsn").get<uint64_t>();
  file.rows = json.at("rows").get<int64_t>();
  file.bytes = json.at("bytes").get<uint64_t>();
  file.crc32c = json.at("crc32c").get<uint32_t>();
  if (file.name.find('/') != std::string::npos) return false;
  *out = std::move(file);
  return true;
}

}  // namespace

uint64_t CatalogFile::replay_from() const {
  uint64_t from = lsn + 1;
  for (const CatalogEntry& table : tables) from = std::min(from, table.lsn + 1);
  return std::min(from, keyspace.lsn + 1);
}

std::string EncodeCatalog(const CatalogFile& catalog) {
  nlohmann::ordered_json tables = nlohmann::ordered_json::array();
  for (const CatalogEntry& table : catalog.tables) {
    nlohmann::ordered_json entry = {{"id", table.id},
                                    {"name", table.name},
                                    {"schema", nlohmann::ordered_json::parse(table.schema_json)},
                                    {"lsn", table.lsn}};
    entry["snapshot"] = SnapshotJson(table.snapshot);
    tables.push_back(std::move(entry));
  }
  nlohmann::ordered_json document = {
      {"format", 1},
      {"lsn", catalog.lsn},
      {"next_table_id", catalog.next_table_id},
      {"tables", std::move(tables)},
      {"keyspace",
       {{"lsn", catalog.keyspace.lsn}, {"snapshot", SnapshotJson(catalog.keyspace.snapshot)}}}};
  const std::string body = document.dump(2) + "\n";
  char header[64];
  std::snprintf(header, sizeof(header), "%s%08" PRIx32 "\n", std::string(kMagic).c_str(),
                Crc32c(body));
  return header + body;
}

Result<CatalogFile> DecodeCatalog(const std::string& path, std::string_view text) {
  auto corrupt = [&](const std::string& what) {
    return Status::Corruption("catalog '" + path + "' " + what +
                              "; quiverd cannot know which tables and snapshots are current");
  };
  const size_t newline = text.find('\n');
  if (!text.starts_with(kMagic) || newline != kMagic.size() + 8) {
    return corrupt("does not start with the catalog header line");
  }
  uint32_t recorded = 0;
  if (std::sscanf(std::string(text.substr(kMagic.size(), 8)).c_str(), "%8" SCNx32, &recorded) !=
      1) {
    return corrupt("has an unreadable checksum");
  }
  const std::string_view body = text.substr(newline + 1);
  if (Crc32c(body) != recorded) return corrupt("fails its checksum");
  if (Status shape = CheckJsonShape(body, "the catalog"); !shape.ok()) {
    return corrupt("is not a catalog: " + shape.message());
  }
  CatalogFile catalog;
  try {
    const nlohmann::ordered_json document = nlohmann::ordered_json::parse(body);
    if (document.at("format").get<int>() != 1) return corrupt("has an unknown format");
    catalog.lsn = document.at("lsn").get<uint64_t>();
    catalog.next_table_id = document.at("next_table_id").get<uint64_t>();
    for (const auto& entry : document.at("tables")) {
      CatalogEntry table;
      table.id = entry.at("id").get<uint64_t>();
      table.name = entry.at("name").get<std::string>();
      table.schema_json = entry.at("schema").dump();
      table.lsn = entry.at("lsn").get<uint64_t>();
      if (!ReadSnapshotJson(entry.at("snapshot"), &table.snapshot)) {
        return corrupt("names a snapshot outside its directory");
      }
      catalog.tables.push_back(std::move(table));
    }
    // Written since the key-value keyspace became durable; older catalogs have none.
    if (const auto keyspace = document.find("keyspace"); keyspace != document.end()) {
      catalog.keyspace.lsn = keyspace->at("lsn").get<uint64_t>();
      if (!ReadSnapshotJson(keyspace->at("snapshot"), &catalog.keyspace.snapshot)) {
        return corrupt("names a snapshot outside its directory");
      }
    } else {
      catalog.keyspace.lsn = catalog.lsn;
    }
  } catch (const nlohmann::json::exception& e) {
    return corrupt(std::string("is not a valid catalog: ") + e.what());
  }
  return catalog;
}

}  // namespace quiver::storage
