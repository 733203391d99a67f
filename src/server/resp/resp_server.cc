#include "server/resp/resp_server.h"

#include <algorithm>
#include <boost/asio.hpp>
#include <cstring>
#include <functional>

#include "common/client_memory.h"
#include "common/log.h"
#include "server/net/io_pool.h"

namespace quiver::resp {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kReadBytes = 16 << 10;
// A connection's read buffer: what it keeps between requests, not counted as client memory.
constexpr size_t kBaseInputBytes = 2 * kReadBytes;
// Backpressure: once this many reply bytes wait to be sent, the client's next requests wait in
// its input, unparsed, until they are: a pipeline of 250 GETs of an 8 MiB value holds one or two
// replies at a time, not 2 GB.
constexpr size_t kPauseReplyBytes = 1 << 20;
// Buffers grown past this by a large request or reply are given back once they are done.
constexpr size_t kKeptBufferBytes = 64 << 10;

}  // namespace

struct RespServer::Acceptor {
  // A new connection: served, or refused at the connection limit.
  static void Accept(RespServer& server, tcp::socket socket);
};

// A client connection. Invariants: at most one read or one write is in flight, never both;
// while replies wait to be written (`writing_`), no request is read or run; `paused_` means
// complete requests wait in `input_` and run once the write is done.
class RespServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, RespServer& server)
      : socket_(std::move(socket)), soft_timer_(socket_.get_executor()), server_(server) {
    client_.id = server_.next_client_id_.fetch_add(1);
    client_.created_ms = UnixMillis();
    boost::system::error_code error;
    const auto remote = socket_.remote_endpoint(error);
    if (!error)
      client_.address = remote.address().to_string() + ":" + std::to_string(remote.port());
    client_.authenticated = server_.options_.requirepass.empty();
    socket_.set_option(tcp::no_delay(true), error);
  }

  void Start() {
    {
      std::lock_guard lock(server_.connections_mutex_);
      server_.connections_.insert(this);
    }
    Read();
  }

  // On any thread: closes the socket on its own thread.
  void Close() {
    net::post(socket_.get_executor(), [self = shared_from_this()] { self->Shutdown(); });
  }

  // Under the server's connections_mutex_ (which keeps the connection alive).
  std::string Line() const { return ClientLine(client_); }
  int64_t id() const { return client_.id; }
  // True until the client's first bytes arrive (read from any thread).
  bool Silent() const { return silent_.load(std::memory_order_relaxed); }
  // True the first time only: a connection is chosen to be shed once.
  bool MarkShed() { return !shed_.exchange(true, std::memory_order_relaxed); }
  bool Shed() const { return shed_.load(std::memory_order_relaxed); }
  // Its client memory (ClientMemory), from any thread.
  uint64_t MemoryBytes() const { return memory_.bytes(); }

  ~Connection() {
    std::lock_guard lock(server_.connections_mutex_);
    server_.connections_.erase(this);
  }

 private:
  void Shutdown() {
    closed_ = true;
    soft_timer_.cancel();
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  void Read() {
    if (closed_) return;
    // The buffer grows (zero-filled once) only when less than kReadBytes is free after the
    // bytes of a partial request; reads go straight behind them.
    if (input_.size() - used_ < kReadBytes) {
      const size_t needed = used_ + kReadBytes * 2;
      if (needed > input_.capacity()) {
        // Counted before it grows: past maxmemory-clients the clients holding the most go
        // first, this one among them.
        const size_t grown = std::max(needed, input_.capacity() * 2);
        if (!Account(grown)) return;
        input_.reserve(grown);
      }
      input_.resize(needed);
    }
    socket_.async_read_some(
        net::buffer(input_.data() + used_, input_.size() - used_),
        [self = shared_from_this()](boost::system::error_code error, size_t bytes) {
          self->used_ += bytes;
          if (error) return self->Shutdown();
          self->silent_.store(false, std::memory_order_relaxed);
          const uint64_t limit = self->server_.state_.query_buffer_limit.load();
          if (limit != 0 && self->used_ > limit) {
            QUIVER_LOG_EVERY_SECOND(kWarn, "resp client closed: query buffer over its limit",
                                    {{"client", self->client_.address},
                                     {"bytes", std::to_string(self->used_)},
                                     {"limit", std::to_string(limit)}});
            return self->Shutdown();
          }
          if (!self->Account()) return;
          self->Process();
        });
  }

  // Runs the complete requests in the input, a batch at a time, until the input holds none or
  // enough replies wait (kPauseReplyBytes); then writes the replies at once. Requests are parsed
  // a batch at a time, and a batch's keys prefetched before any of it runs
  // (Keyspace::Prefetch). A batch ends at an inline command: its arguments live in parsed_ only
  // until the next parse.
  void Process() {
    paused_ = false;
    std::string_view rest(input_.data(), used_);
    ReplyWriter reply(&output_);
    bool protocol_error = false, incomplete = false, over_hard_limit = false;
    while (!rest.empty() && !incomplete && !protocol_error && !client_.close_after_reply &&
           !paused_ && !over_hard_limit) {
      batch_args_.clear();
      batch_.clear();
      while (!rest.empty()) {
        const bool is_inline = rest.front() != '*';
        const size_t offset = static_cast<size_t>(rest.data() - input_.data());
        ParseRequest(rest, &args_, &parsed_);
        incomplete = parsed_.status == ParseStatus::kIncomplete;
        protocol_error = parsed_.status == ParseStatus::kError;
        if (incomplete || protocol_error) break;
        rest.remove_prefix(parsed_.consumed);
        if (args_.empty()) continue;
        batch_.push_back({batch_args_.size(), args_.size(), offset});
        batch_args_.insert(batch_args_.end(), args_.begin(), args_.end());
        if (is_inline) break;
      }
      const size_t run = RunBatch(reply, &over_hard_limit);
      if (run < batch_.size()) {
        // Paused (or cut off) before request `run`: it and those after it stay in the input.
        rest = std::string_view(input_.data() + batch_[run].offset, used_ - batch_[run].offset);
        protocol_error = incomplete = false;
      }
    }
    if (protocol_error && !client_.close_after_reply) reply.Error("ERR " + parsed_.error);
    Flush(server_.state_, client_, &output_);  // this batch's log records, in one write
    if (over_hard_limit) {
      // The log has every change the dropped replies answered (Flush above); only they go.
      QUIVER_LOG_EVERY_SECOND(kWarn, "resp client closed: replies over the output buffer limit",
                              {{"client", client_.address},
                               {"bytes", std::to_string(output_.size())},
                               {"limit", std::to_string(server_.state_.output_hard_limit.load())}});
      return Shutdown();
    }
    // What is left (a partial request, or requests waiting behind a pause) moves to the front.
    if (rest.size() != used_) std::memmove(input_.data(), rest.data(), rest.size());
    used_ = rest.size();
    if (used_ < kReadBytes && input_.size() > kKeptBufferBytes) {
      input_.resize(kBaseInputBytes);
      input_.shrink_to_fit();
    }
    if (protocol_error) client_.close_after_reply = true;
    if (!Account()) return;
    if (output_.empty()) return paused_ ? Process() : Read();
    Write();
  }

  // Runs the batch's requests in order; returns how many ran. It stops early when the replies
  // waiting reach kPauseReplyBytes (paused_) or pass the hard output limit.
  size_t RunBatch(ReplyWriter& reply, bool* over_hard_limit) {
    if (batch_.size() > 1) {
      keys_.clear();
      for (const Request& request : batch_) {
        AppendKeys(std::span(batch_args_).subspan(request.begin, request.size), &keys_);
      }
      server_.state_.keyspace->Prefetch(keys_);
    }
    const uint64_t hard = server_.state_.output_hard_limit.load(std::memory_order_relaxed);
    for (size_t i = 0; i < batch_.size(); ++i) {
      if (client_.close_after_reply) return batch_.size();  // QUIT: what follows is not run
      if (output_.size() >= kPauseReplyBytes) {
        paused_ = true;
        return i;
      }
      reply.set_protocol(client_.protocol);  // HELLO may have changed it
      Execute(server_.state_, client_,
              std::span(batch_args_).subspan(batch_[i].begin, batch_[i].size), reply);
      if (hard != 0 && output_.size() > hard) {
        *over_hard_limit = true;
        return i + 1;
      }
    }
    return batch_.size();
  }

  void Write() {
    writing_.swap(output_);
    output_.clear();
    WatchSoftLimit();
    net::async_write(socket_, net::buffer(writing_),
                     [self = shared_from_this()](boost::system::error_code error, size_t) {
                       self->soft_timer_.cancel();
                       if (error || self->client_.close_after_reply) return self->Shutdown();
                       self->writing_.clear();
                       if (self->writing_.capacity() > kKeptBufferBytes) {
                         std::string().swap(self->writing_);
                       }
                       if (!self->Account()) return;
                       if (self->paused_) return self->Process();
                       self->Read();
                     });
  }

  // A write of more than the soft output limit must finish within the soft limit's seconds, or
  // the client is closed (a client that stopped reading holds its replies no longer).
  void WatchSoftLimit() {
    const uint64_t soft = server_.state_.output_soft_limit.load(std::memory_order_relaxed);
    const int64_t seconds = server_.state_.output_soft_seconds.load(std::memory_order_relaxed);
    if (soft == 0 || writing_.size() <= soft) return;
    soft_timer_.expires_after(std::chrono::seconds(seconds));
    soft_timer_.async_wait([self = shared_from_this(), soft](boost::system::error_code error) {
      if (error || self->closed_) return;  // the write finished (cancelled) or closed
      QUIVER_LOG_EVERY_SECOND(kWarn, "resp client closed: replies over the soft output limit",
                              {{"client", self->client_.address},
                               {"bytes", std::to_string(self->writing_.size())},
                               {"limit", std::to_string(soft)}});
      self->Shutdown();
    });
  }

  // Counts the connection's buffers in ClientMemory (its input buffer as `input_capacity` when
  // that is more: it is about to grow); past maxmemory-clients the clients holding the most are
  // closed. False when that closed this one.
  bool Account(size_t input_capacity = 0) {
    input_capacity = std::max(input_capacity, input_.capacity());
    const size_t input_extra =
        input_capacity > kBaseInputBytes ? input_capacity - kBaseInputBytes : 0;
    const uint64_t before = memory_.bytes();
    memory_.Set(input_extra + output_.capacity() + writing_.capacity());
    if (memory_.bytes() > before && ClientMemory::Global().Over()) server_.CloseBiggestClients();
    return !closed_ && !Shed();
  }

  struct Request {
    size_t begin, size;  // its arguments in batch_args_
    size_t offset;       // where it starts in input_
  };

  tcp::socket socket_;
  net::steady_timer soft_timer_;
  RespServer& server_;
  Client client_;
  std::atomic<bool> silent_{true};
  std::atomic<bool> shed_{false};
  bool closed_ = false;
  bool paused_ = false;
  ClientMemoryCharge memory_;
  std::string input_;  // bytes [0, used_) are received and not yet parsed
  size_t used_ = 0;
  std::string output_, writing_;
  std::vector<std::string_view> args_;
  Parsed parsed_;
  // The requests of one Process: their arguments, each request's place, and their keys.
  std::vector<std::string_view> batch_args_;
  std::vector<Request> batch_;
  std::vector<std::string_view> keys_;
};

