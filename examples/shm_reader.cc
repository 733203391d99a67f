// A C++ process reading a quiverd's tables from shared memory (docs/shm.md):
//
//   shm_reader SOCKET TABLE KEY...            every column of each key, from Arrow
//   shm_reader SOCKET TABLE --fixed C1,C2 KEY...   fixed-width columns into one buffer
//
// SOCKET is quiverd's <data-dir>/quiver.sock. Keys are int64 or strings, as the table's key.
// Built as build/examples/shm_reader (make); it links only the reader library (src/shm/).
#include <arrow/api.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "shm/reader.h"

namespace {

int Fail(const quiver::Status& status) {
  std::fprintf(stderr, "shm_reader: %s\n", status.ToString().c_str());
  return 1;
}

std::vector<std::string> Split(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    out.emplace_back(text.substr(0, comma));
    text = comma == std::string_view::npos ? "" : text.substr(comma + 1);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: shm_reader SOCKET TABLE [--fixed C1,C2] KEY...\n");
    return 2;
  }
  auto client = quiver::shm::Client::Connect(argv[1]);
  if (!client.ok()) return Fail(client.status());
  auto table = (*client)->Attach(argv[2]);
  if (!table.ok()) return Fail(table.status());
  quiver::shm::TableReader& reader = **table;
  int first_key = 3;
  std::vector<std::string> fixed;
  if (std::strcmp(argv[3], "--fixed") == 0 && argc > 5) {
    fixed = Split(argv[4]);
    first_key = 5;
  }
  const std::vector<std::string> texts(argv + first_key, argv + argc);

  if (!fixed.empty()) {
    // The hot path: one buffer, allocated once, row-major; found[i] per key.
    auto plan = reader.PlanFixed(fixed);
    if (!plan.ok()) return Fail(plan.status());
    std::vector<std::byte> out(texts.size() * plan->row_bytes());
    std::vector<uint8_t> found(texts.size()), valid(texts.size() * fixed.size());
    quiver::Status status;
    std::vector<int64_t> ints;
    std::vector<std::string_view> views(texts.begin(), texts.end());
    if (reader.int64_keys()) {
      for (const std::string& text : texts) ints.push_back(std::stoll(text));
      status =
          reader.ReadInto(*plan, ints, out.data(), plan->row_bytes(), found.data(), valid.data());
    } else {
      status =
          reader.ReadInto(*plan, views, out.data(), plan->row_bytes(), found.data(), valid.data());
    }
    if (!status.ok()) return Fail(status);
    for (size_t i = 0; i < texts.size(); ++i) {
      std::printf("%s:", texts[i].c_str());
      if (!found[i]) {
        std::printf(" (missing)\n");
        continue;
      }
      for (size_t j = 0; j < fixed.size(); ++j) {
        const std::byte* value = out.data() + i * plan->row_bytes() + plan->offsets()[j];
        const auto& type = *plan->types()[j];
        std::printf(" %s=", fixed[j].c_str());
        if (!valid[i * fixed.size() + j]) {
          std::printf("null");
        } else if (type.id() == arrow::Type::FLOAT) {
          float f;
          std::memcpy(&f, value, 4);
          std::printf("%g", f);
        } else if (type.id() == arrow::Type::DOUBLE) {
          double d;
          std::memcpy(&d, value, 8);
          std::printf("%g", d);
        } else if (type.id() == arrow::Type::INT64) {
          int64_t v;
          std::memcpy(&v, value, 8);
          std::printf("%" PRId64, v);
        } else if (type.id() == arrow::Type::INT32) {
          int32_t v;
          std::memcpy(&v, value, 4);
          std::printf("%" PRId32, v);
        } else {
          std::printf("<%u bytes of %s>", plan->widths()[j], type.ToString().c_str());
        }
      }
      std::printf("\n");
    }
    return 0;
  }

  // Any column: an Arrow record batch, one row per key.
  std::shared_ptr<arrow::Array> keys;
  if (reader.int64_keys()) {
    arrow::Int64Builder builder;
    for (const std::string& text : texts) (void)builder.Append(std::stoll(text));
    keys = builder.Finish().ValueOrDie();
  } else {
    arrow::StringBuilder builder;
    for (const std::string& text : texts) (void)builder.Append(text);
    keys = builder.Finish().ValueOrDie();
  }
  auto batch = reader.Read(*keys);
  if (!batch.ok()) return Fail(batch.status());
  std::printf("found %" PRId64 " of %zu\n%s", batch->found_count, texts.size(),
              batch->batch->ToString().c_str());
  return 0;
}
