// The string commands of the RESP command table: GET, SET and its variants, MGET, MSET, GETDEL,
// GETEX, APPEND, STRLEN, INCR / DECR and INCRBYFLOAT. Each operation on the keyspace returns an
// OpResult; the commands reply from it.
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "server/resp/command_context.h"

namespace quiver::resp {
namespace {

using kv::Entry;
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
// Operations.

// The string at `key`: kKeyNotFound, or kWrongType when the key holds another type.
OpResult<Entry*> FindString(Keyspace::View& view, std::string_view key) {
  Entry* entry = view.Find(key);
  if (entry == nullptr) return OpStatus::kKeyNotFound;
  if (entry->type() != Type::kString) return OpStatus::kWrongType;
  return entry;
}

// Adds `delta` to the integer at `key` (0 when missing), keeping its TTL; the new value.
OpResult<int64_t> OpIncrBy(Keyspace::View& view, std::string_view key, int64_t delta) {
  const OpResult<Entry*> found = FindString(view, key);
  if (!found.ok() && found.status() != OpStatus::kKeyNotFound) return found.status();
  Entry* entry = found.ok() ? *found : nullptr;
  int64_t value = 0;
  if (entry != nullptr && !ParseInt(entry->string(), &value)) return OpStatus::kNotInteger;
  int64_t result;
  if (__builtin_add_overflow(value, delta, &result)) return OpStatus::kOverflow;
  const std::string text = std::to_string(result);
  entry == nullptr ? view.SetString(key, text) : view.Rewrite(entry, text);
  return result;
}

// Adds `delta` to the number at `key` (0 when missing), keeping its TTL; the new value's text.
OpResult<std::string> OpIncrByFloat(Keyspace::View& view, std::string_view key, long double delta) {
  const OpResult<Entry*> found = FindString(view, key);
  if (!found.ok() && found.status() != OpStatus::kKeyNotFound) return found.status();
  Entry* entry = found.ok() ? *found : nullptr;
  long double value = 0;
  if (entry != nullptr && !ParseDouble(entry->string(), &value)) return OpStatus::kNotFloat;
  const long double result = value + delta;
  if (std::isnan(result) || std::isinf(result)) return OpStatus::kNanOrInfinity;
  std::string text = FormatDouble(result);
  entry == nullptr ? view.SetString(key, text) : view.Rewrite(entry, text);
  return text;
}

// Appends to the string at `key` (made when missing); its new length.
OpResult<int64_t> OpAppend(Keyspace::View& view, std::string_view key, std::string_view tail) {
  const OpResult<Entry*> found = FindString(view, key);
  if (found.status() == OpStatus::kKeyNotFound) {
    view.SetString(key, tail);
    return static_cast<int64_t>(tail.size());
  }
  if (!found.ok()) return found.status();
  if ((*found)->string().size() + tail.size() > kMaxBulkBytes) return OpStatus::kStringTooLong;
  return static_cast<int64_t>(view.Append(*found, tail)->string().size());
}

// ---------------------------------------------------------------------------------------------
// Commands.

// A string's value as a bulk reply, nil when missing (GET, GETDEL, GETEX); false after an error.
bool ReplyString(Context& c, const OpResult<Entry*>& found) {
  if (found.status() == OpStatus::kKeyNotFound) {
    c.reply.Null();
    return false;
  }
  if (!found.ok()) {
    c.Fail(found.status());
    return false;
  }
  c.reply.Bulk((*found)->string());
  return true;
}

void Get(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  ReplyString(c, FindString(view, c.args[1]));
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
      if (!ParseExpireOption(c, arg, c.args[++i], &expire_at)) return;
      has_expire = true;
    } else {
      return c.Fail(OpStatus::kSyntax);
    }
  }
  auto view = c.keyspace().Lock(c.args[1]);
  // A plain SET needs no look at the old value (SetString replaces it, in its node if it fits).
  const bool plain = condition == kAny && !get && !keep_ttl;
  Entry* entry = plain ? nullptr : view.Find(c.args[1]);
  if (get && entry != nullptr && entry->type() != Type::kString) {
    return c.Fail(OpStatus::kWrongType);
  }
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

// SETEX and PSETEX: key, TTL in `unit_ms`, value.
void SetEx(Context& c, int64_t unit_ms) {
  Millis at;
  if (!ExpireAt(c.args[2], unit_ms, false, c.keyspace().Now(), true, &at)) {
    int64_t unused;
    return c.Fail(ParseInt(c.args[2], &unused) ? OpStatus::kInvalidExpireTime
                                               : OpStatus::kNotInteger);
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
    const OpResult<Entry*> found = FindString(view, key);
    found.ok() ? c.reply.Bulk((*found)->string()) : c.reply.Null();  // another type: nil
  }
}

void MSet(Context& c, bool only_if_none) {
  if (c.args.size() % 2 != 1) return c.Fail(OpStatus::kWrongArity);
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
  if (ReplyString(c, FindString(view, c.args[1]))) view.Erase(c.args[1]);
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
      if (!ParseExpireOption(c, option, c.args[3], &at)) return;
      new_expire = at;
    } else {
      return c.Fail(OpStatus::kSyntax);
    }
  }
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<Entry*> found = FindString(view, c.args[1]);
  if (ReplyString(c, found) && new_expire) view.SetExpire(c.args[1], *found, *new_expire);
}

