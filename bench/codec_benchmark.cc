// Costs of the HTTP body codecs for the benchmark's request shape (docs/benchmarks.md):
// decoding 1000 keys (Arrow IPC, JSON) and encoding a 1000 x 10 float32 result (IPC, JSON).
#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/writer.h>
#include <benchmark/benchmark.h>

#include <random>
#include <string>

#include "server/codec/codec.h"

namespace quiver::codec {
namespace {

TableSchema Schema() {
  std::string json = R"({"key": "key", "columns": {"key": {"dtype": "utf8"})";
  for (int c = 0; c < 10; ++c) json += R"(, "f)" + std::to_string(c) + R"(": {"dtype": "float32"})";
  return TableSchema::FromJson(json + "}}").value();
}

std::shared_ptr<arrow::Array> Keys() {
  arrow::StringBuilder builder;
  std::mt19937 rng(1);
  char buffer[24];
  for (int i = 0; i < 1000; ++i) {
    std::snprintf(buffer, sizeof(buffer), "%08u", static_cast<unsigned>(rng() % 10000000));
    (void)builder.Append(buffer, 8);
  }
  return builder.Finish().ValueOrDie();
}

std::string IpcBody(const std::shared_ptr<arrow::Array>& keys) {
  auto batch =
      arrow::RecordBatch::Make(arrow::schema({arrow::field("key", arrow::utf8())}), 1000, {keys});
  auto sink = arrow::io::BufferOutputStream::Create().ValueOrDie();
  auto writer = arrow::ipc::MakeStreamWriter(sink, batch->schema()).ValueOrDie();
  (void)writer->WriteRecordBatch(*batch);
  (void)writer->Close();
  return sink->Finish().ValueOrDie()->ToString();
}

ReadResult Result1000x10() {
  arrow::FieldVector fields;
  arrow::ArrayVector arrays;
  for (int c = 0; c < 10; ++c) {
    arrow::FloatBuilder builder;
    for (int i = 0; i < 1000; ++i) (void)builder.Append(i * 0.5f);
    fields.push_back(arrow::field("f" + std::to_string(c), arrow::float32()));
    arrays.push_back(builder.Finish().ValueOrDie());
  }
  ReadResult result;
  result.batch = arrow::RecordBatch::Make(arrow::schema(fields), 1000, arrays);
  arrow::BooleanBuilder found;
  for (int i = 0; i < 1000; ++i) (void)found.Append(true);
  result.found = std::static_pointer_cast<arrow::BooleanArray>(found.Finish().ValueOrDie());
  result.found_count = 1000;
  return result;
}

void BM_DecodeIpcKeys(benchmark::State& state) {
  const std::string body = IpcBody(Keys());
  const TableSchema schema = Schema();
  for (auto _ : state) benchmark::DoNotOptimize(ParseIpcKeys(body, schema));
}
void BM_DecodeJsonKeys(benchmark::State& state) {
  const auto keys = std::static_pointer_cast<arrow::StringArray>(Keys());
  std::string body = R"({"keys": [)";
  for (int i = 0; i < 1000; ++i) body += (i ? ",\"" : "\"") + keys->GetString(i) + "\"";
  body += "]}";
  const TableSchema schema = Schema();
  for (auto _ : state) benchmark::DoNotOptimize(ParseJsonFetch(body, schema));
}
void BM_EncodeIpcResult(benchmark::State& state) {
  const ReadResult result = Result1000x10();
  for (auto _ : state) benchmark::DoNotOptimize(FetchResultToIpc(result, false));
}
void BM_EncodeJsonResult(benchmark::State& state) {
  const ReadResult result = Result1000x10();
  for (auto _ : state) benchmark::DoNotOptimize(FetchResultToJson(result));
}

BENCHMARK(BM_DecodeIpcKeys)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeJsonKeys)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeIpcResult)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeJsonResult)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace quiver::codec

BENCHMARK_MAIN();
