// PeriodicTask: runs a function on its own thread once per period until stopped (Stop, or the
// task's destruction). Used by the active expiry cycles; with a delay the function chooses (a
// retry's backoff), by the object-store uploads and followers.
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
    StartWithDelays(period, [period, run = std::move(run)] {
      run();
      return period;
    });
  }

  // Runs `run` after `first`, then again after each delay it returns.
  void StartWithDelays(std::chrono::microseconds first,
                       std::function<std::chrono::microseconds()> run) {
    thread_ = std::thread([this, first, run = std::move(run)] {
      std::unique_lock lock(mutex_);
      for (std::chrono::microseconds delay = first; !stop_;) {
        wake_.wait_for(lock, delay, [&] { return stop_; });
        if (stop_) break;
        lock.unlock();
        delay = run();
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
