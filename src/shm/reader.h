// Readers of tables published over shared memory: a process on the same host as quiverd (or as an
// embedded engine opened with a data directory) attaches to a table through the server's Unix
// socket and then reads keys with no system call and no lock: hash, probe the table's index, copy
// the row under its seqlock (retrying a torn copy), confirm the key. docs/shm.md specifies the
// control block, the attach protocol and the guarantees.
//
//   auto client = quiver::shm::Client::Connect("/var/lib/quiver/quiver.sock").value();
//   auto users = client->Attach("users").value();
//   auto plan = users->PlanFixed({"age", "score"}).value();      // fixed-width columns
//   std::vector<std::byte> row(plan.row_bytes());
//   bool found = users->ReadInto(plan, std::span<const int64_t>(&key, 1), row.data(),
//                                plan.row_bytes(), &found_byte).ok();
//   auto batch = users->Read(*keys_array, {"name", "embedding"}).value();  // any column, Arrow
//
// Consistency: each row read is one the writer published (never half an update); a batch may see
// some rows of a write in flight and not others, as in-process reads do. Rows whose TTL has come
// read as missing. Reads never block or slow the writer, and the writer never waits for readers:
// memory the table frees stays mapped here until this reader's next call notices the change (one
// atomic load) and unmaps it. A dropped table fails the handle's calls with kNotFound; a server
// that restarts (or shuts down) is re-attached transparently once it serves the same table again,
// and until then calls fail with kIOError naming the socket. Reads do not stamp rows' access
// clocks (the mappings are read-only), so under an LRU/LFU memory limit they do not keep a row hot.
//
// Thread safety: a Client and its TableReaders may be used from any number of threads.
#pragma once

#include <arrow/type_fwd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace quiver::shm {

class TableReader;
enum class Op : uint8_t;

// The connection to one server's socket.
class Client : public std::enable_shared_from_this<Client> {
 public:
  static Result<std::shared_ptr<Client>> Connect(const std::string& socket_path);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Maps table `name`'s control block and regions. kNotFound for an unknown table.
  Result<std::shared_ptr<TableReader>> Attach(std::string_view name);
  // The names of the tables published now, sorted.
  Result<std::vector<std::string>> ListTables();
  // The server's readers as JSON (what `quiver shm status` prints).
  Result<std::string> StatusJson();
  const std::string& socket_path() const { return path_; }

 private:
  friend class TableReader;
  struct Attached {
    uint64_t table_id;
    uint64_t instance_id;
    int control_fd;  // owned by the caller
    uint64_t control_bytes;
  };
  explicit Client(std::string path) : path_(std::move(path)) {}
  // Under mutex_: connects (again) when not connected, and says hello.
  Status EnsureConnectedLocked();
  // One request and its reply; the connection is dropped on a transport error.
  Result<std::string> Call(std::string_view request, std::vector<int>* fds);
  // A request of `op` alone; the body of its reply (an error reply as the Status it carries).
  Result<std::string> CallForBody(Op op);
  Result<Attached> AttachRaw(std::string_view name);
  // Descriptors of regions `ids` of table `table_id` (-1 for one no longer held); the caller
  // closes them.
  Result<std::vector<int>> MapRaw(uint64_t table_id, uint64_t instance_id,
                                  std::span<const uint64_t> ids);
  void Report(uint64_t table_id, uint64_t instance_id, uint64_t generation, uint64_t mapped);
  void Detach(uint64_t table_id, uint64_t instance_id);
  // Whether the server behind `instance_id` is still there (polls the socket: a system call).
  bool ServerAlive(uint64_t instance_id);

  const std::string path_;
  std::mutex mutex_;
  int fd_ = -1;               // under mutex_
  uint64_t instance_id_ = 0;  // of the server connected, under mutex_
};

// Which fixed-width columns ReadInto copies and where: column j of a key's output row starts at
// offsets()[j]; widths()[j] bytes each (a fixed_size_list: all its elements).
class FixedPlan {
 public:
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<uint32_t>& offsets() const { return offsets_; }
  const std::vector<uint32_t>& widths() const { return widths_; }
  // The Arrow types of the columns.
  const std::vector<std::shared_ptr<arrow::DataType>>& types() const { return types_; }
  // Bytes of one output row: the columns packed in order.
  uint32_t row_bytes() const { return row_bytes_; }

