// Fuzz target for the keyspace's record and dump decoders (log_records.h): the input is a dump
// (LoadKeyspaceDump) or a log record (ReplayKeyspaceRecord), as recovery reads them from disk. No
// input may crash, leak or trip a sanitizer; a refused dump leaves nothing behind; whatever was
// loaded or replayed dumps and loads again to the same keyspace, and its lock-free key counts equal
// the shards'.
#include <string>
#include <string_view>

#include "common/fuzz_check.h"
#include "kv/keyspace.h"
#include "kv/keyspace_test_util.h"
#include "storage/log_records.h"

namespace {

void Check(bool condition, const char* property) {
  quiver::FuzzCheck(condition, "keyspace_fuzz", property);
}

std::string DumpOf(quiver::kv::Keyspace& keyspace) {
  std::string dump;
  auto keys = quiver::storage::DumpKeyspace(keyspace, [&](std::string_view bytes) {
    dump.append(bytes);
    return quiver::Status::OK();
  });
  Check(keys.ok(), "a dump into memory succeeds");
  return dump;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using quiver::kv::Keyspace;
  using quiver::kv::testing::Describe;
  if (size == 0) return 0;
  const auto clock = [] { return quiver::kv::Millis{1'000'000}; };
  Keyspace keyspace(clock);
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto loaded = quiver::storage::LoadKeyspaceDump(input, keyspace);
    if (!loaded.ok()) {
      Check(loaded.status().code() == quiver::StatusCode::kCorruption, "a bad dump is corruption");
      Check(keyspace.Size() == 0 && keyspace.UsedMemory() == 0, "a refused dump leaves nothing");
      return 0;
    }
    Check(*loaded >= keyspace.Size(), "no more live keys than loaded");
  } else {
    // A record applied at LSN 1 + data[0] / 2; a bad one may leave its readable prefix applied.
    auto replayed = quiver::storage::ReplayKeyspaceRecord(input, 1 + data[0] / 2, keyspace);
    Check(replayed.ok() || replayed.code() == quiver::StatusCode::kCorruption,
          "a bad record is corruption");
  }
  Check(quiver::kv::testing::CountsAgree(keyspace), "the lock-free key counts are the shards'");
  Keyspace again(clock);
  auto loaded = quiver::storage::LoadKeyspaceDump(DumpOf(keyspace), again);
  Check(loaded.ok(), "a dump loads");
  Check(Describe(again) == Describe(keyspace), "a dump loads to the same keyspace");
  Check(quiver::kv::testing::CountsAgree(again), "the lock-free key counts are the shards'");
  return 0;
}
