// The benchmarks' tables (engine_benchmark.cc, shm_benchmark.cc): BENCH_ROWS rows (default
// 10,000,000) with 8-character string keys "00000000", "00000001", ... and 10 float32 columns
// (f0..f9) or one fixed_size_list<float32, 128> (embedding) of pseudo-random values, as Arrow
// record batches. Header-only; thread safety: pure functions.
#pragma once

#include <arrow/api.h>
#include <arrow/util/bit_util.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace quiver {
namespace {

int64_t BenchRows() {
  const char* text = std::getenv("BENCH_ROWS");
  return text ? std::max<int64_t>(1000, std::atoll(text)) : 10'000'000;
}

constexpr int64_t kBatchRows = 1 << 20;
constexpr int kKeySets = 256;

// Keys "00000000", "00000001", ...: 8 characters each.
std::shared_ptr<arrow::Array> MakeKeys(int64_t first, int64_t count) {
  auto offsets = arrow::AllocateBuffer((count + 1) * sizeof(int32_t)).ValueOrDie();
  auto data = arrow::AllocateBuffer(count * 8).ValueOrDie();
  auto* offset = reinterpret_cast<int32_t*>(offsets->mutable_data());
  char* out = reinterpret_cast<char*>(data->mutable_data());
  char buffer[24];
  for (int64_t i = 0; i < count; ++i) {
    offset[i] = static_cast<int32_t>(i * 8);
    std::snprintf(buffer, sizeof(buffer), "%08lld", static_cast<long long>(first + i));
    std::memcpy(out + i * 8, buffer, 8);
  }
  offset[count] = static_cast<int32_t>(count * 8);
  return std::make_shared<arrow::StringArray>(count, std::move(offsets), std::move(data));
}

std::shared_ptr<arrow::Buffer> RandomFloats(int64_t count, uint64_t seed) {
  auto buffer = arrow::AllocateBuffer(count * sizeof(float)).ValueOrDie();
  auto* values = reinterpret_cast<float*>(buffer->mutable_data());
  uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (int64_t i = 0; i < count; ++i) {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    values[i] = static_cast<float>(state >> 40) * (1.0f / (1 << 24));
  }
  return buffer;
}

// kComposite10: 10 float32 under a composite key, "user" int64 (row / 10) + "key" utf8 (as
// kFloat32x10's keys). kSparse500: 500 sparse float32 columns, 10 of them set in each row (at
// random; f0..f9 among them in every row, so reads of those find values).
// kFeatures: 10 float32 (f0..f9) and the 128-float32 embedding, a 576-byte row.
enum class Shape { kFloat32x10, kEmbedding128, kComposite10, kSparse500, kFeatures };
constexpr int kSparseColumns = 500;

std::string SchemaJson(Shape shape) {
  std::string json = R"({"key": "key", "columns": {"key": {"dtype": "utf8"})";
  if (shape == Shape::kComposite10) {
    json = R"({"key": ["user", "key"], "columns": {"user": {"dtype": "int64"},
                                                   "key": {"dtype": "utf8"})";
  }
  if (shape == Shape::kSparse500) {
    for (int c = 0; c < kSparseColumns; ++c) {
      json += R"(, "f)" + std::to_string(c) + R"(": {"dtype": "float32", "sparse": true})";
    }
    return json + "}}";
  }
  if (shape != Shape::kEmbedding128) {
    for (int c = 0; c < 10; ++c)
      json += R"(, "f)" + std::to_string(c) + R"(": {"dtype": "float32"})";
  }
  if (shape == Shape::kEmbedding128 || shape == Shape::kFeatures) {
    json += R"(, "embedding": {"dtype": "fixed_size_list[float32, 128]"})";
  }
  return json + "}}";
}

std::shared_ptr<arrow::RecordBatch> MakeBatch(Shape shape, int64_t first, int64_t count) {
  arrow::FieldVector fields = {arrow::field("key", arrow::utf8())};
  arrow::ArrayVector arrays = {MakeKeys(first, count)};
  if (shape == Shape::kSparse500) {
    // Validity: each row sets 5 of f0..f9 and 5 of the rest.
    std::vector<std::shared_ptr<arrow::Buffer>> valid(kSparseColumns);
    for (auto& bitmap : valid) {
      bitmap = arrow::AllocateBuffer(arrow::bit_util::BytesForBits(count)).ValueOrDie();
      std::memset(bitmap->mutable_data(), 0, bitmap->size());
    }
    uint64_t state = static_cast<uint64_t>(first) * 0x9E3779B97F4A7C15ULL + 1;
    for (int64_t i = 0; i < count; ++i) {
      for (int k = 0; k < 10; ++k) {
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        const auto c = static_cast<int>(k < 5 ? state % 10 : 10 + state % (kSparseColumns - 10));
        arrow::bit_util::SetBit(valid[c]->mutable_data(), i);
      }
    }
    for (int c = 0; c < kSparseColumns; ++c) {
      fields.push_back(arrow::field("f" + std::to_string(c), arrow::float32()));
      arrays.push_back(std::make_shared<arrow::FloatArray>(
          count, RandomFloats(count, first * 16 + c), valid[c], arrow::kUnknownNullCount));
    }
    return arrow::RecordBatch::Make(arrow::schema(fields), count, arrays);
  }
  if (shape == Shape::kComposite10) {
    arrow::Int64Builder users;
    (void)users.Reserve(count);
    for (int64_t i = first; i < first + count; ++i) users.UnsafeAppend(i / 10);
    fields.push_back(arrow::field("user", arrow::int64()));
    arrays.push_back(users.Finish().ValueOrDie());
  }
  if (shape != Shape::kEmbedding128) {
    for (int c = 0; c < 10; ++c) {
      fields.push_back(arrow::field("f" + std::to_string(c), arrow::float32()));
      arrays.push_back(
          std::make_shared<arrow::FloatArray>(count, RandomFloats(count, first * 16 + c)));
    }
  }
  if (shape == Shape::kEmbedding128 || shape == Shape::kFeatures) {
    auto type = arrow::fixed_size_list(arrow::float32(), 128);
    fields.push_back(arrow::field("embedding", type));
    auto values =
        std::make_shared<arrow::FloatArray>(count * 128, RandomFloats(count * 128, first));
    arrays.push_back(std::make_shared<arrow::FixedSizeListArray>(type, count, values));
  }
  return arrow::RecordBatch::Make(arrow::schema(fields), count, arrays);
}

}  // namespace
}  // namespace quiver
