#include "server/shm/shm_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/coding.h"
#include "common/log.h"
#include "common/metrics.h"
#include "engine/publication.h"
#include "shm/protocol.h"

namespace quiver {

struct ShmServer::Connection {
  struct Attachment {
    std::string name;
    std::shared_ptr<Publication> publication;
    uint64_t generation = 0;
    uint64_t mapped_bytes = 0;
    int64_t reported_ms = 0;
  };
  int fd = -1;
  ucred peer{};
  int64_t connected_ms = 0;
  std::map<uint64_t, Attachment> tables;  // by table id
};

namespace {

// connect / bind to the Unix socket at `path` (however long).
int ConnectTo(int fd, const std::string& path) {
  int dir_fd = -1;
  Result<sockaddr_un> address = shm::UnixAddress(path, &dir_fd);
  if (!address.ok()) return -1;
  const int result = connect(fd, reinterpret_cast<const sockaddr*>(&*address), sizeof(*address));
  if (dir_fd >= 0) close(dir_fd);
  return result;
}

Result<int> Listen(const std::string& path, mode_t mode) {
  const std::string temporary = path + ".tmp." + std::to_string(getpid());
  // A socket file left by a server that died is replaced; one a live server answers is not.
  struct stat info;
  if (lstat(path.c_str(), &info) == 0) {
    if (!S_ISSOCK(info.st_mode)) {
      return Status::AlreadyExists("'" + path + "' exists and is not a socket");
    }
    const int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    const bool live = probe >= 0 && ConnectTo(probe, path) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      return Status::AlreadyExists("another server listens on the shared-memory socket " + path);
    }
  }
  int dir_fd = -1;
  QUIVER_ASSIGN_OR_RETURN(sockaddr_un address, shm::UnixAddress(temporary, &dir_fd));
  const int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    if (dir_fd >= 0) close(dir_fd);
    return Status::IOError(std::string("socket: ") + std::strerror(errno));
  }
  // Bound under a temporary name, given its mode, then renamed: never reachable with the
  // default permissions.
  unlink(temporary.c_str());
  auto fail = [&](const std::string& what) {
    const int error = errno;
    close(fd);
    unlink(temporary.c_str());
    return Status::IOError(what + " " + path + ": " + std::strerror(error) +
                           " (--shm-socket PATH puts it elsewhere; --shm-socket off publishes "
                           "nothing)");
  };
  const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
  if (dir_fd >= 0) close(dir_fd);
  if (bound != 0) return fail("cannot bind the shared-memory socket");
  if (chmod(temporary.c_str(), mode) != 0) return fail("cannot set the mode of");
  if (listen(fd, SOMAXCONN) != 0) return fail("cannot listen on");
  if (rename(temporary.c_str(), path.c_str()) != 0) return fail("cannot move the socket to");
  return fd;
}

std::string Ok() {
  std::string reply;
  PutFixed8(&reply, 0);
  return reply;
}

std::string Error(const Status& status) {
  std::string reply;
  shm::PutError(&reply, status);
  return reply;
}

}  // namespace

Result<std::unique_ptr<ShmServer>> ShmServer::Start(Catalog& catalog, ShmServerOptions options) {
  QUIVER_ASSIGN_OR_RETURN(int listen_fd, Listen(options.path, options.mode));
  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    close(listen_fd);
    return Status::IOError(std::string("eventfd: ") + std::strerror(errno));
  }
  std::unique_ptr<ShmServer> server(new ShmServer(catalog, std::move(options), listen_fd, wake_fd));
  server->thread_ = std::thread([s = server.get()] { s->Run(); });
  QUIVER_LOG(kInfo, "shared-memory readers may attach", {{"socket", server->options_.path}});
  return server;
}

ShmServer::ShmServer(Catalog& catalog, ShmServerOptions options, int listen_fd, int wake_fd)
    : catalog_(catalog), options_(std::move(options)), listen_fd_(listen_fd), wake_fd_(wake_fd) {}

ShmServer::~ShmServer() { Stop(); }

void ShmServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stopping_.store(true);
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& connection : connections_) close(connection->fd);
  connections_.clear();
  close(listen_fd_);
  close(wake_fd_);
  unlink(options_.path.c_str());
}

