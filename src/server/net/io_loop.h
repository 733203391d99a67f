// What the Asio front ends (HTTP, RESP) share: the loop that runs an io_context, and the
// accept loop's back-off when the process is out of file descriptors.
//
// Thread safety: RunIoLoop runs on the thread that calls it; AcceptBackoff belongs to the
// thread of its acceptor's io_context.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <string_view>

namespace quiver::net_util {

// Runs `context` until it is stopped. An exception that escapes a handler (a library throwing on
// input no limit caught, or a bug) ends that handler only: the connection it held is released
// (its socket closes with its last reference), the exception is logged (rate-limited), and the
// loop goes on serving every other connection. With spin_us > 0 the thread polls that long after
// its last handler before it sleeps (--busy-poll-us).
void RunIoLoop(boost::asio::io_context& context, int spin_us, std::string_view server);

// An accept that failed because the process or the system is out of descriptors or memory
// (EMFILE, ENFILE, ENOBUFS, ENOMEM) leaves the connection in the listen queue, so retrying at
// once spins. The next try waits: 10 ms, doubling to 1 s while the failures go on; one success
// starts over.
class AcceptBackoff {
 public:
  // True when `error` is one of those; the caller then retries after Next().
  static bool IsResourceError(const boost::system::error_code& error);
  std::chrono::milliseconds Next();
  void Reset() { delay_ = std::chrono::milliseconds(0); }

 private:
  std::chrono::milliseconds delay_{0};
};

}  // namespace quiver::net_util
