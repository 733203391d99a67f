#include "storage/catalog_file.h"

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/crc32c.h"

namespace quiver::storage {
namespace {

constexpr std::string_view kMagic = "QUIVER-CATALOG 1 crc32c=";

}  // namespace

uint64_t CatalogFile::replay_from() const {
  uint64_t from = lsn + 1;
  for (const CatalogEntry& table : tables) from = std::min(from, table.lsn + 1);
  return from;
}

std::string EncodeCatalog(const CatalogFile& catalog) {
  nlohmann::ordered_json tables = nlohmann::ordered_json::array();
  for (const CatalogEntry& table : catalog.tables) {
    nlohmann::ordered_json entry = {{"id", table.id},
                                    {"name", table.name},
                                    {"schema", nlohmann::ordered_json::parse(table.schema_json)},
                                    {"lsn", table.lsn}};
    if (table.snapshot) {
      entry["snapshot"] = {{"file", table.snapshot->name},
                           {"lsn", table.snapshot->lsn},
                           {"rows", table.snapshot->rows},
                           {"bytes", table.snapshot->bytes},
                           {"crc32c", table.snapshot->crc32c}};
    } else {
      entry["snapshot"] = nullptr;
    }
    tables.push_back(std::move(entry));
  }
  nlohmann::ordered_json document = {{"format", 1},
                                     {"lsn", catalog.lsn},
                                     {"next_table_id", catalog.next_table_id},
                                     {"tables", std::move(tables)}};
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
      if (const auto& snapshot = entry.at("snapshot"); !snapshot.is_null()) {
        SnapshotFile file;
        file.name = snapshot.at("file").get<std::string>();
        file.lsn = snapshot.at("lsn").get<uint64_t>();
        file.rows = snapshot.at("rows").get<int64_t>();
        file.bytes = snapshot.at("bytes").get<uint64_t>();
        file.crc32c = snapshot.at("crc32c").get<uint32_t>();
        if (file.name.find('/') != std::string::npos)
          return corrupt("names a snapshot outside its directory");
        table.snapshot = std::move(file);
      }
      catalog.tables.push_back(std::move(table));
    }
  } catch (const nlohmann::json::exception& e) {
    return corrupt(std::string("is not a valid catalog: ") + e.what());
  }
  return catalog;
}

}  // namespace quiver::storage
