// HTTP benchmark (docs/benchmarks.md): starts the real quiverd on a free loopback port, loads
// BENCH_ROWS (default 10,000,000) rows of 8-character keys x 10 float32 through
// PUT /api/v1/table/{name}/write (Arrow IPC bodies of 2^20 rows), then:
//
//   1. latency: POST /fetch of 1000 random keys x all 10 columns, Accept: Arrow IPC, on one
//      keep-alive connection, timed from the first byte sent to the last byte received;
//      keys sent as an Arrow IPC stream, then as murr's JSON body. p50 / p99 / p999.
//   2. throughput: the same IPC request on 16 connections (16 client threads) for 5 s.
//
//   http_benchmark [--quiverd PATH] [--requests N] [--connections C] [--seconds S]
#include <arrow/api.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/writer.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_server.h"

namespace {

namespace bench = quiver::bench;

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr char kArrow[] = "application/vnd.apache.arrow.stream";

std::string IpcBytes(const std::shared_ptr<arrow::RecordBatch>& batch) {
  auto sink = arrow::io::BufferOutputStream::Create().ValueOrDie();
  auto writer = arrow::ipc::MakeStreamWriter(sink, batch->schema()).ValueOrDie();
  if (!writer->WriteRecordBatch(*batch).ok() || !writer->Close().ok()) std::abort();
  return sink->Finish().ValueOrDie()->ToString();
}

class Client {
 public:
  explicit Client(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    socket_.set_option(tcp::no_delay(true));
    buffer_.reserve(64 << 10);  // Beast reads into free capacity: room for 64 KiB a read
  }
  // Sends `request`, reads the whole response; returns its status.
  int Send(http::request<http::string_body>& request, std::string* body = nullptr) {
    http::write(socket_, request);
    http::response_parser<http::string_body> parser;
    parser.body_limit(1ull << 32);
    http::read(socket_, buffer_, parser);
    if (body) *body = parser.get().body();
    return parser.get().result_int();
  }

 private:
  net::io_context io_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

http::request<http::string_body> MakeRequest(http::verb verb, const std::string& target,
                                             const std::string& content_type, std::string body) {
  http::request<http::string_body> request(verb, target, 11);
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::content_type, content_type);
  request.set(http::field::accept, kArrow);
  request.body() = std::move(body);
  request.keep_alive(true);
  request.prepare_payload();
  return request;
}

// The server's own account of fetches so far: {seconds inside the handler, count}, from the
// quiver_http_request_duration_seconds histogram of /metrics.
std::pair<double, double> ServerFetchTime(Client& client) {
  http::request<http::string_body> metrics(http::verb::get, "/metrics", 11);
  metrics.set(http::field::host, "127.0.0.1");
  std::string text;
  client.Send(metrics, &text);
  auto value = [&](const std::string& series) {
    const std::string prefix = series + "{route=\"/api/v1/table/{name}/fetch\"} ";
    const size_t at = text.find(prefix);
    return at == std::string::npos ? 0.0 : std::atof(&text[at + prefix.size()]);
  };
  return {value("quiver_http_request_duration_seconds_sum"),
          value("quiver_http_request_duration_seconds_count")};
}

}  // namespace

