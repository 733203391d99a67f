#include "server/net/io_loop.h"

#include <boost/asio/error.hpp>
#include <exception>
#include <string>
#include <thread>

#include "common/log.h"

namespace quiver::net_util {

namespace {

void RunUntilStopped(boost::asio::io_context& context, int spin_us) {
  if (spin_us <= 0) {
    context.run();
    return;
  }
  // Polling for `window` after the last handler picks up a request that arrives within it
  // without a sleep and wake-up (tens of microseconds on a virtual CPU), at the price of a busy
  // CPU meanwhile.
  const auto window = std::chrono::microseconds(spin_us);
  auto last_work = std::chrono::steady_clock::now();
  while (!context.stopped()) {
    if (context.poll() > 0) {
      last_work = std::chrono::steady_clock::now();
      continue;
    }
    if (std::chrono::steady_clock::now() - last_work < window) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#else
      std::this_thread::yield();
#endif
      continue;
    }
    context.run_one();
    last_work = std::chrono::steady_clock::now();
  }
}

}  // namespace

void RunIoLoop(boost::asio::io_context& context, int spin_us, std::string_view server) {
  while (!context.stopped()) {
    try {
      RunUntilStopped(context, spin_us);
      return;
    } catch (const std::exception& e) {
      QUIVER_LOG_EVERY_SECOND(kError, "connection handler failed",
                              {{"server", std::string(server)}, {"error", e.what()}});
    } catch (...) {
      QUIVER_LOG_EVERY_SECOND(kError, "connection handler failed",
                              {{"server", std::string(server)}, {"error", "unknown exception"}});
    }
  }
}

bool AcceptBackoff::IsResourceError(const boost::system::error_code& error) {
  namespace error_ns = boost::asio::error;
  return error == error_ns::no_descriptors || error == error_ns::no_buffer_space ||
         error == error_ns::no_memory ||
         error == boost::system::errc::too_many_files_open_in_system;
}

std::chrono::milliseconds AcceptBackoff::Next() {
  delay_ = delay_.count() == 0 ? std::chrono::milliseconds(10)
                               : std::min(delay_ * 2, std::chrono::milliseconds(1000));
  return delay_;
}

}  // namespace quiver::net_util
