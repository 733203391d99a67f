// Readers in another process stay correct while the writer changes everything under them: rows
// rewritten between self-consistent states (every column of a row holds the same version),
// inserts, deletes, the table growing tenfold (index rebuilds, new row and heap chunks), heap
// compactions. The reader process (shm_stress_reader) checks every row it reads; zero torn rows.
// Twice: a table keyed by an int64, and one keyed by (int64, utf8) with sparse columns.
// Run under ThreadSanitizer by `make test-tsan` (the reader's own threads share one TableReader).
#include <arrow/api.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>

#include "engine/catalog.h"
#include "engine/test_util.h"
#include "server/shm/shm_server.h"

extern char** environ;

namespace quiver {
namespace {

using testing::SchemaFromJson;
using testing::ValueOrFail;

std::string Expected(int64_t version, int64_t key) {
  std::string text;
  const std::string digits = std::to_string(version);
  for (int64_t i = 0; i <= key % 4; ++i) text += digits + "-" + digits + "-" + digits + ";";
  return text;
}

// The second key part of key `key` (composite tables): long enough to live in the heap.
std::string Part(int64_t key) { return "a-second-key-part-" + std::to_string(key % 5); }

std::shared_ptr<arrow::RecordBatch> Rows(const std::vector<int64_t>& keys, int64_t version,
                                         bool composite) {
  arrow::Int64Builder k, a, b, c, x;
  arrow::StringBuilder s, p, y;
  for (int64_t key : keys) {
    (void)k.Append(key);
    (void)a.Append(version);
    (void)b.Append(version);
    (void)c.Append(version);
    (void)s.Append(Expected(version, key));
    (void)p.Append(Part(key));
    (void)x.Append(version);
    (void)y.Append(Expected(version, key));
  }
  arrow::FieldVector fields{arrow::field("k", arrow::int64()), arrow::field("a", arrow::int64()),
                            arrow::field("b", arrow::int64()), arrow::field("c", arrow::int64()),
                            arrow::field("s", arrow::utf8())};
  arrow::ArrayVector columns{*k.Finish(), *a.Finish(), *b.Finish(), *c.Finish(), *s.Finish()};
  if (composite) {
    fields.push_back(arrow::field("p", arrow::utf8()));
    fields.push_back(arrow::field("x", arrow::int64()));
    fields.push_back(arrow::field("y", arrow::utf8()));
    columns.push_back(*p.Finish());
    columns.push_back(*x.Finish());
    columns.push_back(*y.Finish());
  }
  return arrow::RecordBatch::Make(arrow::schema(fields), static_cast<int64_t>(keys.size()),
                                  columns);
}

// Keys as a delete takes them.
std::shared_ptr<arrow::Array> Keys(const std::vector<int64_t>& keys, bool composite) {
  std::shared_ptr<arrow::RecordBatch> rows = Rows(keys, 0, composite);
  if (!composite) return rows->column(0);
  return *arrow::StructArray::Make({rows->column(0), rows->GetColumnByName("p")},
                                   std::vector<std::string>{"k", "p"});
}

class ShmConcurrencyTest : public ::testing::TestWithParam<bool> {};

TEST_P(ShmConcurrencyTest, ReadersInAnotherProcessNeverSeeATornRow) {
  const bool composite = GetParam();
  const char* seconds_text = std::getenv("QUIVER_STRESS_SECONDS");
  const double seconds = seconds_text ? std::atof(seconds_text) : 2.0;
  const auto dir =
      std::filesystem::temp_directory_path() / ("quiver-shm-stress-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  EngineLimits limits;
  limits.heap_compaction_min_garbage = 64 << 10;  // compactions at this size
  Catalog catalog(CatalogOptions{.limits = limits, .publish = true});
  auto server = ValueOrFail(
      ShmServer::Start(catalog, ShmServerOptions{.path = (dir / "quiver.sock").string()}));
  auto table = ValueOrFail(catalog.CreateTable(
      "t", SchemaFromJson(composite ? R"({"key": ["k", "p"], "columns": {"k": {"dtype": "int64"},
        "a": {"dtype": "int64"}, "b": {"dtype": "int64"}, "c": {"dtype": "int64"},
        "s": {"dtype": "utf8"}, "p": {"dtype": "utf8"},
        "x": {"dtype": "int64", "sparse": true}, "y": {"dtype": "utf8", "sparse": true}}})"
                                    : R"({"key": "k", "columns": {"k": {"dtype": "int64"},
        "a": {"dtype": "int64"}, "b": {"dtype": "int64"}, "c": {"dtype": "int64"},
        "s": {"dtype": "utf8"}}})")));
  constexpr int64_t kStart = 2000, kEnd = 20000;
  std::vector<int64_t> live;
  for (int64_t key = 0; key < kStart; ++key) live.push_back(key);
  ASSERT_TRUE(table->Upsert(*Rows(live, 1, composite)).ok());

