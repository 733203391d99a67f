// The log's record payloads and the keyspace dump (storage/log_records.h): their bytes (the
// format is on disk: a change here must be a new format version), their round trips, and against
// the keyspace what a dump and the log after it rebuild, what is logged, and damaged input
// refused.
#include "storage/log_records.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kv/keyspace.h"
#include "kv/keyspace_test_util.h"

namespace quiver::storage {
namespace {

using kv::Entry;
using kv::EvictionPolicy;
using kv::Keyspace;
using kv::KeyspaceLog;
using kv::KeyspaceRecord;
using kv::Millis;
using kv::Type;
using kv::testing::CountsAgree;
using kv::testing::Describe;
using kv::testing::FakeClock;
using kv::testing::Present;
using kv::testing::Put;

// --- The bytes ---------------------------------------------------------------------------------

TEST(LogRecordsTest, CodingIsLittleEndianAndBoundsChecked) {
  std::string out;
  PutFixed32(&out, 0x01020304);
  PutFixed64(&out, 0x0102030405060708);
  PutInt64(&out, -2);
  PutLengthPrefixed(&out, "ab");
  EXPECT_EQ(out, std::string("\x04\x03\x02\x01"
                             "\x08\x07\x06\x05\x04\x03\x02\x01"
                             "\xfe\xff\xff\xff\xff\xff\xff\xff"
                             "\x02\0\0\0ab",
                             26));
  ByteReader in(out);
  uint32_t u32;
  uint64_t u64;
  int64_t i64;
  std::string_view bytes;
  ASSERT_TRUE(in.ReadFixed32(&u32) && in.ReadFixed64(&u64) && in.ReadInt64(&i64));
  EXPECT_EQ(u32, 0x01020304u);
  EXPECT_EQ(u64, 0x0102030405060708u);
  EXPECT_EQ(i64, -2);
  ASSERT_TRUE(in.ReadLengthPrefixed(&bytes));
  EXPECT_EQ(bytes, "ab");
  EXPECT_TRUE(in.empty());
  EXPECT_FALSE(in.ReadFixed8(nullptr)) << "nothing is read past the end";
  ByteReader cut(std::string_view("\x05\0\0\0abc", 7));  // says 5 bytes, holds 3
  EXPECT_FALSE(cut.ReadLengthPrefixed(&bytes));
}

TEST(LogRecordsTest, TableRecordsRoundTrip) {
  const std::string create = EncodeCreateTable(7, "features", R"({"key": "id"})");
  EXPECT_EQ(create.substr(0, 16), std::string("\x07\0\0\0\0\0\0\0\x08\0\0\0feat", 16));
  CreateTableRecord decoded;
  ASSERT_TRUE(DecodeCreateTable(create, &decoded).ok());
  EXPECT_EQ(decoded.table_id, 7u);
  EXPECT_EQ(decoded.name, "features");
  EXPECT_EQ(decoded.schema_json, R"({"key": "id"})");
  for (size_t cut = 0; cut < 16; ++cut) {
    EXPECT_EQ(DecodeCreateTable(create.substr(0, cut), &decoded).code(), StatusCode::kCorruption)
        << cut;
  }
  uint64_t id = 0;
  std::string_view rest;
  const std::string drop = EncodeDropTable(9, "old", 1'796'000'000'123);
  ASSERT_TRUE(DecodeTableId(drop, &id, &rest).ok());
  EXPECT_EQ(id, 9u);
  std::string_view name;
  int64_t dropped_at = 0;
  DecodeDropTable(rest, &name, &dropped_at);
  EXPECT_EQ(name, "old");
  EXPECT_EQ(dropped_at, 1'796'000'000'123);
  DecodeDropTable("old", &name, &dropped_at);  // as older versions logged it
  EXPECT_EQ(name, "old");
  EXPECT_EQ(dropped_at, 0);

  auto batch = arrow::RecordBatch::Make(
      arrow::schema({arrow::field("id", arrow::utf8()), arrow::field("x", arrow::float16())}), 0,
      {arrow::MakeArrayOfNull(arrow::utf8(), 0).ValueOrDie(),
       arrow::MakeArrayOfNull(arrow::float16(), 0).ValueOrDie()});
  Result<EncodedBatch> encoded = EncodeBatchRecord(3, *batch, 1'796'000'000'456);
  ASSERT_TRUE(encoded.ok());
  std::string payload;
  for (std::string_view part : encoded->parts()) payload.append(part);
  ASSERT_TRUE(DecodeTableId(payload, &id, &rest).ok());
  EXPECT_EQ(id, 3u);
  EXPECT_EQ(BatchRecordTime(rest), 1'796'000'000'456);
  Result<std::shared_ptr<arrow::RecordBatch>> back = DecodeBatchRecord(rest, 1 << 20);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE((*back)->Equals(*batch));
  // As older versions logged it: no time, the same batch.
  const std::string_view untimed = rest.substr(0, rest.size() - 9);
  EXPECT_EQ(BatchRecordTime(untimed), 0);
  back = DecodeBatchRecord(untimed, 1 << 20);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE((*back)->Equals(*batch));
  EXPECT_EQ(DecodeBatchRecord(rest.substr(0, rest.size() / 2), 1 << 20).status().code(),
            StatusCode::kCorruption);
}

TEST(LogRecordsTest, KeyspaceOperationsKeepTheirBytes) {
  std::string out;
  EncodeOperation({.code = kv::OpCode::kPutString, .key = "k", .value = "v", .expire_at = 5}, &out);
  EXPECT_EQ(out, std::string("\x01\x01\0\0\0k\x05\0\0\0\0\0\0\0\x01\0\0\0v", 19));
  kv::Operation hash{.code = kv::OpCode::kPutHash, .key = "h"};
  hash.fields = {{"f", "1"}, {"g", "22"}};
  const std::vector<kv::Operation> ops = {
      hash,
      {.code = kv::OpCode::kDelete, .key = "d"},
      {.code = kv::OpCode::kExpire, .key = "e", .expire_at = -1},
      {.code = kv::OpCode::kHashSet, .key = "h", .field = "f", .value = "2"},
      {.code = kv::OpCode::kHashDelete, .key = "h", .field = "g"},
      {.code = kv::OpCode::kClear},
  };
  out.clear();
  for (const kv::Operation& op : ops) EncodeOperation(op, &out);
  ByteReader in(out);
  for (const kv::Operation& want : ops) {
    kv::Operation got;
    ASSERT_TRUE(DecodeOperation(in, &got));
    EXPECT_EQ(got.code, want.code);
    EXPECT_EQ(got.key, want.key);
    EXPECT_EQ(got.field, want.field);
    EXPECT_EQ(got.value, want.value);
    EXPECT_EQ(got.expire_at, want.expire_at);
    EXPECT_EQ(got.fields, want.fields);
  }
  EXPECT_TRUE(in.empty());
  kv::Operation unused;
  ByteReader unknown(std::string_view("\x08", 1));
  EXPECT_FALSE(DecodeOperation(unknown, &unused)) << "an unknown operation code";
}

// --- Against the keyspace ----------------------------------------------------------------------

// A log in memory: every record with its LSN.
class MemoryLog : public KeyspaceLog {
 public:
  Status Writable() override { return Status::OK(); }
  std::unique_ptr<KeyspaceRecord> NewRecord() override {
    return std::make_unique<EncodedKeyspaceRecord>();
  }
  Result<uint64_t> Append(const KeyspaceRecord& record) override {
    std::lock_guard lock(mutex_);
    records_.emplace_back(++last_,
                          std::string(static_cast<const EncodedKeyspaceRecord&>(record).bytes()));
    return last_;
  }
  Status Commit(uint64_t) override { return Status::OK(); }
  bool SyncsOnCommit() const override { return false; }
  uint64_t LastLsn() override {
    std::lock_guard lock(mutex_);
    return last_;
  }
  std::vector<std::pair<uint64_t, std::string>> records() {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  std::mutex mutex_;
  uint64_t last_ = 0;
  std::vector<std::pair<uint64_t, std::string>> records_;
};

// One random change through a View, as the commands make them.
void RandomChange(Keyspace& keyspace, std::mt19937& rng, Millis now) {
  const std::string key = "k" + std::to_string(rng() % 300);
  const std::string other = "k" + std::to_string(rng() % 300);
  // Values over 64 bytes make a hash a table.
  const std::string value(rng() % 80, static_cast<char>('a' + rng() % 26));
  switch (rng() % 9) {
    case 0:
    case 1:
      Put(keyspace, key, value, rng() % 3 == 0 ? now + 1'000'000 + rng() % 1000 : 0);
      break;
    case 2: {  // HSET
      auto view = keyspace.Lock(key);
      Entry* entry = view.Find(key);
      if (entry != nullptr && entry->type() != Type::kHash) break;
      if (entry == nullptr) entry = view.NewHash(key);
      entry = view.HashSet(key, entry, "f" + std::to_string(rng() % 5), value);
      break;
    }
    case 3: {  // HDEL, erasing a hash left empty
      auto view = keyspace.Lock(key);
      Entry* entry = view.Find(key);
      if (entry == nullptr || entry->type() != Type::kHash) break;
      entry = view.HashDelete(key, entry, "f" + std::to_string(rng() % 5));
      if (entry->hash().empty()) view.Erase(key);
      break;
    }
    case 4: {  // DEL
      auto view = keyspace.Lock(key);
      view.Erase(key);
      break;
    }
    case 5: {  // EXPIRE / PERSIST
      auto view = keyspace.Lock(key);
      if (Entry* entry = view.Find(key)) {
        view.SetExpire(key, entry, rng() % 2 ? now + 2'000'000 + rng() % 1000 : 0);
      }
      break;
    }
    case 6: {  // APPEND
      auto view = keyspace.Lock(key);
      Entry* entry = view.Find(key);
      if (entry == nullptr || entry->type() != Type::kString) break;
      view.Append(entry, value);
      break;
    }
    case 7: {  // RENAME
      auto view = keyspace.Lock({key, other});
      view.Rename(key, other);
      break;
    }
    case 8:
      if (rng() % 50 == 0) keyspace.Clear();
      break;
  }
}

TEST(KeyspacePersistenceTest, ReplayingTheLogOntoAFuzzyDumpGivesTheSameKeyspace) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  MemoryLog log;
  keyspace.SetLog(&log);
  std::string dump;
  std::atomic<bool> dumped{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) RandomChange(keyspace, rng, clock.now);
    });
  }
  std::thread dumper([&] {  // while the writers go on
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ASSERT_TRUE(DumpKeyspace(keyspace, [&](std::string_view bytes) {
                  dump.append(bytes);
                  std::this_thread::yield();
                  return Status::OK();
                }).ok());
    dumped = true;
  });
  for (auto& writer : writers) writer.join();
  dumper.join();
  ASSERT_TRUE(dumped);
  const auto expected = Describe(keyspace);
  const auto records = log.records();
  ASSERT_FALSE(records.empty());

  Keyspace from_dump(clock.Function());
  Result<int64_t> keys = LoadKeyspaceDump(dump, from_dump);
  ASSERT_TRUE(keys.ok()) << keys.status().ToString();
  for (const auto& [lsn, record] : records)
    ASSERT_TRUE(ReplayKeyspaceRecord(record, lsn, from_dump).ok());
  EXPECT_EQ(Describe(from_dump), expected);
  EXPECT_EQ(from_dump.LastLoggedLsn(), records.back().first);
  Keyspace fresh(clock.Function());
  for (const auto& [lsn, record] : records)
    ASSERT_TRUE(ReplayKeyspaceRecord(record, lsn, fresh).ok());
  EXPECT_EQ(Describe(fresh), expected) << "the log alone gives it too";
  EXPECT_TRUE(CountsAgree(keyspace));
  EXPECT_TRUE(CountsAgree(from_dump));
  EXPECT_TRUE(CountsAgree(fresh));
  keyspace.Clear();
  EXPECT_EQ(keyspace.EvictableKeys(EvictionPolicy::kAllKeysLru), 0);
  EXPECT_EQ(keyspace.EvictableKeys(EvictionPolicy::kVolatileLru), 0);
}

