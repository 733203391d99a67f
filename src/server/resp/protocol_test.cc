// Tests of the RESP request parser and reply writer, and of the in-process client.
#include "server/resp/protocol.h"

#include <gtest/gtest.h>

#include "server/resp/local.h"

namespace quiver::resp {
namespace {

std::vector<std::string> Parse(std::string_view input, ParseStatus expected, size_t* consumed) {
  std::vector<std::string_view> args;
  Parsed parsed;
  ParseRequest(input, &args, &parsed);
  EXPECT_EQ(parsed.status, expected) << parsed.error << " for " << input;
  *consumed = parsed.consumed;
  return {args.begin(), args.end()};
}

TEST(RespParserTest, MultibulkAndPipelines) {
  using namespace std::string_literals;
  const std::string request = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\nb\0\r\n"s;
  const std::string pipeline = request + "*1\r\n$4\r\nPING\r\n";
  size_t consumed;
  auto args = Parse(pipeline, ParseStatus::kComplete, &consumed);
  EXPECT_EQ(consumed, request.size());
  EXPECT_EQ(args, (std::vector<std::string>{"SET", "k", std::string("a\r\nb\0", 5)}));
  // Every proper prefix is incomplete and consumes nothing.
  for (size_t n = 0; n < request.size(); ++n) {
    Parse(std::string_view(request).substr(0, n), ParseStatus::kIncomplete, &consumed);
    EXPECT_EQ(consumed, 0u);
  }
  EXPECT_TRUE(Parse("*0\r\n", ParseStatus::kComplete, &consumed).empty());
}

TEST(RespParserTest, InlineCommandsWithQuotes) {
  size_t consumed;
  EXPECT_EQ(Parse("PING\r\n", ParseStatus::kComplete, &consumed), std::vector<std::string>{"PING"});
  EXPECT_EQ(Parse("set  k \"a b\\x41\\n\" 'it\\'s'\n", ParseStatus::kComplete, &consumed),
            (std::vector<std::string>{"set", "k", "a bA\n", "it's"}));
  EXPECT_TRUE(Parse("\r\n", ParseStatus::kComplete, &consumed).empty());
  Parse("GET \"unclosed\r\n", ParseStatus::kError, &consumed);
  Parse("GET k", ParseStatus::kIncomplete, &consumed);
}

TEST(RespParserTest, ErrorsLikeRedis) {
  size_t consumed;
  struct Case {
    std::string input, message;
  };
  for (const Case& c : std::vector<Case>{
           {"*x\r\n", "Protocol error: invalid multibulk length"},
           {"*99999999\r\n", "Protocol error: invalid multibulk length"},
           {"*1\r\n+OK\r\n", "Protocol error: expected '$', got '+'"},
           {"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"},
           {"*1\r\n$999999999999\r\n", "Protocol error: invalid bulk length"},
           {"*1\r\n$1\r\nabc\r\n", "Protocol error: expected CRLF after a bulk string"},
       }) {
    std::vector<std::string_view> args;
    Parsed parsed;
    ParseRequest(c.input, &args, &parsed);
    EXPECT_EQ(parsed.status, ParseStatus::kError) << c.input;
    EXPECT_EQ(parsed.error, c.message) << c.input;
  }
  // A huge inline line without a newline is refused rather than buffered for ever.
  Parse(std::string(kMaxInlineBytes + 1, 'a'), ParseStatus::kError, &consumed);
}

TEST(RespReplyTest, Resp2AndResp3) {
  std::string out;
  ReplyWriter reply(&out);
  reply.Simple("OK");
  reply.Error("ERR bad\r\nline");
  reply.Integer(-3);
  reply.Bulk("ab");
  reply.Null();
  reply.Map(1);
  reply.Double(1.5);
  EXPECT_EQ(out, "+OK\r\n-ERR bad  line\r\n:-3\r\n$2\r\nab\r\n$-1\r\n*2\r\n$3\r\n1.5\r\n");
  out.clear();
  reply.set_protocol(3);
  reply.Null();
  reply.Map(1);
  reply.Double(1.5);
  reply.Verbatim("x");
  EXPECT_EQ(out, "_\r\n%1\r\n,1.5\r\n=5\r\ntxt:x\r\n");
}

TEST(RespReplyTest, ParseReplyReadsWhatTheWriterWrites) {
  std::string out;
  ReplyWriter writer(&out);
  writer.set_protocol(3);
  writer.Map(2);
  writer.Bulk("a");
  writer.Integer(-7);
  writer.Bulk(std::string("b\r\n\0", 4));
  writer.Array(3);
  writer.Null();
  writer.Double(1.5);
  writer.Verbatim("text");
  size_t consumed = 0;
  Result<Reply> reply = ParseReply(out, &consumed);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(consumed, out.size());
  ASSERT_EQ(reply->kind, Reply::Kind::kMap);
  ASSERT_EQ(reply->elements.size(), 4u);
  EXPECT_EQ(reply->elements[1].integer, -7);
  EXPECT_EQ(reply->elements[2].text, std::string("b\r\n\0", 4));
  const Reply& array = reply->elements[3];
  EXPECT_EQ(array.elements[0].kind, Reply::Kind::kNull);
  EXPECT_EQ(array.elements[1].number, 1.5);
  EXPECT_EQ(array.elements[2].text, "text");
  for (size_t n = 0; n < out.size(); ++n) {  // every cut is refused
    EXPECT_FALSE(ParseReply(std::string_view(out).substr(0, n), &consumed).ok()) << n;
  }
}

TEST(LocalClientTest, TheWiresSemanticsInProcess) {
  kv::Keyspace keyspace;
  LocalClient kv(keyspace);
  ASSERT_TRUE(kv.Set("k", "v", 60'000).ok());
  EXPECT_EQ(**kv.Get("k"), "v");
  const int64_t ttl = *kv.Ttl("k");
  EXPECT_GT(ttl, 59'000);
  EXPECT_LE(ttl, 60'000);
  ASSERT_TRUE(kv.Set("k", "w").ok());  // an overwrite clears the TTL
  EXPECT_EQ(*kv.Ttl("k"), -1);
  EXPECT_EQ(*kv.Ttl("missing"), -2);
  EXPECT_FALSE(kv.Get("missing")->has_value());
  EXPECT_TRUE(*kv.Expire("k", 10'000));
  EXPECT_FALSE(*kv.Expire("missing", 10'000));
  EXPECT_EQ(*kv.Delete({"k", "missing"}), 1);
  Reply added = kv.Call({"HSET", "h", "f", "1", "g", "2"});
  EXPECT_EQ(added.integer, 2);
  Reply all = kv.Call({"HGETALL", "h"});
  ASSERT_EQ(all.kind, Reply::Kind::kMap);
  EXPECT_EQ(all.elements.size(), 4u);
  // Errors: the wire's texts, as a Reply and as a Status.
  EXPECT_EQ(kv.Call({"NOSUCH"}).kind, Reply::Kind::kError);
  Result<std::optional<std::string>> wrong = kv.Get("h");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(wrong.status().message(),
            "WRONGTYPE Operation against a key holding the wrong kind of value");
  keyspace.SetMaxMemory(1);
  Status full = kv.Set("x", "y");
  EXPECT_EQ(full.code(), StatusCode::kOutOfMemory);
  EXPECT_FALSE(kv.Get("x")->has_value());
}

}  // namespace
}  // namespace quiver::resp
