// Client: the socket side of a reader (shm/reader.h, protocol in shm/protocol.h).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/coding.h"
#include "shm/protocol.h"
#include "shm/reader.h"

namespace quiver::shm {

Result<std::shared_ptr<Client>> Client::Connect(const std::string& socket_path) {
  std::shared_ptr<Client> client(new Client(socket_path));
  std::lock_guard<std::mutex> lock(client->mutex_);
  QUIVER_RETURN_NOT_OK(client->EnsureConnectedLocked());
  return client;
}

Client::~Client() {
  if (fd_ >= 0) close(fd_);
}

Status Client::EnsureConnectedLocked() {
  if (fd_ >= 0) return Status::OK();
  int dir_fd = -1;
  QUIVER_ASSIGN_OR_RETURN(sockaddr_un address, UnixAddress(path_, &dir_fd));
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (dir_fd >= 0) close(dir_fd);
    return Status::IOError(std::string("socket: ") + std::strerror(errno));
  }
  const int connected = connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  const int error = errno;
  if (dir_fd >= 0) close(dir_fd);
  if (connected != 0) {
    close(fd);
    std::string hint;
    if (error == EACCES) hint = " (the socket's permissions do not let this user in)";
    if (error == ENOENT || error == ECONNREFUSED) hint = " (is quiverd running there?)";
    return Status::IOError("cannot connect to the shared-memory socket " + path_ + ": " +
                           std::strerror(error) + hint);
  }
  std::string hello;
  PutFixed8(&hello, static_cast<uint8_t>(Op::kHello));
  PutFixed32(&hello, kProtocolVersion);
  Status sent = SendMessage(fd, hello);
  Result<Message> reply = sent.ok() ? ReceiveMessage(fd) : Result<Message>(sent);
  if (!reply.ok()) {
    close(fd);
    return Status::IOError("the shared-memory socket " + path_ +
                           " did not answer: " + reply.status().message());
  }
  CloseDescriptors(*reply);
  std::string_view body = reply->bytes;
  Status status = ReadReplyStatus(&body);
  ByteReader reader(body);
  uint32_t version = 0;
  uint64_t instance = 0;
  if (status.ok() && (!reader.ReadFixed32(&version) || !reader.ReadFixed64(&instance))) {
    status = Status::Corruption("a malformed hello reply");
  }
  if (!status.ok()) {
    close(fd);
    return status;
  }
  fd_ = fd;
  instance_id_ = instance;
  return Status::OK();
}

Result<std::string> Client::Call(std::string_view request, std::vector<int>* fds) {
  std::lock_guard<std::mutex> lock(mutex_);
  QUIVER_RETURN_NOT_OK(EnsureConnectedLocked());
  Status sent = SendMessage(fd_, request);
  Result<Message> reply = sent.ok() ? ReceiveMessage(fd_) : Result<Message>(sent);
  if (!reply.ok()) {
    close(fd_);
    fd_ = -1;
    return Status::IOError("the shared-memory socket " + path_ +
                           " failed: " + reply.status().message());
  }
  if (fds != nullptr) {
    *fds = std::move(reply->fds);
  } else {
    CloseDescriptors(*reply);
  }
  return std::move(reply->bytes);
}

Result<Client::Attached> Client::AttachRaw(std::string_view name) {
  std::string request;
  PutFixed8(&request, static_cast<uint8_t>(Op::kAttach));
  PutLengthPrefixed(&request, name);
  std::vector<int> fds;
  QUIVER_ASSIGN_OR_RETURN(std::string reply, Call(request, &fds));
  std::string_view body = reply;
  Status status = ReadReplyStatus(&body);
  ByteReader reader(body);
  Attached attached{};
  if (status.ok() && (!reader.ReadFixed64(&attached.table_id) ||
                      !reader.ReadFixed64(&attached.control_bytes) || fds.size() != 1)) {
    status = Status::Corruption("a malformed attach reply");
  }
  if (!status.ok()) {
    for (int fd : fds) close(fd);
    return status;
  }
  attached.control_fd = fds[0];
  std::lock_guard<std::mutex> lock(mutex_);
  attached.instance_id = instance_id_;
  return attached;
}

