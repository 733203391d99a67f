#include "storage/log_records.h"

#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/api.h>

#include <cstring>

#include "common/arrow_status.h"
#include "common/decode_memory.h"

namespace quiver::storage {
namespace {

using kv::OpCode;
using kv::Operation;

constexpr std::string_view kDumpMagic = "QUIVERKV";
constexpr uint32_t kDumpVersion = 1;
constexpr char kEndOfStream[8] = {'\xff', '\xff', '\xff', '\xff', 0, 0, 0, 0};
// Marks the time an Upsert or Delete record was logged, after its Arrow IPC stream.
constexpr char kLoggedAtTag = 'T';

std::string_view View(const arrow::Buffer& buffer) {
  return {reinterpret_cast<const char*>(buffer.data()), static_cast<size_t>(buffer.size())};
}

std::string IdBytes(uint64_t table_id) {
  std::string out;
  PutFixed64(&out, table_id);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Tables.

std::string EncodeCreateTable(uint64_t table_id, std::string_view name,
                              std::string_view schema_json) {
  std::string out = IdBytes(table_id);
  PutLengthPrefixed(&out, name);
  out.append(schema_json);
  return out;
}

Status DecodeCreateTable(std::string_view payload, CreateTableRecord* out) {
  ByteReader in(payload);
  if (!in.ReadFixed64(&out->table_id)) return Status::Corruption("the record is too short");
  if (!in.ReadLengthPrefixed(&out->name)) {
    return Status::Corruption("the record's table name is cut short");
  }
  out->schema_json = in.rest();
  return Status::OK();
}

std::string EncodeDropTable(uint64_t table_id, std::string_view name, int64_t dropped_at) {
  std::string out = IdBytes(table_id).append(name);
  out.push_back('\0');
  PutFixed(&out, static_cast<uint64_t>(dropped_at));
  return out;
}

void DecodeDropTable(std::string_view rest, std::string_view* name, int64_t* dropped_at) {
  const size_t end = rest.find('\0');
  *name = rest.substr(0, end);
  *dropped_at = 0;
  if (end != std::string_view::npos && rest.size() - end - 1 == sizeof(int64_t)) {
    *dropped_at = static_cast<int64_t>(DecodeFixed<uint64_t>(rest.data() + end + 1));
  }
}

std::string EncodeAlterTable(uint64_t table_id, uint64_t new_id, std::string_view name,
                             std::string_view change_json, std::string_view schema_json,
                             int64_t altered_at) {
  std::string out = IdBytes(table_id);
  PutFixed(&out, new_id);
  PutLengthPrefixed(&out, name);
  PutLengthPrefixed(&out, change_json);
  PutLengthPrefixed(&out, schema_json);
  PutFixed(&out, static_cast<uint64_t>(altered_at));
  return out;
}

Status DecodeAlterTable(std::string_view payload, AlterTableRecord* out) {
  ByteReader in(payload);
  uint64_t altered_at = 0;
  if (!in.ReadFixed64(&out->table_id) || !in.ReadFixed64(&out->new_id) ||
      !in.ReadLengthPrefixed(&out->name) || !in.ReadLengthPrefixed(&out->change_json) ||
      !in.ReadLengthPrefixed(&out->schema_json) || !in.ReadFixed64(&altered_at)) {
    return Status::Corruption("the schema change record is cut short");
  }
  out->altered_at = static_cast<int64_t>(altered_at);
  return Status::OK();
}

Status DecodeTableId(std::string_view payload, uint64_t* table_id, std::string_view* rest) {
  ByteReader in(payload);
  if (!in.ReadFixed64(table_id)) return Status::Corruption("the record is too short");
  *rest = in.rest();
  return Status::OK();
}

Result<EncodedBatch> EncodeBatchRecord(uint64_t table_id, const arrow::RecordBatch& batch,
                                       int64_t logged_at) {
  EncodedBatch encoded;
  encoded.id = IdBytes(table_id);
  QUIVER_ASSIGN_OR_RETURN_ARROW(encoded.schema, arrow::ipc::SerializeSchema(*batch.schema()));
  QUIVER_ASSIGN_OR_RETURN_ARROW(encoded.batch, arrow::ipc::SerializeRecordBatch(
                                                   batch, arrow::ipc::IpcWriteOptions::Defaults()));
  if (logged_at > 0) {
    encoded.logged_at.push_back(kLoggedAtTag);
    PutFixed(&encoded.logged_at, static_cast<uint64_t>(logged_at));
  }
  return encoded;
}

std::vector<std::string_view> EncodedBatch::parts() const {
  return {id, View(*schema), View(*batch), std::string_view(kEndOfStream, sizeof(kEndOfStream)),
          logged_at};
}

int64_t BatchRecordTime(std::string_view rest) {
  constexpr size_t kTrailer = 1 + sizeof(uint64_t);
  if (rest.size() < sizeof(kEndOfStream) + kTrailer) return 0;
  const std::string_view end = rest.substr(rest.size() - kTrailer - sizeof(kEndOfStream));
  if (end.substr(0, sizeof(kEndOfStream)) != std::string_view(kEndOfStream, sizeof(kEndOfStream)) ||
      end[sizeof(kEndOfStream)] != kLoggedAtTag) {
    return 0;
  }
  return static_cast<int64_t>(DecodeFixed<uint64_t>(end.data() + sizeof(kEndOfStream) + 1));
}

Result<std::shared_ptr<arrow::RecordBatch>> DecodeBatchRecord(std::string_view bytes,
                                                              uint64_t max_decode_bytes) {
  DecodeMemory::Scope scope(max_decode_bytes + bytes.size());
  auto decoded = [&]() -> Result<std::shared_ptr<arrow::RecordBatch>> {
    // Log records are not aligned: Arrow reads from an aligned copy.
    QUIVER_ASSIGN_OR_RETURN_ARROW(
        std::shared_ptr<arrow::Buffer> copy,
        arrow::AllocateBuffer(static_cast<int64_t>(bytes.size()), DecodeMemory::pool()));
    std::memcpy(copy->mutable_data(), bytes.data(), bytes.size());
    arrow::ipc::IpcReadOptions options = arrow::ipc::IpcReadOptions::Defaults();
    options.memory_pool = DecodeMemory::pool();
    options.use_threads = false;
    auto reader = arrow::ipc::RecordBatchStreamReader::Open(
        std::make_shared<arrow::io::BufferReader>(copy), options);
    if (!reader.ok())
      return Status::Corruption("the record's Arrow data: " + reader.status().message());
    std::shared_ptr<arrow::RecordBatch> batch;
    arrow::Status read = (*reader)->ReadNext(&batch);
    if (!read.ok() || batch == nullptr) {
      if (!read.ok() && scope.exceeded()) return FromArrow(read);
      return Status::Corruption("the record's Arrow data holds no batch");
    }
    return batch;
  }();
  if (!decoded.ok() && scope.exceeded()) {
    return Status::LimitExceeded("the record decodes to more than " +
                                 std::to_string(scope.limit()) +
                                 " bytes; nothing was changed: start with a larger "
                                 "--max-decode-bytes (or the embedded engine's limit)");
  }
  return decoded;
}

// ---------------------------------------------------------------------------------------------
// Keyspace operations.

void EncodeOperation(const Operation& op, std::string* out) {
  PutFixed8(out, static_cast<uint8_t>(op.code));
  if (op.code == OpCode::kClear) return;
  PutLengthPrefixed(out, op.key);
  switch (op.code) {
    case OpCode::kPutString:
      PutInt64(out, op.expire_at);
      PutLengthPrefixed(out, op.value);
      break;
    case OpCode::kPutHash:
      PutInt64(out, op.expire_at);
      PutFixed32(out, static_cast<uint32_t>(op.fields.size()));
      for (const auto& [field, value] : op.fields) {
        PutLengthPrefixed(out, field);
        PutLengthPrefixed(out, value);
      }
      break;
    case OpCode::kExpire:
      PutInt64(out, op.expire_at);
      break;
    case OpCode::kHashSet:
      PutLengthPrefixed(out, op.field);
      PutLengthPrefixed(out, op.value);
      break;
    case OpCode::kHashDelete:
      PutLengthPrefixed(out, op.field);
      break;
    case OpCode::kDelete:
    case OpCode::kClear:
      break;
  }
}

bool DecodeOperation(ByteReader& in, Operation* op) {
  uint8_t code;
  if (!in.ReadFixed8(&code) || code < static_cast<uint8_t>(OpCode::kPutString) ||
      code > static_cast<uint8_t>(kv::kLastOpCode)) {
    return false;
  }
  op->code = static_cast<OpCode>(code);
  op->key = op->field = op->value = {};
  op->expire_at = 0;
  op->fields.clear();
  if (op->code == OpCode::kClear) return true;
  if (!in.ReadLengthPrefixed(&op->key)) return false;
  switch (op->code) {
    case OpCode::kPutString:
      return in.ReadInt64(&op->expire_at) && in.ReadLengthPrefixed(&op->value);
    case OpCode::kPutHash: {
      uint32_t count;
      // Each field takes at least 8 bytes: a count past that is damage, not a reason to allocate.
      if (!in.ReadInt64(&op->expire_at) || !in.ReadFixed32(&count) || count > in.remaining() / 8) {
        return false;
      }
      op->fields.resize(count);
      for (auto& [field, value] : op->fields) {
        if (!in.ReadLengthPrefixed(&field) || !in.ReadLengthPrefixed(&value)) return false;
      }
      return true;
    }
    case OpCode::kExpire:
      return in.ReadInt64(&op->expire_at);
    case OpCode::kHashSet:
      return in.ReadLengthPrefixed(&op->field) && in.ReadLengthPrefixed(&op->value);
    case OpCode::kHashDelete:
      return in.ReadLengthPrefixed(&op->field);
    case OpCode::kDelete:
    case OpCode::kClear:
      return true;
  }
  return false;
}

Status ReplayKeyspaceRecord(std::string_view record, uint64_t lsn, kv::Keyspace& keyspace) {
  ByteReader in(record);
  Operation op;
  while (!in.empty()) {
    if (!DecodeOperation(in, &op)) return Status::Corruption("an unreadable key-value record");
    keyspace.Replay(op, lsn);
  }
  keyspace.Replayed(lsn);
  return Status::OK();
}

// ---------------------------------------------------------------------------------------------
// Keyspace dumps.

namespace {

class DumpEncoder final : public kv::DumpWriter {
 public:
  explicit DumpEncoder(const std::function<Status(std::string_view)>& sink) : sink_(sink) {
    section_.assign(kDumpMagic);
    PutFixed32(&section_, kDumpVersion);
    PutFixed32(&section_, static_cast<uint32_t>(kv::Keyspace::kShards));
  }
  void BeginSection(uint64_t lsn) override {
    PutFixed64(&section_, lsn);
    count_at_ = section_.size();
    PutFixed64(&section_, 0);  // the key count, set by EndSection
  }
  void Add(const Operation& key_state) override { EncodeOperation(key_state, &section_); }
  void EndSection(uint64_t keys) override { EncodeFixed(section_.data() + count_at_, keys); }
  Status Flush() override {
    Status written = sink_(section_);
    section_.clear();
    return written;
  }

 private:
  const std::function<Status(std::string_view)>& sink_;
  std::string section_;  // the header, until the first Flush
  size_t count_at_ = 0;
};

}  // namespace

Result<int64_t> DumpKeyspace(kv::Keyspace& keyspace,
                             const std::function<Status(std::string_view)>& sink) {
  DumpEncoder encoder(sink);
  return keyspace.Dump(encoder);
}

Result<int64_t> LoadKeyspaceDump(std::string_view dump, kv::Keyspace& keyspace) {
  auto corrupt = [&](const std::string& what) {
    keyspace.Clear();
    return Status::Corruption("the keyspace dump " + what);
  };
  if (!dump.starts_with(kDumpMagic)) {
    return corrupt("does not start with " + std::string(kDumpMagic));
  }
  ByteReader in(dump.substr(kDumpMagic.size()));
  uint32_t version, shards;
  if (!in.ReadFixed32(&version) || version != kDumpVersion)
    return corrupt("has an unknown version");
  if (!in.ReadFixed32(&shards) || shards != kv::Keyspace::kShards) {
    return corrupt("has a different shard count");
  }
  Operation op;
  int64_t keys = 0;
  for (size_t s = 0; s < kv::Keyspace::kShards; ++s) {
    uint64_t lsn, count;
    if (!in.ReadFixed64(&lsn) || !in.ReadFixed64(&count)) return corrupt("is cut short");
    for (uint64_t k = 0; k < count; ++k) {
      if (!DecodeOperation(in, &op) ||
          (op.code != OpCode::kPutString && op.code != OpCode::kPutHash)) {
        return corrupt("has an unreadable key in shard " + std::to_string(s));
      }
      if (kv::Keyspace::ShardOfKey(op.key) != s) return corrupt("puts a key in the wrong shard");
      keyspace.Restore(op);
      ++keys;
    }
    keyspace.RestoredShard(s, lsn);
  }
  if (!in.empty()) return corrupt("has bytes after its last shard");
  return keys;
}

}  // namespace quiver::storage
