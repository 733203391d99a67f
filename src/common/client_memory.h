// ClientMemory: the memory held in client connections' buffers beyond their fixed read buffers
// (a RESP client's partial request and unsent replies, an HTTP request body being read), counted
// in one place for the whole process and bounded by one limit: Redis's maxmemory-clients.
// Connections add and remove their bytes as their buffers change; past the limit the RESP server
// closes the clients holding the most and the HTTP server refuses bodies that do not fit.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace quiver {

class ClientMemory {
 public:
  // The process's one instance.
  static ClientMemory& Global();

  // 0: no limit.
  void SetLimit(uint64_t bytes) { limit_.store(bytes, std::memory_order_relaxed); }
  uint64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  bool Over() const {
    const uint64_t limit = this->limit();
    return limit != 0 && used() > limit;
  }
  // Changes the count by `delta` bytes (negative: released).
  void Add(int64_t delta) {
    used_.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
  }
  // Adds `bytes` when they fit under the limit; false, adding nothing, when they do not.
  bool TryAdd(uint64_t bytes) {
    const uint64_t limit = this->limit();
    const uint64_t before = used_.fetch_add(bytes, std::memory_order_relaxed);
    if (limit != 0 && before + bytes > limit) {
      used_.fetch_sub(bytes, std::memory_order_relaxed);
      return false;
    }
    return true;
  }

 private:
  std::atomic<uint64_t> limit_{0};
  std::atomic<uint64_t> used_{0};
};

// One holder's share of ClientMemory::Global(), released when it goes.
class ClientMemoryCharge {
 public:
  ClientMemoryCharge() = default;
  ~ClientMemoryCharge() { Set(0); }
  ClientMemoryCharge(const ClientMemoryCharge&) = delete;
  ClientMemoryCharge& operator=(const ClientMemoryCharge&) = delete;

  // The holder holds `bytes` now.
  void Set(uint64_t bytes) {
    const uint64_t before = bytes_.exchange(bytes, std::memory_order_relaxed);
    if (bytes != before) {
      ClientMemory::Global().Add(static_cast<int64_t>(bytes) - static_cast<int64_t>(before));
    }
  }
  // Set(bytes) when the growth fits under the limit; false, changing nothing, when it does not.
  bool TrySet(uint64_t bytes) {
    const uint64_t before = bytes_.load(std::memory_order_relaxed);
    if (bytes > before && !ClientMemory::Global().TryAdd(bytes - before)) return false;
    bytes_.store(bytes, std::memory_order_relaxed);
    if (bytes < before) ClientMemory::Global().Add(-static_cast<int64_t>(before - bytes));
    return true;
  }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> bytes_{0};  // read by other threads choosing whom to close
};

}  // namespace quiver