RespServer::RespServer(const RespServerOptions& options, kv::Keyspace& keyspace, Catalog* catalog)
    : options_(options) {
  state_.keyspace = &keyspace;
  state_.catalog = catalog;
  state_.table_separator = options.table_separator;
  state_.requirepass = options.requirepass;
  state_.shm_info = options.shm_info;
  state_.bind = options.bind;
  state_.threads = options.threads;
  state_.started_ms = UnixMillis();
  state_.output_hard_limit.store(options.output_hard_limit);
  state_.output_soft_limit.store(options.output_soft_limit);
  state_.output_soft_seconds.store(options.output_soft_seconds);
  state_.query_buffer_limit.store(options.query_buffer_limit);
  state_.maxmemory_clients.store(options.maxmemory_clients);
  ApplyClientMemoryLimit(state_);
  state_.list_clients = [this] {
    std::vector<std::string> lines;
    std::lock_guard lock(connections_mutex_);
    for (Connection* connection : connections_) lines.push_back(connection->Line());
    return lines;
  };
  state_.client_count = [this] {
    std::lock_guard lock(connections_mutex_);
    return connections_.size();
  };
}

Result<std::unique_ptr<RespServer>> RespServer::Start(const RespServerOptions& options,
                                                      kv::Keyspace& keyspace, Catalog* catalog) {
  std::unique_ptr<RespServer> server(new RespServer(options, keyspace, catalog));
  QUIVER_ASSIGN_OR_RETURN(server->pool_, net_util::IoPool::Listen({.name = "resp",
                                                                   .label = "RESP",
                                                                   .port_flag = "--resp-port",
                                                                   .bind = options.bind,
                                                                   .port = options.port,
                                                                   .threads = options.threads}));
  server->state_.port = server->pool_->port();
  server->pool_->Start(
      [raw = server.get()](tcp::socket socket) { Acceptor::Accept(*raw, std::move(socket)); });
  return server;
}

