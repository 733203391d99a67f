#include "server/http/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <thread>

#include "common/byte_size.h"
#include "common/client_memory.h"
#include "common/log.h"
#include "server/http/router.h"
#include "server/net/io_pool.h"

namespace quiver::http_server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

// A connection's read buffer starts with room for a typical request's headers and small body,
// and grows (up to Beast's largest single read) for a large body.
constexpr size_t kInitialReadBytes = 8 << 10;
constexpr size_t kMaxReadBytes = 64 << 10;

// Request headers, and a chunked body's trailer, are refused with 431 past this size. Beast
// stores a field's length in 16 bits and throws on a longer one, so this stays under 64 KiB.
constexpr uint32_t kMaxHeaderBytes = 32 << 10;
// A connection's read buffer never holds more than this: Beast bounds the headers (header_limit)
// and the body (body_limit), not a chunked body's trailer, which it gathers whole before parsing.
constexpr size_t kMaxBufferBytes = 1 << 20;

// Beast's request parser with every field, trailer fields included, bounded: over
// kMaxHeaderBytes in all is the header_limit error (431), where Beast would throw
// std::length_error on one field of 64 KiB and take any number of trailer fields.
class RequestParser : public http::request_parser<http::string_body> {
 private:
  void on_field_impl(http::field name, std::string_view name_string, std::string_view value,
                     beast::error_code& error) override {
    field_bytes_ += name_string.size() + value.size() + 4;
    if (field_bytes_ > kMaxHeaderBytes) {
      error = http::error::header_limit;
      return;
    }
    get().insert(name, name_string, value);
  }

  size_t field_bytes_ = 0;
};

// The transfer codings a request may use: none, or chunked alone. Beast would read
// "gzip, chunked" as chunked and hand the compressed bytes on as the body.
bool SupportedTransferEncoding(const HttpRequest& request) {
  const auto value = request[http::field::transfer_encoding];
  if (value.empty()) return true;
  std::string coding;
  for (char c : value) {
    if (c == ' ' || c == '\t') continue;
    coding += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return coding == "chunked";
}

}  // namespace

struct HttpServer::Acceptor {
  // A new connection: a session, or refused at the connection limit.
  static void Accept(HttpServer& server, tcp::socket socket);
  // A request answered: its metrics and, with --access-log, its line.
  static void Record(HttpServer& server, std::string_view route, const HttpRequest& request,
                     const HttpResponse& response, double seconds);
};

