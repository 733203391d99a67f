// Fuzz target for the RESP parser and the command table: the input is a client's byte stream;
// every request parsed from it is executed against a keyspace, as a connection would. No input
// may crash, leak or trip a sanitizer; the parser must consume within bounds and agree with
// itself when the stream arrives in two pieces.
#include <cstdio>
#include <string_view>

#include "common/fuzz_check.h"
#include "engine/catalog.h"
#include "kv/keyspace.h"
#include "server/codec/codec.h"
#include "server/resp/commands.h"
#include "server/resp/protocol.h"

namespace {

void Check(bool condition, const char* property) {
  quiver::FuzzCheck(condition, "resp_fuzz", property);
}

// A feature table "t" (utf8 key; int64, float32 embedding of 2) with rows "a" and "b", for the
// table paths of the hash commands and QUIVER.FETCH.
quiver::Catalog* MakeCatalog() {
  static quiver::Catalog catalog;
  auto schema = quiver::TableSchema::FromJson(
      R"({"key": "k", "columns": {"k": {"dtype": "utf8", "nullable": false},
          "x": {"dtype": "int64"}, "e": {"dtype": "fixed_size_list[float32, 2]"}}})");
  Check(schema.ok(), "the table's schema is valid");
  auto table = catalog.CreateTable("t", *schema);
  Check(table.ok(), "the table is created");
  auto batch = quiver::codec::ParseJsonWrite(
      R"({"columns": {"k": ["a", "b"], "x": [1, null], "e": [[0.5, 1], null]}})", *schema);
  Check(batch.ok() && (*table)->Upsert(**batch).ok(), "the rows are written");
  return &catalog;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace quiver::resp;
  static quiver::kv::Keyspace keyspace;
  static ServerState server;
  static quiver::Catalog* catalog = MakeCatalog();
  server.keyspace = &keyspace;
  server.catalog = catalog;
  server.list_clients = [] { return std::vector<std::string>{"id=1"}; };
  server.client_count = [] { return size_t{1}; };
  Client client;
  client.authenticated = true;
  std::string output;
  ReplyWriter reply(&output);
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> args;
  Parsed parsed;
  while (!rest.empty()) {
    ParseRequest(rest, &args, &parsed);
    if (parsed.status != ParseStatus::kComplete) break;
    Check(parsed.consumed > 0 && parsed.consumed <= rest.size(), "consumed within the input");
    // The same request split at its middle: the first half is incomplete.
    if (parsed.consumed > 1 && rest[0] == '*') {
      std::vector<std::string_view> half_args;
      Parsed half;
      ParseRequest(rest.substr(0, parsed.consumed / 2), &half_args, &half);
      Check(half.status != ParseStatus::kComplete || half.consumed <= parsed.consumed / 2,
            "a prefix never consumes more than itself");
    }
    reply.set_protocol(client.protocol);
    Execute(server, client, args, reply);
    rest.remove_prefix(parsed.consumed);
    if (output.size() > (1 << 20)) output.clear();
  }
  if (keyspace.Size() > 10000) keyspace.Clear();
  return 0;
}
