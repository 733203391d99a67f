// ReaderGate: lets one writer free a structure that it has replaced (an index array, a region
// directory) only once no reader can still be using it. A small epoch scheme:
//
//   reader:  ReaderGate::Section s = gate.Enter();  ...load published pointers, read...  (~s)
//   writer:  publish the new pointer; gate.Synchronize(); free the old one.
//
// Synchronize() returns once every reader that entered before the call has left. Readers that
// enter after the new pointer was published see only the new pointer. Readers never block; the
// writer waits (spinning, then yielding) for the sections in flight, which last microseconds.
//
// Invariant: a reader registered in active_[p] entered while epoch_ had parity p, and re-checked
// that after registering; a Synchronize flips the parity and waits for the old parity to drain.
//
// Thread safety: Enter from any thread. Synchronize from one thread at a time (the table's
// writer). Sections must not nest on one thread across a Synchronize by the same thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace quiver {

class ReaderGate {
 public:
  class Section {
   public:
    Section(Section&& other) noexcept : counter_(other.counter_) { other.counter_ = nullptr; }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;
    Section& operator=(Section&&) = delete;
    ~Section() {
      if (counter_) counter_->fetch_sub(1, std::memory_order_seq_cst);
    }

   private:
    friend class ReaderGate;
    explicit Section(std::atomic<int64_t>* counter) : counter_(counter) {}
    std::atomic<int64_t>* counter_;
  };

  [[nodiscard]] Section Enter() {
    for (;;) {
      uint64_t epoch = epoch_.load(std::memory_order_seq_cst);
      std::atomic<int64_t>& counter = active_[epoch & 1];
      counter.fetch_add(1, std::memory_order_seq_cst);
      if (epoch_.load(std::memory_order_seq_cst) == epoch) return Section(&counter);
      counter.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  void Synchronize() {
    uint64_t epoch = epoch_.fetch_add(1, std::memory_order_seq_cst);
    std::atomic<int64_t>& old_readers = active_[epoch & 1];
    for (int spins = 0; old_readers.load(std::memory_order_seq_cst) != 0; ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
  }

 private:
  std::atomic<uint64_t> epoch_{0};
  std::atomic<int64_t> active_[2] = {0, 0};
};

}  // namespace quiver
