// Arrow Flight benchmark (docs/benchmarks.md): starts the real quiverd on free loopback ports,
// creates the benchmark table with the create_table action and loads BENCH_ROWS (default
// 10,000,000) rows of 8-character keys x 10 float32 with one DoPut stream (batches of 2^20 rows),
// then:
//
//   1. latency: DoGet with murr's ticket {"table", "keys": 1000 random keys} (all 10 columns), one
//      client connection, timed from the call to the last batch read. p50 / p99 / p999.
//   2. DoExchange throughput: one stream; a writer thread sends batches of 1000 random keys
//      while the main thread reads the feature batches, for S seconds. Keys/s, and the latency
//      of one batch when it is alone in the stream (send, then wait for its answer).
//
//   flight_benchmark [--quiverd PATH] [--requests N] [--seconds S]
#include <arrow/api.h>
#include <arrow/flight/api.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_server.h"

namespace {

namespace bench = quiver::bench;
namespace flight = arrow::flight;
using Clock = std::chrono::steady_clock;

using bench::Check;

void Check(const arrow::Status& status, const char* what) {
  if (!status.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
    std::exit(1);
  }
}

std::shared_ptr<arrow::RecordBatch> KeyBatch(const std::vector<std::string>& keys) {
  arrow::StringBuilder builder;
  for (const auto& key : keys) (void)builder.Append(key);
  return arrow::RecordBatch::Make(arrow::schema({arrow::field("key", arrow::utf8())}),
                                  static_cast<int64_t>(keys.size()),
                                  {builder.Finish().ValueOrDie()});
}

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string quiverd = (std::filesystem::path(argv[0]).parent_path() / ".." / "quiverd").string();
  int requests = 20000, seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--quiverd") quiverd = argv[i + 1];
    if (flag == "--requests") requests = std::atoi(argv[i + 1]);
    if (flag == "--seconds") seconds = std::atoi(argv[i + 1]);
  }
  const int64_t rows = bench::EnvRows();
  bench::Quiverd server(quiverd, {});
  const auto location =
      Check(flight::Location::ForGrpcTcp("127.0.0.1", server.flight_port()), "location");
  std::unique_ptr<flight::FlightClient> client;
  for (int attempt = 0; !client; ++attempt) {
    auto connected = flight::FlightClient::Connect(location);
    if (connected.ok()) {
      // Connect is lazy: a cheap call shows whether the server is up yet.
      auto actions = (*connected)->ListActions();
      if (actions.ok()) client = std::move(connected).ValueUnsafe();
    }
    if (!client) {
      if (attempt > 500) {
        std::fprintf(stderr, "quiverd did not start\n");
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  const std::string create = R"({"table": "bench", "schema": )" + bench::TableSchemaJson() + "}";
  Check(Check(client->DoAction(flight::Action{"create_table", arrow::Buffer::FromString(create)}),
              "create_table")
            ->Drain(),
        "create_table");

  // Load with one DoPut stream.
  {
    std::mt19937 rng(1);
    auto first_batch = bench::TableRows(0, std::min<int64_t>(1 << 20, rows), rng);
    auto put = Check(
        client->DoPut(flight::FlightDescriptor::Path({"bench"}), first_batch->schema()), "DoPut");
    const auto start = Clock::now();
    for (int64_t first = 0; first < rows; first += 1 << 20) {
      auto batch = first == 0
                       ? first_batch
                       : bench::TableRows(first, std::min<int64_t>(1 << 20, rows - first), rng);
      Check(put.writer->WriteRecordBatch(*batch), "DoPut write");
    }
    Check(put.writer->DoneWriting(), "DoPut done");
    std::shared_ptr<arrow::Buffer> ack;
    while (true) {
      Check(put.reader->ReadMetadata(&ack), "DoPut ack");
      if (!ack) break;
    }
    Check(put.writer->Close(), "DoPut close");
    std::printf("loaded %lld rows through DoPut (includes generating them) in %.1f s\n",
                static_cast<long long>(rows), Seconds(start));
  }

  const auto key_sets = bench::RandomKeySets(256, 1000, rows);
  std::vector<flight::Ticket> tickets;
  for (const auto& set : key_sets) {
    tickets.push_back(flight::Ticket{nlohmann::json{{"table", "bench"}, {"keys", set}}.dump()});
  }

  // 1. DoGet latency.
  auto fetch = [&](const flight::Ticket& ticket) {
    auto stream = Check(client->DoGet(ticket), "DoGet");
    int64_t got = 0;
    for (;;) {
      auto chunk = Check(stream->Next(), "DoGet read");
      if (!chunk.data) break;
      got += chunk.data->num_rows();
    }
    return got;
  };
  if (fetch(tickets[0]) != 1000) {
    std::fprintf(stderr, "DoGet returned the wrong number of rows\n");
    return 1;
  }
  for (int i = 0; i < 500; ++i) fetch(tickets[i % 256]);  // warm-up
  std::vector<double> micros;
  for (int i = 0; i < requests; ++i) {
    const auto start = Clock::now();
    fetch(tickets[i % 256]);
    micros.push_back(Seconds(start) * 1e6);
  }
  bench::PrintPercentiles("DoGet 1000 keys x 10 float32 (1 connection)", micros);

  // 2. DoExchange: one stream, batches of 1000 keys.
  std::vector<std::shared_ptr<arrow::RecordBatch>> key_batches;
  for (const auto& set : key_sets) key_batches.push_back(KeyBatch(set));
  auto exchange =
      Check(client->DoExchange(flight::FlightDescriptor::Path({"bench"})), "DoExchange");
  Check(exchange.writer->Begin(key_batches[0]->schema()), "DoExchange begin");
  // One batch at a time first: the round trip of a batch in an open stream.
  std::vector<double> round_trips;
  for (int i = 0; i < 2000; ++i) {
    const auto start = Clock::now();
    Check(exchange.writer->WriteRecordBatch(*key_batches[i % 256]), "DoExchange write");
    auto chunk = Check(exchange.reader->Next(), "DoExchange read");
    if (!chunk.data || chunk.data->num_rows() != 1000) {
      std::fprintf(stderr, "DoExchange returned a wrong batch\n");
      return 1;
    }
    if (i >= 200) round_trips.push_back(Seconds(start) * 1e6);
  }
  bench::PrintPercentiles("DoExchange 1000 keys, one batch in flight", round_trips);
  // Then pipelined: the writer runs ahead (bounded by gRPC flow control).
  std::atomic<bool> stop{false};
  std::atomic<int64_t> sent{0};
  std::thread writer([&] {
    for (int64_t i = 0; !stop.load(); ++i) {
      Check(exchange.writer->WriteRecordBatch(*key_batches[i % 256]), "DoExchange write");
      sent.fetch_add(1);
    }
    Check(exchange.writer->DoneWriting(), "DoExchange done");
  });
  int64_t received = 0, keys = 0;
  const auto start = Clock::now();
  double elapsed = 0;
  for (;;) {
    auto chunk = Check(exchange.reader->Next(), "DoExchange read");
    if (!chunk.data) break;
    ++received;
    keys += chunk.data->num_rows();
    if (elapsed == 0 && Seconds(start) >= seconds) {
      elapsed = Seconds(start);
      const int64_t keys_in_time = keys;
      std::printf(
          "DoExchange pipelined, 1000-key batches, 1 stream: %.2f M keys/s "
          "(%.0f batches/s)\n",
          keys_in_time / elapsed / 1e6, received / elapsed);
      stop.store(true);
    }
  }
  writer.join();
  Check(exchange.writer->Close(), "DoExchange close");
  if (received != sent.load()) {
    std::fprintf(stderr, "DoExchange: %lld batches sent, %lld answered\n",
                 static_cast<long long>(sent.load()), static_cast<long long>(received));
    return 1;
  }
  client.reset();
  return server.Stop() ? 0 : 1;
}
