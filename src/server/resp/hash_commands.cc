// The hash commands of the RESP command table: HSET, HMSET, HGET, HMGET, HGETALL, HKEYS, HVALS,
// HDEL, HEXISTS, HLEN, HINCRBY, HSCAN. The read commands also read a feature table's row as a
// hash ("<table><separator><key>", tables.h) when the keyspace has no such key.
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/resp/command_context.h"
#include "server/resp/tables.h"

namespace quiver::resp {
namespace {

using kv::Entry;
using kv::Hash;
using kv::Keyspace;
using kv::Type;

// The hash at `key`: null when missing, kWrongType when the key holds another type.
OpResult<Entry*> FindHash(Keyspace::View& view, std::string_view key) {
  Entry* entry = view.Find(key);
  if (entry != nullptr && entry->type() != Type::kHash) return OpStatus::kWrongType;
  return entry;
}

// Adds `delta` to the integer in a field of the hash at `key` (both made when missing).
OpResult<int64_t> OpHIncrBy(Keyspace::View& view, std::string_view key, std::string_view field,
                            int64_t delta) {
  const OpResult<Entry*> found = FindHash(view, key);
  if (!found.ok()) return found.status();
  Entry* entry = *found;
  int64_t value = 0;
  if (entry != nullptr) {
    const std::optional<std::string_view> old = entry->hash().Find(field);
    if (old && !ParseInt(*old, &value)) return OpStatus::kHashValueNotInteger;
  }
  int64_t result;
  if (__builtin_add_overflow(value, delta, &result)) return OpStatus::kOverflow;
  if (entry == nullptr) entry = view.NewHash(key);
  view.HashSet(key, entry, field, std::to_string(result));
  return result;
}

void HSet(Context& c, bool reply_ok) {
  if (c.args.size() % 2 != 0) {
    return c.Fail(OpStatus::kWrongArity);
  }
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<Entry*> found = FindHash(view, c.args[1]);
  if (!found.ok()) return c.Fail(found.status());
  Entry* entry = *found;
  if (entry == nullptr && c.server.catalog != nullptr) {
    // Not a keyspace hash: a table's row, when the key names a table (tables.h).
    std::vector<std::pair<std::string_view, std::string_view>> fields;
    for (size_t i = 2; i < c.args.size(); i += 2) fields.emplace_back(c.args[i], c.args[i + 1]);
    std::optional<Result<int64_t>> written =
        WriteTableRow(*c.server.catalog, c.server.table_separator, c.args[1], fields);
    if (written) {
      if (!written->ok()) return c.reply.Error("ERR " + written->status().message());
      return reply_ok ? c.reply.Simple("OK") : c.reply.Integer(**written);
    }
  }
  if (entry == nullptr) {
    size_t packed_bytes = 0;  // one node for the whole command, when the hash stays packed
    for (size_t i = 2; i < c.args.size(); i += 2) {
      packed_bytes += kv::HashPackedBytes(c.args[i], c.args[i + 1]);
    }
    entry = view.NewHash(c.args[1], packed_bytes);
  }
  int64_t added = 0;
  for (size_t i = 2; i < c.args.size(); i += 2) {
    bool fresh;
    entry = view.HashSet(c.args[1], entry, c.args[i], c.args[i + 1], &fresh);
    added += fresh ? 1 : 0;
  }
  reply_ok ? c.reply.Simple("OK") : c.reply.Integer(added);
}

// The hash read commands: `reply(hash)` runs with the keyspace's Hash, under its shard's
// lock, when the keyspace holds a hash at c.args[1]; otherwise with the feature table's row there
// (an optional<TableRow>; keyspace keys shadow rows, tables.h). It does not run after a WRONGTYPE
// reply. FieldOf, SizeOf and PairsOf read either.
template <typename Reply>
void ReadHash(Context& c, Reply&& reply) {
  {
    auto view = c.keyspace().Lock(c.args[1]);
    const OpResult<Entry*> found = FindHash(view, c.args[1]);
    if (!found.ok()) return c.Fail(found.status());
    if (*found != nullptr) return reply((*found)->hash());
  }
  std::optional<TableRow> row;
  if (c.server.catalog != nullptr) {
    row = ReadTableRow(*c.server.catalog, c.server.table_separator, c.args[1]);
  }
  reply(row);
}

// A field's value in a hash or a row; null when absent.
std::optional<std::string_view> FieldOf(const Hash& hash, std::string_view field) {
  return hash.Find(field);
}
std::optional<std::string_view> FieldOf(const std::optional<TableRow>& row,
                                        std::string_view field) {
  if (!row) return std::nullopt;
  for (const auto& [name, value] : row->fields) {
    if (name == field) return value;
  }
  return std::nullopt;
}
size_t SizeOf(const Hash& hash) { return hash.size(); }
size_t SizeOf(const std::optional<TableRow>& row) { return row ? row->fields.size() : 0; }
// The (field, value) pairs.
const Hash& PairsOf(const Hash& hash) { return hash; }
const std::vector<std::pair<std::string, std::string>>& PairsOf(
    const std::optional<TableRow>& row) {
  static const std::vector<std::pair<std::string, std::string>> kNone;
  return row ? row->fields : kNone;
}

void ReplyField(ReplyWriter& reply, std::optional<std::string_view> value) {
  value ? reply.Bulk(*value) : reply.Null();
}

void HGet(Context& c) {
  auto reply = [&](const auto& hash) { ReplyField(c.reply, FieldOf(hash, c.args[2])); };
  ReadHash(c, reply);
}

void HMGet(Context& c) {
  auto reply = [&](const auto& hash) {
    c.reply.Array(c.args.size() - 2);
    for (size_t i = 2; i < c.args.size(); ++i) ReplyField(c.reply, FieldOf(hash, c.args[i]));
  };
  ReadHash(c, reply);
}

// HGETALL (fields and values), HKEYS, HVALS.
void HAll(Context& c, bool fields, bool values) {
  auto reply = [&](const auto& hash) {
    if (fields && values) {
      c.reply.Map(SizeOf(hash));
    } else {
      c.reply.Array(SizeOf(hash));
    }
    for (const auto& [field, value] : PairsOf(hash)) {
      if (fields) c.reply.Bulk(field);
      if (values) c.reply.Bulk(value);
    }
  };
  ReadHash(c, reply);
}

void HDel(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<Entry*> found = FindHash(view, c.args[1]);
  if (!found.ok()) return c.Fail(found.status());
  Entry* entry = *found;
  if (entry == nullptr) return c.reply.Integer(0);
  int64_t deleted = 0;
  for (size_t i = 2; i < c.args.size(); ++i) {
    bool found;
    entry = view.HashDelete(c.args[1], entry, c.args[i], &found);
    deleted += found ? 1 : 0;
  }
  if (entry->hash().empty()) view.Erase(c.args[1]);  // an empty hash is no key
  c.reply.Integer(deleted);
}

void HExists(Context& c) {
  auto reply = [&](const auto& hash) {
    c.reply.Integer(FieldOf(hash, c.args[2]).has_value() ? 1 : 0);
  };
  ReadHash(c, reply);
}

void HLen(Context& c) {
  auto reply = [&](const auto& hash) { c.reply.Integer(static_cast<int64_t>(SizeOf(hash))); };
  ReadHash(c, reply);
}

void HIncrBy(Context& c) {
  int64_t delta;
  if (!ParseInt(c.args[3], &delta)) return c.Fail(OpStatus::kNotInteger);
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<int64_t> result = OpHIncrBy(view, c.args[1], c.args[2], delta);
  result.ok() ? c.reply.Integer(*result) : c.Fail(result.status());
}

// HSCAN key cursor [MATCH pattern] [COUNT count]: the whole hash in one reply (cursor 0), which
// SCAN's contract allows (COUNT is a hint).
void HScan(Context& c) {
  ScanArgs scan;
  if (!ParseScanArgs(c, 2, /*with_type=*/false, &scan)) return;
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<Entry*> found = FindHash(view, c.args[1]);
  if (!found.ok()) return c.Fail(found.status());
  std::vector<std::pair<std::string_view, std::string_view>> matched;
  if (*found != nullptr) {
    for (const auto& [field, value] : (*found)->hash()) {
      if (kv::Keyspace::Match(scan.pattern, field)) matched.emplace_back(field, value);
    }
  }
  c.reply.Array(2);
  c.reply.Bulk("0");
  c.reply.Array(matched.size() * 2);
  for (const auto& [field, value] : matched) {
    c.reply.Bulk(field);
    c.reply.Bulk(value);
  }
}

}  // namespace

void AddHashCommands(std::vector<CommandSpec>& table) {
  table.insert(
      table.end(),
      {
          {"hset", -4, kWrite | kDenyOom | kFast, 1, 1, 1, "hash", "Sets fields of a hash.",
           [](Context& c) { HSet(c, false); }},
          {"hmset", -4, kWrite | kDenyOom | kFast, 1, 1, 1, "hash", "Sets fields of a hash.",
           [](Context& c) { HSet(c, true); }},
          {"hget", 3, kReadOnly | kFast, 1, 1, 1, "hash", "Returns a field of a hash.", HGet},
          {"hmget", -3, kReadOnly | kFast, 1, 1, 1, "hash", "Returns fields of a hash.", HMGet},
          {"hgetall", 2, kReadOnly, 1, 1, 1, "hash", "Returns every field and value of a hash.",
           [](Context& c) { HAll(c, true, true); }},
          {"hkeys", 2, kReadOnly, 1, 1, 1, "hash", "Returns the fields of a hash.",
           [](Context& c) { HAll(c, true, false); }},
          {"hvals", 2, kReadOnly, 1, 1, 1, "hash", "Returns the values of a hash.",
           [](Context& c) { HAll(c, false, true); }},
          {"hdel", -3, kWrite | kFast, 1, 1, 1, "hash", "Deletes fields of a hash.", HDel},
          {"hexists", 3, kReadOnly | kFast, 1, 1, 1, "hash", "Whether a field exists.", HExists},
          {"hlen", 2, kReadOnly | kFast, 1, 1, 1, "hash", "Returns the number of fields.", HLen},
          {"hincrby", 4, kWrite | kDenyOom | kFast, 1, 1, 1, "hash", "Adds to an integer field.",
           HIncrBy},
          {"hscan", -3, kReadOnly, 1, 1, 1, "hash", "Iterates over the fields of a hash.", HScan},
      });
}

}  // namespace quiver::resp
