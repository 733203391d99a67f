// The attach protocol between readers (shm/reader.h) and the server that publishes tables
// (server/shm/shm_server.h): messages over a Unix domain socket of type SOCK_SEQPACKET (so each
// message arrives whole), descriptors passed with SCM_RIGHTS. docs/shm.md specifies it.
//
//   request  = u8 op, then its body             reply = u8 status (0 = ok), then its body;
//                                                        an error: u8 StatusCode, u32-prefixed text
//   Hello    u32 version                         u32 version, u64 instance id
//   Attach   u32-prefixed table name             u64 table id, u64 control bytes; 1 descriptor
//   Map      u64 table id, u32 n, u64 id * n     u32 n, u8 present * n; a descriptor per present
//   Report   u64 table id, u64 generation,       (no reply) what the reader maps now
//            u64 mapped bytes
//   Detach   u64 table id                        (no reply)
//   List     -                                   u32 n, u32-prefixed name * n
//   Status   -                                   u32-prefixed JSON (the readers attached)
//
// Thread safety: the functions are pure or act on the socket given.
#pragma once

#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace quiver::shm {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr size_t kMaxMessageBytes = 64 << 10;
inline constexpr size_t kMaxDescriptorsPerMessage = 250;  // the kernel allows 253
inline constexpr size_t kMaxIdsPerMap = kMaxDescriptorsPerMessage;

enum class Op : uint8_t {
  kHello = 1,
  kAttach = 2,
  kMap = 3,
  kReport = 4,
  kDetach = 5,
  kList = 6,
  kStatus = 7,
};

// A received message: its bytes and the descriptors that came with it (owned: close them).
struct Message {
  std::string bytes;
  std::vector<int> fds;
};

// Sends one message with `fds` (at most kMaxDescriptorsPerMessage). Blocks; EINTR retried.
Status SendMessage(int socket, std::string_view bytes, std::span<const int> fds = {});
// Receives one message (blocking). kIOError "closed" at the end of the stream; a message cut
// (longer than kMaxMessageBytes) or descriptors cut is an error, its descriptors closed.
Result<Message> ReceiveMessage(int socket);
// Closes every descriptor of `message`.
void CloseDescriptors(Message& message);

// The address of the Unix socket at `path`. One longer than sockaddr_un allows is reached through
// a descriptor of its directory (/proc/self/fd/N/name): *dir_fd receives it (else -1); close it
// once bind or connect returned.
Result<sockaddr_un> UnixAddress(const std::string& path, int* dir_fd);

// Appends an error reply: status 1, the code and the text.
void PutError(std::string* out, const Status& status);
// Reads a reply's status byte; for an error, the Status it carries.
Status ReadReplyStatus(std::string_view* reply);

}  // namespace quiver::shm
