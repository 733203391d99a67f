// The dtype registry: every row consistent with its Arrow type and with the schema's spellings,
// float16's text, and values written as text in their format.
#include "engine/dtype.h"

#include <arrow/api.h>
#include <arrow/util/float16.h>
#include <gtest/gtest.h>

#include <set>

#include "engine/schema.h"
#include "engine/test_util.h"

namespace quiver {
namespace {

TEST(DtypeTest, EveryRowMatchesItsArrowTypeAndSpelling) {
  std::set<std::string_view> names;
  for (const Dtype& dtype : Dtypes()) {
    EXPECT_TRUE(names.insert(dtype.name).second) << dtype.name << " twice";
    EXPECT_EQ(FindDtype(dtype.id), &dtype);
    if (dtype.make == nullptr) continue;  // timestamp, list, fixed_size_list
    const std::shared_ptr<arrow::DataType>& type = dtype.make();
    EXPECT_EQ(type->id(), dtype.id) << dtype.name;
    EXPECT_EQ(FindScalarDtype(dtype.name), &dtype);
    // The spelling parses to the type and the type prints as the spelling.
    Result<std::shared_ptr<arrow::DataType>> parsed = ParseDtype(dtype.name);
    ASSERT_TRUE(parsed.ok()) << dtype.name;
    EXPECT_TRUE((*parsed)->Equals(*type)) << dtype.name;
    EXPECT_EQ(DtypeName(*type), dtype.name);
    EXPECT_TRUE(CheckValueType(*type).ok()) << dtype.name;
    if (dtype.physical == Physical::kFixed) {
      EXPECT_EQ(static_cast<int>(dtype.width), type->byte_width()) << dtype.name;
    }
    // A numeric element makes lists and embeddings.
    const std::string list = "list[" + std::string(dtype.name) + "]";
    const std::string embedding = "fixed_size_list[" + std::string(dtype.name) + ", 4]";
    EXPECT_EQ(ParseDtype(list).ok(), dtype.element) << list;
    EXPECT_EQ(ParseDtype(embedding).ok(), dtype.element) << embedding;
    EXPECT_NE(AcceptedDtypes().find(std::string(dtype.name) + ","), std::string::npos);
  }
  EXPECT_EQ(FindDtype(arrow::Type::LARGE_STRING), nullptr);
  EXPECT_EQ(FindScalarDtype("timestamp"), nullptr) << "parametric: not a scalar spelling";
}

TEST(DtypeTest, HalfFloatTextIsTheShortestThatReadsBack) {
  const auto text = [](float value) {
    return HalfFloatText(arrow::util::Float16::FromFloat(value).bits());
  };
  EXPECT_EQ(text(0.1f), "0.1");  // stored as 0.0999755859375
  EXPECT_EQ(text(65504.0f), "65504");
  EXPECT_EQ(text(1.5f), "1.5");
  EXPECT_EQ(text(-0.25f), "-0.25");
  EXPECT_EQ(text(0.0f), "0");
  EXPECT_EQ(text(1e6f), "inf");
  EXPECT_EQ(text(6e-8f), "6e-08");  // the smallest subnormal, 5.96e-08
  // Every finite float16 reads back as itself.
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto half = arrow::util::Float16::FromBits(static_cast<uint16_t>(bits));
    if (!half.is_finite()) continue;
    const std::string written = HalfFloatText(half.bits());
    const auto back = arrow::util::Float16::FromFloat(std::strtof(written.c_str(), nullptr));
    ASSERT_TRUE(back.bits() == half.bits() || (half.is_zero() && back.is_zero()))
        << bits << " -> " << written;
  }
}

TEST(DtypeTest, ValuesAsText) {
  const auto text = [](const std::shared_ptr<arrow::DataType>& type, const std::string& json) {
    std::shared_ptr<arrow::Array> array = testing::ArrayFromJson(type, json);
    std::string out;
    EXPECT_TRUE(AppendValueText(out, *array, 0)) << type->ToString();
    return out;
  };
  EXPECT_EQ(text(arrow::boolean(), "[true]"), "true");
  EXPECT_EQ(text(arrow::int8(), "[-7]"), "-7");
  EXPECT_EQ(text(arrow::uint64(), "[18446744073709551615]"), "18446744073709551615");
  EXPECT_EQ(text(arrow::float16(), "[0.1]"), "0.1");
  EXPECT_EQ(text(arrow::float32(), "[0.1]"), "0.1");
  EXPECT_EQ(text(arrow::date32(), "[19000]"), "19000");
  EXPECT_EQ(text(arrow::utf8(), "[\"x y\"]"), "x y");
  EXPECT_EQ(text(arrow::fixed_size_list(arrow::float16(), 2), "[[1, 2]]"),
            std::string("\x00\x3c\x00\x40", 4));  // packed little-endian
  std::string out;
  EXPECT_FALSE(AppendValueText(out, *testing::ArrayFromJson(arrow::large_utf8(), "[\"a\"]"), 0));
  EXPECT_TRUE(out.empty());
}

}  // namespace
}  // namespace quiver
