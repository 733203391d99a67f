// The feature-table commands of the RESP command table: QUIVER.FETCH (tables.h), QUIVER.ALTER and
// QUIVER.DESCRIBE. (The hash read commands read a table's row too: hash_commands.cc.)
#include <string>
#include <vector>

#include "engine/schema_change.h"
#include "server/codec/codec.h"
#include "server/resp/command_context.h"
#include "server/resp/tables.h"

namespace quiver::resp {
namespace {

// QUIVER.FETCH table numkeys key [key ...] [FOUND] [COLUMNS column [column ...]]: the rows as
// one Arrow IPC stream in a bulk string (tables.h).
void QuiverFetch(Context& c) {
  if (c.server.catalog == nullptr) return c.Fail(OpStatus::kNoTables);
  int64_t count;
  if (!ParseInt(c.args[2], &count) || count < 1) {
    return c.reply.Error("ERR numkeys must be a positive integer");
  }
  if (static_cast<size_t>(count) > c.args.size() - 3) {
    return c.reply.Error("ERR numkeys is larger than the number of keys given");
  }
  const std::vector<std::string_view> keys(c.args.begin() + 3, c.args.begin() + 3 + count);
  bool found = false;
  std::vector<std::string> columns;
  for (size_t i = 3 + static_cast<size_t>(count); i < c.args.size(); ++i) {
    if (Is(c.args[i], "found")) {
      found = true;
    } else if (Is(c.args[i], "columns") && i + 1 < c.args.size()) {
      columns.assign(c.args.begin() + static_cast<std::ptrdiff_t>(i) + 1, c.args.end());
      break;
    } else {
      return c.Fail(OpStatus::kSyntax);
    }
  }
  Result<std::string> ipc =
      FetchTableIpc(*c.server.catalog, c.args[1], keys, columns, found, c.server.table_separator);
  if (!ipc.ok()) return c.reply.Error("ERR " + ipc.status().message());
  c.reply.Bulk(*ipc);
}

// QUIVER.ALTER table change: changes the table's schema online (change: the JSON of
// docs/schema.md, "Changing a schema"); replies with the schema after the change.
void QuiverAlter(Context& c) {
  if (c.server.catalog == nullptr) return c.Fail(OpStatus::kNoTables);
  Result<SchemaChange> change =
      SchemaChange::FromJson(c.args[2], c.server.catalog->options().limits);
  if (!change.ok()) return c.reply.Error("ERR " + change.status().message());
  Result<std::shared_ptr<Table>> table = c.server.catalog->AlterTable(c.args[1], *change);
  if (!table.ok()) return c.reply.Error("ERR " + table.status().message());
  c.reply.Bulk((*table)->schema().ToJson());
}

// QUIVER.DESCRIBE table: the table's rows, bytes, key, TTL and columns, as JSON.
void QuiverDescribe(Context& c) {
  if (c.server.catalog == nullptr) return c.Fail(OpStatus::kNoTables);
  Result<std::shared_ptr<Table>> table = c.server.catalog->GetTable(c.args[1]);
  if (!table.ok()) return c.reply.Error("ERR " + table.status().message());
  c.reply.Bulk(codec::TableInfoToJson(**table));
}

}  // namespace

void AddTableCommands(std::vector<CommandSpec>& table) {
  table.push_back({"quiver.fetch", -4, kReadOnly, 0, 0, 0, "quiver",
                   "Returns keys x columns of a feature table as an Arrow IPC stream.",
                   QuiverFetch});
  table.push_back({"quiver.alter", 3, 0, 0, 0, 0, "quiver",
                   "Changes a feature table's schema online (add, drop, rename, alter, ttl).",
                   QuiverAlter});
  table.push_back({"quiver.describe", 2, kReadOnly, 0, 0, 0, "quiver",
                   "Returns a feature table's rows, bytes, key, TTL and columns as JSON.",
                   QuiverDescribe});
}

}  // namespace quiver::resp
