// What the command families of the RESP command table share (commands.cc: strings, keys,
// hashes and the table itself; server_commands.cc: connection and server commands): the context
// a command runs in, Redis's common error texts, and the argument helpers. Internal to
// quiver_resp: nothing outside server/resp/ includes it.
//
// Thread safety: a Context belongs to the connection running the command.
#pragma once

#include <algorithm>
#include <cctype>
#include <span>
#include <string>
#include <string_view>

#include "kv/keyspace.h"
#include "server/resp/commands.h"
#include "server/resp/protocol.h"

namespace quiver::resp {

using Args = std::span<const std::string_view>;

inline constexpr std::string_view kWrongType =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
inline constexpr std::string_view kNotInteger = "ERR value is not an integer or out of range";
inline constexpr std::string_view kNotFloat = "ERR value is not a valid float";
inline constexpr std::string_view kSyntax = "ERR syntax error";

struct Context {
  ServerState& server;
  Client& client;
  const Args& args;
  ReplyWriter& reply;
  kv::Keyspace& keyspace() { return *server.keyspace; }
};

inline std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// `arg` is `word` (given in lower case), in any case.
inline bool Is(std::string_view arg, std::string_view word) {
  return arg.size() == word.size() &&
         std::equal(arg.begin(), arg.end(), word.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

// Connection and server commands (server_commands.cc), as the command table calls them.
void Ping(Context& c);
void Echo(Context& c);
void Select(Context& c);
void Auth(Context& c);
void Hello(Context& c);
void ClientCommand(Context& c);
void Config(Context& c);
void DbSize(Context& c);
void Time(Context& c);
void Info(Context& c);

}  // namespace quiver::resp
