// ShmServer: the Unix domain socket through which local readers (shm/reader.h) attach to the
// tables a catalog publishes (engine/publication.h). One thread serves every connection: it
// answers the attach protocol (shm/protocol.h), passing the control block and the regions as
// read-only descriptors (SCM_RIGHTS); it stamps each published table's heartbeat about every
// 100 ms, so readers notice a server that died; and it keeps what each reader reports it maps, for
// /metrics, INFO and `quiver shm status`.
//
// A reader that keeps regions the table has freed for longer than the lease without refreshing
// (it made no call since) is disconnected with a warning: its next call re-attaches and unmaps
// them. Each connection's peer (pid, uid, gid: SO_PEERCRED) is logged.
//
// Thread safety: Start, Stop from one thread; Readers / StatusJson / RenderMetrics from any.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "engine/catalog.h"

namespace quiver {

struct ShmServerOptions {
  std::string path;                       // the socket's path
  mode_t mode = 0600;                     // its permissions
  int64_t lease_ms = int64_t{60} * 1000;  // see above
  int64_t heartbeat_ms = 100;
  size_t max_connections = 1024;  // more are closed at once (a reader process needs one)
};

struct ShmReaderTable {
  std::string name;
  uint64_t table_id = 0;
  uint64_t generation = 0;     // of the manifest the reader last reported mapping
  uint64_t mapped_bytes = 0;   // as it reported
  uint64_t retired_bytes = 0;  // of those, regions the table no longer lists
  int64_t idle_ms = 0;         // since its last report
};

struct ShmReaderInfo {
  int64_t pid = 0;
  int64_t uid = 0;
  int64_t gid = 0;
  int64_t connected_ms = 0;  // Unix ms
  std::vector<ShmReaderTable> tables;
};

class ShmServer {
 public:
  // Listens at options.path (a stale socket file there is replaced; a live one is an error).
  static Result<std::unique_ptr<ShmServer>> Start(Catalog& catalog, ShmServerOptions options);
  ~ShmServer();  // Stop()
  ShmServer(const ShmServer&) = delete;
  ShmServer& operator=(const ShmServer&) = delete;

  // Closes every connection, removes the socket file. Idempotent.
  void Stop();

  const std::string& path() const { return options_.path; }
  std::vector<ShmReaderInfo> Readers() const;
  // {"socket": ..., "readers": [...]} (what `quiver shm status` prints).
  std::string StatusJson() const;
  // INFO's "# Shm" section: the socket, readers, bytes they map, bytes of those the tables freed.
  std::string InfoText() const;
  // The quiver_shm_* families in Prometheus text format.
  void RenderMetrics(std::string* out) const;

 private:
  struct Connection;
  ShmServer(Catalog& catalog, ShmServerOptions options, int listen_fd, int wake_fd);
  void Run();
  void Accept();
  // False when the connection must be closed.
  bool Serve(Connection& connection);
  void Tick(int64_t now_ms, bool full);
  std::vector<ShmReaderInfo> ReadersLocked() const;  // under mutex_
  std::string ReadersJson(const std::vector<ShmReaderInfo>& readers) const;

  Catalog& catalog_;
  const ShmServerOptions options_;
  const int listen_fd_;
  const int wake_fd_;  // an eventfd: Stop() wakes the loop
  std::atomic<bool> stopping_{false};
  int64_t accept_paused_until_ms_ = 0;  // the loop's thread only
  mutable std::mutex mutex_;            // connections_, for the readers' figures
  std::vector<std::unique_ptr<Connection>> connections_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace quiver
