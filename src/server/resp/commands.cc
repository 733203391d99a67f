// The RESP command table (built from the families' commands), the lookup by name, and the
// dispatch: arity, authentication, the log's state and the memory limit are checked here, once
// for every command; a change's log record is committed or flushed here.
#include "server/resp/commands.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/log.h"
#include "server/resp/command_context.h"

namespace quiver::resp {
namespace {

// ---------------------------------------------------------------------------------------------
// The table: every family's commands, and an index by name.

const std::vector<CommandSpec>& BuildTable() {
  static const std::vector<CommandSpec> table = [] {
    std::vector<CommandSpec> commands;
    AddStringCommands(commands);
    AddKeyCommands(commands);
    AddHashCommands(commands);
    AddTableCommands(commands);
    AddServerCommands(commands);
    return commands;
  }();
  return table;
}

const std::unordered_map<std::string_view, const CommandSpec*>& Index() {
  static const auto index = [] {
    std::unordered_map<std::string_view, const CommandSpec*> map;
    for (const CommandSpec& command : BuildTable()) map.emplace(command.name, &command);
    return map;
  }();
  return index;
}

}  // namespace

const std::vector<CommandSpec>& CommandTable() { return BuildTable(); }

const CommandSpec* FindCommand(std::string_view lower_case_name) {
  auto it = Index().find(lower_case_name);
  return it == Index().end() ? nullptr : it->second;
}

std::vector<std::string_view> CommandFlagNames(uint32_t flags) {
  static constexpr std::pair<CommandFlag, std::string_view> kNames[] = {
      {kWrite, "write"}, {kReadOnly, "readonly"}, {kDenyOom, "denyoom"},
      {kFast, "fast"},   {kNoAuth, "noauth"},
  };
  std::vector<std::string_view> names;
  for (const auto& [flag, name] : kNames) {
    if ((flags & flag) != 0) names.push_back(name);
  }
  return names;
}

size_t CommandCount() { return CommandTable().size(); }

std::string ClientLine(const Client& client) {
  std::lock_guard lock(client.mutex);
  return "id=" + std::to_string(client.id) + " addr=" + client.address + " name=" + client.name +
         " age=" + std::to_string((UnixMillis() - client.created_ms) / 1000) +
         " db=0 resp=" + std::to_string(client.protocol) +
         " cmd=" + client.last_command.load(std::memory_order_relaxed);
}

namespace {

// The command named `name` (any case), or null. A pipeline repeats its command: the last name
// this thread looked up, as sent, answers without the table.
const CommandSpec* Lookup(std::string_view name) {
  constexpr size_t kLongest = 24;  // longer than every command name
  thread_local char last[kLongest];
  thread_local size_t last_size = 0;
  thread_local const CommandSpec* last_command = nullptr;
  if (name.size() > kLongest) return nullptr;
  if (name.size() == last_size && std::memcmp(name.data(), last, last_size) == 0) {
    return last_command;
  }
  char lowered[kLongest];
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    lowered[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  }
  const CommandSpec* found = FindCommand(std::string_view(lowered, name.size()));
  std::memcpy(last, name.data(), name.size());
  last_size = name.size();
  last_command = found;
  return found;
}

}  // namespace

void AppendKeys(Args args, std::vector<std::string_view>* keys) {
  const CommandSpec* command = args.empty() ? nullptr : Lookup(args[0]);
  if (command == nullptr || command->first_key <= 0) return;
  const auto size = static_cast<int>(args.size());
  const int last = command->last_key < 0 ? size + command->last_key : command->last_key;
  for (int i = command->first_key; i <= last && i < size; i += command->step) {
    keys->push_back(args[i]);
  }
}

void Execute(ServerState& server, Client& client, Args args, ReplyWriter& reply) {
  if (args.empty()) return;
  server.commands.fetch_add(1, std::memory_order_relaxed);
  const CommandSpec* found = Lookup(args[0]);
  if (found == nullptr) {
    std::string message = "ERR unknown command '" + std::string(args[0].substr(0, 128)) +
                          "', with args beginning with: ";
    for (size_t i = 1; i < args.size() && message.size() < 256; ++i) {
      message += "'" + std::string(args[i].substr(0, 128)) + "' ";
    }
    return reply.Error(message);
  }
  const CommandSpec& command = *found;
  const int arity = command.arity;
  if ((arity > 0 && static_cast<int>(args.size()) != arity) ||
      (arity < 0 && static_cast<int>(args.size()) < -arity)) {
    return reply.Error("ERR wrong number of arguments for '" + std::string(command.name) +
                       "' command");
  }
  if (!server.requirepass.empty() && !client.authenticated && (command.flags & kNoAuth) == 0) {
    return reply.Error("NOAUTH Authentication required.");
  }
  kv::KeyspaceLog* log = (command.flags & kWrite) != 0 ? server.keyspace->log() : nullptr;
  if (log != nullptr) {
    if (Status writable = log->Writable(); !writable.ok()) {
      if (writable.code() == StatusCode::kReadOnly) {  // Redis's word for a replica
        return reply.Error("READONLY " + writable.message());
      }
      return reply.Error(
          "MISCONF changes are refused while the write-ahead log cannot be "
          "written: " +
          writable.message());
    }
  }
  if ((command.flags & kDenyOom) != 0 && !server.keyspace->MakeRoom()) {
    return reply.Error("OOM command not allowed when used memory > 'maxmemory'.");
  }
  client.last_command.store(command.name, std::memory_order_relaxed);
  Context context{server, client, args, reply};
  if (log == nullptr) return command.run(context);
  const size_t mark = reply.size();
  kv::TakeLogOutcome();
  command.run(context);
  kv::LogOutcome logged = kv::TakeLogOutcome();
  Status status = std::move(logged.error);
  if (status.ok() && logged.lsn != 0) {
    if (log->SyncsOnCommit()) {
      status = log->Commit(logged.lsn);
    } else {
      client.unwritten_lsn = std::max(client.unwritten_lsn, logged.lsn);
      client.unwritten_replies.emplace_back(mark, reply.size());
    }
  }
  if (!status.ok()) {
    // Applied in memory, but not durable: the client must not take it as done.
    reply.Truncate(mark);
    reply.Error("MISCONF the change was applied in memory but could not be logged: " +
                status.message());
  }
}

void Flush(ServerState& server, Client& client, std::string* output) {
  if (client.unwritten_lsn == 0) return;
  const uint64_t lsn = std::exchange(client.unwritten_lsn, 0);
  const Status written = server.keyspace->log()->Commit(lsn);
  if (written.ok()) {
    client.unwritten_replies.clear();  // keeps its capacity for the next pipeline
    return;
  }
  const auto replies = std::exchange(client.unwritten_replies, {});
  QUIVER_LOG(kWarn, "key-value changes not written to the log yet (retried every second)",
             {{"lsn", std::to_string(lsn)}, {"error", written.message()}});
  std::string rebuilt;
  ReplyWriter writer(&rebuilt);
  size_t at = 0;
  for (const auto& [begin, end] : replies) {
    rebuilt.append(*output, at, begin - at);
    writer.Error("MISCONF the change was applied in memory but could not be logged: " +
                 written.message());
    at = end;
  }
  rebuilt.append(*output, at);
  output->swap(rebuilt);
}

}  // namespace quiver::resp