TEST(KeyspacePersistenceTest, EvictedKeysAreLoggedAndExpiredOnesAreNot) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  MemoryLog log;
  keyspace.SetLog(&log);
  Put(keyspace, "soon", "v", clock.now + 10);
  clock.now += 20;
  EXPECT_FALSE(Present(keyspace, "soon"));
  const size_t after_expiry = log.records().size();
  EXPECT_EQ(after_expiry, 1u) << "an expiry is not logged: the expiry time is";
  keyspace.SetPolicy(EvictionPolicy::kAllKeysRandom);
  for (int i = 0; i < 100; ++i) Put(keyspace, "k" + std::to_string(i), std::string(100, 'x'), 0);
  keyspace.SetMaxMemory(keyspace.UsedMemory() / 2);
  ASSERT_TRUE(keyspace.MakeRoom());
  const int64_t evicted = keyspace.Stats().evicted;
  EXPECT_GT(evicted, 0);
  EXPECT_EQ(log.records().size(), after_expiry + 100 + static_cast<size_t>(evicted));
  Keyspace replayed(clock.Function());
  for (const auto& [lsn, record] : log.records())
    ASSERT_TRUE(ReplayKeyspaceRecord(record, lsn, replayed).ok());
  EXPECT_EQ(Describe(replayed), Describe(keyspace));
}