 private:
  friend class TableReader;
  struct Copy {
    uint32_t row_offset;  // in the table's row
    uint32_t width;
    uint32_t out_offset;
    int32_t valid_bit;  // -1: never null
    uint8_t null_fill;  // 0: zeros, 2: float16 NaN, 4: float32 NaN, 8: float64 NaN
    uint32_t element_width;
  };
  std::vector<std::string> names_;
  std::vector<uint32_t> offsets_, widths_;
  std::vector<std::shared_ptr<arrow::DataType>> types_;
  struct Run {  // adjacent columns copied as one block
    uint32_t row_offset;
    uint32_t width;
    uint32_t out_offset;
  };
  struct ValidMask {  // the validity bits of the plan's nullable columns, by bitmap byte
    uint32_t byte;
    uint8_t bits;
  };
  std::vector<Copy> copies_;
  std::vector<Run> runs_;
  std::vector<ValidMask> valid_masks_;
  uint32_t row_bytes_ = 0;
  uint64_t table_id_ = 0;
};

struct ReadBatch {
  // One row per key, in order; the columns asked for (all value columns when none), nullable.
  std::shared_ptr<arrow::RecordBatch> batch;
  std::shared_ptr<arrow::BooleanArray> found;  // key i was present
  int64_t found_count = 0;
};

struct ReaderStats {
  uint64_t refreshes = 0;   // times the mappings were brought up to date
  uint64_t reattaches = 0;  // times the table was attached again (server restarted)
  uint64_t mapped_bytes = 0;
  uint64_t generation = 0;  // of the control block last mapped
};

class TableReader {
 public:
  ~TableReader();
  TableReader(const TableReader&) = delete;
  TableReader& operator=(const TableReader&) = delete;

  const std::string& name() const { return name_; }
  // The table's Arrow schema, its key column included.
  const std::shared_ptr<arrow::Schema>& schema() const;
  // The table's TableSchema JSON (docs/schema.md), as the server stores it.
  std::string table_schema_json() const;
  // The key's columns in key order (one unless the key is composite); the first of them; whether
  // there are several; and whether keys are int64 (a single int64 key column; else utf8, or a
  // composite key's encoded bytes).
  const std::vector<std::string>& key_names() const;
  const std::string& key_name() const;
  bool composite_key() const;
  bool int64_keys() const;
  // Keys as the table's index takes them (engine/keys.h): a single key's as int64 or utf8 (any
  // integer or string type cast when nothing is lost), a composite key's (a struct array of its
  // columns by name, as a record batch's columns are) encoded as one binary value each, which is
  // what ReadInto's string keys are for such a table. kInvalidArgument names what is wrong.
  Result<std::shared_ptr<arrow::Array>> NormalizeKeys(const arrow::Array& keys) const;

  // Any columns (empty: every value column), as Table::Read answers: Arrow arrays, nulls for
  // missing keys. `keys`: as NormalizeKeys takes them.
  Result<ReadBatch> Read(const arrow::Array& keys, const std::vector<std::string>& columns = {});

  // The hot path. A plan of fixed-width columns (numbers, bool as one byte, dates, timestamps,
  // fixed_size_list; not sparse); kInvalidArgument names a column of another kind.
  Result<FixedPlan> PlanFixed(const std::vector<std::string>& columns) const;
  // Copies the plan's columns of key i to out + i * out_stride (out_stride >= plan.row_bytes())
  // and sets found[i] to 1 or 0. A missing key's row and a null value read as NaN for floats and
  // zero otherwise; `valid` (may be null) receives one byte per key and column (row-major), 1
  // for a value present. String keys: utf8 keys, or a composite key's encoded (NormalizeKeys).
  Status ReadInto(const FixedPlan& plan, std::span<const int64_t> keys, std::byte* out,
                  size_t out_stride, uint8_t* found, uint8_t* valid = nullptr);
  Status ReadInto(const FixedPlan& plan, std::span<const std::string_view> keys, std::byte* out,
                  size_t out_stride, uint8_t* found, uint8_t* valid = nullptr);

  ReaderStats stats() const;

 private:
  friend class Client;
  struct State;
  struct View;
  TableReader(std::shared_ptr<Client> client, std::string name);
  // Under state_->mutex: builds and publishes the view of the manifest now, attaching (again)
  // first when `reattach` or the server closed the table.
  Status RefreshLocked(bool reattach);
  // Whether `view` must be brought up to date before a read: one load of the generation, one of
  // the coarse clock, and the server's liveness when its time has come.
  bool Stale(const View& view, bool* reattach);
  // Runs `body(view)` (a Result<bool>: false asks for a fresh view) inside the reader's gate.
  template <typename Body>
  Status WithView(Body&& body);
  template <typename KeyAt>
  Status ReadFixed(const FixedPlan& plan, size_t n, KeyAt key_at, std::byte* out, size_t out_stride,
                   uint8_t* found, uint8_t* valid);

  std::shared_ptr<Client> client_;
  const std::string name_;
  std::unique_ptr<State> state_;
};

}  // namespace quiver::shm
