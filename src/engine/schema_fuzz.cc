// Fuzz target for the schema parsers: TableSchema::FromJson and ParseDtype. Whatever the input,
// no crash, no exception, and every accepted schema round-trips through JSON and Arrow unchanged.
// Built with libFuzzer under clang (make fuzz), and run by common/fuzz_driver.cc otherwise.
#include <arrow/type.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/fuzz_check.h"
#include "engine/schema.h"

namespace {

void Check(bool condition, const char* property) {
  quiver::FuzzCheck(condition, "schema_fuzz", property);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto dtype = quiver::ParseDtype(text);
  if (dtype.ok()) {
    auto again = quiver::ParseDtype(quiver::DtypeName(**dtype));
    Check(again.ok() && (*again)->Equals(**dtype), "a dtype does not round-trip");
  }
  auto schema = quiver::TableSchema::FromJson(text);
  if (!schema.ok()) {
    Check(!schema.status().message().empty(), "an error without a message");
    return 0;
  }
  auto from_json = quiver::TableSchema::FromJson(schema->ToJson());
  Check(from_json.ok() && from_json->Equals(*schema), "a schema does not round-trip through JSON");
  auto from_arrow = quiver::TableSchema::FromArrow(*schema->ToArrow());
  Check(from_arrow.ok() && from_arrow->Equals(*schema),
        "a schema does not round-trip through Arrow");
  return 0;
}
