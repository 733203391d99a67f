// Fuzz target for the request decoders (server/codec/codec.h). The first byte picks the decoder,
// the rest is the body: JSON fetch, JSON write, JSON keys, Arrow IPC stream, Parquet file,
// base64, Flight ticket. Whatever decodes is then written to and read from a real table, so the
// engine also sees arbitrary (valid) Arrow data. No input may crash, leak or trip a sanitizer.
#include <arrow/api.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/fuzz_check.h"
#include "engine/table.h"
#include "server/codec/codec.h"

namespace {

void Check(bool condition, const char* property) {
  quiver::FuzzCheck(condition, "codec_fuzz", property);
}

using quiver::codec::Base64Decode;
using quiver::codec::Base64Encode;

std::shared_ptr<quiver::Table> FuzzTable() {
  static std::shared_ptr<quiver::Table> table = [] {
    auto schema = quiver::TableSchema::FromJson(R"({"key": "id", "columns": {
        "id": {"dtype": "utf8"}, "f": {"dtype": "float32"}, "i": {"dtype": "int64"},
        "s": {"dtype": "utf8"}, "b": {"dtype": "binary"}, "t": {"dtype": "timestamp[ms]"},
        "e": {"dtype": "fixed_size_list[float32, 2]"}, "l": {"dtype": "list[int16]"},
        "z": {"dtype": "bool"}}})");
    quiver::EngineLimits limits;
    limits.heap_compaction_min_garbage = 1 << 16;
    return quiver::Table::Make("fuzz", *schema, limits).value();
  }();
  return table;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto table = FuzzTable();
  const quiver::TableSchema& schema = table->schema();
  switch (data[0] % 7) {
    case 0: {
      auto fetch = quiver::codec::ParseJsonFetch(body, schema);
      // The fast path (fetch_scanner.h) and the general parser agree on everything it accepts.
      auto general = quiver::codec::internal::ParseJsonFetchGeneral(body, schema);
      Check(fetch.ok() == general.ok(), "fast and general fetch parsers disagree on validity");
      if (fetch.ok() && general.ok()) {
        Check(fetch->keys->Equals(*general->keys), "fast and general parsers read other keys");
        Check(fetch->columns == general->columns, "fast and general parsers read other columns");
      }
      if (fetch.ok()) {
        auto result = table->Read(*fetch->keys, fetch->columns);
        if (result.ok()) {
          Check(result->batch->num_rows() == fetch->keys->length(), "a read lost rows");
          (void)quiver::codec::FetchResultToJson(*result);
          (void)quiver::codec::FetchResultToIpc(*result, true);
        }
      }
      break;
    }
    case 1: {
      auto batch = quiver::codec::ParseJsonWrite(body, schema);
      if (batch.ok()) (void)table->Upsert(**batch);
      break;
    }
    case 2: {
      auto keys = quiver::codec::ParseJsonKeys(body, schema);
      if (keys.ok()) (void)table->Delete(**keys);
      break;
    }
    case 3: {
      auto data_table = quiver::codec::ParseIpcTable(body);
      if (data_table.ok()) (void)table->Upsert(**data_table);
      auto keys = quiver::codec::ParseIpcKeys(body, schema);
      if (keys.ok()) (void)table->Read(**keys);
      break;
    }
    case 4: {
      auto data_table = quiver::codec::ParseParquetTable(body);
      if (data_table.ok()) (void)table->Upsert(**data_table);
      break;
    }
    case 6: {
      auto ticket = quiver::codec::ParseFetchTicket(
          body, [&](std::string_view name) -> quiver::Result<std::shared_ptr<quiver::Table>> {
            if (name != table->name()) return quiver::Status::NotFound("no such table");
            return table;
          });
      if (ticket.ok() && ticket->keys) {
        auto result = table->Read(*ticket->keys, ticket->columns);
        if (result.ok()) (void)quiver::codec::FetchResultBatch(*result, ticket->found_column);
      }
      break;
    }
    default: {
      auto decoded = Base64Decode(body);
      if (decoded.ok()) {
        auto again = Base64Decode(Base64Encode(*decoded));
        Check(again.ok() && *again == *decoded, "base64 does not round-trip");
      }
      break;
    }
  }
  return 0;
}