  // The reader process: stdin a pipe (closed to stop it), stdout a pipe (its report).
  int to_reader[2], from_reader[2];
  ASSERT_EQ(pipe(to_reader), 0);
  ASSERT_EQ(pipe(from_reader), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, to_reader[0], 0);
  posix_spawn_file_actions_adddup2(&actions, from_reader[1], 1);
  posix_spawn_file_actions_addclose(&actions, to_reader[1]);
  posix_spawn_file_actions_addclose(&actions, from_reader[0]);
  const std::string program =
      (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "shm_stress_reader")
          .string();
  const std::string socket = (dir / "quiver.sock").string();
  const std::string keys = std::to_string(kEnd);
  const std::string mode = composite ? "composite" : "single";
  char* argv[] = {const_cast<char*>(program.c_str()), const_cast<char*>(socket.c_str()),
                  const_cast<char*>(keys.c_str()), const_cast<char*>(mode.c_str()), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ), 0) << program;
  posix_spawn_file_actions_destroy(&actions);
  close(to_reader[0]);
  close(from_reader[1]);
  FILE* report = fdopen(from_reader[0], "r");
  char line[256] = {};
  ASSERT_NE(fgets(line, sizeof(line), report), nullptr);
  ASSERT_STREQ(line, "ready\n");

  // The writer: versions go up; keys are added until the table is tenfold, some deleted.
  std::mt19937_64 rng(1);
  int64_t version = 2, next_key = kStart;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  uint64_t rounds = 0;
  std::vector<int64_t> doomed;  // deleted last round, inserted again this one
  while (std::chrono::steady_clock::now() < deadline || next_key < kEnd) {
    const int64_t grow = std::min<int64_t>(kEnd - next_key, 700);
    for (int64_t i = 0; i < grow; ++i) live.push_back(next_key++);
    live.insert(live.end(), doomed.begin(), doomed.end());
    doomed.clear();
    for (size_t start = 0; start < live.size(); start += 1000) {
      std::vector<int64_t> part(
          live.begin() + static_cast<int64_t>(start),
          live.begin() + static_cast<int64_t>(std::min(live.size(), start + 1000)));
      ASSERT_TRUE(table->Upsert(*Rows(part, version++, composite)).ok());
    }
    for (int i = 0; i < 50 && !live.empty(); ++i) {
      const size_t at = rng() % live.size();
      doomed.push_back(live[at]);
      live[at] = live.back();
      live.pop_back();
    }
    ASSERT_TRUE(table->Delete(*Keys(doomed, composite)).ok());
    ++rounds;
  }
  const TableStats stats = table->Stats();
  close(to_reader[1]);
  ASSERT_NE(fgets(line, sizeof(line), report), nullptr);
  fclose(report);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  std::printf("writer: %llu rounds, %lld versions, %llu compactions; reader: %s",
              static_cast<unsigned long long>(rounds), static_cast<long long>(version),
              static_cast<unsigned long long>(stats.heap_compactions), line);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << line;
  long long checked = 0, torn = -1;
  ASSERT_EQ(std::sscanf(line, "checked %lld torn %lld", &checked, &torn), 2) << line;
  EXPECT_EQ(torn, 0);
  EXPECT_GT(checked, 0);
  EXPECT_GT(stats.heap_compactions, 0u);
  server.reset();
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Keys, ShmConcurrencyTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "CompositeKeySparseColumns" : "Int64Key";
                         });

}  // namespace
}  // namespace quiver
