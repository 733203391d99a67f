#include "server/snapshot_json.h"

#include <nlohmann/json.hpp>

namespace quiver::server {

std::string SnapshotReportToJson(const storage::SnapshotReport& report) {
  nlohmann::ordered_json tables = nlohmann::ordered_json::array();
  for (const auto& table : report.tables) {
    tables.push_back({{"table", table.table},
                      {"written", table.written},
                      {"rows", table.rows},
                      {"bytes", table.bytes},
                      {"lsn", table.lsn},
                      {"seconds", table.seconds}});
  }
  nlohmann::ordered_json json = {{"tables", std::move(tables)}};
  if (report.keyspace) {
    json["keyspace"] = {{"written", report.keyspace->written},
                        {"keys", report.keyspace->rows},
                        {"bytes", report.keyspace->bytes},
                        {"lsn", report.keyspace->lsn},
                        {"seconds", report.keyspace->seconds}};
  }
  json["wal_segments_removed"] = report.wal_segments_removed;
  json["seconds"] = report.seconds;
  return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace quiver::server