void Append(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<int64_t> length = OpAppend(view, c.args[1], c.args[2]);
  length.ok() ? c.reply.Integer(*length) : c.Fail(length.status());
}

void StrLen(Context& c) {
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<Entry*> found = FindString(view, c.args[1]);
  if (found.status() == OpStatus::kKeyNotFound) return c.reply.Integer(0);
  if (!found.ok()) return c.Fail(found.status());
  c.reply.Integer(static_cast<int64_t>((*found)->string().size()));
}

// INCR, DECR, INCRBY, DECRBY: the TTL stays.
void IncrBy(Context& c, int64_t sign, bool has_argument) {
  int64_t delta = 1;
  if (has_argument && !ParseInt(c.args[2], &delta)) return c.Fail(OpStatus::kNotInteger);
  if (sign < 0) {
    if (delta == std::numeric_limits<int64_t>::min()) {
      return c.Fail(OpStatus::kDecrementOverflow);
    }
    delta = -delta;
  }
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<int64_t> result = OpIncrBy(view, c.args[1], delta);
  result.ok() ? c.reply.Integer(*result) : c.Fail(result.status());
}

void IncrByFloat(Context& c) {
  long double delta;
  if (!ParseDouble(c.args[2], &delta)) return c.Fail(OpStatus::kNotFloat);
  auto view = c.keyspace().Lock(c.args[1]);
  const OpResult<std::string> result = OpIncrByFloat(view, c.args[1], delta);
  result.ok() ? c.reply.Bulk(*result) : c.Fail(result.status());
}

}  // namespace

void AddStringCommands(std::vector<CommandSpec>& table) {
  table.insert(
      table.end(),
      {
          {"get", 2, kReadOnly | kFast, 1, 1, 1, "string", "Returns the string value of a key.",
           Get},
          {"set", -3, kWrite | kDenyOom, 1, 1, 1, "string",
           "Sets the string value of a key, with options.", Set},
          {"mget", -2, kReadOnly | kFast, 1, -1, 1, "string", "Returns the values of keys.", MGet},
          {"mset", -3, kWrite | kDenyOom, 1, -1, 2, "string", "Sets the values of keys.",
           [](Context& c) { MSet(c, false); }},
          {"msetnx", -3, kWrite | kDenyOom, 1, -1, 2, "string", "Sets keys only when none exists.",
           [](Context& c) { MSet(c, true); }},
          {"setnx", 3, kWrite | kDenyOom | kFast, 1, 1, 1, "string",
           "Sets a key only when it does not exist.", SetNx},
          {"setex", 4, kWrite | kDenyOom, 1, 1, 1, "string", "Sets a key with a TTL in seconds.",
           [](Context& c) { SetEx(c, 1000); }},
          {"psetex", 4, kWrite | kDenyOom, 1, 1, 1, "string",
           "Sets a key with a TTL in milliseconds.", [](Context& c) { SetEx(c, 1); }},
          {"getdel", 2, kWrite | kFast, 1, 1, 1, "string", "Returns a string and deletes its key.",
           GetDel},
          {"getex", -2, kWrite | kFast, 1, 1, 1, "string", "Returns a string and changes its TTL.",
           GetEx},
          {"append", 3, kWrite | kDenyOom | kFast, 1, 1, 1, "string", "Appends to a string.",
           Append},
          {"strlen", 2, kReadOnly | kFast, 1, 1, 1, "string", "Returns a string's length.", StrLen},
          {"incr", 2, kWrite | kDenyOom | kFast, 1, 1, 1, "string", "Adds 1 to an integer.",
           [](Context& c) { IncrBy(c, 1, false); }},
          {"decr", 2, kWrite | kDenyOom | kFast, 1, 1, 1, "string", "Subtracts 1 from an integer.",
           [](Context& c) { IncrBy(c, -1, false); }},
          {"incrby", 3, kWrite | kDenyOom | kFast, 1, 1, 1, "string", "Adds to an integer.",
           [](Context& c) { IncrBy(c, 1, true); }},
          {"decrby", 3, kWrite | kDenyOom | kFast, 1, 1, 1, "string", "Subtracts from an integer.",
           [](Context& c) { IncrBy(c, -1, true); }},
          {"incrbyfloat", 3, kWrite | kDenyOom | kFast, 1, 1, 1, "string",
           "Adds to a floating-point number.", IncrByFloat},
      });
}

}  // namespace quiver::resp
