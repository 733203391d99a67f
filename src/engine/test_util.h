// Helpers for engine tests: Arrow arrays and batches from JSON text, and assertions on Status.
// Test-only; thread safety: none needed.
#pragma once

#include <arrow/api.h>
#include <arrow/json/from_string.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "engine/schema.h"
#include "engine/schema_change.h"

namespace quiver::testing {

inline std::shared_ptr<arrow::Array> ArrayFromJson(const std::shared_ptr<arrow::DataType>& type,
                                                   const std::string& json) {
  auto result = arrow::json::ArrayFromJSONString(type, json);
  EXPECT_TRUE(result.ok()) << result.status().ToString() << " for " << json;
  return result.ValueOrDie();
}

// A batch from (name, type, json values) triples.
struct ColumnJson {
  std::string name;
  std::shared_ptr<arrow::DataType> type;
  std::string values;
};
inline std::shared_ptr<arrow::RecordBatch> BatchFromJson(const std::vector<ColumnJson>& columns) {
  arrow::FieldVector fields;
  arrow::ArrayVector arrays;
  for (const ColumnJson& column : columns) {
    fields.push_back(arrow::field(column.name, column.type));
    arrays.push_back(ArrayFromJson(column.type, column.values));
  }
  const int64_t rows = arrays.empty() ? 0 : arrays[0]->length();
  return arrow::RecordBatch::Make(arrow::schema(fields), rows, arrays);
}

template <typename T>
T ValueOrFail(Result<T> result) {
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (!result.ok()) throw std::runtime_error(result.status().ToString());
  return std::move(result).value();
}

// Expects column `name` of a read's batch to equal `json` (values of `type`).
template <typename Result>
void ExpectColumn(const Result& result, const std::string& name,
                  const std::shared_ptr<arrow::DataType>& type, const std::string& json) {
  auto column = result.batch->GetColumnByName(name);
  ASSERT_NE(column, nullptr) << name;
  auto expected = ArrayFromJson(type, json);
  EXPECT_TRUE(column->Equals(*expected))
      << name << ":\n got " << column->ToString() << "\n want " << expected->ToString();
}

inline TableSchema SchemaFromJson(const std::string& json) {
  return ValueOrFail(TableSchema::FromJson(json));
}

inline SchemaChange ChangeFromJson(const std::string& json) {
  return ValueOrFail(SchemaChange::FromJson(json));
}

}  // namespace quiver::testing

#define QUIVER_ASSERT_OK(expr)                       \
  do {                                               \
    ::quiver::Status _status = (expr);               \
    ASSERT_TRUE(_status.ok()) << _status.ToString(); \
  } while (false)

namespace quiver::testing {
inline Status StatusOf(const Status& status) { return status; }
template <typename T>
Status StatusOf(const Result<T>& result) {
  return result.status();
}
}  // namespace quiver::testing

// Expects that `expr` (a Status or Result) failed with `expected_code` and a message containing
// `text`.
#define QUIVER_EXPECT_ERROR(expr, expected_code, text)                                \
  do {                                                                                \
    ::quiver::Status _status = ::quiver::testing::StatusOf(expr);                     \
    EXPECT_EQ(_status.code(), expected_code) << _status.ToString();                   \
    EXPECT_NE(_status.message().find(text), std::string::npos) << _status.ToString(); \
  } while (false)
