#include "server/resp/commands.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <unordered_map>

#include "common/log.h"
#include "server/resp/command_context.h"
#include "server/resp/tables.h"

namespace quiver::resp {
namespace {

using kv::Entry;
using kv::Hash;
using kv::Keyspace;
using kv::Millis;
using kv::Type;

bool ParseDouble(std::string_view text, long double* value) {
  if (text.empty() || text.size() > 5000 || std::isspace(static_cast<unsigned char>(text[0]))) {
    return false;
  }
  std::string copy(text);
  char* end = nullptr;
  errno = 0;
  *value = std::strtold(copy.c_str(), &end);
  return end == copy.c_str() + copy.size() && errno != ERANGE && !std::isnan(*value);
}

std::string FormatDouble(long double value) {
  // Redis prints INCRBYFLOAT results with %.17Lg, trimming trailing zeros of a fraction.
  char buffer[64];
  int length = std::snprintf(buffer, sizeof(buffer), "%.17Lg", value);
  std::string text(buffer, static_cast<size_t>(length));
  if (text.find('.') != std::string::npos && text.find('e') == std::string::npos) {
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
  }
  return text;
}

// ---------------------------------------------------------------------------------------------
// Expiry arguments.

// A relative (unit_ms 1000 or 1) or absolute (absolute) time as an absolute Unix ms; false on
// overflow or a non-positive value when `positive` is required.
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

// `option value` of SET and GETEX (EX s, PX ms, EXAT s, PXAT ms) as an absolute Unix ms time;
// false, with Redis's error replied, for a time that is not a positive integer or overflows.
bool ParseExpireOption(Context& c, std::string_view option, std::string_view value,
                       const char* command, Millis* at) {
  const bool seconds = Is(option, "ex") || Is(option, "exat");
  const bool absolute = Is(option, "exat") || Is(option, "pxat");
  if (ExpireAt(value, seconds ? 1000 : 1, absolute, c.keyspace().Now(), true, at)) return true;
  c.reply.Error(std::string("ERR invalid expire time in '") + command + "' command");
  return false;
}

// ---------------------------------------------------------------------------------------------
// Strings.

void Get(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) return c.reply.Null();
  if (entry->type() != Type::kString) return c.reply.Error(kWrongType);
  c.reply.Bulk(entry->string());
}

// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]
void Set(Context& c) {
  enum { kAny, kNx, kXx } condition = kAny;
  bool get = false, keep_ttl = false, has_expire = false;
  Millis expire_at = 0;
  for (size_t i = 3; i < c.args.size(); ++i) {
    const std::string_view arg = c.args[i];
    if (Is(arg, "nx") && condition != kXx) {
      condition = kNx;
    } else if (Is(arg, "xx") && condition != kNx) {
      condition = kXx;
    } else if (Is(arg, "get")) {
      get = true;
    } else if (Is(arg, "keepttl") && !has_expire) {
      keep_ttl = true;
    } else if (IsExpireOption(arg) && !keep_ttl && !has_expire && i + 1 < c.args.size()) {
      if (!ParseExpireOption(c, arg, c.args[++i], "set", &expire_at)) return;
      has_expire = true;
    } else {
      return c.reply.Error(kSyntax);
    }
  }
  auto view = c.keyspace().Lock(c.args[1]);
  // A plain SET needs no look at the old value (SetString replaces it, in its node if it fits).
  const bool plain = condition == kAny && !get && !keep_ttl;
  Entry* entry = plain ? nullptr : view.Find(c.args[1]);
  if (get && entry != nullptr && entry->type() != Type::kString) return c.reply.Error(kWrongType);
  std::optional<std::string> old;
  if (get && entry != nullptr) old = entry->string();
  const bool write = condition == kAny || (condition == kNx) == (entry == nullptr);
  if (write) {
    const Millis kept = keep_ttl && entry != nullptr ? entry->expire_at() : 0;
    view.SetString(c.args[1], c.args[2], has_expire ? expire_at : kept);
  }
  if (get) return old ? c.reply.Bulk(*old) : c.reply.Null();
  if (!write) return c.reply.Null();
  c.reply.Simple("OK");
}

void SetEx(Context& c, int64_t unit_ms, const char* name) {
  Millis at;
  if (!ExpireAt(c.args[2], unit_ms, false, c.keyspace().Now(), true, &at)) {
    int64_t unused;
    if (!ParseInt(c.args[2], &unused)) return c.reply.Error(kNotInteger);
    return c.reply.Error(std::string("ERR invalid expire time in '") + name + "' command");
  }
  auto view = c.keyspace().Lock(c.args[1]);
  view.SetString(c.args[1], c.args[3], at);
  c.reply.Simple("OK");
}

void SetNx(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  if (view.Find(c.args[1]) != nullptr) return c.reply.Integer(0);
  view.SetString(c.args[1], c.args[2]);
  c.reply.Integer(1);
}

void MGet(Context& c) {
  Args keys(c.args.begin() + 1, c.args.end());
  auto view = c.keyspace().Lock(keys);
  c.reply.Array(keys.size());
  for (std::string_view key : keys) {
    Entry* entry = view.Find(key);
    if (entry == nullptr || entry->type() != Type::kString) {
      c.reply.Null();
    } else {
      c.reply.Bulk(entry->string());
    }
  }
}

void MSet(Context& c, bool only_if_none) {
  if (c.args.size() % 2 != 1) {
    return c.reply.Error("ERR wrong number of arguments for '" + Lower(c.args[0]) + "' command");
  }
  std::vector<std::string_view> keys;
  for (size_t i = 1; i < c.args.size(); i += 2) keys.push_back(c.args[i]);
  auto view = c.keyspace().Lock(keys);
  if (only_if_none) {
    for (std::string_view key : keys) {
      if (view.Find(key) != nullptr) return c.reply.Integer(0);
    }
  }
  for (size_t i = 1; i < c.args.size(); i += 2) view.SetString(c.args[i], c.args[i + 1]);
  if (only_if_none) return c.reply.Integer(1);
  c.reply.Simple("OK");
}

void GetDel(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) return c.reply.Null();
  if (entry->type() != Type::kString) return c.reply.Error(kWrongType);
  c.reply.Bulk(entry->string());
  view.Erase(c.args[1]);
}

// GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]
void GetEx(Context& c) {
  std::optional<Millis> new_expire;  // 0: persist
  if (c.args.size() > 2) {
    const std::string_view option = c.args[2];
    if (Is(option, "persist") && c.args.size() == 3) {
      new_expire = 0;
    } else if (IsExpireOption(option) && c.args.size() == 4) {
      Millis at;
      if (!ParseExpireOption(c, option, c.args[3], "getex", &at)) return;
      new_expire = at;
    } else {
      return c.reply.Error(kSyntax);
    }
  }
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) return c.reply.Null();
  if (entry->type() != Type::kString) return c.reply.Error(kWrongType);
  c.reply.Bulk(entry->string());
  if (new_expire) view.SetExpire(c.args[1], entry, *new_expire);
}

void Append(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) {
    view.SetString(c.args[1], c.args[2]);
    return c.reply.Integer(static_cast<int64_t>(c.args[2].size()));
  }
  if (entry->type() != Type::kString) return c.reply.Error(kWrongType);
  if (entry->string().size() + c.args[2].size() > kMaxBulkBytes) {
    return c.reply.Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  }
  entry = view.Append(entry, c.args[2]);
  c.reply.Integer(static_cast<int64_t>(entry->string().size()));
}

void StrLen(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) return c.reply.Integer(0);
  if (entry->type() != Type::kString) return c.reply.Error(kWrongType);
  c.reply.Integer(static_cast<int64_t>(entry->string().size()));
}

// INCR, DECR, INCRBY, DECRBY: the TTL stays.
void IncrBy(Context& c, int64_t sign, bool has_argument) {
  int64_t delta = 1;
  if (has_argument && !ParseInt(c.args[2], &delta)) return c.reply.Error(kNotInteger);
  if (sign < 0) {
    if (delta == std::numeric_limits<int64_t>::min()) {
      return c.reply.Error("ERR decrement would overflow");
    }
    delta = -delta;
  }
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  int64_t value = 0;
  if (entry != nullptr) {
    if (entry->type() != Type::kString) return c.reply.Error(kWrongType);
    if (!ParseInt(entry->string(), &value)) return c.reply.Error(kNotInteger);
  }
  int64_t result;
  if (__builtin_add_overflow(value, delta, &result)) {
    return c.reply.Error("ERR increment or decrement would overflow");
  }
  const std::string text = std::to_string(result);
  entry == nullptr ? view.SetString(c.args[1], text) : view.Rewrite(entry, text);
  c.reply.Integer(result);
}

