#include "engine/catalog.h"

#include <gtest/gtest.h>

#include "engine/test_util.h"

namespace quiver {
namespace {

TEST(CatalogTest, CreateListGetDrop) {
  Catalog catalog;
  auto schema = testing::SchemaFromJson(
      R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "x": {"dtype": "float32"}}})");
  auto table = testing::ValueOrFail(catalog.CreateTable("b", schema));
  testing::ValueOrFail(catalog.CreateTable("a", schema));
  EXPECT_EQ(table->name(), "b");
  EXPECT_EQ(catalog.ListTables(), (std::vector<std::string>{"a", "b"}));
  QUIVER_EXPECT_ERROR(catalog.CreateTable("a", schema), StatusCode::kAlreadyExists,
                      "table 'a' already exists");
  QUIVER_EXPECT_ERROR(catalog.CreateTable("bad name", schema), StatusCode::kInvalidArgument,
                      "may only contain");
  EXPECT_EQ(testing::ValueOrFail(catalog.GetTable("b")).get(), table.get());
  QUIVER_ASSERT_OK(catalog.DropTable("b"));
  QUIVER_EXPECT_ERROR(catalog.GetTable("b"), StatusCode::kNotFound, "table 'b' does not exist");
  QUIVER_EXPECT_ERROR(catalog.DropTable("b"), StatusCode::kNotFound, "does not exist");
  // A dropped table stays usable by whoever still holds it.
  auto batch =
      testing::BatchFromJson({{"id", arrow::utf8(), R"(["k"])"}, {"x", arrow::float32(), "[1.5]"}});
  EXPECT_EQ(testing::ValueOrFail(table->Upsert(*batch)).rows_written, 1);
  EXPECT_EQ(catalog.ListTables(), (std::vector<std::string>{"a"}));
}

TEST(CatalogTest, UnknownTimeZonesAreRefusedForNewTablesOnly) {
  Catalog catalog;
  auto bogus = testing::SchemaFromJson(
      R"({"key": "id", "columns": {"id": {"dtype": "utf8"},
          "at": {"dtype": "timestamp[ms, tz=Bogus/Zone]"}}})");
  QUIVER_EXPECT_ERROR(catalog.CreateTable("t", bogus), StatusCode::kInvalidArgument,
                      "column 'at': unknown time zone 'Bogus/Zone'");
  // A stored schema is read back as it was (a table created before the check still opens).
  testing::ValueOrFail(catalog.RestoreTable(1, "t", bogus));
  int created = 0;
  for (const char* zone : {"UTC", "+02:00", "Europe/Paris"}) {
    auto schema = testing::SchemaFromJson(
        std::string(R"({"key": "id", "columns": {"id": {"dtype": "utf8"}, "at": {"dtype": )") +
        "\"timestamp[ms, tz=" + zone + "]\"}}}");
    testing::ValueOrFail(catalog.CreateTable("zone" + std::to_string(++created), schema));
  }
}

}  // namespace
}  // namespace quiver