Result<std::vector<int>> Client::MapRaw(uint64_t table_id, uint64_t instance_id,
                                        std::span<const uint64_t> ids) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (fd_ >= 0 && instance_id_ != instance_id) {
      return Status::IOError("the server behind " + path_ + " restarted");
    }
  }
  std::vector<int> out;
  for (size_t start = 0; start < ids.size(); start += kMaxIdsPerMap) {
    const size_t count = std::min(kMaxIdsPerMap, ids.size() - start);
    std::string request;
    PutFixed8(&request, static_cast<uint8_t>(Op::kMap));
    PutFixed64(&request, table_id);
    PutFixed32(&request, static_cast<uint32_t>(count));
    for (size_t i = 0; i < count; ++i) PutFixed64(&request, ids[start + i]);
    std::vector<int> fds;
    Result<std::string> reply = Call(request, &fds);
    auto fail = [&](const Status& status) {
      for (int fd : fds) close(fd);
      for (int fd : out) {
        if (fd >= 0) close(fd);
      }
      return status;
    };
    if (!reply.ok()) return fail(reply.status());
    std::string_view body = *reply;
    Status status = ReadReplyStatus(&body);
    if (!status.ok()) return fail(status);
    ByteReader reader(body);
    uint32_t n;
    std::string_view present;
    if (!reader.ReadFixed32(&n) || n != count || !reader.ReadBytes(n, &present)) {
      return fail(Status::Corruption("a malformed map reply"));
    }
    size_t next = 0;
    for (char flag : present) {
      if (flag == 0) {
        out.push_back(-1);
      } else if (next < fds.size()) {
        out.push_back(fds[next++]);
      } else {
        return fail(Status::Corruption("a map reply lacks descriptors"));
      }
    }
    if (next != fds.size()) return fail(Status::Corruption("a map reply has extra descriptors"));
    fds.clear();
  }
  return out;
}

void Client::Report(uint64_t table_id, uint64_t instance_id, uint64_t generation, uint64_t mapped) {
  std::string request;
  PutFixed8(&request, static_cast<uint8_t>(Op::kReport));
  PutFixed64(&request, table_id);
  PutFixed64(&request, generation);
  PutFixed64(&request, mapped);
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0 || instance_id_ != instance_id) return;
  (void)SendMessage(fd_, request);  // a lost report only costs the server's figures
}

void Client::Detach(uint64_t table_id, uint64_t instance_id) {
  std::string request;
  PutFixed8(&request, static_cast<uint8_t>(Op::kDetach));
  PutFixed64(&request, table_id);
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0 || instance_id_ != instance_id) return;
  (void)SendMessage(fd_, request);
}

bool Client::ServerAlive(uint64_t instance_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ < 0 || instance_id_ != instance_id) return false;
  pollfd poll_fd{fd_, POLLIN | POLLRDHUP, 0};
  const int ready = poll(&poll_fd, 1, 0);
  // The server sends nothing unasked: anything readable (or a hang-up) means it went away or
  // told us to go (an expired lease).
  if (ready > 0) {
    close(fd_);
    fd_ = -1;
    return false;
  }
  return true;
}

Result<std::string> Client::CallForBody(Op op) {
  std::string request;
  PutFixed8(&request, static_cast<uint8_t>(op));
  QUIVER_ASSIGN_OR_RETURN(std::string reply, Call(request, nullptr));
  std::string_view body = reply;
  QUIVER_RETURN_NOT_OK(ReadReplyStatus(&body));
  return std::string(body);
}

Result<std::vector<std::string>> Client::ListTables() {
  const Result<std::string> body = CallForBody(Op::kList);
  if (!body.ok()) return body.status();
  ByteReader reader(*body);
  uint32_t n = 0;
  if (!reader.ReadFixed32(&n)) return Status::Corruption("a malformed list reply");
  std::vector<std::string> names;
  for (uint32_t i = 0; i < n; ++i) {
    std::string_view name;
    if (!reader.ReadLengthPrefixed(&name)) return Status::Corruption("a malformed list reply");
    names.emplace_back(name);
  }
  return names;
}

Result<std::string> Client::StatusJson() {
  const Result<std::string> body = CallForBody(Op::kStatus);
  if (!body.ok()) return body.status();
  ByteReader reader(*body);
  std::string_view json;
  if (!reader.ReadLengthPrefixed(&json)) return Status::Corruption("a malformed status reply");
  return std::string(json);
}

}  // namespace quiver::shm