void IncrByFloat(Context& c) {
  long double delta;
  if (!ParseDouble(c.args[2], &delta)) return c.reply.Error(kNotFloat);
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  long double value = 0;
  if (entry != nullptr) {
    if (entry->type() != Type::kString) return c.reply.Error(kWrongType);
    if (!ParseDouble(entry->string(), &value)) return c.reply.Error(kNotFloat);
  }
  const long double result = value + delta;
  if (std::isnan(result) || std::isinf(result)) {
    return c.reply.Error("ERR increment would produce NaN or Infinity");
  }
  const std::string text = FormatDouble(result);
  entry == nullptr ? view.SetString(c.args[1], text) : view.Rewrite(entry, text);
  c.reply.Bulk(text);
}

// ---------------------------------------------------------------------------------------------
// Keys.

void Del(Context& c) {
  Args keys(c.args.begin() + 1, c.args.end());
  auto view = c.keyspace().Lock(keys);
  int64_t deleted = 0;
  for (std::string_view key : keys) deleted += view.Erase(key) ? 1 : 0;
  c.reply.Integer(deleted);
}

void Exists(Context& c) {
  Args keys(c.args.begin() + 1, c.args.end());
  auto view = c.keyspace().Lock(keys);
  int64_t found = 0;
  for (std::string_view key : keys) found += view.Find(key) != nullptr ? 1 : 0;
  c.reply.Integer(found);
}

void TypeOf(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  c.reply.Simple(entry == nullptr ? "none" : kv::TypeName(entry->type()));
}

// EXPIRE key seconds [NX | XX | GT | LT] (and PEXPIRE, EXPIREAT, PEXPIREAT).
void Expire(Context& c, int64_t unit_ms, bool absolute) {
  const Millis now = c.keyspace().Now();
  Millis at;
  if (!ExpireAt(c.args[2], unit_ms, absolute, now, false, &at)) {
    int64_t unused;
    if (!ParseInt(c.args[2], &unused)) return c.reply.Error(kNotInteger);
    return c.reply.Error("ERR invalid expire time in '" + Lower(c.args[0]) + "' command");
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
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry == nullptr) return c.reply.Integer(-2);
  if (entry->expire_at() == 0) return c.reply.Integer(-1);
  const Millis left = std::max<Millis>(0, entry->expire_at() - view.now());
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
  if (view.Find(c.args[1]) == nullptr) return c.reply.Error("ERR no such key");
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

struct ScanArgs {
  uint64_t cursor = 0;
  std::string_view pattern = "*";
  int64_t count = 10;
  std::optional<Type> type;
  bool no_type = false;  // TYPE named a type Quiver does not hold: nothing matches
};

// The arguments of SCAN and HSCAN from c.args[first] (the cursor) on: [MATCH pattern]
// [COUNT count], and [TYPE type] when `with_type`. False, with the error replied, when one is
// wrong.
bool ParseScanArgs(Context& c, size_t first, bool with_type, ScanArgs* out) {
  const std::string_view cursor = c.args[first];
  auto [end, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), out->cursor);
  if (ec != std::errc() || end != cursor.data() + cursor.size()) {
    c.reply.Error("ERR invalid cursor");
    return false;
  }
  for (size_t i = first + 1; i < c.args.size(); i += 2) {
    if (i + 1 >= c.args.size()) {
      c.reply.Error(kSyntax);
      return false;
    }
    if (Is(c.args[i], "match")) {
      out->pattern = c.args[i + 1];
    } else if (Is(c.args[i], "count")) {
      if (!ParseInt(c.args[i + 1], &out->count)) {
        c.reply.Error(kNotInteger);
        return false;
      }
      if (out->count < 1) {
        c.reply.Error(kSyntax);
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
      c.reply.Error(kSyntax);
      return false;
    }
  }
  return true;
}

// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
void Scan(Context& c) {
  ScanArgs scan;
  if (!ParseScanArgs(c, 1, /*with_type=*/true, &scan)) return;
  std::vector<std::string> keys;
  const uint64_t next = c.keyspace().Scan(scan.cursor, static_cast<size_t>(scan.count),
                                          scan.pattern, scan.type, &keys);
  if (scan.no_type) keys.clear();
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
    return c.reply.Error(kSyntax);
  }
  c.keyspace().Clear();
  c.reply.Simple("OK");
}

