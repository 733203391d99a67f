// Size limits the engine enforces on every write (values over a limit are rejected with
// kLimitExceeded naming the table, column and row; nothing is stored), and the engine's memory
// thresholds.
// Thread safety: a plain value.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quiver {

struct EngineLimits {
  size_t max_key_bytes = 65535;       // one utf8 key (at most 65535)
  size_t max_value_bytes = 16 << 20;  // one utf8 / binary / list value
  int max_columns = 4096;             // key and value columns together
  int max_embedding_elements = 8192;  // fixed_size_list length
  // What decoding one write's Arrow IPC or Parquet body may allocate (common/decode_memory.h),
  // and all requests being decoded at once together; maxmemory when that is less.
  uint64_t max_decode_bytes = uint64_t{256} << 20;
  // Heap chunks holding live values are emptied only once the heap's garbage is at least this
  // many bytes (and 2 bytes a row: a compaction visits every row); chunks holding only garbage
  // are freed whatever their size (Table::FinishWrite).
  size_t heap_compaction_min_garbage = 1 << 20;
};

}  // namespace quiver