void ShmServer::Run() {
  int64_t next_full_ms = 0;
  while (!stopping_.load()) {
    std::vector<pollfd> fds;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fds.push_back({wake_fd_, POLLIN, 0});
      // Out of descriptors, accepts pause for a moment instead of spinning on the ready socket.
      const bool accepting = UnixMillis() >= accept_paused_until_ms_;
      fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
      for (auto& connection : connections_) fds.push_back({connection->fd, POLLIN, 0});
    }
    const int ready = poll(fds.data(), fds.size(), static_cast<int>(options_.heartbeat_ms));
    if (stopping_.load()) break;
    if (ready > 0) {
      if (fds[1].revents & POLLIN) Accept();
      std::lock_guard<std::mutex> lock(mutex_);
      for (size_t i = 2; i < fds.size(); ++i) {
        if (fds[i].revents == 0) continue;
        auto it = std::find_if(connections_.begin(), connections_.end(),
                               [&](const auto& c) { return c->fd == fds[i].fd; });
        if (it == connections_.end()) continue;
        if ((fds[i].revents & POLLIN) == 0 || !Serve(**it)) {
          QUIVER_LOG(kInfo, "shared-memory reader left",
                     {{"pid", std::to_string((*it)->peer.pid)}});
          close((*it)->fd);
          connections_.erase(it);
        }
      }
    }
    const int64_t now = UnixMillis();
    const bool full = now >= next_full_ms;
    if (full) next_full_ms = now + 1000;
    Tick(now, full);
  }
}

void ShmServer::Accept() {
  for (;;) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        QUIVER_LOG_EVERY_SECOND(kWarn, "shared-memory socket accept failed",
                                {{"error", std::strerror(errno)}});
        accept_paused_until_ms_ = UnixMillis() + 100;
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (connections_.size() >= options_.max_connections) {
        QUIVER_LOG_EVERY_SECOND(kWarn, "shared-memory socket at its connection limit: refused",
                                {{"max_connections", std::to_string(options_.max_connections)}});
        close(fd);
        continue;
      }
    }
    auto connection = std::make_unique<Connection>();
    connection->fd = fd;
    socklen_t length = sizeof(connection->peer);
    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &connection->peer, &length);
    connection->connected_ms = UnixMillis();
    QUIVER_LOG(kInfo, "shared-memory reader connected",
               {{"pid", std::to_string(connection->peer.pid)},
                {"uid", std::to_string(connection->peer.uid)},
                {"gid", std::to_string(connection->peer.gid)}});
    std::lock_guard<std::mutex> lock(mutex_);
    connections_.push_back(std::move(connection));
  }
}

