// The RESP command families in process, through LocalClient (the command table the server runs):
// each command's replies and Redis's error texts, in milliseconds, without a server. The wire
// itself is tested end to end (tests/e2e/test_resp.py).
#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/reader.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "engine/catalog.h"
#include "engine/test_util.h"
#include "kv/keyspace.h"
#include "server/resp/local.h"

namespace quiver::resp {
namespace {

using testing::BatchFromJson;
using testing::SchemaFromJson;

constexpr char kWrongType[] = "WRONGTYPE Operation against a key holding the wrong kind of value";

// A keyspace on a clock the test advances, and a client of it.
class CommandsTest : public ::testing::Test {
 protected:
  Reply Call(const std::vector<std::string_view>& args) { return kv_.Call(args); }
  void ExpectError(const std::vector<std::string_view>& args, const std::string& text) {
    const Reply reply = Call(args);
    EXPECT_EQ(reply.kind, Reply::Kind::kError) << args[0];
    EXPECT_EQ(reply.text, text) << args[0];
  }
  void ExpectInteger(const std::vector<std::string_view>& args, int64_t value) {
    const Reply reply = Call(args);
    EXPECT_EQ(reply.kind, Reply::Kind::kInteger) << args[0] << ": " << reply.text;
    EXPECT_EQ(reply.integer, value) << args[0];
  }
  void ExpectBulk(const std::vector<std::string_view>& args, const std::string& text) {
    const Reply reply = Call(args);
    EXPECT_EQ(reply.kind, Reply::Kind::kBulk) << args[0] << ": " << reply.text;
    EXPECT_EQ(reply.text, text) << args[0];
  }
  void ExpectNull(const std::vector<std::string_view>& args) {
    EXPECT_EQ(Call(args).kind, Reply::Kind::kNull) << args[0];
  }
  void ExpectOk(const std::vector<std::string_view>& args) {
    const Reply reply = Call(args);
    EXPECT_EQ(reply.kind, Reply::Kind::kSimple) << args[0] << ": " << reply.text;
    EXPECT_EQ(reply.text, "OK") << args[0];
  }

