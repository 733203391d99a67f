// noop_resp_server: a Redis-protocol server that does no work, the ceiling of `make bench-resp`
// at a given pipeline depth (docs/benchmarks.md). One thread, epoll, one read per readable
// connection, and one write answering each request in it with the same bulk string: what any
// server must at least do over the socket API. It counts requests by the `*` that starts each
// RESP array at a line start, so it is meant for redis-benchmark's GET test only (keys without a
// `*` at a line start).
//
//   noop_resp_server PORT     (listens on 127.0.0.1; runs until killed)
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace {

constexpr std::string_view kReply = "$3\r\nbar\r\n";

int Listen(int port) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener, 512) != 0) {
    std::perror("noop_resp_server: listen");
    return -1;
  }
  return listener;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  if (argc != 2 ||
      std::from_chars(argv[1], argv[1] + std::strlen(argv[1]), port).ec != std::errc() ||
      port <= 0 || port > 65535) {
    std::fprintf(stderr, "usage: noop_resp_server PORT\n");
    return 2;
  }
  const int listener = Listen(port);
  if (listener < 0) return 1;
  const int poller = epoll_create1(0);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = listener;
  epoll_ctl(poller, EPOLL_CTL_ADD, listener, &event);
  epoll_event ready[256];
  char input[16384];
  std::string output;
  for (;;) {
    const int count = epoll_wait(poller, ready, 256, -1);
    for (int i = 0; i < count; ++i) {
      const int fd = ready[i].data.fd;
      if (fd == listener) {
        for (int connection;
             (connection = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK)) >= 0;) {
          const int one = 1;
          setsockopt(connection, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event added{};
          added.events = EPOLLIN;
          added.data.fd = connection;
          epoll_ctl(poller, EPOLL_CTL_ADD, connection, &added);
        }
        continue;
      }
      const ssize_t got = read(fd, input, sizeof input);
      if (got <= 0) {
        close(fd);
        continue;
      }
      int requests = 0;
      for (ssize_t k = 0; k < got; ++k)
        requests += input[k] == '*' && (k == 0 || input[k - 1] == '\n');
      output.clear();
      for (int r = 0; r < std::max(requests, 1); ++r) output += kReply;
      if (write(fd, output.data(), output.size()) < 0) close(fd);
    }
  }
}