bool ShmServer::Serve(Connection& connection) {
  Result<shm::Message> received = shm::ReceiveMessage(connection.fd);
  if (!received.ok()) {
    // Closed by the reader, or a message too long: either way this connection ends.
    if (received.status().code() != StatusCode::kIOError) {
      QUIVER_LOG_EVERY_SECOND(
          kWarn, "shared-memory reader sent a bad message",
          {{"pid", std::to_string(connection.peer.pid)}, {"error", received.status().message()}});
    }
    return false;
  }
  shm::CloseDescriptors(*received);  // readers send none; never keep what a peer sends
  ByteReader reader(received->bytes);
  uint8_t op = 0;
  reader.ReadFixed8(&op);
  std::string reply;
  std::vector<int> fds;
  auto malformed = [&](std::string_view what) {
    reply = Error(Status::InvalidArgument("malformed " + std::string(what) + " request"));
  };
  const int64_t now = UnixMillis();
  switch (static_cast<shm::Op>(op)) {
    case shm::Op::kHello: {
      uint32_t version = 0;
      if (!reader.ReadFixed32(&version)) {
        malformed("hello");
      } else if (version != shm::kProtocolVersion) {
        reply = Error(Status::NotImplemented("this server speaks shared-memory protocol version " +
                                             std::to_string(shm::kProtocolVersion) + ", not " +
                                             std::to_string(version)));
      } else {
        reply = Ok();
        PutFixed32(&reply, shm::kProtocolVersion);
        PutFixed64(&reply, PublicationInstanceId());
      }
      break;
    }
    case shm::Op::kAttach: {
      std::string_view name;
      if (!reader.ReadLengthPrefixed(&name)) {
        malformed("attach");
        break;
      }
      Result<std::shared_ptr<Table>> table = catalog_.GetTable(name);
      if (!table.ok()) {
        reply = Error(table.status());
        break;
      }
      const std::shared_ptr<Publication>& publication = (*table)->publication();
      if (publication == nullptr || publication->state() != PublishedState::kLive) {
        reply = Error(Status::NotFound("table '" + std::string(name) + "' is not published"));
        break;
      }
      Connection::Attachment& attachment = connection.tables[publication->table_id()];
      attachment.name = std::string(name);
      attachment.publication = publication;
      attachment.reported_ms = now;
      reply = Ok();
      PutFixed64(&reply, publication->table_id());
      PutFixed64(&reply, publication->control_bytes());
      fds.push_back(publication->control_fd());
      break;
    }
    case shm::Op::kMap: {
      uint64_t table_id = 0;
      uint32_t count = 0;
      if (!reader.ReadFixed64(&table_id) || !reader.ReadFixed32(&count) ||
          count > shm::kMaxIdsPerMap || reader.remaining() != size_t{count} * 8) {
        malformed("map");
        break;
      }
      auto it = connection.tables.find(table_id);
      if (it == connection.tables.end()) {
        reply = Error(Status::NotFound("table " + std::to_string(table_id) +
                                       " is not attached on this connection"));
        break;
      }
      std::vector<uint64_t> ids(count);
      for (uint64_t& id : ids) reader.ReadFixed64(&id);
      std::string sent_reply = Ok();
      PutFixed32(&sent_reply, count);
      Status sent = Status::OK();
      it->second.publication->WithRegionFds(ids, [&](std::span<const int> region_fds) {
        std::vector<int> present;
        for (int fd : region_fds) {
          PutFixed8(&sent_reply, fd >= 0 ? 1 : 0);
          if (fd >= 0) present.push_back(fd);
        }
        sent = shm::SendMessage(connection.fd, sent_reply, present);  // while they stay open
      });
      return sent.ok();
    }
    case shm::Op::kReport: {
      uint64_t table_id = 0, generation = 0, mapped = 0;
      if (!reader.ReadFixed64(&table_id) || !reader.ReadFixed64(&generation) ||
          !reader.ReadFixed64(&mapped)) {
        return false;  // no reply to a report: a malformed one ends the connection
      }
      auto it = connection.tables.find(table_id);
      if (it != connection.tables.end()) {
        it->second.publication->NoteReaderAt(generation);
        it->second.generation = generation;
        it->second.mapped_bytes = mapped;
        it->second.reported_ms = now;
      }
      return true;
    }
    case shm::Op::kDetach: {
      uint64_t table_id = 0;
      if (!reader.ReadFixed64(&table_id)) return false;
      connection.tables.erase(table_id);
      return true;
    }
    case shm::Op::kList: {
      std::vector<std::string> names;
      for (const std::shared_ptr<Table>& table : catalog_.Tables()) {
        if (table->publication() != nullptr) names.push_back(table->name());
      }
      std::sort(names.begin(), names.end());
      reply = Ok();
      std::string list;
      uint32_t count = 0;
      for (const std::string& name : names) {
        if (list.size() + name.size() + 64 > shm::kMaxMessageBytes) break;
        PutLengthPrefixed(&list, name);
        ++count;
      }
      PutFixed32(&reply, count);
      reply += list;
      break;
    }
    case shm::Op::kStatus: {
      std::string json = ReadersJson(ReadersLocked());  // the loop serves under mutex_
      if (json.size() + 16 > shm::kMaxMessageBytes) {
        json = R"({"error":"too many readers to list here: see /metrics"})";
      }
      reply = Ok();
      PutLengthPrefixed(&reply, json);
      break;
    }
    default:
      reply = Error(Status::InvalidArgument("unknown shared-memory request " + std::to_string(op)));
      break;
  }
  return shm::SendMessage(connection.fd, reply, fds).ok();
}