// ---------------------------------------------------------------------------------------------
// Hashes.

// The hash at key, or nullptr (a reply was written when the key holds another type).
Entry* FindHash(Context& c, Keyspace::View& view, bool* wrong_type) {
  Entry* entry = view.Find(c.args[1]);
  *wrong_type = entry != nullptr && entry->type() != Type::kHash;
  if (*wrong_type) c.reply.Error(kWrongType);
  return *wrong_type ? nullptr : entry;
}

void HSet(Context& c, bool reply_ok) {
  if (c.args.size() % 2 != 0) {
    return c.reply.Error("ERR wrong number of arguments for '" + Lower(c.args[0]) + "' command");
  }
  auto view = c.keyspace().Lock(c.args[1]);
  bool wrong;
  Entry* entry = FindHash(c, view, &wrong);
  if (wrong) return;
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
    bool wrong;
    Entry* entry = FindHash(c, view, &wrong);
    if (wrong) return;
    if (entry != nullptr) return reply(entry->hash());
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
  bool wrong;
  Entry* entry = FindHash(c, view, &wrong);
  if (wrong) return;
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

// QUIVER.FETCH table numkeys key [key ...] [FOUND] [COLUMNS column [column ...]]: the rows as
// one Arrow IPC stream in a bulk string (tables.h).
void QuiverFetch(Context& c) {
  if (c.server.catalog == nullptr) return c.reply.Error("ERR no feature tables are served here");
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
      return c.reply.Error(kSyntax);
    }
  }
  Result<std::string> ipc = FetchTableIpc(*c.server.catalog, c.args[1], keys, columns, found);
  if (!ipc.ok()) return c.reply.Error("ERR " + ipc.status().message());
  c.reply.Bulk(*ipc);
}

void HIncrBy(Context& c) {
  int64_t delta;
  if (!ParseInt(c.args[3], &delta)) return c.reply.Error(kNotInteger);
  auto view = c.keyspace().Lock(c.args[1]);
  bool wrong;
  Entry* entry = FindHash(c, view, &wrong);
  if (wrong) return;
  int64_t value = 0;
  if (entry != nullptr) {
    const std::optional<std::string_view> old = entry->hash().Find(c.args[2]);
    if (old && !ParseInt(*old, &value)) {
      return c.reply.Error("ERR hash value is not an integer");
    }
  }
  int64_t result;
  if (__builtin_add_overflow(value, delta, &result)) {
    return c.reply.Error("ERR increment or decrement would overflow");
  }
  if (entry == nullptr) entry = view.NewHash(c.args[1]);
  view.HashSet(c.args[1], entry, c.args[2], std::to_string(result));
  c.reply.Integer(result);
}

