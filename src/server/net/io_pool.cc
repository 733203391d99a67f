#include "server/net/io_pool.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/log.h"
#include "server/net/io_loop.h"

namespace quiver::net_util {

namespace net = boost::asio;
using tcp = net::ip::tcp;

struct IoPool::Io {
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<net::steady_timer> accept_retry;  // on the first context, with the acceptor
  AcceptBackoff backoff;
  LogRateLimiter log_limit{1000};  // "accept failed": a line a second at most, per pool
};

IoPool::IoPool(IoPoolOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<IoPool>> IoPool::Listen(IoPoolOptions options) {
  std::unique_ptr<IoPool> pool(new IoPool(std::move(options)));
  const IoPoolOptions& o = pool->options_;
  pool->io_ = std::make_unique<Io>();
  for (int i = 0; i < std::max(1, o.threads); ++i) {
    pool->contexts_.push_back(std::make_unique<net::io_context>(1));
    pool->io_->guards.push_back(net::make_work_guard(*pool->contexts_.back()));
  }
  boost::system::error_code error;
  const auto address = net::ip::make_address(o.bind, error);
  if (error) return Status::InvalidArgument("bind address '" + o.bind + "' is not an IP address");
  const tcp::endpoint endpoint(address, o.port);
  auto& acceptor = pool->io_->acceptor;
  acceptor = std::make_unique<tcp::acceptor>(*pool->contexts_[0]);
  acceptor->open(endpoint.protocol(), error);
  if (!error) acceptor->set_option(net::socket_base::reuse_address(true), error);
  if (!error) acceptor->bind(endpoint, error);
  if (!error) acceptor->listen(net::socket_base::max_listen_connections, error);
  if (error) {
    std::string hint;
    if (error == net::error::address_in_use && !o.port_flag.empty()) {
      hint = " (another process uses this port; pick another with " + o.port_flag + ")";
    }
    return Status::IOError("cannot listen for " + o.label + " on " + o.bind + ":" +
                           std::to_string(o.port) + ": " + error.message() + hint);
  }
  pool->port_ = acceptor->local_endpoint().port();
  pool->io_->accept_retry = std::make_unique<net::steady_timer>(*pool->contexts_[0]);
  return pool;
}

IoPool::~IoPool() { Shutdown(/*stop_contexts=*/true); }

void IoPool::Start(OnAccept on_accept) {
  on_accept_ = std::move(on_accept);
  Accept();
  for (auto& context : contexts_) {
    threads_.emplace_back([this, context = context.get()] {
      RunIoLoop(*context, options_.busy_poll_us, options_.name);
    });
  }
}

void IoPool::Accept() {
  net::io_context& target = *contexts_[next_context_.fetch_add(1) % contexts_.size()];
  io_->acceptor->async_accept(target, [this](boost::system::error_code error, tcp::socket socket) {
    if (stopping_.load() || error == net::error::operation_aborted) return;
    if (error) {
      uint64_t repeated = 0;
      if (LogEnabled(LogLevel::kWarn) && io_->log_limit.Allow(&repeated)) {
        Log(LogLevel::kWarn, options_.name + " accept failed", {{"error", error.message()}},
            repeated);
      }
      if (!AcceptBackoff::IsResourceError(error)) return Accept();
      // Out of descriptors: the connection waits in the listen queue until one is free.
      io_->accept_retry->expires_after(io_->backoff.Next());
      io_->accept_retry->async_wait([this](boost::system::error_code waited) {
        if (!waited && !stopping_.load()) Accept();
      });
      return;
    }
    io_->backoff.Reset();
    on_accept_(std::move(socket));
    Accept();
  });
}

void IoPool::StopAccepting() {
  if (stopping_.exchange(true) || contexts_.empty()) return;
  net::post(*contexts_[0], [this] {
    boost::system::error_code ignored;
    io_->acceptor->close(ignored);
    io_->accept_retry->cancel();
  });
}

void IoPool::Shutdown(bool stop_contexts) {
  StopAccepting();
  io_->guards.clear();
  if (stop_contexts) {
    for (auto& context : contexts_) context->stop();
  }
  for (std::thread& thread : threads_) thread.join();
  threads_.clear();
}

}  // namespace quiver::net_util
