// The connection and server commands of the RESP command table: PING, ECHO, SELECT, AUTH,
// HELLO, CLIENT, QUIT, CONFIG, COMMAND, DBSIZE, TIME, INFO, and the client limits CONFIG sets.
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/byte_size.h"
#include "common/client_memory.h"
#include "server/resp/command_context.h"

namespace quiver::resp {

void ApplyClientMemoryLimit(ServerState& server) {
  const int64_t explicit_limit = server.maxmemory_clients.load();
  uint64_t limit = static_cast<uint64_t>(explicit_limit);
  if (explicit_limit < 0) limit = server.keyspace->MaxMemory() != 0 ? kDefaultClientMemory : 0;
  ClientMemory::Global().SetLimit(limit);
}

bool ParseOutputBufferLimit(std::string_view text, uint64_t* hard, uint64_t* soft,
                            int64_t* seconds) {
  std::vector<std::string_view> words;
  for (size_t start = 0; start < text.size();) {
    const size_t end = std::min(text.find(' ', start), text.size());
    if (end > start) words.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (words.size() == 4 && Lower(words[0]) == "normal") words.erase(words.begin());
  if (words.size() != 3) return false;
  int64_t number = 0;
  return ParseByteSize(words[0], hard) && ParseByteSize(words[1], soft) &&
         ParseInt(words[2], &number) && number >= 0 && (*seconds = number, true);
}

// CONFIG GET | SET: the parameters Quiver has; maxmemory, maxmemory-policy, maxmemory-samples
// and the packed-hash limits (hash-max-listpack-entries | -value, and their old ziplist names)
// can be set (CONFIG SET takes several pairs and applies all or none).

namespace {

void Ping(Context& c) {
  if (c.args.size() > 2) {
    return c.reply.Error("ERR wrong number of arguments for 'ping' command");
  }
  c.args.size() == 2 ? c.reply.Bulk(c.args[1]) : c.reply.Simple("PONG");
}

void Echo(Context& c) { c.reply.Bulk(c.args[1]); }

void Select(Context& c) {
  int64_t db;
  if (!ParseInt(c.args[1], &db)) return c.Fail(OpStatus::kNotInteger);
  if (db != 0) return c.reply.Error("ERR DB index is out of range");
  c.reply.Simple("OK");
}

bool CheckPassword(Context& c, std::string_view user, std::string_view password) {
  if (c.server.requirepass.empty()) {
    c.reply.Error(
        "ERR AUTH <password> called without any password configured for the default user. Are "
        "you sure your configuration is correct?");
    return false;
  }
  if (user != "default" || password != c.server.requirepass) {
    c.reply.Error("WRONGPASS invalid username-password pair or user is disabled.");
    return false;
  }
  c.client.authenticated = true;
  return true;
}

void Auth(Context& c) {
  if (c.args.size() > 3) return c.Fail(OpStatus::kSyntax);
  const std::string_view user = c.args.size() == 3 ? c.args[1] : "default";
  if (CheckPassword(c, user, c.args.back())) c.reply.Simple("OK");
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]
void Hello(Context& c) {
  int64_t protocol = c.client.protocol;
  size_t i = 1;
  if (c.args.size() > 1) {
    if (!ParseInt(c.args[1], &protocol)) {
      return c.reply.Error("ERR Protocol version is not an integer or out of range");
    }
    if (protocol != 2 && protocol != 3) {
      return c.reply.Error("NOPROTO unsupported protocol version");
    }
    i = 2;
  }
  std::string_view name;
  bool set_name = false;
  for (; i < c.args.size(); ++i) {
    if (Is(c.args[i], "auth") && i + 2 < c.args.size()) {
      if (!CheckPassword(c, c.args[i + 1], c.args[i + 2])) return;
      i += 2;
    } else if (Is(c.args[i], "setname") && i + 1 < c.args.size()) {
      name = c.args[++i];
      set_name = true;
    } else {
      return c.reply.Error("ERR Syntax error in HELLO option '" + std::string(c.args[i]) + "'");
    }
  }
  if (!c.server.requirepass.empty() && !c.client.authenticated) {
    return c.reply.Error(
        "NOAUTH HELLO must be called with the client already authenticated, "
        "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
        "authenticate the client and select the RESP protocol version at the "
        "same time");
  }
  {
    std::lock_guard lock(c.client.mutex);
    if (set_name) c.client.name = std::string(name);
    c.client.protocol = static_cast<int>(protocol);
  }
  c.reply.set_protocol(c.client.protocol);
  c.reply.Map(7);
  c.reply.Bulk("server");
  c.reply.Bulk("redis");
  c.reply.Bulk("version");
  c.reply.Bulk("7.0.0");
  c.reply.Bulk("proto");
  c.reply.Integer(protocol);
  c.reply.Bulk("id");
  c.reply.Integer(c.client.id);
  c.reply.Bulk("mode");
  c.reply.Bulk("standalone");
  c.reply.Bulk("role");
  c.reply.Bulk("master");
  c.reply.Bulk("modules");
  c.reply.Array(0);
}

void ClientCommand(Context& c) {
  const std::string_view sub = c.args[1];
  if (Is(sub, "setname") && c.args.size() == 3) {
    for (char ch : c.args[2]) {
      if (ch <= ' ' || ch > '~') {
        return c.reply.Error(
            "ERR Client names cannot contain spaces, newlines or special "
            "characters.");
      }
    }
    std::lock_guard lock(c.client.mutex);
    c.client.name = std::string(c.args[2]);
    return c.reply.Simple("OK");
  }
  if (Is(sub, "getname") && c.args.size() == 2) {
    return c.client.name.empty() ? c.reply.Null() : c.reply.Bulk(c.client.name);
  }
  if (Is(sub, "id") && c.args.size() == 2) return c.reply.Integer(c.client.id);
  if (Is(sub, "info") && c.args.size() == 2) return c.reply.Verbatim(ClientLine(c.client) + "\n");
  if (Is(sub, "list") && c.args.size() == 2) {
    std::string text;
    for (const std::string& line : c.server.list_clients()) text += line + "\n";
    return c.reply.Verbatim(text);
  }
  if (Is(sub, "setinfo") && c.args.size() == 4) {  // redis-py sends LIB-NAME and LIB-VER
    if (!Is(c.args[2], "lib-name") && !Is(c.args[2], "lib-ver")) {
      return c.reply.Error("ERR Unrecognized option '" + std::string(c.args[2]) + "'");
    }
    return c.reply.Simple("OK");
  }
  c.reply.Error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
                "'. Try CLIENT HELP.");
}

void Config(Context& c) {
  kv::Keyspace& keyspace = c.keyspace();
  if (Is(c.args[1], "get") && c.args.size() >= 3) {
    const std::vector<std::pair<std::string, std::string>> parameters = {
        {"bind", c.server.bind},
        {"port", std::to_string(c.server.port)},
        {"databases", "1"},
        {"maxmemory", std::to_string(keyspace.MaxMemory())},
        {"maxmemory-policy", std::string(kv::PolicyName(keyspace.Policy()))},
        {"maxmemory-samples", std::to_string(keyspace.EvictionSamples())},
        {"hash-max-listpack-entries", std::to_string(keyspace.MaxPackedFields())},
        {"hash-max-listpack-value", std::to_string(keyspace.MaxPackedBytes())},
        {"hash-max-ziplist-entries", std::to_string(keyspace.MaxPackedFields())},
        {"hash-max-ziplist-value", std::to_string(keyspace.MaxPackedBytes())},
        {"appendonly", "no"},
        {"save", ""},
        {"timeout", "0"},
        {"requirepass", c.server.requirepass},
        {"io-threads", std::to_string(c.server.threads)},
        {"proto-max-bulk-len", std::to_string(kMaxBulkBytes)},
        {"client-output-buffer-limit", "normal " +
                                           std::to_string(c.server.output_hard_limit.load()) + " " +
                                           std::to_string(c.server.output_soft_limit.load()) + " " +
                                           std::to_string(c.server.output_soft_seconds.load())},
        {"client-query-buffer-limit", std::to_string(c.server.query_buffer_limit.load())},
        {"maxmemory-clients", std::to_string(ClientMemory::Global().limit())},
    };
    std::vector<const std::pair<std::string, std::string>*> matched;
    for (const auto& parameter : parameters) {
      for (size_t i = 2; i < c.args.size(); ++i) {
        if (kv::Keyspace::Match(Lower(c.args[i]), parameter.first)) {
          matched.push_back(&parameter);
          break;
        }
      }
    }
    c.reply.Map(matched.size());
    for (const auto* parameter : matched) {
      c.reply.Bulk(parameter->first);
      c.reply.Bulk(parameter->second);
    }
    return;
  }
  if (Is(c.args[1], "set") && c.args.size() >= 4 && c.args.size() % 2 == 0) {
    std::optional<uint64_t> max_memory;
    std::optional<kv::EvictionPolicy> policy;
    std::optional<int> samples;
    std::optional<uint32_t> packed_fields, packed_bytes;
    std::optional<uint64_t> query_buffer, client_memory;
    std::optional<std::tuple<uint64_t, uint64_t, int64_t>> output_limit;
    for (size_t i = 2; i < c.args.size(); i += 2) {
      const std::string name = Lower(c.args[i]);
      const std::string_view value = c.args[i + 1];
      auto failed = [&](const std::string& why) {
        c.reply.Error("ERR CONFIG SET failed (possibly related to argument '" + name + "') - " +
                      why);
      };
      if (name == "maxmemory") {
        uint64_t bytes;
        if (!ParseByteSize(value, &bytes)) return failed("argument must be a memory value");
        max_memory = bytes;
      } else if (name == "maxmemory-policy") {
        policy = kv::ParsePolicy(value);
        if (!policy) {
          return failed(
              "argument(s) must be one of the following: volatile-lru, volatile-lfu, "
              "volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, "
              "noeviction");
        }
      } else if (name == "maxmemory-samples") {
        int64_t number;
        if (!ParseInt(value, &number) || number < 1 || number > 64) {
          return failed("argument must be between 1 and 64 inclusive");
        }
        samples = static_cast<int>(number);
      } else if (name == "hash-max-listpack-entries" || name == "hash-max-ziplist-entries" ||
                 name == "hash-max-listpack-value" || name == "hash-max-ziplist-value") {
        const bool entries = name.ends_with("entries");
        const uint32_t ceiling =
            entries ? kv::Hash::kPackedFieldsCeiling : kv::Hash::kPackedBytesCeiling;
        int64_t number;
        if (!ParseInt(value, &number) || number < 0 || number > ceiling) {
          return failed("argument must be between 0 and " + std::to_string(ceiling) + " inclusive");
        }
        (entries ? packed_fields : packed_bytes) = static_cast<uint32_t>(number);
      } else if (name == "client-query-buffer-limit" || name == "maxmemory-clients") {
        uint64_t bytes;
        if (!ParseByteSize(value, &bytes)) return failed("argument must be a memory value");
        if (name == "client-query-buffer-limit" && bytes < (1 << 20)) {
          return failed("argument must be at least 1mb");
        }
        (name == "maxmemory-clients" ? client_memory : query_buffer) = bytes;
      } else if (name == "client-output-buffer-limit") {
        uint64_t hard, soft;
        int64_t seconds;
        if (!ParseOutputBufferLimit(value, &hard, &soft, &seconds)) {
          return failed("argument must be 'normal <hard> <soft> <soft seconds>'");
        }
        output_limit = std::make_tuple(hard, soft, seconds);
      } else {
        return c.reply.Error("ERR Unknown option or number of arguments for CONFIG SET - '" +
                             std::string(c.args[i]) + "'");
      }
    }
    if (query_buffer) c.server.query_buffer_limit.store(*query_buffer);
    if (output_limit) {
      c.server.output_hard_limit.store(std::get<0>(*output_limit));
      c.server.output_soft_limit.store(std::get<1>(*output_limit));
      c.server.output_soft_seconds.store(std::get<2>(*output_limit));
    }
    if (client_memory) c.server.maxmemory_clients.store(static_cast<int64_t>(*client_memory));
    if (policy) keyspace.SetPolicy(*policy);
    if (samples) keyspace.SetEvictionSamples(*samples);
    if (packed_fields) keyspace.SetMaxPackedFields(*packed_fields);
    if (packed_bytes) keyspace.SetMaxPackedBytes(*packed_bytes);
    if (max_memory) {
      keyspace.SetMaxMemory(*max_memory);
      keyspace.MakeRoom();  // a lower limit evicts now, as Redis does
    }
    ApplyClientMemoryLimit(c.server);
    return c.reply.Simple("OK");
  }
  if (Is(c.args[1], "set") && c.args.size() >= 3) {
    return c.reply.Error("ERR Unknown option or number of arguments for CONFIG SET - '" +
                         std::string(c.args[2]) + "'");
  }
  if (Is(c.args[1], "resetstat") && c.args.size() == 2) return c.reply.Simple("OK");
  c.reply.Error("ERR unknown subcommand or wrong number of arguments for '" +
                std::string(c.args[1]) + "'. Try CONFIG HELP.");
}

void DbSize(Context& c) { c.reply.Integer(c.keyspace().Size()); }

void Time(Context& c) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  c.reply.Array(2);
  c.reply.Bulk(std::to_string(micros / 1'000'000));
  c.reply.Bulk(std::to_string(micros % 1'000'000));
}

void Info(Context& c) {
  const kv::KeyspaceStats stats = c.keyspace().Stats();
  const int64_t uptime = (UnixMillis() - c.server.started_ms) / 1000;
  std::string text;
  auto wanted = [&](std::string_view section) {
    if (c.args.size() == 1) return true;
    for (size_t i = 1; i < c.args.size(); ++i) {
      if (Is(c.args[i], section) || Is(c.args[i], "all") || Is(c.args[i], "everything") ||
          Is(c.args[i], "default")) {
        return true;
      }
    }
    return false;
  };
  if (wanted("server")) {
    text += "# Server\r\nredis_version:7.0.0\r\nquiver_version:" QUIVER_VERSION
            "\r\nredis_mode:standalone\r\nos:Linux\r\narch_bits:64\r\ntcp_port:" +
            std::to_string(c.server.port) + "\r\nuptime_in_seconds:" + std::to_string(uptime) +
            "\r\nio_threads_active:" + std::to_string(c.server.threads) + "\r\n\r\n";
  }
  if (wanted("clients")) {
    text +=
        "# Clients\r\nconnected_clients:" + std::to_string(c.server.client_count()) + "\r\n\r\n";
  }
  if (wanted("memory")) {
    // used_memory: what counts towards maxmemory, the feature tables included.
    text += "# Memory\r\nused_memory:" + std::to_string(c.keyspace().memory_limit().UsedMemory()) +
            "\r\nused_memory_keyspace:" + std::to_string(stats.bytes) +
            "\r\nmem_clients_normal:" + std::to_string(ClientMemory::Global().used()) +
            "\r\nmaxmemory_clients:" + std::to_string(ClientMemory::Global().limit()) +
            "\r\nclients_closed_for_memory:" +
            std::to_string(c.server.clients_closed_for_memory.load()) +
            "\r\nmaxmemory:" + std::to_string(c.keyspace().MaxMemory()) +
            "\r\nmaxmemory_policy:" + std::string(kv::PolicyName(c.keyspace().Policy())) +
            "\r\n\r\n";
  }
  if (wanted("stats")) {
    text += "# Stats\r\ntotal_connections_received:" +
            std::to_string(c.server.connections_received.load()) +
            "\r\ntotal_commands_processed:" + std::to_string(c.server.commands.load()) +
            "\r\nexpired_keys:" + std::to_string(stats.expired) +
            "\r\nevicted_keys:" + std::to_string(c.keyspace().memory_limit().Evicted()) +
            "\r\n\r\n";
  }
  if (wanted("tiering") && c.server.catalog != nullptr) {
    // The disk tiers of the tables (docs/tiering.md), summed; zero without any.
    int64_t resident = 0, cold = 0, demoted = 0, promoted = 0, reads = 0;
    uint64_t cold_bytes = 0, disk_bytes = 0, read_ios = 0, read_bytes = 0, written = 0;
    size_t tiered = 0;
    for (const auto& table : c.server.catalog->Tables()) {
      const TableStats s = table->Stats();
      resident += s.rows - s.cold_rows;
      cold += s.cold_rows;
      cold_bytes += s.cold_bytes;
      disk_bytes += s.tier_disk_bytes;
      demoted += s.demoted;
      promoted += s.promoted;
      reads += s.cold_reads;
      read_ios += s.tier_read_ios;
      read_bytes += s.tier_read_bytes;
      written += s.tier_written_bytes;
      tiered += s.tiered ? 1 : 0;
    }
    text += "# Tiering\r\ntiered_tables:" + std::to_string(tiered) +
            "\r\nresident_rows:" + std::to_string(resident) +
            "\r\ncold_rows:" + std::to_string(cold) +
            "\r\ncold_bytes:" + std::to_string(cold_bytes) +
            "\r\ntier_disk_bytes:" + std::to_string(disk_bytes) +
            "\r\ndemoted_rows:" + std::to_string(demoted) +
            "\r\npromoted_rows:" + std::to_string(promoted) +
            "\r\ntier_reads:" + std::to_string(reads) +
            "\r\ntier_read_ios:" + std::to_string(read_ios) +
            "\r\ntier_read_bytes:" + std::to_string(read_bytes) +
            "\r\ntier_written_bytes:" + std::to_string(written) + "\r\n\r\n";
  }
  if (wanted("shm") && c.server.shm_info) text += c.server.shm_info();
  if (wanted("keyspace")) {
    text += "# Keyspace\r\n";
    if (stats.keys > 0) {
      text += "db0:keys=" + std::to_string(stats.keys) +
              ",expires=" + std::to_string(stats.keys_with_ttl) + ",avg_ttl=0\r\n";
    }
  }
  c.reply.Verbatim(text);
}

void Quit(Context& c) {
  c.client.close_after_reply = true;
  c.reply.Simple("OK");
}

void CommandInfo(ReplyWriter& reply, const CommandSpec& command) {
  reply.Array(6);
  reply.Bulk(command.name);
  reply.Integer(command.arity);
  const std::vector<std::string_view> flags = CommandFlagNames(command.flags);
  reply.Array(flags.size());
  for (std::string_view flag : flags) reply.Simple(flag);
  reply.Integer(command.first_key);
  reply.Integer(command.last_key);
  reply.Integer(command.step);
}

void CommandCommand(Context& c) {
  const std::vector<CommandSpec>& table = CommandTable();
  if (c.args.size() == 1) {
    c.reply.Array(table.size());
    for (const CommandSpec& command : table) CommandInfo(c.reply, command);
    return;
  }
  const std::string_view sub = c.args[1];
  if (Is(sub, "count") && c.args.size() == 2)
    return c.reply.Integer(static_cast<int64_t>(table.size()));
  if (Is(sub, "info") || Is(sub, "docs")) {
    std::vector<const CommandSpec*> wanted;
    if (c.args.size() == 2) {
      for (const CommandSpec& command : table) wanted.push_back(&command);
    } else {
      for (size_t i = 2; i < c.args.size(); ++i) {
        wanted.push_back(FindCommand(Lower(c.args[i])));
      }
    }
    if (Is(sub, "info")) {
      c.reply.Array(wanted.size());
      for (const CommandSpec* command : wanted) {
        command ? CommandInfo(c.reply, *command) : c.reply.NullArray();
      }
      return;
    }
    size_t known = 0;
    for (const CommandSpec* command : wanted) known += command != nullptr;
    c.reply.Map(known);
    for (const CommandSpec* command : wanted) {
      if (command == nullptr) continue;
      c.reply.Bulk(command->name);
      c.reply.Map(3);
      c.reply.Bulk("summary");
      c.reply.Bulk(command->summary);
      c.reply.Bulk("since");
      c.reply.Bulk("1.0.0");
      c.reply.Bulk("group");
      c.reply.Bulk(command->group);
    }
    return;
  }
  c.reply.Error("ERR unknown subcommand or wrong number of arguments for '" + std::string(sub) +
                "'. Try COMMAND HELP.");
}

}  // namespace

