// The generic key commands of the RESP command table: DEL, EXISTS, TYPE, the EXPIRE and TTL
// families, PERSIST, RENAME, KEYS, SCAN, RANDOMKEY, FLUSHDB / FLUSHALL; and the expiry and scan
// arguments other families share. DEL, EXISTS, TYPE, TTL, PTTL and SCAN also see feature-table
// rows ("<table><separator><key>", tables.h) where the keyspace has no such key.
#include <charconv>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "server/resp/command_context.h"
#include "server/resp/tables.h"

namespace quiver::resp {

using kv::Entry;
using kv::Millis;
using kv::Type;

bool ExpireAt(std::string_view text, int64_t unit_ms, bool absolute, Millis now, bool positive,
              Millis* at) {
  int64_t value;
  if (!ParseInt(text, &value)) return false;
  if (positive && value <= 0) return false;
  if (value > std::numeric_limits<int64_t>::max() / unit_ms ||
      value < std::numeric_limits<int64_t>::min() / unit_ms) {
    return false;
  }
  value *= unit_ms;
  if (!absolute) {
    if (value > 0 && value > std::numeric_limits<int64_t>::max() - now) return false;
    value += now;
  }
  *at = value;
  return true;
}

bool IsExpireOption(std::string_view option) {
  return Is(option, "ex") || Is(option, "px") || Is(option, "exat") || Is(option, "pxat");
}

bool ParseExpireOption(Context& c, std::string_view option, std::string_view value, Millis* at) {
  const bool seconds = Is(option, "ex") || Is(option, "exat");
  const bool absolute = Is(option, "exat") || Is(option, "pxat");
  if (ExpireAt(value, seconds ? 1000 : 1, absolute, c.keyspace().Now(), true, at)) return true;
  c.Fail(OpStatus::kInvalidExpireTime);
  return false;
}

bool ParseScanArgs(Context& c, size_t first, bool with_type, ScanArgs* out) {
  const std::string_view cursor = c.args[first];
  auto [end, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), out->cursor);
  if (ec != std::errc() || end != cursor.data() + cursor.size()) {
    c.Fail(OpStatus::kInvalidCursor);
    return false;
  }
  for (size_t i = first + 1; i < c.args.size(); i += 2) {
    if (i + 1 >= c.args.size()) {
      c.Fail(OpStatus::kSyntax);
      return false;
    }
    if (Is(c.args[i], "match")) {
      out->pattern = c.args[i + 1];
    } else if (Is(c.args[i], "count")) {
      if (!ParseInt(c.args[i + 1], &out->count)) {
        c.Fail(OpStatus::kNotInteger);
        return false;
      }
      if (out->count < 1) {
        c.Fail(OpStatus::kSyntax);
        return false;
      }
    } else if (with_type && Is(c.args[i], "type")) {
      if (Is(c.args[i + 1], "string")) {
        out->type = Type::kString;
      } else if (Is(c.args[i + 1], "hash")) {
        out->type = Type::kHash;
      } else {
        out->no_type = true;
      }
    } else {
      c.Fail(OpStatus::kSyntax);
      return false;
    }
  }
  return true;
}