TEST(KeyspacePersistenceTest, DamagedDumpsAndRecordsAreErrorsAndLeaveNothing) {
  FakeClock clock;
  Keyspace keyspace(clock.Function());
  MemoryLog log;
  keyspace.SetLog(&log);
  Put(keyspace, "a", "1", 0);
  Put(keyspace, "b", std::string(30, 'b'), clock.now + 1000);
  {
    auto view = keyspace.Lock("h");
    view.HashSet("h", view.NewHash("h"), "f", "v");
  }
  std::string dump;
  ASSERT_EQ(*DumpKeyspace(keyspace,
                          [&](std::string_view bytes) {
                            dump.append(bytes);
                            return Status::OK();
                          }),
            3);
  for (size_t cut = 0; cut < dump.size(); ++cut) {
    Keyspace target(clock.Function());
    Result<int64_t> loaded = LoadKeyspaceDump(std::string_view(dump).substr(0, cut), target);
    ASSERT_FALSE(loaded.ok()) << cut;
    EXPECT_EQ(loaded.status().code(), StatusCode::kCorruption);
    EXPECT_EQ(target.Size(), 0) << "nothing is kept";
    EXPECT_EQ(target.UsedMemory(), 0u);
  }
  for (const auto& [lsn, record] : log.records()) {
    for (size_t cut = 1; cut < record.size(); ++cut) {
      Keyspace target(clock.Function());
      EXPECT_EQ(ReplayKeyspaceRecord(std::string_view(record).substr(0, cut), lsn, target).code(),
                StatusCode::kCorruption);
    }
  }
}

}  // namespace
}  // namespace quiver::storage