  std::atomic<int64_t> now_{1'800'000'000'000};
  kv::Keyspace keyspace_{[this] { return now_.load(); }};
  LocalClient kv_{keyspace_};
};

using StringCommandsTest = CommandsTest;
using KeyCommandsTest = CommandsTest;
using HashCommandsTest = CommandsTest;
using ServerCommandsTest = CommandsTest;

TEST_F(StringCommandsTest, SetGetAndTheirOptions) {
  ExpectOk({"SET", "k", "v"});
  ExpectBulk({"GET", "k"}, "v");
  ExpectNull({"GET", "missing"});
  ExpectNull({"SET", "k", "w", "NX"});
  ExpectOk({"SET", "k", "w", "XX", "PX", "1000"});
  ExpectBulk({"SET", "k", "x", "GET", "KEEPTTL"}, "w");
  ExpectInteger({"PTTL", "k"}, 1000);
  ExpectNull({"SET", "fresh", "v", "XX"});
  ExpectError({"SET", "k", "v", "EX", "0"}, "ERR invalid expire time in 'set' command");
  ExpectError({"SET", "k", "v", "EX", "10", "KEEPTTL"}, "ERR syntax error");
  ExpectError({"SET", "k", "v", "NX", "XX"}, "ERR syntax error");
  ExpectError({"GETEX", "k", "PX", "-5"}, "ERR invalid expire time in 'getex' command");
  ExpectError({"SETEX", "k", "ten", "v"}, "ERR value is not an integer or out of range");
  ExpectError({"PSETEX", "k", "0", "v"}, "ERR invalid expire time in 'psetex' command");
  ExpectInteger({"SETNX", "k", "v"}, 0);
  ExpectInteger({"SETNX", "n", "v"}, 1);
}

TEST_F(StringCommandsTest, CountersAppendAndLengths) {
  ExpectInteger({"INCR", "c"}, 1);
  ExpectInteger({"INCRBY", "c", "41"}, 42);
  ExpectInteger({"DECRBY", "c", "2"}, 40);
  ExpectError({"DECRBY", "c", "-9223372036854775808"}, "ERR decrement would overflow");
  ExpectOk({"SET", "big", "9223372036854775807"});
  ExpectError({"INCR", "big"}, "ERR increment or decrement would overflow");
  ExpectOk({"SET", "text", "abc"});
  ExpectError({"INCR", "text"}, "ERR value is not an integer or out of range");
  ExpectError({"INCRBYFLOAT", "text", "1"}, "ERR value is not a valid float");
  ExpectBulk({"INCRBYFLOAT", "f", "1.5"}, "1.5");
  ExpectBulk({"INCRBYFLOAT", "f", "0.25"}, "1.75");
  ExpectError({"INCRBYFLOAT", "f", "inf"}, "ERR increment would produce NaN or Infinity");
  ExpectInteger({"APPEND", "text", "def"}, 6);
  ExpectInteger({"APPEND", "new", "xy"}, 2);
  ExpectInteger({"STRLEN", "text"}, 6);
  ExpectInteger({"STRLEN", "missing"}, 0);
  // A counter keeps its TTL.
  ExpectOk({"SET", "t", "1", "PX", "5000"});
  ExpectInteger({"INCR", "t"}, 2);
  ExpectInteger({"PTTL", "t"}, 5000);
}

TEST_F(StringCommandsTest, ManyKeysAndOtherTypes) {
  ExpectOk({"MSET", "a", "1", "b", "2"});
  Reply values = Call({"MGET", "a", "h", "b", "missing"});
  Call({"HSET", "h", "f", "v"});
  values = Call({"MGET", "a", "h", "b", "missing"});
  ASSERT_EQ(values.elements.size(), 4u);
  EXPECT_EQ(values.elements[0].text, "1");
  EXPECT_EQ(values.elements[1].kind, Reply::Kind::kNull) << "another type reads as nil";
  EXPECT_EQ(values.elements[2].text, "2");
  EXPECT_EQ(values.elements[3].kind, Reply::Kind::kNull);
  ExpectInteger({"MSETNX", "a", "9", "c", "3"}, 0);
  ExpectNull({"GET", "c"});
  ExpectError({"MSET", "a"}, "ERR wrong number of arguments for 'mset' command");
  for (const char* command : {"GET", "GETDEL", "STRLEN", "INCR", "GETEX"}) {
    ExpectError({command, "h"}, kWrongType);
  }
  ExpectError({"APPEND", "h", "x"}, kWrongType);
  ExpectError({"INCRBYFLOAT", "h", "1"}, kWrongType);
  ExpectError({"SET", "h", "v", "GET"}, kWrongType);
  ExpectBulk({"GETDEL", "a"}, "1");
  ExpectNull({"GET", "a"});
}

TEST_F(KeyCommandsTest, ExpiryFollowsTheClock) {
  ExpectOk({"SET", "k", "v"});
  ExpectInteger({"TTL", "k"}, -1);
  ExpectInteger({"TTL", "missing"}, -2);
  ExpectInteger({"EXPIRE", "k", "10"}, 1);
  ExpectInteger({"PTTL", "k"}, 10'000);
  ExpectInteger({"PEXPIRETIME", "k"}, now_ + 10'000);
  ExpectInteger({"EXPIRE", "k", "5", "GT"}, 0);
  ExpectInteger({"EXPIRE", "k", "5", "LT"}, 1);
  ExpectInteger({"EXPIRE", "k", "50", "NX"}, 0);
  ExpectError({"EXPIRE", "k", "5", "NX", "XX"},
              "ERR NX and XX, GT or LT options at the same time are not compatible");
  ExpectError({"EXPIRE", "k", "5", "GT", "LT"},
              "ERR GT and LT options at the same time are not compatible");
  ExpectError({"EXPIRE", "k", "5", "SOON"}, "ERR Unsupported option SOON");
  ExpectError({"EXPIRE", "k", "x"}, "ERR value is not an integer or out of range");
  ExpectError({"PEXPIRE", "k", "9223372036854775807"},
              "ERR invalid expire time in 'pexpire' command");
  now_ += 4'999;
  ExpectBulk({"GET", "k"}, "v");
  now_ += 1;
  ExpectNull({"GET", "k"});
  ExpectInteger({"EXISTS", "k"}, 0);
  ExpectOk({"SET", "p", "v", "EX", "100"});
  ExpectInteger({"PERSIST", "p"}, 1);
  ExpectInteger({"PERSIST", "p"}, 0);
  ExpectInteger({"EXPIREAT", "p", "1"}, 1);  // a time already past deletes the key
  ExpectInteger({"EXISTS", "p"}, 0);
}

TEST_F(KeyCommandsTest, RenameDeleteScanAndTypes) {
  ExpectOk({"MSET", "a", "1", "b", "2"});
  Call({"HSET", "h", "f", "v"});
  EXPECT_EQ(Call({"TYPE", "a"}).text, "string");
  EXPECT_EQ(Call({"TYPE", "h"}).text, "hash");
  EXPECT_EQ(Call({"TYPE", "missing"}).text, "none");
  ExpectError({"RENAME", "missing", "x"}, "ERR no such key");
  ExpectInteger({"RENAMENX", "a", "b"}, 0);
  ExpectOk({"RENAME", "a", "c"});
  ExpectBulk({"GET", "c"}, "1");
  ExpectInteger({"EXISTS", "a", "b", "c", "c"}, 3);
  Reply scan = Call({"SCAN", "0", "COUNT", "100", "TYPE", "hash"});
  ASSERT_EQ(scan.elements.size(), 2u);
  ASSERT_EQ(scan.elements[1].elements.size(), 1u);
  EXPECT_EQ(scan.elements[1].elements[0].text, "h");
  ExpectError({"SCAN", "x"}, "ERR invalid cursor");
  ExpectError({"SCAN", "0", "COUNT", "0"}, "ERR syntax error");
  ExpectError({"SCAN", "0", "COUNT", "many"}, "ERR value is not an integer or out of range");
  ExpectError({"SCAN", "0", "MATCH"}, "ERR syntax error");
  EXPECT_EQ(Call({"KEYS", "[bc]"}).elements.size(), 2u);
  ExpectInteger({"DEL", "b", "c", "missing"}, 2);
  ExpectError({"FLUSHALL", "LATER"}, "ERR syntax error");
  ExpectOk({"FLUSHALL"});
  ExpectInteger({"DBSIZE"}, 0);
  ExpectNull({"RANDOMKEY"});
}

TEST_F(HashCommandsTest, FieldsCountersAndScans) {
  ExpectInteger({"HSET", "h", "a", "1", "b", "2"}, 2);
  ExpectOk({"HMSET", "h", "b", "3"});
  ExpectBulk({"HGET", "h", "b"}, "3");
  ExpectNull({"HGET", "h", "missing"});
  ExpectInteger({"HLEN", "h"}, 2);
  ExpectInteger({"HEXISTS", "h", "a"}, 1);
  ExpectInteger({"HINCRBY", "h", "a", "10"}, 11);
  ExpectInteger({"HINCRBY", "new", "n", "-1"}, -1);
  ExpectOk({"HMSET", "h", "s", "text", "max", "9223372036854775807"});
  ExpectError({"HINCRBY", "h", "s", "1"}, "ERR hash value is not an integer");
  ExpectError({"HINCRBY", "h", "max", "1"}, "ERR increment or decrement would overflow");
  ExpectError({"HINCRBY", "h", "a", "x"}, "ERR value is not an integer or out of range");
  ExpectError({"HSET", "h", "a"}, "ERR wrong number of arguments for 'hset' command");
  EXPECT_EQ(Call({"HKEYS", "h"}).elements.size(), 4u);
  EXPECT_EQ(Call({"HGETALL", "h"}).elements.size(), 8u);
  Reply scan = Call({"HSCAN", "h", "0", "MATCH", "m*"});
  ASSERT_EQ(scan.elements.size(), 2u);
  EXPECT_EQ(scan.elements[0].text, "0");
  EXPECT_EQ(scan.elements[1].elements.size(), 2u);  // max and its value
  ExpectInteger({"HDEL", "h", "a", "b", "s", "max", "missing"}, 4);
  ExpectInteger({"EXISTS", "h"}, 0);  // a hash left empty is no key
  ExpectOk({"SET", "str", "v"});
  for (const char* command : {"HGET", "HEXISTS"}) ExpectError({command, "str", "f"}, kWrongType);
  for (const char* command : {"HLEN", "HGETALL", "HKEYS", "HVALS"}) {
    ExpectError({command, "str"}, kWrongType);
  }
  ExpectError({"HSET", "str", "f", "v"}, kWrongType);
  ExpectError({"HDEL", "str", "f"}, kWrongType);
  ExpectError({"HINCRBY", "str", "f", "1"}, kWrongType);
  ExpectError({"HSCAN", "str", "0"}, kWrongType);
}

TEST_F(ServerCommandsTest, ConnectionAndTableDescriptions) {
  EXPECT_EQ(Call({"PING"}).text, "PONG");
  ExpectBulk({"PING", "hi"}, "hi");
  ExpectError({"PING", "a", "b"}, "ERR wrong number of arguments for 'ping' command");
  ExpectError({"SELECT", "1"}, "ERR DB index is out of range");
  ExpectError({"GET"}, "ERR wrong number of arguments for 'get' command");
  EXPECT_EQ(Call({"NOSUCH", "x"}).text,
            "ERR unknown command 'NOSUCH', with args beginning with: 'x' ");
  // COMMAND INFO: arity, the flags from their bitmask, key positions.
  Reply info = Call({"COMMAND", "INFO", "set", "hget", "nosuch", "auth"});
  ASSERT_EQ(info.elements.size(), 4u);
  const Reply& set = info.elements[0];
  EXPECT_EQ(set.elements[0].text, "set");
  EXPECT_EQ(set.elements[1].integer, -3);
  ASSERT_EQ(set.elements[2].elements.size(), 2u);
  EXPECT_EQ(set.elements[2].elements[0].text, "write");
  EXPECT_EQ(set.elements[2].elements[1].text, "denyoom");
  EXPECT_EQ(set.elements[3].integer, 1);
  const Reply& hget = info.elements[1];
  ASSERT_EQ(hget.elements[2].elements.size(), 2u);
  EXPECT_EQ(hget.elements[2].elements[0].text, "readonly");
  EXPECT_EQ(hget.elements[2].elements[1].text, "fast");
  EXPECT_EQ(info.elements[2].kind, Reply::Kind::kNull);
  EXPECT_EQ(info.elements[3].elements[2].elements[1].text, "noauth");
  const Reply count = Call({"COMMAND", "COUNT"});
  EXPECT_EQ(count.integer, static_cast<int64_t>(CommandCount()));
  EXPECT_EQ(Call({"COMMAND"}).elements.size(), CommandCount());
  EXPECT_EQ(CommandCount(), 64u) << "every family registered";
}

TEST(TableCommandsTest, RowsAsHashesAndFetch) {
  kv::Keyspace keyspace;
  {
    LocalClient no_tables(keyspace);
    const Reply reply = no_tables.Call({"QUIVER.FETCH", "t", "1", "a"});
    EXPECT_EQ(reply.text, "ERR no feature tables are served here");
  }
  Catalog catalog;
  auto table = catalog.CreateTable("t", SchemaFromJson(R"({"key": "id", "columns": {
      "id": {"dtype": "utf8"}, "score": {"dtype": "float64"}, "n": {"dtype": "int64"}}})"));
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_TRUE((*table)
                  ->Upsert(*BatchFromJson({{"id", arrow::utf8(), R"(["a", "b"])"},
                                           {"score", arrow::float64(), "[0.5, null]"},
                                           {"n", arrow::int64(), "[1, 2]"}}))
                  .ok());
  LocalClient kv(keyspace, &catalog);
  Reply row = kv.Call({"HGETALL", "t:a"});
  ASSERT_EQ(row.kind, Reply::Kind::kMap);
  ASSERT_EQ(row.elements.size(), 4u);
  EXPECT_EQ(row.elements[0].text, "score");
  EXPECT_EQ(row.elements[1].text, "0.5");
  EXPECT_EQ(kv.Call({"HGET", "t:b", "score"}).kind, Reply::Kind::kNull) << "a null is no field";
  EXPECT_EQ(kv.Call({"HLEN", "t:missing"}).integer, 0);
  ASSERT_TRUE(kv.Set("t:a", "shadow").ok());
  EXPECT_EQ(kv.Call({"HGET", "t:a", "score"}).text, std::string(kWrongType))
      << "a keyspace key shadows the row";

  Reply fetched = kv.Call({"QUIVER.FETCH", "t", "2", "a", "zz", "FOUND", "COLUMNS", "n"});
  ASSERT_EQ(fetched.kind, Reply::Kind::kBulk) << fetched.text;
  auto reader = arrow::ipc::RecordBatchStreamReader::Open(
      std::make_shared<arrow::io::BufferReader>(arrow::Buffer::FromString(fetched.text)));
  ASSERT_TRUE(reader.ok());
  auto batches = (*reader)->ToTable();
  ASSERT_TRUE(batches.ok());
  EXPECT_EQ((*batches)->num_rows(), 2);
  EXPECT_EQ((*batches)->schema()->field_names(), (std::vector<std::string>{"n", "_found"}));
  EXPECT_EQ(kv.Call({"QUIVER.FETCH", "t", "0", "a"}).text,
            "ERR numkeys must be a positive integer");
  EXPECT_EQ(kv.Call({"QUIVER.FETCH", "t", "3", "a"}).text,
            "ERR numkeys is larger than the number of keys given");
  EXPECT_EQ(kv.Call({"QUIVER.FETCH", "t", "1", "a", "SIDEWAYS"}).text, "ERR syntax error");
  EXPECT_EQ(kv.Call({"QUIVER.FETCH", "nope", "1", "a"}).kind, Reply::Kind::kError);
}

}  // namespace
}  // namespace quiver::resp