uint16_t RespServer::port() const { return pool_->port(); }

void RespServer::Acceptor::Accept(RespServer& server, tcp::socket socket) {
  server.state_.connections_received.fetch_add(1, std::memory_order_relaxed);
  if (!server.RoomForConnection()) {
    static constexpr char kRefusal[] = "-ERR max number of clients reached\r\n";
    boost::system::error_code ignored;
    net::write(socket, net::buffer(kRefusal, sizeof(kRefusal) - 1), ignored);
    socket.close(ignored);
    return;
  }
  std::make_shared<Connection>(std::move(socket), server)->Start();
}

void RespServer::CloseBiggestClients() {
  // Closes the clients holding the most until the rest fit (what the closes free counts once
  // their threads run them; one pass frees enough on paper).
  std::vector<std::shared_ptr<Connection>> victims;
  {
    std::lock_guard lock(connections_mutex_);
    const ClientMemory& memory = ClientMemory::Global();
    uint64_t used = memory.used();
    std::vector<std::pair<uint64_t, Connection*>> by_size;
    for (Connection* connection : connections_) {
      if (!connection->Shed() && connection->MemoryBytes() > 0) {
        by_size.emplace_back(connection->MemoryBytes(), connection);
      }
    }
    std::sort(by_size.begin(), by_size.end(), std::greater<>());
    for (const auto& [bytes, connection] : by_size) {
      if (memory.limit() == 0 || used <= memory.limit()) break;
      if (!connection->MarkShed()) continue;
      // Null when its destructor has begun (its memory goes with it).
      if (auto held = connection->weak_from_this().lock()) victims.push_back(std::move(held));
      used -= std::min(used, bytes);
    }
  }
  for (const auto& victim : victims) {
    state_.clients_closed_for_memory.fetch_add(1, std::memory_order_relaxed);
    QUIVER_LOG_EVERY_SECOND(
        kWarn, "resp client closed: client memory over maxmemory-clients",
        {{"client_bytes", std::to_string(victim->MemoryBytes())},
         {"maxmemory_clients", std::to_string(ClientMemory::Global().limit())}});
    victim->Close();
  }
}

