#include "server/resp/resp_server.h"

#include <boost/asio.hpp>
#include <cstring>

#include "common/log.h"
#include "server/net/io_loop.h"

namespace quiver::resp {

namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

constexpr size_t kReadBytes = 16 << 10;
// A client that keeps sending without reading its replies is cut off past this much output.
constexpr size_t kMaxPendingReplyBytes = 1 << 30;

}  // namespace

struct RespServer::Io {
  std::vector<std::unique_ptr<net::io_context>> contexts;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<net::steady_timer> accept_retry;  // on contexts[0], with the acceptor
  net_util::AcceptBackoff backoff;
};

class RespServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, RespServer& server) : socket_(std::move(socket)), server_(server) {
    client_.id = server_.next_client_id_.fetch_add(1);
    client_.created_ms = kv::SystemMillis();
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

  ~Connection() {
    std::lock_guard lock(server_.connections_mutex_);
    server_.connections_.erase(this);
  }

 private:
  void Shutdown() {
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  void Read() {
    // The buffer grows (zero-filled once) only when less than kReadBytes is free after the
    // bytes of a partial request; reads go straight behind them.
    if (input_.size() - used_ < kReadBytes) input_.resize(used_ + kReadBytes * 2);
    socket_.async_read_some(
        net::buffer(input_.data() + used_, input_.size() - used_),
        [self = shared_from_this()](boost::system::error_code error, size_t bytes) {
          self->used_ += bytes;
          if (error) return self->Shutdown();
          self->silent_.store(false, std::memory_order_relaxed);
          self->Process();
        });
  }

  // Runs every complete request in the input, then writes all replies at once. Requests are
  // parsed a batch at a time, and a batch's keys prefetched before any of it runs
  // (Keyspace::Prefetch). A batch ends at an inline command: its arguments live in parsed_ only
  // until the next parse.
  void Process() {
    std::string_view rest(input_.data(), used_);
    ReplyWriter reply(&output_);
    bool protocol_error = false, incomplete = false;
    while (!rest.empty() && !incomplete && !protocol_error && !client_.close_after_reply) {
      batch_args_.clear();
      batch_.clear();
      while (!rest.empty()) {
        const bool is_inline = rest.front() != '*';
        ParseRequest(rest, &args_, &parsed_);
        incomplete = parsed_.status == ParseStatus::kIncomplete;
        protocol_error = parsed_.status == ParseStatus::kError;
        if (incomplete || protocol_error) break;
        rest.remove_prefix(parsed_.consumed);
        if (args_.empty()) continue;
        batch_.emplace_back(batch_args_.size(), args_.size());
        batch_args_.insert(batch_args_.end(), args_.begin(), args_.end());
        if (is_inline) break;
      }
      RunBatch(reply);
    }
    if (protocol_error && !client_.close_after_reply) reply.Error("ERR " + parsed_.error);
    Flush(server_.state_, client_, &output_);  // this batch's log records, in one write
    // What is left (a partial request) moves to the front.
    if (rest.size() != used_) std::memmove(input_.data(), rest.data(), rest.size());
    used_ = rest.size();
    if (protocol_error) client_.close_after_reply = true;
    if (output_.size() > kMaxPendingReplyBytes) return Shutdown();
    if (output_.empty()) return Read();
    Write();
  }

  void RunBatch(ReplyWriter& reply) {
    if (batch_.size() > 1) {
      keys_.clear();
      for (const auto& [begin, size] : batch_) {
        AppendKeys(std::span(batch_args_).subspan(begin, size), &keys_);
      }
      server_.state_.keyspace->Prefetch(keys_);
    }
    for (const auto& [begin, size] : batch_) {
      if (client_.close_after_reply) break;  // QUIT: what follows is not run
      reply.set_protocol(client_.protocol);  // HELLO may have changed it
      Execute(server_.state_, client_, std::span(batch_args_).subspan(begin, size), reply);
    }
  }

  void Write() {
    writing_.swap(output_);
    output_.clear();
    net::async_write(socket_, net::buffer(writing_),
                     [self = shared_from_this()](boost::system::error_code error, size_t) {
                       if (error || self->client_.close_after_reply) return self->Shutdown();
                       self->writing_.clear();
                       self->Read();
                     });
  }

  tcp::socket socket_;
  RespServer& server_;
  Client client_;
  std::atomic<bool> silent_{true};
  std::atomic<bool> shed_{false};
  std::string input_;  // bytes [0, used_) are received and not yet parsed
  size_t used_ = 0;
  std::string output_, writing_;
  std::vector<std::string_view> args_;
  Parsed parsed_;
  // The requests of one Process: their arguments, each request's [begin, size) in them, and
  // their keys.
  std::vector<std::string_view> batch_args_;
  std::vector<std::pair<size_t, size_t>> batch_;
  std::vector<std::string_view> keys_;
};

RespServer::RespServer(const RespServerOptions& options, kv::Keyspace& keyspace,
                       const Catalog* catalog)
    : options_(options), io_(std::make_unique<Io>()) {
  state_.keyspace = &keyspace;
  state_.catalog = catalog;
  state_.table_separator = options.table_separator;
  state_.requirepass = options.requirepass;
  state_.bind = options.bind;
  state_.threads = options.threads;
  state_.started_ms = kv::SystemMillis();
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
                                                      kv::Keyspace& keyspace,
                                                      const Catalog* catalog) {
  std::unique_ptr<RespServer> server(new RespServer(options, keyspace, catalog));
  Io& io = *server->io_;
  const int threads = std::max(1, options.threads);
  for (int i = 0; i < threads; ++i) {
    io.contexts.push_back(std::make_unique<net::io_context>(1));
    io.guards.push_back(net::make_work_guard(*io.contexts.back()));
  }
  boost::system::error_code error;
  const auto address = net::ip::make_address(options.bind, error);
  if (error)
    return Status::InvalidArgument("bind address '" + options.bind + "': " + error.message());
  io.acceptor = std::make_unique<tcp::acceptor>(*io.contexts[0]);
  const tcp::endpoint endpoint(address, options.port);
  io.acceptor->open(endpoint.protocol(), error);
  if (!error) io.acceptor->set_option(net::socket_base::reuse_address(true), error);
  if (!error) io.acceptor->bind(endpoint, error);
  if (!error) io.acceptor->listen(net::socket_base::max_listen_connections, error);
  if (error) {
    return Status::IOError("cannot listen for RESP on " + options.bind + ":" +
                           std::to_string(options.port) + ": " + error.message());
  }
  server->port_ = io.acceptor->local_endpoint().port();
  io.accept_retry = std::make_unique<net::steady_timer>(*io.contexts[0]);
  server->state_.port = server->port_;
  server->Accept();
  for (auto& context : io.contexts) {
    server->threads_.emplace_back(
        [context = context.get()] { net_util::RunIoLoop(*context, 0, "resp"); });
  }
  return server;
}

void RespServer::Accept() {
  net::io_context& target = *io_->contexts[next_context_.fetch_add(1) % io_->contexts.size()];
  io_->acceptor->async_accept(target, [this](boost::system::error_code error, tcp::socket socket) {
    if (error == net::error::operation_aborted) return;
    if (error) {
      QUIVER_LOG_EVERY_SECOND(kWarn, "resp accept failed", {{"error", error.message()}});
      if (!net_util::AcceptBackoff::IsResourceError(error)) return Accept();
      // Out of descriptors: the connection waits in the listen queue until one is free.
      io_->accept_retry->expires_after(io_->backoff.Next());
      io_->accept_retry->async_wait([this](boost::system::error_code waited) {
        if (!waited) Accept();
      });
      return;
    }
    io_->backoff.Reset();
    state_.connections_received.fetch_add(1, std::memory_order_relaxed);
    if (!RoomForConnection()) {
      static constexpr char kRefusal[] = "-ERR max number of clients reached\r\n";
      boost::system::error_code ignored;
      net::write(socket, net::buffer(kRefusal, sizeof(kRefusal) - 1), ignored);
      socket.close(ignored);
    } else {
      std::make_shared<Connection>(std::move(socket), *this)->Start();
    }
    Accept();
  });
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
  if (stopped_) return;
  stopped_ = true;
  net::post(*io_->contexts[0], [this] {
    boost::system::error_code ignored;
    io_->acceptor->close(ignored);
    io_->accept_retry->cancel();
  });
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
  io_->guards.clear();
  for (std::thread& thread : threads_) thread.join();
}

RespServer::~RespServer() { Stop(); }

}  // namespace quiver::resp