class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer& server)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), server_(server) {
    server_.open_sessions_.fetch_add(1);
    server_.connections_opened_->Increment();
    buffer_.reserve(kInitialReadBytes);
    // A chunked body is counted as client memory chunk by chunk (Beast then leaves storing it
    // to this callback, which it holds by reference).
    on_chunk_body_ = [this](uint64_t, std::string_view data, beast::error_code& error) {
      if (!body_memory_.TrySet(body_memory_.bytes() + data.size())) {
        client_memory_refused_ = true;
        error = http::error::body_limit;
        return size_t{0};
      }
      parser_->get().body().append(data);
      return data.size();
    };
  }
  ~Session() {
    server_.connections_closed_->Increment();
    server_.open_sessions_.fetch_sub(1);
  }

  void Start() {
    SetDeadline(server_.options_.header_timeout_seconds);
    WaitForDeadline();
    Read();
  }

  // On the session's thread, when the server stops or sheds connections: an idle connection is
  // closed now; a busy one closes after its response.
  void CloseIfIdle() {
    if (phase_.load(std::memory_order_relaxed) != Phase::kBusy) Close();
  }

  // Where the connection is, for shedding at the connection limit (read from any thread).
  enum class Phase { kFresh, kIdle, kBusy };
  Phase phase() const { return phase_.load(std::memory_order_relaxed); }
  // True the first time only: a connection is chosen to be shed once.
  bool MarkShed() { return !shed_.exchange(true, std::memory_order_relaxed); }

  net::any_io_executor executor() { return socket_.get_executor(); }

  // Answers 503 and closes: the server is at its connection cap.
  void Refuse() {
    phase_.store(Phase::kBusy, std::memory_order_relaxed);
    SetDeadline(server_.options_.body_timeout_seconds);
    WaitForDeadline();
    Respond(ErrorResponse(HttpRequest(), http::status::service_unavailable, "TOO_MANY_CONNECTIONS",
                          "the server is at its limit of " +
                              std::to_string(server_.options_.max_connections) +
                              " connections (--max-connections); retry later"),
            /*keep_alive=*/false);
  }

 private:
  // Timeouts: a deadline per connection, moved with each phase (a plain store, no system call),
  // and one timer that wakes at the old deadline and either closes the connection or sleeps on
  // until the current one. A per-operation timer would cost a timerfd update per read and write.
  void SetDeadline(int seconds) {
    deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  }

  void WaitForDeadline() {
    timer_.expires_at(deadline_);
    timer_.async_wait([self = shared_from_this()](beast::error_code error) {
      if (error || self->closed_) return;  // cancelled by Close
      if (std::chrono::steady_clock::now() >= self->deadline_) return self->Close();
      self->WaitForDeadline();
    });
  }

  void Read() {
    if (phase_.load(std::memory_order_relaxed) == Phase::kBusy) {
      phase_.store(Phase::kIdle, std::memory_order_relaxed);
    }
    if (server_.stopping_.load()) return Close();
    body_memory_.Set(0);  // the last request's body is gone
    client_memory_refused_ = false;
    parser_.emplace();
    parser_->on_chunk_body(on_chunk_body_);
    parser_->body_limit(server_.options_.max_request_bytes);
    parser_->header_limit(kMaxHeaderBytes);
    SetDeadline(server_.options_.header_timeout_seconds);
    http::async_read_header(socket_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code error, size_t) {
    if (error) return OnRead(error, 0);
    phase_.store(Phase::kBusy, std::memory_order_relaxed);
    if (!SupportedTransferEncoding(parser_->get())) {
      return Respond(ErrorResponse(parser_->get(), http::status::not_implemented, "NOT_IMPLEMENTED",
                                   "Transfer-Encoding '" +
                                       Excerpt(parser_->get()[http::field::transfer_encoding]) +
                                       "' is not supported; send the body as it is, with "
                                       "Content-Length or Transfer-Encoding: chunked"),
                     /*keep_alive=*/false);
    }
    // Beast reads into the buffer's free capacity (at least 512 bytes, at most 64 KiB a call):
    // without room, a 40 KB body would take 80 reads (and as many epoll and timer calls).
    const auto length = parser_->content_length();
    if (length && *length <= server_.options_.max_request_bytes && !body_memory_.TrySet(*length)) {
      client_memory_refused_ = true;
      return OnRead(http::error::body_limit, 0);
    }
    if (length && *length > buffer_.capacity() - buffer_.size()) {
      buffer_.reserve(std::min<uint64_t>(*length, kMaxReadBytes));
    }
    SetDeadline(server_.options_.body_timeout_seconds);
    http::async_read(socket_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code error, size_t) {
    phase_.store(Phase::kBusy, std::memory_order_relaxed);
    if (error == http::error::body_limit && client_memory_refused_) {
      return Respond(
          ErrorResponse(parser_->get(), http::status::service_unavailable, "CLIENT_MEMORY",
                        "the server's client buffers are at their limit of " +
                            FormatBytes(ClientMemory::Global().limit()) +
                            " (--maxmemory-clients); retry later or send a smaller body"),
          /*keep_alive=*/false);
    }
    if (error == http::error::body_limit) {
      return Respond(
          ErrorResponse(parser_->get(), http::status::payload_too_large, "PAYLOAD_TOO_LARGE",
                        "the request body is over the limit of " +
                            std::to_string(server_.options_.max_request_bytes) +
                            " bytes (--max-request-bytes)"),
          /*keep_alive=*/false);
    }
    if (error == http::error::header_limit || error == http::error::buffer_overflow) {
      return Respond(ErrorResponse(parser_->get(), http::status::request_header_fields_too_large,
                                   "HEADERS_TOO_LARGE",
                                   "the request headers (or a chunked body's trailer) are over " +
                                       std::to_string(kMaxHeaderBytes >> 10) + " KiB"),
                     false);
    }
    if (error && error.category() == http::make_error_code(http::error::bad_method).category() &&
        error != http::error::end_of_stream && error != http::error::partial_message) {
      return Respond(ErrorResponse(HttpRequest(), http::status::bad_request, "BAD_REQUEST",
                                   "malformed HTTP request: " + error.message()),
                     false);
    }
    if (error) return Close();  // closed, timed out or stopped
    HttpRequest request = parser_->release();
    HttpResponse response;
    std::string_view route = "unmatched";
    std::unique_ptr<BodyStream> stream;
    const auto start = std::chrono::steady_clock::now();
    try {
      response = server_.router_->Handle(request, &route, &stream);
    } catch (const std::exception& e) {  // a bug or bad_alloc: this request fails, not the server
      QUIVER_LOG(kError, "request failed",
                 {{"target", std::string(request.target())}, {"error", e.what()}});
      response = ErrorResponse(request, http::status::internal_server_error, "INTERNAL", e.what());
    }
    Acceptor::Record(
        server_, route, request, response,
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (stream != nullptr && response.result() == http::status::ok) {
      return RespondStreamed(response, std::move(stream), request.keep_alive());
    }
    Respond(std::move(response), request.keep_alive());
  }

  // The headers, then the body in chunks as `stream` produces them (each piece is made on this
  // io thread when the previous one is written: a slow client slows its export, nothing else).
  void RespondStreamed(const HttpResponse& response, std::unique_ptr<BodyStream> stream,
                       bool keep_alive) {
    auto header =
        std::make_shared<http::response<http::empty_body>>(response.result(), response.version());
    for (const auto& field : response) header->set(field.name_string(), field.value());
    header->set(http::field::server, "quiverd");
    header->keep_alive(keep_alive && !server_.stopping_.load());
    header->chunked(true);
    auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*header);
    std::shared_ptr<BodyStream> body(std::move(stream));
    SetDeadline(server_.options_.body_timeout_seconds);
    http::async_write_header(
        socket_, *serializer,
        [self = shared_from_this(), header, serializer, body](beast::error_code error, size_t) {
          if (error) return self->Close();
          self->WriteChunk(body, header->keep_alive());
        });
  }

  void WriteChunk(const std::shared_ptr<BodyStream>& body, bool keep_alive) {
    SetDeadline(server_.options_.body_timeout_seconds);
    Result<std::string> piece = body->Next();
    if (!piece.ok()) {
      // The status is sent already: the body is cut short (no last chunk), which the client
      // sees as an incomplete response.
      QUIVER_LOG(kError, "streamed response cut short", {{"error", piece.status().message()}});
      return Close();
    }
    if (piece->empty()) {
      return net::async_write(
          socket_, http::make_chunk_last(),
          [self = shared_from_this(), keep_alive](beast::error_code error, size_t) {
            if (error || !keep_alive) return self->Close();
            self->Read();
          });
    }
    auto data = std::make_shared<std::string>(std::move(*piece));
    net::async_write(
        socket_, http::make_chunk(net::buffer(*data)),
        [self = shared_from_this(), data, body, keep_alive](beast::error_code error, size_t) {
          if (error) return self->Close();
          self->WriteChunk(body, keep_alive);
        });
  }

  void Respond(HttpResponse response, bool keep_alive) {
    response.keep_alive(keep_alive && !server_.stopping_.load());
    response.set(http::field::server, "quiverd");
    response.prepare_payload();
    auto shared = std::make_shared<HttpResponse>(std::move(response));
    SetDeadline(server_.options_.body_timeout_seconds);  // a client that stops reading
    http::async_write(socket_, *shared,
                      [self = shared_from_this(), shared](beast::error_code error, size_t) {
                        if (error || !shared->keep_alive()) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  net::steady_timer timer_;
  std::chrono::steady_clock::time_point deadline_;
  bool closed_ = false;
  beast::flat_buffer buffer_{kMaxBufferBytes};
  std::optional<RequestParser> parser_;
  HttpServer& server_;
  // kFresh until its first request's headers are in, kBusy while a request is read, handled or
  // answered, kIdle between requests. Written on the session's thread only.
  std::atomic<Phase> phase_{Phase::kFresh};
  std::atomic<bool> shed_{false};
  ClientMemoryCharge body_memory_;  // the request body being read
  std::function<size_t(uint64_t, std::string_view, beast::error_code&)> on_chunk_body_;
  bool client_memory_refused_ = false;  // its body did not fit under maxmemory-clients
};

HttpServer::HttpServer(const HttpServerOptions& options, storage::Database& database,
                       MetricsRegistry& metrics)
    : options_(options),
      metrics_(metrics),
      router_(std::make_unique<Router>(database, metrics_, options.sync)) {
  metrics_.Describe("quiver_http_requests_total", "counter",
                    "HTTP requests answered, by route template, method and status");
  metrics_.Describe("quiver_http_errors_total", "counter",
                    "HTTP requests answered with a status of 400 or more, by route and status");
  metrics_.Describe("quiver_http_request_duration_seconds", "histogram",
                    "Time to handle a request (decode, engine work, encode), by route template");
  metrics_.Describe("quiver_http_connections_opened_total", "counter",
                    "HTTP connections accepted (open now: opened minus closed)");
  metrics_.Describe("quiver_http_connections_closed_total", "counter", "HTTP connections closed");
  metrics_.Describe("quiver_http_connections_shed_total", "counter",
                    "HTTP connections closed at --max-connections to make room for a new one "
                    "(they had sent no request yet, or were idle between requests)");
  connections_opened_ = &metrics_.Counter("quiver_http_connections_opened_total", {});
  connections_closed_ = &metrics_.Counter("quiver_http_connections_closed_total", {});
  connections_shed_ = &metrics_.Counter("quiver_http_connections_shed_total", {});
}

void HttpServer::Acceptor::Record(HttpServer& server, std::string_view route,
                                  const HttpRequest& request, const HttpResponse& response,
                                  double seconds) {
  MetricsRegistry& metrics_ = server.metrics_;
  const HttpServerOptions& options_ = server.options_;
  static const std::vector<double> kBounds = {25e-6,  50e-6, 100e-6, 250e-6, 500e-6, 1e-3,
                                              2.5e-3, 5e-3,  10e-3,  25e-3,  100e-3, 1.0};
  const std::string route_label(route);
  const std::string status = std::to_string(response.result_int());
  metrics_
      .Counter("quiver_http_requests_total", {{"route", route_label},
                                              {"method", std::string(request.method_string())},
                                              {"status", status}})
      .Increment();
  if (response.result_int() >= 400) {
    metrics_.Counter("quiver_http_errors_total", {{"route", route_label}, {"status", status}})
        .Increment();
  }
  metrics_.Histogram("quiver_http_request_duration_seconds", {{"route", route_label}}, kBounds)
      .Observe(seconds);
  if (options_.access_log) {
    QUIVER_LOG(kInfo, "request",
               {{"method", std::string(request.method_string())},
                {"route", route_label},
                {"target", std::string(request.target().substr(0, 256))},
                {"status", status},
                {"bytes_in", std::to_string(request.body().size())},
                {"bytes_out", std::to_string(response.body().size())},
                {"us", std::to_string(static_cast<int64_t>(seconds * 1e6))}});
  }
}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                      storage::Database& database,
                                                      MetricsRegistry& metrics) {
  std::unique_ptr<HttpServer> server(new HttpServer(options, database, metrics));
  QUIVER_ASSIGN_OR_RETURN(server->pool_,
                          net_util::IoPool::Listen({.name = "http",
                                                    .label = "HTTP",
                                                    .port_flag = "--http-port",
                                                    .bind = options.bind,
                                                    .port = options.port,
                                                    .threads = options.threads,
                                                    .busy_poll_us = options.busy_poll_us}));
  server->pool_->Start(
      [raw = server.get()](tcp::socket socket) { Acceptor::Accept(*raw, std::move(socket)); });
  return server;
}

HttpServer::~HttpServer() { Stop(); }

uint16_t HttpServer::port() const { return pool_->port(); }

void HttpServer::Acceptor::Accept(HttpServer& server, tcp::socket socket) {
  // Responses leave as soon as they are written: no Nagle delay between header and body.
  beast::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  // Counted before this one is made: open_sessions_ includes every live session. At the limit a
  // connection that has not sent a request yet makes room (an idle flood cannot lock clients
  // out), else one idle between requests; only when every one is busy is this one refused.
  const bool refuse =
      server.open_sessions_.load() >= server.options_.max_connections && !server.ShedIdleSession();
  auto session = std::make_shared<Session>(std::move(socket), server);
  server.Register(session);
  net::dispatch(session->executor(), [session, refuse] {
    if (refuse) {
      session->Refuse();
    } else {
      session->Start();
    }
  });
}

bool HttpServer::ShedIdleSession() {
  std::shared_ptr<Session> victim;
  {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    for (Session::Phase wanted : {Session::Phase::kFresh, Session::Phase::kIdle}) {
      for (const auto& weak : sessions_) {  // oldest first
        auto session = weak.lock();
        if (session && session->phase() == wanted && session->MarkShed()) {
          victim = std::move(session);
          break;
        }
      }
      if (victim) break;
    }
  }
  if (!victim) return false;
  connections_shed_->Increment();
  net::post(victim->executor(), [victim] { victim->CloseIfIdle(); });
  return true;
}

void HttpServer::Register(const std::shared_ptr<Session>& session) {
  std::lock_guard<std::mutex> lock(sessions_mutex_);
  sessions_.remove_if([](const std::weak_ptr<Session>& weak) { return weak.expired(); });
  sessions_.push_back(session);
}

void HttpServer::Stop() {
  if (stopping_.exchange(true) || pool_ == nullptr) return;
  pool_->StopAccepting();
  {
    std::lock_guard<std::mutex> lock(sessions_mutex_);
    for (const auto& weak : sessions_) {
      if (auto session = weak.lock())
        net::post(session->executor(), [session] { session->CloseIfIdle(); });
    }
  }
  // Requests in flight finish; give them up to 10 s.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (open_sessions_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pool_->Shutdown(/*stop_contexts=*/true);
}

}  // namespace quiver::http_server
