// IoPool: what the Asio front ends (HTTP, RESP) share: an io_context per thread, each run by
// RunIoLoop on its own thread, and a listening socket whose accept loop hands each connection to
// the next context in turn. A failed accept is logged (once a second at most: "<name> accept
// failed"); when the process is out of descriptors the loop waits (AcceptBackoff) instead of
// spinning on the connection left in the listen queue.
//
// Thread safety: Listen and Start from one thread; StopAccepting from any; Shutdown once, from a
// thread that is not one of the pool's. `on_accept` runs on the first context's thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"

namespace quiver::net_util {

struct IoPoolOptions {
  std::string name;       // "http", "resp": in log lines
  std::string label;      // "HTTP", "RESP": in the error when listening fails
  std::string port_flag;  // "--http-port": named when the port is in use
  std::string bind = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port
  int threads = 1;
  int busy_poll_us = 0;  // RunIoLoop's spin
};

class IoPool {
 public:
  using OnAccept = std::function<void(boost::asio::ip::tcp::socket socket)>;

  // Makes the contexts and listens (an address in use, or a bad bind address, is an error saying
  // so); nothing runs until Start.
  static Result<std::unique_ptr<IoPool>> Listen(IoPoolOptions options);
  ~IoPool();  // Shutdown(true)
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  // Accepts connections, each a socket on the next context in turn, and runs the threads.
  void Start(OnAccept on_accept);
  uint16_t port() const { return port_; }
  boost::asio::io_context& context(size_t i) { return *contexts_[i]; }
  size_t size() const { return contexts_.size(); }

  // Closes the listening socket (on its thread): no connection is accepted after it.
  void StopAccepting();
  // Lets the threads end: their contexts run out of work (`stop_contexts`: are stopped at once,
  // dropping what is left), then joins them.
  void Shutdown(bool stop_contexts);

 private:
  explicit IoPool(IoPoolOptions options);
  void Accept();

  struct Io;
  const IoPoolOptions options_;
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::unique_ptr<Io> io_;
  std::vector<std::thread> threads_;
  OnAccept on_accept_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> next_context_{0};
};

}  // namespace quiver::net_util