void ShmServer::Tick(int64_t now_ms, bool full) {
  const std::vector<std::shared_ptr<Table>> tables = catalog_.Tables();
  for (const std::shared_ptr<Table>& table : tables) {
    if (table->publication() != nullptr) table->publication()->Stamp(now_ms);
  }
  if (!full) return;
  std::lock_guard<std::mutex> lock(mutex_);
  // Leases: a reader holding freed regions without a word for too long is let go.
  for (auto it = connections_.begin(); it != connections_.end();) {
    Connection& connection = **it;
    bool expired = false;
    for (const auto& [id, attachment] : connection.tables) {
      const uint64_t retired = attachment.publication->RetiredBytesAt(attachment.generation);
      if (retired > 0 && now_ms - attachment.reported_ms > options_.lease_ms) {
        QUIVER_LOG(kWarn, "shared-memory reader's lease expired: disconnected",
                   {{"pid", std::to_string(connection.peer.pid)},
                    {"table", attachment.name},
                    {"retired_bytes", std::to_string(retired)},
                    {"idle_ms", std::to_string(now_ms - attachment.reported_ms)}});
        expired = true;
        break;
      }
    }
    if (expired) {
      close(connection.fd);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
  // What no reader maps any more is forgotten.
  std::map<uint64_t, uint64_t> oldest;  // table id -> the oldest generation a reader maps
  for (const auto& connection : connections_) {
    for (const auto& [id, attachment] : connection->tables) {
      auto [at, inserted] = oldest.emplace(id, attachment.generation);
      if (!inserted) at->second = std::min(at->second, attachment.generation);
    }
  }
  for (const std::shared_ptr<Table>& table : tables) {
    const std::shared_ptr<Publication>& publication = table->publication();
    if (publication == nullptr) continue;
    auto it = oldest.find(publication->table_id());
    publication->PruneRetired(it == oldest.end() ? UINT64_MAX : it->second);
  }
}

std::vector<ShmReaderInfo> ShmServer::ReadersLocked() const {
  std::vector<ShmReaderInfo> readers;
  const int64_t now = UnixMillis();
  for (const auto& connection : connections_) {
    ShmReaderInfo info;
    info.pid = connection->peer.pid;
    info.uid = connection->peer.uid;
    info.gid = connection->peer.gid;
    info.connected_ms = connection->connected_ms;
    for (const auto& [id, attachment] : connection->tables) {
      info.tables.push_back(
          ShmReaderTable{attachment.name, id, attachment.generation, attachment.mapped_bytes,
                         attachment.publication->RetiredBytesAt(attachment.generation),
                         now - attachment.reported_ms});
    }
    readers.push_back(std::move(info));
  }
  return readers;
}

std::vector<ShmReaderInfo> ShmServer::Readers() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ReadersLocked();
}

std::string ShmServer::ReadersJson(const std::vector<ShmReaderInfo>& readers) const {
  nlohmann::json list = nlohmann::json::array();
  for (const ShmReaderInfo& info : readers) {
    nlohmann::json tables = nlohmann::json::array();
    for (const ShmReaderTable& table : info.tables) {
      tables.push_back({{"table", table.name},
                        {"generation", table.generation},
                        {"mapped_bytes", table.mapped_bytes},
                        {"retired_bytes", table.retired_bytes},
                        {"idle_ms", table.idle_ms}});
    }
    list.push_back({{"pid", info.pid},
                    {"uid", info.uid},
                    {"gid", info.gid},
                    {"connected_ms", info.connected_ms},
                    {"tables", std::move(tables)}});
  }
  return nlohmann::json{{"socket", options_.path}, {"readers", std::move(list)}}.dump();
}

std::string ShmServer::StatusJson() const { return ReadersJson(Readers()); }

std::string ShmServer::InfoText() const {
  uint64_t mapped = 0, retired = 0;
  const std::vector<ShmReaderInfo> readers = Readers();
  for (const ShmReaderInfo& info : readers) {
    for (const ShmReaderTable& table : info.tables) {
      mapped += table.mapped_bytes;
      retired += table.retired_bytes;
    }
  }
  return "# Shm\r\nshm_socket:" + options_.path +
         "\r\nshm_readers:" + std::to_string(readers.size()) +
         "\r\nshm_mapped_bytes:" + std::to_string(mapped) +
         "\r\nshm_retired_bytes:" + std::to_string(retired) + "\r\n\r\n";
}

void ShmServer::RenderMetrics(std::string* out) const {
  const std::vector<ShmReaderInfo> readers = Readers();
  AppendFamilyHeader(out, "quiver_shm_readers", "gauge",
                     "Processes attached through the shared-memory socket");
  AppendSample(out, "quiver_shm_readers", {}, static_cast<double>(readers.size()));
  const struct {
    const char* name;
    const char* help;
    uint64_t ShmReaderTable::*bytes;
  } per_table[] = {
      {"quiver_shm_reader_mapped_bytes",
       "Bytes of a table a shared-memory reader maps, as it last reported",
       &ShmReaderTable::mapped_bytes},
      {"quiver_shm_reader_retired_bytes",
       "Bytes a shared-memory reader still maps that the table has freed",
       &ShmReaderTable::retired_bytes},
  };
  for (const auto& family : per_table) {
    AppendFamilyHeader(out, family.name, "gauge", family.help);
    for (const ShmReaderInfo& info : readers) {
      for (const ShmReaderTable& table : info.tables) {
        AppendSample(out, family.name, {{"pid", std::to_string(info.pid)}, {"table", table.name}},
                     static_cast<double>(table.*family.bytes));
      }
    }
  }
}

}  // namespace quiver
