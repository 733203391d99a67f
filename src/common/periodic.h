// PeriodicTask: runs a function on its own thread once per period until stopped (Stop, or the
// task's destruction). Used by the active expiry cycles.
//
// Thread safety: Start and Stop from the owner's thread; the function runs on the task's thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace quiver {

class PeriodicTask {
 public:
  PeriodicTask() = default;
  ~PeriodicTask() { Stop(); }
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  void Start(std::chrono::microseconds period, std::function<void()> run) {
    thread_ = std::thread([this, period, run = std::move(run)] {
      std::unique_lock lock(mutex_);
      while (!stop_) {
        wake_.wait_for(lock, period);
        if (stop_) break;
        lock.unlock();
        run();
        lock.lock();
      }
    });
  }

  // Waits for a run in progress to end.
  void Stop() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace quiver
