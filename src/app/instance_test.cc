// Instance, the composition root quiverd and the Python module share: in memory and durable, the
// parts wired together (one memory limit, the LocalClient over both), and a failed open.
#include "app/instance.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "engine/test_util.h"

namespace quiver {
namespace {

using testing::BatchFromJson;
using testing::SchemaFromJson;

constexpr char kSchema[] = R"({"key": "id", "columns": {
    "id": {"dtype": "utf8"}, "n": {"dtype": "int64"}}})";

void Fill(Instance& instance) {
  auto table = instance.catalog().CreateTable("t", SchemaFromJson(kSchema));
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_TRUE((*table)
                  ->Upsert(*BatchFromJson(
                      {{"id", arrow::utf8(), R"(["a"])"}, {"n", arrow::int64(), "[7]"}}))
                  .ok());
  ASSERT_TRUE(instance.kv().Set("k", "v").ok());
}

TEST(InstanceTest, InMemoryThePartsShareOneLimit) {
  InstanceOptions options;
  options.maxmemory = 1 << 30;
  options.policy = EvictionPolicy::kAllKeysLru;
  auto instance = Instance::Open(options);
  ASSERT_TRUE(instance.ok()) << instance.status().ToString();
  EXPECT_EQ((*instance)->database(), nullptr);
  Fill(**instance);
  MemoryLimit& limit = (*instance)->memory_limit();
  EXPECT_EQ(&(*instance)->keyspace().memory_limit(), &limit);
  EXPECT_EQ(limit.MaxMemory(), 1u << 30);
  EXPECT_EQ(limit.Policy(), EvictionPolicy::kAllKeysLru);
  EXPECT_GE(limit.UsedMemory(), (*instance)->keyspace().UsedMemory() + 1)
      << "the table's rows count too";
  // The LocalClient reads the tables as hashes.
  EXPECT_EQ((*instance)->kv().Call({"HGET", "t:a", "n"}).text, "7");
  (*instance)->Close();
  (*instance)->Close();  // idempotent
}

TEST(InstanceTest, DurableItKeepsTablesAndKeysAcrossOpens) {
  char pattern[] = "/tmp/quiver-instance-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string dir = pattern;
  InstanceOptions options;
  options.data_dir = dir;
  {
    auto instance = Instance::Open(options);
    ASSERT_TRUE(instance.ok()) << instance.status().ToString();
    ASSERT_NE((*instance)->database(), nullptr);
    Fill(**instance);
    // A second instance on the same directory is refused, and its failed open crashes nothing.
    auto second = Instance::Open(options);
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.status().message().find("is in use"), std::string::npos);
  }
  auto reopened = Instance::Open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(**(*reopened)->kv().Get("k"), "v");
  EXPECT_EQ((*reopened)->kv().Call({"HGET", "t:a", "n"}).text, "7");
  reopened->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace quiver
