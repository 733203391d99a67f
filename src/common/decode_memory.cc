#include "common/decode_memory.h"

#include <algorithm>
#include <atomic>
#include <string>

namespace quiver {

namespace {

std::atomic<uint64_t> g_in_flight{0};
std::atomic<uint64_t> g_process_limit{0};
thread_local DecodeMemory::Scope* t_scope = nullptr;

}  // namespace

// Forwards to Arrow's default pool, counting what goes through it.
class DecodeMemoryPool final : public arrow::MemoryPool {
 public:
  arrow::Status Allocate(int64_t size, int64_t alignment, uint8_t** out) override {
    ARROW_RETURN_NOT_OK(Charge(size));
    arrow::Status status = base()->Allocate(size, alignment, out);
    if (!status.ok()) Release(size);
    return status;
  }

  arrow::Status Reallocate(int64_t old_size, int64_t new_size, int64_t alignment,
                           uint8_t** ptr) override {
    if (new_size > old_size) ARROW_RETURN_NOT_OK(Charge(new_size - old_size));
    arrow::Status status = base()->Reallocate(old_size, new_size, alignment, ptr);
    if (!status.ok()) {
      if (new_size > old_size) Release(new_size - old_size);
      return status;
    }
    if (new_size < old_size) Release(old_size - new_size);
    return status;
  }

  void Free(uint8_t* buffer, int64_t size, int64_t alignment) override {
    base()->Free(buffer, size, alignment);
    Release(size);
  }

  int64_t bytes_allocated() const override {
    return static_cast<int64_t>(g_in_flight.load(std::memory_order_relaxed));
  }
  int64_t max_memory() const override { return base()->max_memory(); }
  int64_t total_bytes_allocated() const override { return base()->total_bytes_allocated(); }
  int64_t num_allocations() const override { return base()->num_allocations(); }
  std::string backend_name() const override { return base()->backend_name(); }

 private:
  static arrow::MemoryPool* base() { return arrow::default_memory_pool(); }

  static arrow::Status Charge(int64_t size) {
    const auto bytes = static_cast<uint64_t>(size);
    DecodeMemory::Scope* scope = t_scope;
    if (scope != nullptr && scope->used_ + bytes > scope->limit_) {
      scope->exceeded_ = true;
      return arrow::Status::OutOfMemory("decoding needs more than ", scope->limit_, " bytes");
    }
    const uint64_t limit = g_process_limit.load(std::memory_order_relaxed);
    const uint64_t before = g_in_flight.fetch_add(bytes, std::memory_order_relaxed);
    if (limit != 0 && before + bytes > limit) {
      g_in_flight.fetch_sub(bytes, std::memory_order_relaxed);
      if (scope != nullptr) scope->exceeded_ = scope->process_limit_hit_ = true;
      return arrow::Status::OutOfMemory("decoding in all requests together needs more than ", limit,
                                        " bytes");
    }
    if (scope != nullptr) scope->used_ += bytes;
    return arrow::Status::OK();
  }

  static void Release(int64_t size) {
    const auto bytes = static_cast<uint64_t>(size);
    g_in_flight.fetch_sub(bytes, std::memory_order_relaxed);
    if (DecodeMemory::Scope* scope = t_scope) scope->used_ -= std::min(scope->used_, bytes);
  }
};

arrow::MemoryPool* DecodeMemory::pool() {
  static DecodeMemoryPool* const pool = new DecodeMemoryPool();  // never destroyed: buffers
  return pool;                                                   // may outlive main's objects
}

uint64_t DecodeMemory::InFlight() { return g_in_flight.load(std::memory_order_relaxed); }

void DecodeMemory::SetProcessLimit(uint64_t bytes) {
  g_process_limit.store(bytes, std::memory_order_relaxed);
}

uint64_t DecodeMemory::ProcessLimit() { return g_process_limit.load(std::memory_order_relaxed); }

DecodeMemory::Scope* DecodeMemory::CurrentScope() { return t_scope; }

DecodeMemory::Scope::Scope(uint64_t limit) : limit_(limit), outer_(t_scope) { t_scope = this; }

DecodeMemory::Scope::~Scope() { t_scope = outer_; }

}  // namespace quiver
