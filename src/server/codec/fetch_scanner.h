// A fast path for the most frequent request bodies: murr's fetch body {"keys": [...],
// "columns": [...]}, its Flight ticket (plus "table" and "found") and the delete body
// {"keys": [...]}. One pass over the bytes, no document: keys without escapes are views into the
// body.
//
// It accepts only plain shapes: an object whose members are "table" (string), "keys" (array of
// strings, or of integers, and nulls), "columns" (array of strings, or null) and "found" (true,
// false or null), each at most once; strings without \u escapes, control characters or invalid
// UTF-8; integers without fraction, exponent or overflow. Anything else, valid or not, returns
// nullopt and the caller parses the body with the general JSON parser, which gives the same
// answer (the codec fuzz target checks the two agree) or the error message.
//
// Thread safety: pure function.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quiver::codec {

struct ScannedFetch {
  enum class KeyKind { kNone, kString, kInteger };  // kNone: "keys" absent, null, or all nulls
  std::optional<std::string> table;
  bool has_keys = false;  // "keys" present and not null
  KeyKind key_kind = KeyKind::kNone;
  // One entry per key; null keys are flagged in `key_is_null`.
  std::vector<std::string_view> string_keys;
  std::vector<int64_t> integer_keys;
  std::vector<bool> key_is_null;
  std::vector<std::string> columns;
  bool columns_present = false;
  std::optional<bool> found;
  std::deque<std::string> unescaped;  // storage for keys that had escapes
};

std::optional<ScannedFetch> ScanFetchJson(std::string_view body);

}  // namespace quiver::codec