namespace {

// The remaining TTL of the table row at `key` (-1: none); nullopt when there is no such row.
std::optional<int64_t> RowTtl(Context& c, std::string_view key) {
  if (c.server.catalog == nullptr) return std::nullopt;
  return TableRowTtlMs(*c.server.catalog, c.server.table_separator, key);
}

void Del(Context& c) {
  Args keys(c.args.begin() + 1, c.args.end());
  std::vector<std::string_view> rows;  // not keyspace keys: maybe table rows
  int64_t deleted = 0;
  {
    auto view = c.keyspace().Lock(keys);
    for (std::string_view key : keys) {
      if (view.Erase(key)) {
        ++deleted;
      } else {
        rows.push_back(key);
      }
    }
  }
  if (c.server.catalog == nullptr) rows.clear();
  for (std::string_view key : rows) {
    std::optional<Result<int64_t>> row =
        DeleteTableRow(*c.server.catalog, c.server.table_separator, key);
    if (row && !row->ok()) return c.reply.Error("ERR " + row->status().message());
    if (row) deleted += **row;
  }
  c.reply.Integer(deleted);
}

void Exists(Context& c) {
  Args keys(c.args.begin() + 1, c.args.end());
  std::vector<std::string_view> rows;
  int64_t found = 0;
  {
    auto view = c.keyspace().Lock(keys);
    for (std::string_view key : keys) {
      if (view.Find(key) != nullptr) {
        ++found;
      } else {
        rows.push_back(key);
      }
    }
  }
  for (std::string_view key : rows) found += RowTtl(c, key) ? 1 : 0;
  c.reply.Integer(found);
}

void TypeOf(Context& c) {
  {
    auto view = c.keyspace().Lock(c.args[1]);
    if (Entry* entry = view.Find(c.args[1]); entry != nullptr) {
      return c.reply.Simple(kv::TypeName(entry->type()));
    }
  }
  c.reply.Simple(RowTtl(c, c.args[1]) ? "hash" : "none");
}

// EXPIRE key seconds [NX | XX | GT | LT] (and PEXPIRE, EXPIREAT, PEXPIREAT).
void Expire(Context& c, int64_t unit_ms, bool absolute) {
  const Millis now = c.keyspace().Now();
  Millis at;
  if (!ExpireAt(c.args[2], unit_ms, absolute, now, false, &at)) {
    int64_t unused;
    if (!ParseInt(c.args[2], &unused)) return c.Fail(OpStatus::kNotInteger);
    return c.Fail(OpStatus::kInvalidExpireTime);
  }
  bool nx = false, xx = false, gt = false, lt = false;
  for (size_t i = 3; i < c.args.size(); ++i) {
    if (Is(c.args[i], "nx")) {
      nx = true;
    } else if (Is(c.args[i], "xx")) {
      xx = true;
    } else if (Is(c.args[i], "gt")) {
      gt = true;
    } else if (Is(c.args[i], "lt")) {
      lt = true;
    } else {
      return c.reply.Error("ERR Unsupported option " + std::string(c.args[i]));
    }
  }
  if (nx && (xx || gt || lt)) {
    return c.reply.Error("ERR NX and XX, GT or LT options at the same time are not compatible");
  }
  if (gt && lt) {
    return c.reply.Error("ERR GT and LT options at the same time are not compatible");
  }
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) return c.reply.Integer(0);
  const Millis current = entry->expire_at();  // 0: none, which GT/LT treat as infinite
  if ((nx && current != 0) || (xx && current == 0) || (gt && (current == 0 || at <= current)) ||
      (lt && current != 0 && at >= current)) {
    return c.reply.Integer(0);
  }
  if (at <= now) {  // a time already past deletes the key
    view.Erase(c.args[1]);
  } else {
    view.SetExpire(c.args[1], entry, at);
  }
  c.reply.Integer(1);
}

void Ttl(Context& c, bool millis) {
  Millis left;
  {
    auto view = c.keyspace().Lock(c.args[1]);
    Entry* entry = view.Find(c.args[1]);
    left = entry == nullptr          ? -2
           : entry->expire_at() == 0 ? -1
                                     : std::max<Millis>(0, entry->expire_at() - view.now());
  }
  if (left == -2) left = RowTtl(c, c.args[1]).value_or(-2);
  if (left < 0) return c.reply.Integer(left);
  c.reply.Integer(millis ? left : (left + 500) / 1000);
}

void ExpireTime(Context& c, bool millis) {
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) return c.reply.Integer(-2);
  if (entry->expire_at() == 0) return c.reply.Integer(-1);
  c.reply.Integer(millis ? entry->expire_at() : entry->expire_at() / 1000);
}

void Persist(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr || entry->expire_at() == 0) return c.reply.Integer(0);
  view.SetExpire(c.args[1], entry, 0);
  c.reply.Integer(1);
}

void Rename(Context& c, bool only_if_none) {
  auto view = c.keyspace().Lock({c.args[1], c.args[2]});
  if (view.Find(c.args[1]) == nullptr) return c.Fail(OpStatus::kNoSuchKey);
  if (c.args[1] == c.args[2]) return only_if_none ? c.reply.Integer(0) : c.reply.Simple("OK");
  if (only_if_none && view.Find(c.args[2]) != nullptr) return c.reply.Integer(0);
  view.Rename(c.args[1], c.args[2]);
  only_if_none ? c.reply.Integer(1) : c.reply.Simple("OK");
}

void Keys(Context& c) {
  const std::vector<std::string> keys = c.keyspace().Keys(c.args[1]);
  c.reply.Array(keys.size());
  for (const std::string& key : keys) c.reply.Bulk(key);
}

// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
// The table a SCAN pattern names ("<table><separator>..." with no glob character in the table's
// name), when the catalog has it.
std::optional<std::string> ScannedTable(Context& c, std::string_view pattern) {
  const std::string& separator = c.server.table_separator;
  if (c.server.catalog == nullptr || separator.empty()) return std::nullopt;
  const size_t at = pattern.find(separator);
  if (at == std::string_view::npos) return std::nullopt;
  const std::string_view name = pattern.substr(0, at);
  if (name.find_first_of("*?[\\") != std::string_view::npos) return std::nullopt;
  if (!c.server.catalog->GetTable(name).ok()) return std::nullopt;
  return std::string(name);
}

// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]: the keyspace's keys, then, when the
// pattern names a table ("users:*"), that table's rows (hashes): their cursors carry
// kv::kScanTableCursor, the row position below it.
void Scan(Context& c) {
  ScanArgs scan;
  if (!ParseScanArgs(c, 1, /*with_type=*/true, &scan)) return;
  std::vector<std::string> keys;
  const std::optional<std::string> table = ScannedTable(c, scan.pattern);
  const bool rows = table && !scan.no_type && (!scan.type || *scan.type == Type::kHash);
  uint64_t next = 0;
  if ((scan.cursor & kv::kScanTableCursor) == 0) {
    next = c.keyspace().Scan(scan.cursor, static_cast<size_t>(scan.count), scan.pattern, scan.type,
                             &keys);
    if (scan.no_type) keys.clear();
    if (next == 0 && rows) next = kv::kScanTableCursor;  // the table's rows come next
  } else if (rows) {
    auto position = static_cast<uint32_t>(scan.cursor & ~kv::kScanTableCursor);
    for (std::string& key : TableRowKeys(*c.server.catalog, *table, c.server.table_separator,
                                         &position, static_cast<size_t>(scan.count))) {
      if (kv::Keyspace::Match(scan.pattern, key)) keys.push_back(std::move(key));
    }
    next = position == 0 ? 0 : kv::kScanTableCursor | position;
  }
  c.reply.Array(2);
  c.reply.Bulk(std::to_string(next));
  c.reply.Array(keys.size());
  for (const std::string& key : keys) c.reply.Bulk(key);
}

void RandomKey(Context& c) {
  std::optional<std::string> key = c.keyspace().RandomKey();
  key ? c.reply.Bulk(*key) : c.reply.Null();
}

void Flush(Context& c) {
  if (c.args.size() > 2 ||
      (c.args.size() == 2 && !Is(c.args[1], "sync") && !Is(c.args[1], "async"))) {
    return c.Fail(OpStatus::kSyntax);
  }
  c.keyspace().Clear();
  c.reply.Simple("OK");
}

}  // namespace

void AddKeyCommands(std::vector<CommandSpec>& table) {
  table.insert(
      table.end(),
      {
          {"del", -2, kWrite, 1, -1, 1, "generic", "Deletes keys.", Del},
          {"unlink", -2, kWrite | kFast, 1, -1, 1, "generic", "Deletes keys.", Del},
          {"exists", -2, kReadOnly | kFast, 1, -1, 1, "generic", "Counts the keys that exist.",
           Exists},
          {"type", 2, kReadOnly | kFast, 1, 1, 1, "generic", "Returns a key's type.", TypeOf},
          {"expire", -3, kWrite | kFast, 1, 1, 1, "generic", "Sets a TTL in seconds.",
           [](Context& c) { Expire(c, 1000, false); }},
          {"pexpire", -3, kWrite | kFast, 1, 1, 1, "generic", "Sets a TTL in milliseconds.",
           [](Context& c) { Expire(c, 1, false); }},
          {"expireat", -3, kWrite | kFast, 1, 1, 1, "generic", "Sets an expiry as Unix seconds.",
           [](Context& c) { Expire(c, 1000, true); }},
          {"pexpireat", -3, kWrite | kFast, 1, 1, 1, "generic",
           "Sets an expiry as Unix milliseconds.", [](Context& c) { Expire(c, 1, true); }},
          {"ttl", 2, kReadOnly | kFast, 1, 1, 1, "generic", "Returns the TTL in seconds.",
           [](Context& c) { Ttl(c, false); }},
          {"pttl", 2, kReadOnly | kFast, 1, 1, 1, "generic", "Returns the TTL in milliseconds.",
           [](Context& c) { Ttl(c, true); }},
          {"expiretime", 2, kReadOnly | kFast, 1, 1, 1, "generic", "Returns the expiry (Unix s).",
           [](Context& c) { ExpireTime(c, false); }},
          {"pexpiretime", 2, kReadOnly | kFast, 1, 1, 1, "generic", "Returns the expiry (Unix ms).",
           [](Context& c) { ExpireTime(c, true); }},
          {"persist", 2, kWrite | kFast, 1, 1, 1, "generic", "Removes a TTL.", Persist},
          {"rename", 3, kWrite, 1, 2, 1, "generic", "Renames a key.",
           [](Context& c) { Rename(c, false); }},
          {"renamenx", 3, kWrite | kFast, 1, 2, 1, "generic",
           "Renames a key if the new name is free.", [](Context& c) { Rename(c, true); }},
          {"keys", 2, kReadOnly, 0, 0, 0, "generic", "Returns the keys matching a pattern.", Keys},
          {"scan", -2, kReadOnly, 0, 0, 0, "generic", "Iterates over the keys.", Scan},
          {"randomkey", 1, kReadOnly, 0, 0, 0, "generic", "Returns a random key.", RandomKey},
          {"flushdb", -1, kWrite, 0, 0, 0, "server", "Deletes every key.", Flush},
          {"flushall", -1, kWrite, 0, 0, 0, "server", "Deletes every key.", Flush},
      });
}

}  // namespace quiver::resp
