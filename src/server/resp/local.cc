#include "server/resp/local.h"

#include <charconv>
#include <cstdlib>

namespace quiver::resp {
namespace {

constexpr int kMaxDepth = 64;

Result<Reply> Parse(std::string_view input, size_t* position, int depth) {
  auto fail = [] { return Status::InvalidArgument("not a whole RESP3 reply"); };
  if (*position >= input.size() || depth > kMaxDepth) return fail();
  const char kind = input[(*position)++];
  const size_t end = input.find("\r\n", *position);
  if (end == std::string_view::npos) return fail();
  const std::string_view line = input.substr(*position, end - *position);
  *position = end + 2;
  Reply reply;
  auto length = [&](int64_t* value) { return ParseInt(line, value) && *value >= 0; };
  switch (kind) {
    case '+':
    case '-':
      reply.kind = kind == '+' ? Reply::Kind::kSimple : Reply::Kind::kError;
      reply.text.assign(line);
      return reply;
    case ':':
      reply.kind = Reply::Kind::kInteger;
      if (!ParseInt(line, &reply.integer)) return fail();
      return reply;
    case '#':
      reply.kind = Reply::Kind::kBoolean;
      reply.integer = line == "t" ? 1 : 0;
      return reply;
    case ',': {
      reply.kind = Reply::Kind::kDouble;
      const std::string text(line);
      reply.number = std::strtod(text.c_str(), nullptr);
      return reply;
    }
    case '_':
      return reply;  // kNull
    case '$':
    case '=': {
      int64_t size;
      if (line == "-1") return reply;  // a RESP2 null
      if (!length(&size) || *position + static_cast<size_t>(size) + 2 > input.size()) {
        return fail();
      }
      std::string_view bytes = input.substr(*position, static_cast<size_t>(size));
      *position += static_cast<size_t>(size) + 2;
      if (kind == '=' && bytes.size() >= 4) bytes.remove_prefix(4);  // "txt:"
      reply.kind = Reply::Kind::kBulk;
      reply.text.assign(bytes);
      return reply;
    }
    case '*':
    case '%':
    case '~': {
      int64_t count;
      if (line == "-1") return reply;
      if (!length(&count)) return fail();
      reply.kind = kind == '%' ? Reply::Kind::kMap : Reply::Kind::kArray;
      const int64_t elements = kind == '%' ? 2 * count : count;
      reply.elements.reserve(static_cast<size_t>(std::min<int64_t>(elements, 1 << 20)));
      for (int64_t i = 0; i < elements; ++i) {
        QUIVER_ASSIGN_OR_RETURN(Reply element, Parse(input, position, depth + 1));
        reply.elements.push_back(std::move(element));
      }
      return reply;
    }
    default:
      return fail();
  }
}

}  // namespace

Result<Reply> ParseReply(std::string_view input, size_t* consumed) {
  size_t position = 0;
  QUIVER_ASSIGN_OR_RETURN(Reply reply, Parse(input, &position, 0));
  *consumed = position;
  return reply;
}

LocalClient::LocalClient(kv::Keyspace& keyspace, Catalog* catalog, std::string table_separator) {
  state_.keyspace = &keyspace;
  state_.catalog = catalog;
  state_.table_separator = std::move(table_separator);
  state_.started_ms = UnixMillis();
  state_.list_clients = [] { return std::vector<std::string>{}; };
  state_.client_count = [] { return size_t{0}; };
}

Reply LocalClient::Call(const std::vector<std::string_view>& args) {
  Client client;
  client.protocol = 3;
  client.authenticated = true;
  std::string out;
  ReplyWriter writer(&out);
  writer.set_protocol(3);
  if (args.empty()) return Reply{Reply::Kind::kError, "ERR empty command"};
  Execute(state_, client, args, writer);
  Flush(state_, client, &out);
  size_t consumed = 0;
  Result<Reply> reply = ParseReply(out, &consumed);
  if (!reply.ok()) return Reply{Reply::Kind::kError, "ERR " + reply.status().message()};
  return std::move(reply).value();
}

Status LocalClient::ToStatus(const Reply& reply) {
  if (reply.kind != Reply::Kind::kError) return Status::OK();
  if (reply.text.starts_with("OOM ")) return Status::OutOfMemory(reply.text);
  if (reply.text.starts_with("MISCONF ")) return Status::IOError(reply.text);
  return Status::InvalidArgument(reply.text);
}

Status LocalClient::Set(std::string_view key, std::string_view value, int64_t ttl_ms) {
  const std::string ttl = std::to_string(ttl_ms);
  return ToStatus(ttl_ms == 0 ? Call({"SET", key, value}) : Call({"SET", key, value, "PX", ttl}));
}

Result<std::optional<std::string>> LocalClient::Get(std::string_view key) {
  Reply reply = Call({"GET", key});
  QUIVER_RETURN_NOT_OK(ToStatus(reply));
  if (reply.kind == Reply::Kind::kNull) return std::optional<std::string>();
  return std::optional<std::string>(std::move(reply.text));
}

Result<int64_t> LocalClient::Delete(const std::vector<std::string_view>& keys) {
  std::vector<std::string_view> args{"DEL"};
  args.insert(args.end(), keys.begin(), keys.end());
  Reply reply = Call(args);
  QUIVER_RETURN_NOT_OK(ToStatus(reply));
  return reply.integer;
}

Result<bool> LocalClient::Expire(std::string_view key, int64_t ttl_ms) {
  Reply reply = Call({"PEXPIRE", key, std::to_string(ttl_ms)});
  QUIVER_RETURN_NOT_OK(ToStatus(reply));
  return reply.integer == 1;
}

Result<int64_t> LocalClient::Ttl(std::string_view key) {
  Reply reply = Call({"PTTL", key});
  QUIVER_RETURN_NOT_OK(ToStatus(reply));
  return reply.integer;
}

}  // namespace quiver::resp
