// What the command families of the RESP command table share: the context a command runs in, a
// command's entry in the table (with its flags as a bitmask), each family's registration, and the
// argument helpers more than one family uses. The families: string_commands.cc,
// key_commands.cc, hash_commands.cc, table_commands.cc (feature tables) and server_commands.cc
// (connection and server); commands.cc holds the table, the lookup and the dispatch. Internal to
// quiver_resp: nothing outside server/resp/ includes it.
//
// Thread safety: a Context belongs to the connection running the command.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kv/keyspace.h"
#include "server/resp/commands.h"
#include "server/resp/op_status.h"
#include "server/resp/protocol.h"

namespace quiver::resp {

using Args = std::span<const std::string_view>;

inline std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

struct Context {
  ServerState& server;
  Client& client;
  const Args& args;
  ReplyWriter& reply;
  kv::Keyspace& keyspace() { return *server.keyspace; }
  // Replies the error of `status` (op_status.h), naming this command where the text does.
  void Fail(OpStatus status) { ReplyError(reply, status, Lower(args[0])); }
};

// A command's flags, as COMMAND INFO shows them (CommandFlagNames).
enum CommandFlag : uint32_t {
  kWrite = 1u << 0,     // changes the keyspace: logged, refused while the log cannot be written
  kReadOnly = 1u << 1,  // only reads
  kDenyOom = 1u << 2,   // may grow memory: makes room under maxmemory first, or is refused
  kFast = 1u << 3,      // O(1) or O(log n)
  kNoAuth = 1u << 4,    // allowed before AUTH
};
std::vector<std::string_view> CommandFlagNames(uint32_t flags);

// A command of the table: Redis's arity (N exactly, -N at least) and key positions (first,
// last (negative: from the end), step; 0 0 0: none), its group and summary (COMMAND DOCS).
struct CommandSpec {
  const char* name;
  int arity;
  uint32_t flags;
  int first_key, last_key, step;
  const char* group;
  const char* summary;
  void (*run)(Context&);
};

// Each family appends its commands to the table (commands.cc calls them once, in this order).
void AddStringCommands(std::vector<CommandSpec>& table);
void AddKeyCommands(std::vector<CommandSpec>& table);
void AddHashCommands(std::vector<CommandSpec>& table);
void AddTableCommands(std::vector<CommandSpec>& table);
void AddServerCommands(std::vector<CommandSpec>& table);

// The whole table (COMMAND), and a command by its lower-case name (null: none).
const std::vector<CommandSpec>& CommandTable();
const CommandSpec* FindCommand(std::string_view lower_case_name);

// `arg` is `word` (given in lower case), in any case.
inline bool Is(std::string_view arg, std::string_view word) {
  return arg.size() == word.size() &&
         std::equal(arg.begin(), arg.end(), word.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

// Expiry arguments (key_commands.cc). A relative (unit_ms 1000 or 1) or absolute time as an
// absolute Unix ms; false on overflow, or a non-positive value when `positive` is required.
bool ExpireAt(std::string_view text, int64_t unit_ms, bool absolute, kv::Millis now, bool positive,
              kv::Millis* at);
// EX, PX, EXAT or PXAT (any case).
bool IsExpireOption(std::string_view option);
// `option value` of SET and GETEX as an absolute Unix ms time; false, with the error replied,
// for a time that is not a positive integer or overflows.
bool ParseExpireOption(Context& c, std::string_view option, std::string_view value, kv::Millis* at);

// The arguments of SCAN and HSCAN (key_commands.cc) from c.args[first] (the cursor) on: [MATCH
// pattern] [COUNT count], and [TYPE type] when `with_type`. False, with the error replied, when
// one is wrong.
struct ScanArgs {
  uint64_t cursor = 0;
  std::string_view pattern = "*";
  int64_t count = 10;
  std::optional<kv::Type> type;
  bool no_type = false;  // TYPE named a type Quiver does not hold: nothing matches
};
bool ParseScanArgs(Context& c, size_t first, bool with_type, ScanArgs* out);

}  // namespace quiver::resp
