#include "server/codec/fetch_scanner.h"

#include <limits>

namespace quiver::codec {
namespace {

class Scanner {
 public:
  explicit Scanner(std::string_view text) : text_(text) {}

  // The whole body; false means "use the general parser".
  bool Scan(ScannedFetch* out) {
    if (!Consume('{')) return false;
    if (!Consume('}')) {
      for (;;) {
        std::string_view name;
        std::string storage;
        if (!String(&name, &storage) || !Consume(':') || !Member(name, out)) return false;
        if (Consume(',')) continue;
        if (!Consume('}')) return false;
        break;
      }
    }
    SkipSpace();
    return at_ == text_.size();
  }

 private:
  bool Member(std::string_view name, ScannedFetch* out) {
    if (name == "keys") {
      if (seen_keys_) return false;
      seen_keys_ = true;
      return Keys(out);
    }
    if (name == "columns") {
      if (out->columns_present) return false;
      out->columns_present = true;
      if (Literal("null")) return true;
      return Strings(&out->columns);
    }
    if (name == "table") {
      if (out->table) return false;
      std::string_view value;
      std::string storage;
      if (!String(&value, &storage)) return false;
      out->table = std::string(value);
      return true;
    }
    if (name == "found") {
      if (seen_found_) return false;
      seen_found_ = true;
      if (Literal("true")) {
        out->found = true;
      } else if (Literal("false")) {
        out->found = false;
      } else {
        return Literal("null");
      }
      return true;
    }
    return false;  // a member the fast path does not know
  }

  bool Keys(ScannedFetch* out) {
    if (Literal("null")) return true;
    out->has_keys = true;
    if (!Consume('[')) return false;
    if (Consume(']')) return true;
    for (;;) {
      SkipSpace();
      if (at_ >= text_.size()) return false;
      const char c = text_[at_];
      if (c == 'n') {
        if (!Literal("null")) return false;
        // A slot in both lists: whichever kind the other keys have, positions stay aligned.
        out->string_keys.emplace_back();
        out->integer_keys.push_back(0);
        out->key_is_null.push_back(true);
      } else if (c == '"') {
        if (!Kind(ScannedFetch::KeyKind::kString, out)) return false;
        std::string_view key;
        std::string storage;
        if (!String(&key, &storage)) return false;
        if (key.data() == storage.data()) {  // unescaped into `storage`: keep it
          out->unescaped.push_back(std::move(storage));
          key = out->unescaped.back();
        }
        out->string_keys.push_back(key);
        out->key_is_null.push_back(false);
      } else {
        if (!Kind(ScannedFetch::KeyKind::kInteger, out)) return false;
        int64_t value;
        if (!Integer(&value)) return false;
        out->integer_keys.push_back(value);
        out->key_is_null.push_back(false);
      }
      if (Consume(',')) continue;
      return Consume(']');
    }
  }

  // All non-null keys are of one kind.
  static bool Kind(ScannedFetch::KeyKind kind, ScannedFetch* out) {
    if (out->key_kind == ScannedFetch::KeyKind::kNone) out->key_kind = kind;
    return out->key_kind == kind;
  }

  bool Strings(std::vector<std::string>* values) {
    if (!Consume('[')) return false;
    if (Consume(']')) return true;
    for (;;) {
      std::string_view value;
      std::string storage;
      if (!String(&value, &storage)) return false;
      values->emplace_back(value);
      if (Consume(',')) continue;
      return Consume(']');
    }
  }

  // A string of printable ASCII with simple escapes. Without escapes `value` views the body;
  // with them it views `storage`.
  bool String(std::string_view* value, std::string* storage) {
    if (!Consume('"')) return false;
    const size_t start = at_;
    bool escaped = false;
    for (; at_ < text_.size(); ++at_) {
      const auto c = static_cast<unsigned char>(text_[at_]);
      if (c == '"') break;
      if (c < 0x20 || c >= 0x80) return false;  // control characters; UTF-8 is left to the parser
      if (c == '\\') {
        escaped = true;
        ++at_;  // the escaped character, checked below
      }
    }
    if (at_ >= text_.size()) return false;
    const std::string_view raw = text_.substr(start, at_ - start);
    ++at_;  // the closing quote
    if (!escaped) {
      *value = raw;
      return true;
    }
    storage->clear();
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '\\') {
        *storage += raw[i];
        continue;
      }
      switch (raw[++i]) {
        case '"':
        case '\\':
        case '/':
          *storage += raw[i];
          break;
        case 'b':
          *storage += '\b';
          break;
        case 'f':
          *storage += '\f';
          break;
        case 'n':
          *storage += '\n';
          break;
        case 'r':
          *storage += '\r';
          break;
        case 't':
          *storage += '\t';
          break;
        default:
          return false;  // \u escapes and invalid escapes
      }
    }
    *value = *storage;
    return true;
  }

  // -?(0|[1-9][0-9]*), within int64, not followed by a fraction or an exponent.
  bool Integer(int64_t* value) {
    const bool negative = text_[at_] == '-';
    if (negative) ++at_;
    const size_t start = at_;
    uint64_t magnitude = 0;
    while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') {
      if (magnitude > (std::numeric_limits<uint64_t>::max() - 9) / 10) return false;
      magnitude = magnitude * 10 + static_cast<uint64_t>(text_[at_] - '0');
      ++at_;
    }
    const size_t digits = at_ - start;
    if (digits == 0 || (digits > 1 && text_[start] == '0')) return false;
    if (at_ < text_.size() && (text_[at_] == '.' || text_[at_] == 'e' || text_[at_] == 'E')) {
      return false;
    }
    constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (negative) {
      if (magnitude == 0 || magnitude > kMax + 1) return false;  // "-0" and underflow
      *value = static_cast<int64_t>(0 - magnitude);
    } else {
      if (magnitude > kMax) return false;
      *value = static_cast<int64_t>(magnitude);
    }
    return true;
  }

  bool Literal(std::string_view word) {
    SkipSpace();
    if (text_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    return true;
  }

  bool Consume(char c) {
    SkipSpace();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }

  void SkipSpace() {
    while (at_ < text_.size() &&
           (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\r' || text_[at_] == '\t')) {
      ++at_;
    }
  }

  std::string_view text_;
  size_t at_ = 0;
  bool seen_keys_ = false;
  bool seen_found_ = false;
};

}  // namespace

std::optional<ScannedFetch> ScanFetchJson(std::string_view body) {
  ScannedFetch out;
  if (!Scanner(body).Scan(&out)) return std::nullopt;
  return out;
}

}  // namespace quiver::codec
