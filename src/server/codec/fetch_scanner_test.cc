#include "server/codec/fetch_scanner.h"

#include <arrow/api.h>
#include <gtest/gtest.h>

#include "server/codec/codec.h"

namespace quiver::codec {
namespace {

TableSchema Schema(const char* key_dtype) {
  return TableSchema::FromJson(std::string(R"({"key": "k", "columns": {"k": {"dtype": ")") +
                               key_dtype + R"("}, "v": {"dtype": "float32"}}})")
      .value();
}

TEST(FetchScannerTest, ReadsThePlainShapes) {
  auto scanned = ScanFetchJson(
      " {\"keys\" : [\"a\", null, \"q\\\"\\\\\\/\\n\"], \"columns\": [\"v\"], \"found\": true,"
      " \"table\": \"t\"}\n");
  ASSERT_TRUE(scanned);
  EXPECT_TRUE(scanned->has_keys);
  EXPECT_EQ(scanned->key_kind, ScannedFetch::KeyKind::kString);
  ASSERT_EQ(scanned->key_is_null.size(), 3u);
  EXPECT_EQ(scanned->string_keys[0], "a");
  EXPECT_TRUE(scanned->key_is_null[1]);
  EXPECT_EQ(scanned->string_keys[2], "q\"\\/\n");
  EXPECT_EQ(scanned->columns, std::vector<std::string>{"v"});
  EXPECT_EQ(scanned->found, true);
  EXPECT_EQ(scanned->table, "t");

  auto integers = ScanFetchJson(R"({"keys": [0, -9223372036854775808, 9223372036854775807]})");
  ASSERT_TRUE(integers);
  EXPECT_EQ(integers->key_kind, ScannedFetch::KeyKind::kInteger);
  EXPECT_EQ(integers->integer_keys, (std::vector<int64_t>{0, INT64_MIN, INT64_MAX}));

  auto empty = ScanFetchJson(R"({"keys": [], "columns": null})");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->has_keys && empty->key_is_null.empty() && empty->columns.empty());
}

TEST(FetchScannerTest, LeavesEverythingElseToTheGeneralParser) {
  for (const char* body : {
           R"({"keys": ["\u0041"]})",             // \u escape
           R"({"keys": ["é"]})",                  // non-ASCII
           R"({"keys": [1.0]})",                  // fraction
           R"({"keys": [1e3]})",                  // exponent
           R"({"keys": [01]})",                   // leading zero
           R"({"keys": [-0]})",                   // negative zero
           R"({"keys": [9223372036854775808]})",  // overflow
           R"({"keys": ["a", 1]})",               // mixed kinds
           R"({"keys": ["a"], "keys": ["b"]})",   // repeated member
           R"({"keys": ["a"], "other": 1})",      // unknown member
           R"({"keys": ["a"]} x)",                // trailing bytes
           R"({"keys": ["a"])",                   // truncated
           R"({"keys": ["a	b"]})",           // control character (a tab)
           R"({"keys": ["a\x"]})",                // invalid escape
           R"({"found": 1})",                     // not a boolean
           R"([1])",                              // not an object
       }) {
    EXPECT_FALSE(ScanFetchJson(body)) << body;
  }
}

TEST(FetchScannerTest, AgreesWithTheGeneralParser) {
  const TableSchema strings = Schema("utf8");
  const TableSchema integers = Schema("int64");
  for (const char* body : {
           R"({"keys": ["a", null, "b\"c"], "columns": ["v"]})",
           R"({"keys": [null, null]})",
           R"({"keys": [], "columns": []})",
           R"({"keys": [1, 2], "table": "x", "found": false})",
           R"({"keys": [1.5]})",
           R"({"keys": ["a", 1]})",
           R"({"keys": null})",
           R"({"columns": ["v"]})",
       }) {
    for (const TableSchema* schema : {&strings, &integers}) {
      auto fast = ParseJsonFetch(body, *schema);
      auto general = internal::ParseJsonFetchGeneral(body, *schema);
      ASSERT_EQ(fast.ok(), general.ok()) << body;
      if (!fast.ok()) {
        EXPECT_EQ(fast.status().message(), general.status().message()) << body;
        continue;
      }
      EXPECT_TRUE(fast->keys->Equals(*general->keys)) << body;
      EXPECT_EQ(fast->columns, general->columns) << body;
    }
  }
}

}  // namespace
}  // namespace quiver::codec