void AddServerCommands(std::vector<CommandSpec>& table) {
  table.insert(
      table.end(),
      {
          {"dbsize", 1, kReadOnly | kFast, 0, 0, 0, "server", "Returns the number of keys.",
           DbSize},
          {"ping", -1, kFast, 0, 0, 0, "connection", "Returns PONG or the message.", Ping},
          {"echo", 2, kFast, 0, 0, 0, "connection", "Returns the message.", Echo},
          {"select", 2, kFast, 0, 0, 0, "connection", "Selects a database (only 0).", Select},
          {"auth", -2, kFast | kNoAuth, 0, 0, 0, "connection", "Authenticates the connection.",
           Auth},
          {"hello", -1, kFast | kNoAuth, 0, 0, 0, "connection", "Handshakes (RESP2 or RESP3).",
           Hello},
          {"client", -2, 0, 0, 0, 0, "connection", "Names, identifies and lists connections.",
           ClientCommand},
          {"quit", -1, kFast | kNoAuth, 0, 0, 0, "connection", "Closes the connection.", Quit},
          {"config", -2, 0, 0, 0, 0, "server", "Reads configuration parameters.", Config},
          {"command", -1, 0, 0, 0, 0, "server", "Describes the commands.", CommandCommand},
          {"info", -1, 0, 0, 0, 0, "server", "Returns information about the server.", Info},
          {"time", 1, kFast, 0, 0, 0, "server", "Returns the server's time.", Time},
      });
}

}  // namespace quiver::resp
