#include "server/resp/protocol.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace quiver::resp {

bool ParseInt(std::string_view text, int64_t* value) {
  if (text.empty() || text.size() > 20) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits an inline command line as redis-cli and Redis do (sdssplitargs): words separated by
// spaces; "double quotes" with \n \r \t \b \a \\ \" \xHH escapes; 'single quotes' with \'.
bool SplitInline(std::string_view line, std::vector<std::string>* words) {
  size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    if (i >= line.size()) return true;
    std::string word;
    bool in_double = false, in_single = false;
    for (;;) {
      if (in_double) {
        if (i >= line.size()) return false;  // unbalanced quotes
        if (line[i] == '\\' && i + 3 < line.size() && line[i + 1] == 'x' &&
            HexValue(line[i + 2]) >= 0 && HexValue(line[i + 3]) >= 0) {
          word.push_back(static_cast<char>(HexValue(line[i + 2]) * 16 + HexValue(line[i + 3])));
          i += 4;
        } else if (line[i] == '\\' && i + 1 < line.size()) {
          const char c = line[++i];
          word.push_back(c == 'n'   ? '\n'
                         : c == 'r' ? '\r'
                         : c == 't' ? '\t'
                         : c == 'b' ? '\b'
                         : c == 'a' ? '\a'
                                    : c);
          ++i;
        } else if (line[i] == '"') {
          // A closing quote must be followed by a space or the end.
          if (i + 1 < line.size() && line[i + 1] != ' ' && line[i + 1] != '\t') return false;
          ++i;
          break;
        } else {
          word.push_back(line[i++]);
        }
      } else if (in_single) {
        if (i >= line.size()) return false;
        if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '\'') {
          word.push_back('\'');
          i += 2;
        } else if (line[i] == '\'') {
          if (i + 1 < line.size() && line[i + 1] != ' ' && line[i + 1] != '\t') return false;
          ++i;
          break;
        } else {
          word.push_back(line[i++]);
        }
      } else {
        if (i >= line.size() || line[i] == ' ' || line[i] == '\t' || line[i] == '\r') break;
        if (line[i] == '"') {
          in_double = true;
          ++i;
        } else if (line[i] == '\'') {
          in_single = true;
          ++i;
        } else {
          word.push_back(line[i++]);
        }
      }
    }
    words->push_back(std::move(word));
  }
}

}  // namespace

void ParseRequest(std::string_view input, std::vector<std::string_view>* args, Parsed* parsed) {
  args->clear();
  parsed->status = ParseStatus::kIncomplete;
  parsed->consumed = 0;
  if (input.empty()) return;
  auto fail = [&](std::string message) {
    parsed->status = ParseStatus::kError;
    parsed->error = "Protocol error: " + std::move(message);
  };
  if (input[0] != '*') {  // an inline command
    const size_t newline = input.find('\n');
    if (newline == std::string_view::npos) {
      if (input.size() > kMaxInlineBytes) fail("too big inline request");
      return;
    }
    std::string_view line = input.substr(0, newline);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    parsed->inline_storage.clear();
    if (!SplitInline(line, &parsed->inline_storage)) return fail("unbalanced quotes in request");
    for (const std::string& word : parsed->inline_storage) args->push_back(word);
    parsed->status = ParseStatus::kComplete;
    parsed->consumed = newline + 1;
    return;
  }
  size_t line_end = input.find("\r\n");
  if (line_end == std::string_view::npos) {
    if (input.size() > 32) fail("invalid multibulk length");
    return;
  }
  int64_t count;
  if (!ParseInt(input.substr(1, line_end - 1), &count) || count > int64_t{kMaxArgs}) {
    return fail("invalid multibulk length");
  }
  size_t position = line_end + 2;
  if (count <= 0) {  // "*0" and "*-1" are empty requests, skipped
    parsed->status = ParseStatus::kComplete;
    parsed->consumed = position;
    return;
  }
  args->reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    if (position >= input.size()) return;
    if (input[position] != '$') {
      return fail(std::string("expected '$', got '") + input[position] + "'");
    }
    line_end = input.find("\r\n", position);
    if (line_end == std::string_view::npos) {
      if (input.size() - position > 32) fail("invalid bulk length");
      return;
    }
    int64_t length;
    if (!ParseInt(input.substr(position + 1, line_end - position - 1), &length) || length < 0 ||
        length > int64_t{kMaxBulkBytes}) {
      return fail("invalid bulk length");
    }
    position = line_end + 2;
    if (input.size() - position < static_cast<size_t>(length) + 2) return;
    if (input[position + length] != '\r' || input[position + length + 1] != '\n') {
      return fail("expected CRLF after a bulk string");
    }
    args->push_back(input.substr(position, static_cast<size_t>(length)));
    position += static_cast<size_t>(length) + 2;
  }
  parsed->status = ParseStatus::kComplete;
  parsed->consumed = position;
}

// ---------------------------------------------------------------------------------------------

void ReplyWriter::Header(char kind, int64_t count) {
  char buffer[32];
  buffer[0] = kind;
  auto [end, ec] = std::to_chars(buffer + 1, buffer + sizeof(buffer) - 2, count);
  (void)ec;
  *end++ = '\r';
  *end++ = '\n';
  out_->append(buffer, static_cast<size_t>(end - buffer));
}

void ReplyWriter::Simple(std::string_view text) {
  out_->push_back('+');
  out_->append(text);
  out_->append("\r\n");
}

void ReplyWriter::Error(std::string_view text) {
  out_->push_back('-');
  // A reply line cannot hold CR or LF: Redis replaces them with spaces.
  for (char c : text) out_->push_back(c == '\r' || c == '\n' ? ' ' : c);
  out_->append("\r\n");
}

void ReplyWriter::Integer(int64_t value) { Header(':', value); }

void ReplyWriter::Bulk(std::string_view bytes) {
  Header('$', static_cast<int64_t>(bytes.size()));
  out_->append(bytes);
  out_->append("\r\n");
}

void ReplyWriter::Null() { out_->append(protocol_ == 3 ? "_\r\n" : "$-1\r\n"); }
void ReplyWriter::NullArray() { out_->append(protocol_ == 3 ? "_\r\n" : "*-1\r\n"); }
void ReplyWriter::Array(size_t count) { Header('*', static_cast<int64_t>(count)); }

void ReplyWriter::Map(size_t pairs) {
  if (protocol_ == 3) {
    Header('%', static_cast<int64_t>(pairs));
  } else {
    Header('*', static_cast<int64_t>(pairs * 2));
  }
}

void ReplyWriter::Double(double value) {
  char buffer[64];
  int length;
  if (std::isinf(value)) {
    length = std::snprintf(buffer, sizeof(buffer), "%s", value > 0 ? "inf" : "-inf");
  } else {
    // Shortest text that reads back as the same double, as Redis's %.17Lg after trimming.
    auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
    (void)ec;
    length = static_cast<int>(end - buffer);
  }
  const std::string_view text(buffer, static_cast<size_t>(length));
  if (protocol_ == 3) {
    out_->push_back(',');
    out_->append(text);
    out_->append("\r\n");
  } else {
    Bulk(text);
  }
}

void ReplyWriter::Verbatim(std::string_view text) {
  if (protocol_ == 3) {
    Header('=', static_cast<int64_t>(text.size() + 4));
    out_->append("txt:");
    out_->append(text);
    out_->append("\r\n");
  } else {
    Bulk(text);
  }
}

}  // namespace quiver::resp