// HSCAN key cursor [MATCH pattern] [COUNT count]: the whole hash in one reply (cursor 0), which
// SCAN's contract allows (COUNT is a hint).
void HScan(Context& c) {
  ScanArgs scan;
  if (!ParseScanArgs(c, 2, /*with_type=*/false, &scan)) return;
  auto view = c.keyspace().Lock(c.args[1]);
  Entry* entry = view.Find(c.args[1]);
  if (entry != nullptr && entry->type() != Type::kHash) return c.reply.Error(kWrongType);
  std::vector<std::pair<std::string_view, std::string_view>> matched;
  if (entry != nullptr) {
    for (const auto& [field, value] : entry->hash()) {
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

// ---------------------------------------------------------------------------------------------
// The table.

struct Command {
  const char* name;
  int arity;          // Redis's: N exactly, -N at least
  const char* flags;  // "write", "readonly", "fast", ... as COMMAND INFO shows them
  int first_key, last_key, step;
  const char* group;
  const char* summary;
  void (*run)(Context&);
  bool write = false;    // from `flags`, set by Index()
  bool denyoom = false;  // from `flags`
};

void Quit(Context& c) {
  c.client.close_after_reply = true;
  c.reply.Simple("OK");
}
void CommandCommand(Context& c);

// Sets each command's write and denyoom from its flags.
std::vector<Command> WithFlags(std::vector<Command> table) {
  for (Command& command : table) {
    std::string_view rest = command.flags;
    while (!rest.empty()) {
      const size_t space = rest.find(' ');
      const std::string_view word = rest.substr(0, space);
      command.write |= word == "write";
      command.denyoom |= word == "denyoom";
      rest.remove_prefix(space == std::string_view::npos ? rest.size() : space + 1);
    }
  }
  return table;
}

const std::vector<Command>& Table() {
  static const std::vector<Command> table = WithFlags({
      {"get", 2, "readonly fast", 1, 1, 1, "string", "Returns the string value of a key.", Get},
      {"set", -3, "write denyoom", 1, 1, 1, "string",
       "Sets the string value of a key, with options.", Set},
      {"mget", -2, "readonly fast", 1, -1, 1, "string", "Returns the values of keys.", MGet},
      {"mset", -3, "write denyoom", 1, -1, 2, "string", "Sets the values of keys.",
       [](Context& c) { MSet(c, false); }},
      {"msetnx", -3, "write denyoom", 1, -1, 2, "string", "Sets keys only when none exists.",
       [](Context& c) { MSet(c, true); }},
      {"setnx", 3, "write denyoom fast", 1, 1, 1, "string",
       "Sets a key only when it does not exist.", SetNx},
      {"setex", 4, "write denyoom", 1, 1, 1, "string", "Sets a key with a TTL in seconds.",
       [](Context& c) { SetEx(c, 1000, "setex"); }},
      {"psetex", 4, "write denyoom", 1, 1, 1, "string", "Sets a key with a TTL in milliseconds.",
       [](Context& c) { SetEx(c, 1, "psetex"); }},
      {"getdel", 2, "write fast", 1, 1, 1, "string", "Returns a string and deletes its key.",
       GetDel},
      {"getex", -2, "write fast", 1, 1, 1, "string", "Returns a string and changes its TTL.",
       GetEx},
      {"append", 3, "write denyoom fast", 1, 1, 1, "string", "Appends to a string.", Append},
      {"strlen", 2, "readonly fast", 1, 1, 1, "string", "Returns a string's length.", StrLen},
      {"incr", 2, "write denyoom fast", 1, 1, 1, "string", "Adds 1 to an integer.",
       [](Context& c) { IncrBy(c, 1, false); }},
      {"decr", 2, "write denyoom fast", 1, 1, 1, "string", "Subtracts 1 from an integer.",
       [](Context& c) { IncrBy(c, -1, false); }},
      {"incrby", 3, "write denyoom fast", 1, 1, 1, "string", "Adds to an integer.",
       [](Context& c) { IncrBy(c, 1, true); }},
      {"decrby", 3, "write denyoom fast", 1, 1, 1, "string", "Subtracts from an integer.",
       [](Context& c) { IncrBy(c, -1, true); }},
      {"incrbyfloat", 3, "write denyoom fast", 1, 1, 1, "string",
       "Adds to a floating-point number.", IncrByFloat},
      {"del", -2, "write", 1, -1, 1, "generic", "Deletes keys.", Del},
      {"unlink", -2, "write fast", 1, -1, 1, "generic", "Deletes keys.", Del},
      {"exists", -2, "readonly fast", 1, -1, 1, "generic", "Counts the keys that exist.", Exists},
      {"type", 2, "readonly fast", 1, 1, 1, "generic", "Returns a key's type.", TypeOf},
      {"expire", -3, "write fast", 1, 1, 1, "generic", "Sets a TTL in seconds.",
       [](Context& c) { Expire(c, 1000, false); }},
      {"pexpire", -3, "write fast", 1, 1, 1, "generic", "Sets a TTL in milliseconds.",
       [](Context& c) { Expire(c, 1, false); }},
      {"expireat", -3, "write fast", 1, 1, 1, "generic", "Sets an expiry as Unix seconds.",
       [](Context& c) { Expire(c, 1000, true); }},
      {"pexpireat", -3, "write fast", 1, 1, 1, "generic", "Sets an expiry as Unix milliseconds.",
       [](Context& c) { Expire(c, 1, true); }},
      {"ttl", 2, "readonly fast", 1, 1, 1, "generic", "Returns the TTL in seconds.",
       [](Context& c) { Ttl(c, false); }},
      {"pttl", 2, "readonly fast", 1, 1, 1, "generic", "Returns the TTL in milliseconds.",
       [](Context& c) { Ttl(c, true); }},
      {"expiretime", 2, "readonly fast", 1, 1, 1, "generic", "Returns the expiry (Unix s).",
       [](Context& c) { ExpireTime(c, false); }},
      {"pexpiretime", 2, "readonly fast", 1, 1, 1, "generic", "Returns the expiry (Unix ms).",
       [](Context& c) { ExpireTime(c, true); }},
      {"persist", 2, "write fast", 1, 1, 1, "generic", "Removes a TTL.", Persist},
      {"rename", 3, "write", 1, 2, 1, "generic", "Renames a key.",
       [](Context& c) { Rename(c, false); }},
      {"renamenx", 3, "write fast", 1, 2, 1, "generic", "Renames a key if the new name is free.",
       [](Context& c) { Rename(c, true); }},
      {"keys", 2, "readonly", 0, 0, 0, "generic", "Returns the keys matching a pattern.", Keys},
      {"scan", -2, "readonly", 0, 0, 0, "generic", "Iterates over the keys.", Scan},
      {"randomkey", 1, "readonly", 0, 0, 0, "generic", "Returns a random key.", RandomKey},
      {"dbsize", 1, "readonly fast", 0, 0, 0, "server", "Returns the number of keys.", DbSize},
      {"flushdb", -1, "write", 0, 0, 0, "server", "Deletes every key.", Flush},
      {"flushall", -1, "write", 0, 0, 0, "server", "Deletes every key.", Flush},
      {"hset", -4, "write denyoom fast", 1, 1, 1, "hash", "Sets fields of a hash.",
       [](Context& c) { HSet(c, false); }},
      {"hmset", -4, "write denyoom fast", 1, 1, 1, "hash", "Sets fields of a hash.",
       [](Context& c) { HSet(c, true); }},
      {"hget", 3, "readonly fast", 1, 1, 1, "hash", "Returns a field of a hash.", HGet},
      {"hmget", -3, "readonly fast", 1, 1, 1, "hash", "Returns fields of a hash.", HMGet},
      {"hgetall", 2, "readonly", 1, 1, 1, "hash", "Returns every field and value of a hash.",
       [](Context& c) { HAll(c, true, true); }},
      {"hkeys", 2, "readonly", 1, 1, 1, "hash", "Returns the fields of a hash.",
       [](Context& c) { HAll(c, true, false); }},
      {"hvals", 2, "readonly", 1, 1, 1, "hash", "Returns the values of a hash.",
       [](Context& c) { HAll(c, false, true); }},
      {"hdel", -3, "write fast", 1, 1, 1, "hash", "Deletes fields of a hash.", HDel},
      {"hexists", 3, "readonly fast", 1, 1, 1, "hash", "Whether a field exists.", HExists},
      {"hlen", 2, "readonly fast", 1, 1, 1, "hash", "Returns the number of fields.", HLen},
      {"hincrby", 4, "write denyoom fast", 1, 1, 1, "hash", "Adds to an integer field.", HIncrBy},
      {"hscan", -3, "readonly", 1, 1, 1, "hash", "Iterates over the fields of a hash.", HScan},
      {"quiver.fetch", -4, "readonly", 0, 0, 0, "quiver",
       "Returns keys x columns of a feature table as an Arrow IPC stream.", QuiverFetch},
      {"ping", -1, "fast", 0, 0, 0, "connection", "Returns PONG or the message.", Ping},
      {"echo", 2, "fast", 0, 0, 0, "connection", "Returns the message.", Echo},
      {"select", 2, "fast", 0, 0, 0, "connection", "Selects a database (only 0).", Select},
      {"auth", -2, "fast noauth", 0, 0, 0, "connection", "Authenticates the connection.", Auth},
      {"hello", -1, "fast noauth", 0, 0, 0, "connection", "Handshakes (RESP2 or RESP3).", Hello},
      {"client", -2, "", 0, 0, 0, "connection", "Names, identifies and lists connections.",
       ClientCommand},
      {"quit", -1, "fast noauth", 0, 0, 0, "connection", "Closes the connection.", Quit},
      {"config", -2, "", 0, 0, 0, "server", "Reads configuration parameters.", Config},
      {"command", -1, "", 0, 0, 0, "server", "Describes the commands.", CommandCommand},
      {"info", -1, "", 0, 0, 0, "server", "Returns information about the server.", Info},
      {"time", 1, "fast", 0, 0, 0, "server", "Returns the server's time.", Time},
  });
  return table;
}

const std::unordered_map<std::string_view, const Command*>& Index() {
  static const auto index = [] {
    std::unordered_map<std::string_view, const Command*> map;
    for (const Command& command : Table()) map.emplace(command.name, &command);
    return map;
  }();
  return index;
}

void CommandInfo(ReplyWriter& reply, const Command& command) {
  reply.Array(6);
  reply.Bulk(command.name);
  reply.Integer(command.arity);
  std::vector<std::string_view> flags;
  std::string_view text = command.flags;
  while (!text.empty()) {
    const size_t space = text.find(' ');
    flags.push_back(text.substr(0, space));
    text = space == std::string_view::npos ? "" : text.substr(space + 1);
  }
  reply.Array(flags.size());
  for (std::string_view flag : flags) reply.Simple(flag);
  reply.Integer(command.first_key);
  reply.Integer(command.last_key);
  reply.Integer(command.step);
}

void CommandCommand(Context& c) {
  const auto& table = Table();
  if (c.args.size() == 1) {
    c.reply.Array(table.size());
    for (const Command& command : table) CommandInfo(c.reply, command);
    return;
  }
  const std::string_view sub = c.args[1];
  if (Is(sub, "count") && c.args.size() == 2)
    return c.reply.Integer(static_cast<int64_t>(table.size()));
  if (Is(sub, "info") || Is(sub, "docs")) {
    std::vector<const Command*> wanted;
    if (c.args.size() == 2) {
      for (const Command& command : table) wanted.push_back(&command);
    } else {
      for (size_t i = 2; i < c.args.size(); ++i) {
        auto it = Index().find(Lower(c.args[i]));
        wanted.push_back(it == Index().end() ? nullptr : it->second);
      }
    }
    if (Is(sub, "info")) {
      c.reply.Array(wanted.size());
      for (const Command* command : wanted) {
        command ? CommandInfo(c.reply, *command) : c.reply.NullArray();
      }
      return;
    }
    size_t known = 0;
    for (const Command* command : wanted) known += command != nullptr;
    c.reply.Map(known);
    for (const Command* command : wanted) {
      if (command == nullptr) continue;
      c.reply.Bulk(command->name);
      c.reply.Map(3);
      c.reply.Bulk("summary");
      c.reply.Bulk(command->summary);
      c.reply.Bulk("since");
      c.reply.Bulk("1.0.0");
      c.reply.Bulk("group");
      c.reply.Bulk(command->group);
    }
    return;
  }
  c.reply.Error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
                "'. Try COMMAND HELP.");
}

}  // namespace

size_t CommandCount() { return Table().size(); }

std::string ClientLine(const Client& client) {
  std::lock_guard lock(client.mutex);
  return "id=" + std::to_string(client.id) + " addr=" + client.address + " name=" + client.name +
         " age=" + std::to_string((UnixMillis() - client.created_ms) / 1000) +
         " db=0 resp=" + std::to_string(client.protocol) +
         " cmd=" + client.last_command.load(std::memory_order_relaxed);
}

namespace {

// The command named `name` (any case), or null. A pipeline repeats its command: the last name
// this thread looked up, as sent, answers without the table.
const Command* Lookup(std::string_view name) {
  constexpr size_t kLongest = 24;  // longer than every command name
  thread_local char last[kLongest];
  thread_local size_t last_size = 0;
  thread_local const Command* last_command = nullptr;
  if (name.size() > kLongest) return nullptr;
  if (name.size() == last_size && std::memcmp(name.data(), last, last_size) == 0) {
    return last_command;
  }
  char lowered[kLongest];
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    lowered[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
  auto it = Index().find(std::string_view(lowered, name.size()));
  const Command* found = it == Index().end() ? nullptr : it->second;
  std::memcpy(last, name.data(), name.size());
  last_size = name.size();
  last_command = found;
  return found;
}

}  // namespace

void AppendKeys(Args args, std::vector<std::string_view>* keys) {
  const Command* command = args.empty() ? nullptr : Lookup(args[0]);
  if (command == nullptr || command->first_key <= 0) return;
  const auto size = static_cast<int>(args.size());
  const int last = command->last_key < 0 ? size + command->last_key : command->last_key;
  for (int i = command->first_key; i <= last && i < size; i += command->step) {
    keys->push_back(args[i]);
  }
}

void Execute(ServerState& server, Client& client, Args args, ReplyWriter& reply) {
  if (args.empty()) return;
  server.commands.fetch_add(1, std::memory_order_relaxed);
  const Command* found = Lookup(args[0]);
  if (found == nullptr) {
    std::string message = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                          "', with args beginning with: ";
    for (size_t i = 1; i < args.size() && message.size() < 256; ++i) {
      message += "'" + std::string(args[i].substr(0, 128)) + "' ";
    }
    return reply.Error(message);
  }
  const Command& command = *found;
  const int arity = command.arity;
  if ((arity > 0 && static_cast<int>(args.size()) != arity) ||
      (arity < 0 && static_cast<int>(args.size()) < -arity)) {
    return reply.Error("ERR wrong number of arguments for '" + std::string(command.name) +
                       "' command");
  }
  if (!server.requirepass.empty() && !client.authenticated &&
      std::string_view(command.flags).find("noauth") == std::string_view::npos) {
    return reply.Error("NOAUTH Authentication required.");
  }
  kv::KeyspaceLog* log = command.write ? server.keyspace->log() : nullptr;
  if (log != nullptr) {
    if (Status writable = log->Writable(); !writable.ok()) {
      return reply.Error(
          "MISCONF changes are refused while the write-ahead log cannot be "
          "written: " +
          writable.message());
    }
  }
  if (command.denyoom && !server.keyspace->MakeRoom()) {
    return reply.Error("OOM command not allowed when used memory > 'maxmemory'.");
  }
  client.last_command.store(command.name, std::memory_order_relaxed);
  Context context{server, client, args, reply};
  if (log == nullptr) return command.run(context);
  const size_t mark = reply.size();
  kv::TakeLogOutcome();
  command.run(context);
  kv::LogOutcome logged = kv::TakeLogOutcome();
  Status status = std::move(logged.error);
  if (status.ok() && logged.lsn != 0) {
    if (log->SyncsOnCommit()) {
      status = log->Commit(logged.lsn);
    } else {
      client.unwritten_lsn = std::max(client.unwritten_lsn, logged.lsn);
      client.unwritten_replies.emplace_back(mark, reply.size());
    }
  }
  if (!status.ok()) {
    // Applied in memory, but not durable: the client must not take it as done.
    reply.Truncate(mark);
    reply.Error("MISCONF the change was applied in memory but could not be logged: " +
                status.message());
  }
}

void Flush(ServerState& server, Client& client, std::string* output) {
  if (client.unwritten_lsn == 0) return;
  const uint64_t lsn = std::exchange(client.unwritten_lsn, 0);
  const Status written = server.keyspace->log()->Commit(lsn);
  if (written.ok()) {
    client.unwritten_replies.clear();  // keeps its capacity for the next pipeline
    return;
  }
  const auto replies = std::exchange(client.unwritten_replies, {});
  QUIVER_LOG(kWarn, "key-value changes not written to the log yet (retried every second)",
             {{"lsn", std::to_string(lsn)}, {"error", written.message()}});
  std::string rebuilt;
  ReplyWriter writer(&rebuilt);
  size_t at = 0;
  for (const auto& [begin, end] : replies) {
    rebuilt.append(*output, at, begin - at);
    writer.Error("MISCONF the change was applied in memory but could not be logged: " +
                 written.message());
    at = end;
  }
  rebuilt.append(*output, at);
  output->swap(rebuilt);
}

}  // namespace quiver::resp