bool RespServer::RoomForConnection() {
  std::shared_ptr<Connection> victim;
  {
    std::lock_guard lock(connections_mutex_);
    if (connections_.size() < options_.max_connections) return true;
    // At the limit, the oldest connection that never sent a byte makes room: an idle flood
    // cannot lock clients out.
    Connection* oldest = nullptr;
    for (Connection* connection : connections_) {
      if (connection->Silent() && !connection->Shed() &&
          (oldest == nullptr || connection->id() < oldest->id())) {
        oldest = connection;
      }
    }
    // Null when its destructor has begun. Taken last: a reference dropped under the lock could
    // be the last one, and the destructor takes the lock.
    if (oldest != nullptr && oldest->MarkShed()) victim = oldest->weak_from_this().lock();
  }
  if (!victim) return false;
  victim->Close();
  return true;
}

void RespServer::Stop() {
  if (stopped_ || pool_ == nullptr) return;
  stopped_ = true;
  pool_->StopAccepting();
  // The open connections are held here, outside the lock: the last reference to one may drop
  // here, and its destructor takes the lock.
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(connections_mutex_);
    for (Connection* connection : connections_) {
      // Null when its destructor has begun (and waits for the lock to leave the set).
      if (auto held = connection->weak_from_this().lock()) open.push_back(std::move(held));
    }
  }
  for (const auto& connection : open) connection->Close();
  open.clear();
  pool_->Shutdown(/*stop_contexts=*/false);
}

RespServer::~RespServer() { Stop(); }

}  // namespace quiver::resp