int main(int argc, char** argv) {
  std::string quiverd = (std::filesystem::path(argv[0]).parent_path() / ".." / "quiverd").string();
  int requests = 20000, connections = 16, seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--quiverd") quiverd = argv[i + 1];
    if (flag == "--requests") requests = std::atoi(argv[i + 1]);
    if (flag == "--connections") connections = std::atoi(argv[i + 1]);
    if (flag == "--seconds") seconds = std::atoi(argv[i + 1]);
  }
  const int64_t rows = bench::EnvRows();

  bench::Quiverd server(quiverd, {"--max-request-bytes", "1gb", "--max-connections", "4096"});
  const uint16_t port = server.http_port();
  std::unique_ptr<Client> client;
  for (int attempt = 0; !client; ++attempt) {
    try {
      client = std::make_unique<Client>(port);
    } catch (const std::exception&) {
      if (attempt > 500) {
        std::fprintf(stderr, "quiverd did not start\n");
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  auto create = MakeRequest(http::verb::put, "/api/v1/table/bench", "application/json",
                            bench::TableSchemaJson());
  if (client->Send(create) != 201) {
    std::fprintf(stderr, "create failed\n");
    return 1;
  }
  const auto load_start = Clock::now();
  std::mt19937 rng(1);
  for (int64_t first = 0; first < rows; first += 1 << 20) {
    const int64_t count = std::min<int64_t>(1 << 20, rows - first);
    auto write = MakeRequest(http::verb::put, "/api/v1/table/bench/write", kArrow,
                             IpcBytes(bench::TableRows(first, count, rng)));
    if (client->Send(write) != 200) {
      std::fprintf(stderr, "write failed\n");
      return 1;
    }
  }
  std::printf("loaded %lld rows through HTTP (Arrow IPC) in %.1f s\n", static_cast<long long>(rows),
              std::chrono::duration<double>(Clock::now() - load_start).count());

  // 256 key sets of 1000 random keys, as IPC and as JSON bodies.
  std::vector<http::request<http::string_body>> ipc_requests, json_requests;
  for (const auto& set : bench::RandomKeySets(256, 1000, rows)) {
    arrow::StringBuilder keys;
    std::string json = R"({"keys": [)";
    for (size_t k = 0; k < set.size(); ++k) {
      (void)keys.Append(set[k]);
      json += (k ? ",\"" : "\"") + set[k] + "\"";
    }
    json += "]}";
    auto batch =
        arrow::RecordBatch::Make(arrow::schema({arrow::field("key", arrow::utf8())}),
                                 static_cast<int64_t>(set.size()), {keys.Finish().ValueOrDie()});
    ipc_requests.push_back(
        MakeRequest(http::verb::post, "/api/v1/table/bench/fetch", kArrow, IpcBytes(batch)));
    json_requests.push_back(
        MakeRequest(http::verb::post, "/api/v1/table/bench/fetch", "application/json", json));
  }
  std::string body;
  if (client->Send(ipc_requests[0], &body) != 200 || body.size() < 40000) {
    std::fprintf(stderr, "fetch failed\n");
    return 1;
  }
  std::printf("response: %zu bytes of Arrow IPC (1000 rows x 10 float32)\n", body.size());

  for (auto* set : {&ipc_requests, &json_requests}) {
    for (int i = 0; i < 500; ++i) client->Send((*set)[i % 256]);  // warm-up
    std::vector<double> micros;
    const auto server_before = ServerFetchTime(*client);
    for (int i = 0; i < requests; ++i) {
      const auto start = Clock::now();
      client->Send((*set)[i % 256]);
      micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    bench::PrintPercentiles(set == &ipc_requests ? "fetch 1000 keys, IPC keys -> IPC (1 conn)"
                                                 : "fetch 1000 keys, JSON keys -> IPC (1 conn)",
                            micros);
    const auto server_after = ServerFetchTime(*client);
    std::printf("  of which inside quiverd's handler (decode, engine, encode): mean %.1f us\n",
                (server_after.first - server_before.first) /
                    (server_after.second - server_before.second) * 1e6);
  }

  std::atomic<int64_t> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      Client own(port);
      for (int i = c; !stop.load(); i += connections) {
        if (own.Send(ipc_requests[i % 256]) == 200) done.fetch_add(1);
      }
    });
  }
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop.store(true);
  for (auto& thread : threads) thread.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("throughput, %d connections, IPC keys -> IPC: %.0f requests/s (%.2f M keys/s)\n",
              connections, done.load() / elapsed, done.load() * 1000 / elapsed / 1e6);

  return server.Stop() ? 0 : 1;
}
