// DecodeMemory: the memory that decoding untrusted bytes may take (a request body's Arrow IPC or
// Parquet, a log record at recovery), bounded while it is decoded rather than after.
//
// Compressed and dictionary-encoded input decodes to far more than its size (a 2 KB Parquet file,
// one 1 MiB dictionary value referenced by 1,000 rows, decodes to 1 GB), so no check of the input
// bounds it. Decoders allocate from pool(); while a Scope is open on a thread, what that thread
// allocates from pool() (net of what it frees) counts against the scope's limit, and an
// allocation past it fails with Arrow's OutOfMemory, which the decoder returns as its error.
// Every allocation, in any scope, also counts against the process-wide limit (SetProcessLimit),
// so that concurrent requests together stay under it.
//
// Thread safety: pool() and the process limit may be used from any thread; a Scope belongs to
// the thread that opened it; scopes nest, and the innermost one counts.
#pragma once

#include <arrow/memory_pool.h>

#include <cstdint>

namespace quiver {

class DecodeMemory {
 public:
  static arrow::MemoryPool* pool();

  // Bytes allocated from pool() and not yet freed, by every thread.
  static uint64_t InFlight();
  // All decoding together holds at most this much (0: no process-wide limit).
  static void SetProcessLimit(uint64_t bytes);
  static uint64_t ProcessLimit();

  class Scope;
  // The scope open on this thread, or null.
  static Scope* CurrentScope();

  class Scope {
   public:
    explicit Scope(uint64_t limit);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

    uint64_t limit() const { return limit_; }
    // True once an allocation failed because of this scope's or the process-wide limit; the
    // caller then names the limit in its error.
    bool exceeded() const { return exceeded_; }
    // A decoder that knows beforehand it would need more than the scope's limit (a JSON body's
    // document) refuses at once and says so here.
    void MarkExceeded() { exceeded_ = true; }
    bool process_limit_hit() const { return process_limit_hit_; }

   private:
    friend class DecodeMemoryPool;
    const uint64_t limit_;
    uint64_t used_ = 0;
    bool exceeded_ = false;
    bool process_limit_hit_ = false;
    Scope* outer_;
  };
};

}  // namespace quiver
