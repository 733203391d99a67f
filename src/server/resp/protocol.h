// RESP (the Redis serialization protocol): the request parser and the reply writer.
//
// Requests are arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) or inline commands (a
// line of words, `PING\r\n`, with Redis's quoting: "a b", 'c', \x41 escapes). Parsing is
// incremental: a partial request asks for more bytes and parses nothing.
//
// Replies are written for RESP2 or RESP3 (chosen by HELLO): the writer renders nulls, maps and
// doubles in the connection's protocol.
//
// Thread safety: functions and per-connection objects.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace quiver::resp {

inline constexpr size_t kMaxArgs = size_t{1024} * 1024;  // Redis's limit for a multibulk
inline constexpr size_t kMaxBulkBytes = 512 << 20;       // proto-max-bulk-len
inline constexpr size_t kMaxInlineBytes = 64 << 10;      // an inline command's line

// A decimal int64 (optionally negative, at most 20 characters); false when `text` is not one.
bool ParseInt(std::string_view text, int64_t* value);

enum class ParseStatus { kComplete, kIncomplete, kError };

struct Parsed {
  ParseStatus status = ParseStatus::kIncomplete;
  size_t consumed = 0;                      // bytes of the request (kComplete); 0 otherwise
  std::string error;                        // kError: Redis's "Protocol error: ..." text
  std::vector<std::string> inline_storage;  // owns the arguments of an inline command
};

// Parses one request at the start of `input`. `args` receives views into `input` (or into
// `parsed->inline_storage` for inline commands). An empty inline line is complete with no args.
void ParseRequest(std::string_view input, std::vector<std::string_view>* args, Parsed* parsed);

class ReplyWriter {
 public:
  explicit ReplyWriter(std::string* out) : out_(out) {}
  void set_protocol(int protocol) { protocol_ = protocol; }
  int protocol() const { return protocol_; }

  void Simple(std::string_view text);    // +OK
  void Error(std::string_view text);     // -ERR ... (text includes the code: "ERR ...")
  void Integer(int64_t value);           // :1
  void Bulk(std::string_view bytes);     // $3\r\nabc
  void Null();                           // $-1 / _
  void NullArray();                      // *-1 / _
  void Array(size_t count);              // *N, then N replies
  void Map(size_t pairs);                // %N (RESP3) or *2N, then 2N replies
  void Double(double value);             // ,1.5 (RESP3) or a bulk string
  void Verbatim(std::string_view text);  // =N\r\ntxt:... (RESP3) or a bulk string

  // The bytes written so far, and taking back what was written after a mark.
  size_t size() const { return out_->size(); }
  void Truncate(size_t size) { out_->resize(size); }

 private:
  void Header(char kind, int64_t count);
  std::string* out_;
  int protocol_ = 2;
};

}  // namespace quiver::resp
