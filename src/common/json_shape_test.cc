#include "common/json_shape.h"

#include <gtest/gtest.h>

#include <string>

namespace quiver {
namespace {

std::string Nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(JsonShapeTest, DepthUpToTheLimitPasses) {
  EXPECT_TRUE(CheckJsonShape(Nested(64), "body").ok());
  const Status deep = CheckJsonShape(Nested(65), "the body");
  EXPECT_EQ(deep.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(deep.message(), "the body nests arrays and objects more than 64 levels deep");
  EXPECT_FALSE(CheckJsonShape("{\"a\": " + Nested(60000) + "}", "body").ok());
}

TEST(JsonShapeTest, BracketsInStringsDoNotCount) {
  const std::string text = "{\"k\": \"" + std::string(100, '[') + "\\\"[[[\", \"v\": [1, 2]}";
  EXPECT_TRUE(CheckJsonShape(text, "body", {.max_depth = 2}).ok());
  // An escaped backslash ends before the quote: the string closes there.
  EXPECT_FALSE(CheckJsonShape("[\"\\\\\", [[]]]", "body", {.max_depth = 2}).ok());
}

TEST(JsonShapeTest, MembersOfOneObjectAreCounted) {
  const JsonShapeLimits limits{.max_object_members = 2};
  EXPECT_TRUE(CheckJsonShape(R"({"a": {"x": 1, "y": 2}, "b": "c:d"})", "body", limits).ok());
  const Status wide = CheckJsonShape(R"({"a": 1, "b": 2, "c": 3})", "schema", limits);
  EXPECT_EQ(wide.code(), StatusCode::kLimitExceeded);
  EXPECT_EQ(wide.message(), "schema has an object of more than 2 members");
  // Arrays may hold any number of values.
  EXPECT_TRUE(CheckJsonShape("[1, 2, 3, 4, 5]", "body", limits).ok());
}

TEST(JsonShapeTest, UnbalancedTextIsLeftToTheParser) {
  EXPECT_TRUE(CheckJsonShape("]]]}}", "body").ok());
  EXPECT_TRUE(CheckJsonShape("\"unterminated [[[", "body").ok());
}

}  // namespace
}  // namespace quiver
