#include "shm/protocol.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/coding.h"

namespace quiver::shm {

Status SendMessage(int socket, std::string_view bytes, std::span<const int> fds) {
  if (fds.size() > kMaxDescriptorsPerMessage) {
    return Status::Internal("too many descriptors for one message");
  }
  iovec io{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr header{};
  header.msg_iov = &io;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxDescriptorsPerMessage)];
  if (!fds.empty()) {
    header.msg_control = control;
    header.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* message = CMSG_FIRSTHDR(&header);
    message->cmsg_level = SOL_SOCKET;
    message->cmsg_type = SCM_RIGHTS;
    message->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(message), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    const ssize_t sent = sendmsg(socket, &header, MSG_NOSIGNAL);
    if (sent >= 0) return Status::OK();
    if (errno == EINTR) continue;
    return Status::IOError(std::string("send on the shared-memory socket: ") +
                           std::strerror(errno));
  }
}

void CloseDescriptors(Message& message) {
  for (int fd : message.fds) close(fd);
  message.fds.clear();
}

Result<Message> ReceiveMessage(int socket) {
  Message message;
  message.bytes.resize(kMaxMessageBytes);
  iovec io{message.bytes.data(), message.bytes.size()};
  msghdr header{};
  header.msg_iov = &io;
  header.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxDescriptorsPerMessage)];
  header.msg_control = control;
  header.msg_controllen = sizeof(control);
  ssize_t received;
  do {
    received = recvmsg(socket, &header, MSG_CMSG_CLOEXEC);
  } while (received < 0 && errno == EINTR);
  if (received < 0) {
    return Status::IOError(std::string("receive on the shared-memory socket: ") +
                           std::strerror(errno));
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&header); c != nullptr; c = CMSG_NXTHDR(&header, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      message.fds.push_back(fd);
    }
  }
  if (received == 0 && message.fds.empty()) {
    return Status::IOError("the shared-memory socket was closed by its peer");
  }
  if ((header.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    CloseDescriptors(message);
    return Status::InvalidArgument("a shared-memory socket message was longer than " +
                                   std::to_string(kMaxMessageBytes) +
                                   " bytes or carried too many descriptors");
  }
  message.bytes.resize(static_cast<size_t>(received));
  return message;
}

Result<sockaddr_un> UnixAddress(const std::string& path, int* dir_fd) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  *dir_fd = -1;
  std::string target = path;
  if (path.empty()) return Status::InvalidArgument("the shared-memory socket path is empty");
  if (path.size() >= sizeof(address.sun_path)) {
    const size_t slash = path.rfind('/');
    const std::string directory = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    *dir_fd = open(directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dir_fd < 0) {
      return Status::IOError("cannot open the directory of the shared-memory socket " + path +
                             ": " + std::strerror(errno));
    }
    target = "/proc/self/fd/" + std::to_string(*dir_fd) + "/" + name;
    if (target.size() >= sizeof(address.sun_path)) {
      close(*dir_fd);
      *dir_fd = -1;
      return Status::InvalidArgument("the shared-memory socket's name is too long: " + path);
    }
  }
  std::memcpy(address.sun_path, target.data(), target.size());
  return address;
}

void PutError(std::string* out, const Status& status) {
  PutFixed8(out, 1);
  PutFixed8(out, static_cast<uint8_t>(status.code()));
  PutLengthPrefixed(out, status.message());
}

Status ReadReplyStatus(std::string_view* reply) {
  ByteReader reader(*reply);
  uint8_t status;
  if (!reader.ReadFixed8(&status)) return Status::Corruption("an empty shared-memory reply");
  if (status == 0) {
    *reply = reader.rest();
    return Status::OK();
  }
  uint8_t code;
  std::string_view text;
  if (!reader.ReadFixed8(&code) || !reader.ReadLengthPrefixed(&text) || code == 0 ||
      code > static_cast<uint8_t>(StatusCode::kReadOnly)) {
    return Status::Corruption("a malformed shared-memory error reply");
  }
  return Status(static_cast<StatusCode>(code), std::string(text));
}

}  // namespace quiver::shm
