#include "server/flight/flight_server.h"

#include <arpa/inet.h>
#include <arrow/api.h>
#include <arrow/flight/api.h>
#include <arrow/util/align_util.h>
#include <arrow/util/byte_size.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/arrow_status.h"
#include "common/byte_size.h"
#include "common/json_shape.h"
#include "common/log.h"
#include "server/codec/codec.h"
#include "server/snapshot_json.h"

namespace quiver::flight_server {

namespace flight = arrow::flight;
using Json = nlohmann::ordered_json;  // keeps a schema's column order
using Clock = std::chrono::steady_clock;

namespace {

// Quiver's code as the Arrow status that Flight turns into the matching gRPC code.
arrow::Status ToArrow(const Status& status) {
  const std::string& message = status.message();
  switch (status.code()) {
    case StatusCode::kOk:
      return arrow::Status::OK();
    case StatusCode::kInvalidArgument:
    case StatusCode::kLimitExceeded:
      return arrow::Status::Invalid(message);  // INVALID_ARGUMENT
    case StatusCode::kNotFound:
      return arrow::Status::KeyError(message);  // NOT_FOUND
    case StatusCode::kAlreadyExists:
      return arrow::Status::AlreadyExists(message);  // ALREADY_EXISTS
    case StatusCode::kNotImplemented:
      return arrow::Status::NotImplemented(message);  // UNIMPLEMENTED
    case StatusCode::kOutOfMemory:
      // gRPC has no code Arrow maps an OutOfMemory status to (it arrives as UNKNOWN): the
      // error's extra info names it, for clients to tell (pyarrow: FlightError.extra_info).
      return flight::MakeFlightError(flight::FlightStatusCode::Failed, message, "OUT_OF_MEMORY");
    case StatusCode::kReadOnly:  // a follower; the extra info names it, as for OUT_OF_MEMORY
      return flight::MakeFlightError(flight::FlightStatusCode::Unavailable, message, "READ_ONLY");
    case StatusCode::kIOError:  // the disk failed a write (the message says so); reads go on
    case StatusCode::kCorruption:
    case StatusCode::kInternal:
      break;
  }
  return flight::MakeFlightError(flight::FlightStatusCode::Internal, message);
}

std::string_view BufferView(const std::shared_ptr<arrow::Buffer>& buffer) {
  if (!buffer) return {};
  return {reinterpret_cast<const char*>(buffer->data()), static_cast<size_t>(buffer->size())};
}

flight::Result JsonResult(const Json& json) {
  flight::Result result;
  result.body = arrow::Buffer::FromString(json.dump());
  return result;
}

// A batch from the network, checked before the engine sees it: every offset in bounds, valid
// UTF-8, and each buffer aligned for its type (gRPC hands out bytes at any address).
Result<std::shared_ptr<arrow::RecordBatch>> CheckBatch(std::shared_ptr<arrow::RecordBatch> batch,
                                                       int64_t index) {
  const std::string where = "batch " + std::to_string(index);
  arrow::Status valid = batch->ValidateFull();
  if (!valid.ok())
    return Status::InvalidArgument(where + ": invalid Arrow data: " + valid.message());
  auto aligned = arrow::util::EnsureAlignment(std::move(batch), arrow::util::kValueAlignment,
                                              arrow::default_memory_pool());
  if (!aligned.ok()) return FromArrow(aligned.status()).WithContext(where);
  return std::move(aligned).ValueUnsafe();
}

// The next batch of a client's stream, skipping metadata-only messages; null at the end.
Result<std::shared_ptr<arrow::RecordBatch>> NextBatch(flight::FlightMessageReader& reader,
                                                      int64_t index) {
  for (;;) {
    auto chunk = reader.Next();
    if (!chunk.ok()) {
      return Status::InvalidArgument("batch " + std::to_string(index) +
                                     ": bad Arrow stream: " + chunk.status().message());
    }
    if (chunk->data) return CheckBatch(std::move(chunk->data), index);
    if (!chunk->app_metadata) return std::shared_ptr<arrow::RecordBatch>();  // end of stream
  }
}

// The scan of a whole table, keeping the key and the named columns.
class ProjectedReader : public arrow::RecordBatchReader {
 public:
  ProjectedReader(std::shared_ptr<arrow::RecordBatchReader> input, std::vector<int> indices,
                  std::shared_ptr<arrow::Schema> schema)
      : input_(std::move(input)), indices_(std::move(indices)), schema_(std::move(schema)) {}

  std::shared_ptr<arrow::Schema> schema() const override { return schema_; }
  arrow::Status ReadNext(std::shared_ptr<arrow::RecordBatch>* batch) override {
    std::shared_ptr<arrow::RecordBatch> next;
    ARROW_RETURN_NOT_OK(input_->ReadNext(&next));
    if (!next) {
      *batch = nullptr;
      return arrow::Status::OK();
    }
    ARROW_ASSIGN_OR_RAISE(*batch, next->SelectColumns(indices_));
    return arrow::Status::OK();
  }

 private:
  std::shared_ptr<arrow::RecordBatchReader> input_;
  std::vector<int> indices_;
  std::shared_ptr<arrow::Schema> schema_;
};

// gRPC listens with SO_REUSEPORT, so binding a port another process holds the same way would
// succeed and share it. Probe with a plain socket first, for a clear error instead.
Status CheckPortFree(const std::string& bind, uint16_t port) {
  if (port == 0) return Status::OK();
  sockaddr_storage address{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
  if (inet_pton(AF_INET, bind.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    length = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, bind.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    length = sizeof(sockaddr_in6);
  } else {
    return Status::InvalidArgument("bind address '" + bind + "' is not an IP address");
  }
  const int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError(std::string("socket: ") + std::strerror(errno));
  const int yes = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));  // as gRPC: TIME_WAIT is fine
  const int bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), length);
  const int error = errno;
  close(fd);
  if (bound == 0) return Status::OK();
  return Status::IOError("cannot listen for Arrow Flight on " + bind + ":" + std::to_string(port) +
                         ": " + std::strerror(error) +
                         (error == EADDRINUSE
                              ? " (another process uses this port; pick another with --flight-port)"
                              : ""));
}

constexpr int64_t kMaxBatchRows = 65536;  // DoGet answers in batches of at most this many rows

}  // namespace

class FlightServer::Service : public flight::FlightServerBase {
 public:
  Service(storage::Database& database, MetricsRegistry& metrics)
      : catalog_(database.catalog()), database_(database), metrics_(metrics) {
    metrics_.Describe("quiver_flight_requests_total", "counter",
                      "Arrow Flight calls answered, by method and status code");
    metrics_.Describe("quiver_flight_request_duration_seconds", "histogram",
                      "Time of an Arrow Flight call (a whole stream for DoPut / DoExchange)");
  }

  arrow::Status ListFlights(const flight::ServerCallContext&, const flight::Criteria*,
                            std::unique_ptr<flight::FlightListing>* listings) override {
    return Answer("ListFlights", [&]() -> Status {
      std::vector<flight::FlightInfo> flights;
      for (const auto& table : catalog_.Tables()) {
        QUIVER_ASSIGN_OR_RETURN(flight::FlightInfo info, InfoFor(*table));
        flights.push_back(std::move(info));
      }
      *listings = std::make_unique<flight::SimpleFlightListing>(std::move(flights));
      return Status::OK();
    });
  }

  arrow::Status GetFlightInfo(const flight::ServerCallContext&,
                              const flight::FlightDescriptor& descriptor,
                              std::unique_ptr<flight::FlightInfo>* info) override {
    return Answer("GetFlightInfo", [&]() -> Status {
      QUIVER_ASSIGN_OR_RETURN(codec::FetchTicket target, Resolve(descriptor, false));
      QUIVER_ASSIGN_OR_RETURN(flight::FlightInfo made, InfoFor(*target.table));
      *info = std::make_unique<flight::FlightInfo>(std::move(made));
      return Status::OK();
    });
  }

  arrow::Status GetSchema(const flight::ServerCallContext&,
                          const flight::FlightDescriptor& descriptor,
                          std::unique_ptr<flight::SchemaResult>* schema) override {
    return Answer("GetSchema", [&]() -> Status {
      QUIVER_ASSIGN_OR_RETURN(codec::FetchTicket target, Resolve(descriptor, false));
      QUIVER_ASSIGN_OR_RETURN_ARROW(*schema,
                                    flight::SchemaResult::Make(*target.table->schema().ToArrow()));
      return Status::OK();
    });
  }

  arrow::Status DoGet(const flight::ServerCallContext&, const flight::Ticket& ticket,
                      std::unique_ptr<flight::FlightDataStream>* stream) override {
    return Answer("DoGet", [&]() -> Status {
      QUIVER_ASSIGN_OR_RETURN(codec::FetchTicket request,
                              codec::ParseFetchTicket(ticket.ticket, FindTable()));
      if (request.ttl_ms != 0 || request.cast) return TtlIsForWrites();
      std::shared_ptr<arrow::RecordBatchReader> reader;
      if (request.keys) {
        QUIVER_ASSIGN_OR_RETURN(
            ReadResult result,
            request.table->Read(*request.keys, request.columns, ReadOptions{request.with_ttl}));
        QUIVER_ASSIGN_OR_RETURN(auto batch, codec::FetchResultBatch(result, request.found_column));
        arrow::RecordBatchVector slices;
        for (int64_t offset = 0; offset < batch->num_rows(); offset += kMaxBatchRows) {
          slices.push_back(batch->Slice(offset, kMaxBatchRows));
        }
        QUIVER_ASSIGN_OR_RETURN_ARROW(reader,
                                      arrow::RecordBatchReader::Make(slices, batch->schema()));
      } else {
        QUIVER_ASSIGN_OR_RETURN(reader, ScanReader(request));
      }
      *stream = std::make_unique<flight::RecordBatchStream>(reader);
      return Status::OK();
    });
  }

  arrow::Status DoPut(const flight::ServerCallContext&,
                      std::unique_ptr<flight::FlightMessageReader> reader,
                      std::unique_ptr<flight::FlightMetadataWriter> writer) override {
    return Answer("DoPut", [&]() -> Status {
      QUIVER_ASSIGN_OR_RETURN(codec::FetchTicket target,
                              Resolve(reader->descriptor(), false, /*write=*/true));
      for (int64_t index = 0;; ++index) {
        QUIVER_ASSIGN_OR_RETURN(auto batch, NextBatch(*reader, index));
        if (!batch) return Status::OK();
        // A batch as received may hold far more than gRPC carried (compressed buffers): what
        // an HTTP body may decode to is the most a batch may be, checked before it is logged.
        const uint64_t max_bytes = catalog_.options().limits.max_decode_bytes;
        if (const auto bytes = static_cast<uint64_t>(arrow::util::TotalBufferSize(*batch));
            bytes > max_bytes) {
          return Status::LimitExceeded("batch " + std::to_string(index) + " holds " +
                                       FormatBytes(bytes) + ", more than --max-decode-bytes (" +
                                       FormatBytes(max_bytes) +
                                       "); send smaller batches (batches before it were written)");
        }
        auto written = target.table->Upsert(*batch, WriteOptions{target.ttl_ms, target.cast});
        if (!written.ok()) {
          return written.status().WithContext("batch " + std::to_string(index) + " (batches " +
                                              "before it were written)");
        }
        const Json reply = {{"batch", index},
                            {"rows_written", written->rows_written},
                            {"rows_skipped", written->rows_skipped}};
        QUIVER_RETURN_NOT_OK_ARROW(writer->WriteMetadata(*arrow::Buffer::FromString(reply.dump())));
      }
    });
  }

  arrow::Status DoExchange(const flight::ServerCallContext&,
                           std::unique_ptr<flight::FlightMessageReader> reader,
                           std::unique_ptr<flight::FlightMessageWriter> writer) override {
    return Answer("DoExchange", [&]() -> Status {
      QUIVER_ASSIGN_OR_RETURN(codec::FetchTicket target, Resolve(reader->descriptor(), true));
      QUIVER_ASSIGN_OR_RETURN(auto schema, target.table->ReadSchema(target.columns));
      QUIVER_ASSIGN_OR_RETURN(
          schema, codec::FetchResultSchema(schema, target.found_column, target.with_ttl));
      QUIVER_RETURN_NOT_OK_ARROW(writer->Begin(schema));
      for (int64_t index = 0;; ++index) {
        QUIVER_ASSIGN_OR_RETURN(auto keys, NextBatch(*reader, index));
        if (!keys) return Status::OK();
        const std::string what = "key batch " + std::to_string(index);
        QUIVER_ASSIGN_OR_RETURN(auto key_array,
                                codec::KeysFromColumns(keys->columns(), keys->schema()->fields(),
                                                       target.table->schema(), what));
        auto result = target.table->Read(*key_array, target.columns, ReadOptions{target.with_ttl});
        if (!result.ok()) return result.status().WithContext("batch " + std::to_string(index));
        QUIVER_ASSIGN_OR_RETURN(auto batch, codec::FetchResultBatch(*result, target.found_column));
        QUIVER_RETURN_NOT_OK_ARROW(writer->WriteRecordBatch(*batch));
      }
    });
  }

  arrow::Status ListActions(const flight::ServerCallContext&,
                            std::vector<flight::ActionType>* actions) override {
    *actions = {
        {"create_table",
         "Create a table. Body: {\"table\": NAME, \"schema\": TableSchema}. Result: the "
         "TableSchema as stored. ALREADY_EXISTS when the table exists."},
        {"drop_table", "Drop a table and its data. Body: {\"table\": NAME}."},
        {"alter_table",
         "Change a table's schema online. Body: {\"table\": NAME, \"change\": {\"add\", "
         "\"drop\", \"rename\", \"alter\", \"ttl\"} (any subset, docs/schema.md)}. Result: the "
         "TableSchema after the change."},
        {"describe_table",
         "A table's row count, bytes, key, TTL and columns. Body: {\"table\": NAME}. Result: "
         "{\"name\", \"rows\", \"bytes\", \"key\", \"ttl\", \"columns\", \"schema\", ...}."},
        {"delete",
         "Delete keys. Body: {\"table\": NAME, \"keys\": [...]}. Result: {\"deleted\": N}, "
         "the number that were present."},
        {"stats",
         "Rows and bytes. Body: {\"table\": NAME} for one table, or empty / {} for all. "
         "Result: {\"tables\": [{\"table\", \"rows\", \"bytes\", ...}]}."},
        {"snapshot",
         "Save tables to the data directory now (then drop the log they no longer need). Body: "
         "{\"tables\": [NAME, ...]}, or empty / {} for every table. Result: {\"tables\": "
         "[{\"table\", \"written\", \"rows\", \"bytes\", \"lsn\", \"seconds\"}], "
         "\"wal_segments_removed\", \"seconds\"}."},
    };
    return arrow::Status::OK();
  }

  arrow::Status DoAction(const flight::ServerCallContext&, const flight::Action& action,
                         std::unique_ptr<flight::ResultStream>* stream) override {
    return Answer("DoAction", [&]() -> Status {
      QUIVER_ASSIGN_OR_RETURN(Json result, RunAction(action.type, BufferView(action.body)));
      std::vector<flight::Result> results;
      results.push_back(JsonResult(result));
      *stream = std::make_unique<flight::SimpleResultStream>(std::move(results));
      return Status::OK();
    });
  }

 private:
  // Runs one RPC body, counts it, and turns its Status into Flight's (exceptions included: a bug
  // or bad_alloc fails the call, not the server).
  template <typename Body>
  arrow::Status Answer(const char* method, Body&& body) {
    const auto start = Clock::now();
    Status status;
    try {
      status = body();
    } catch (const std::exception& e) {
      QUIVER_LOG(kError, "flight call failed", {{"method", method}, {"error", e.what()}});
      status = Status::Internal(std::string("unexpected exception: ") + e.what());
    }
    metrics_
        .Counter("quiver_flight_requests_total",
                 {{"method", method}, {"code", std::string(StatusCodeName(status.code()))}})
        .Increment();
    static const std::vector<double> kBounds = {25e-6,  50e-6, 100e-6, 250e-6, 500e-6, 1e-3,
                                                2.5e-3, 5e-3,  10e-3,  25e-3,  100e-3, 1.0};
    metrics_.Histogram("quiver_flight_request_duration_seconds", {{"method", method}}, kBounds)
        .Observe(std::chrono::duration<double>(Clock::now() - start).count());
    return ToArrow(status);
  }

  static Status TtlIsForWrites() {
    return Status::InvalidArgument(
        "\"ttl\" and \"cast\" belong to writes (DoPut), not to this call");
  }

  std::function<Result<std::shared_ptr<Table>>(std::string_view)> FindTable() const {
    return [this](std::string_view name) { return catalog_.GetTable(name); };
  }

  // A descriptor names a table: PATH [table] (then, where `columns` is allowed, the wanted
  // columns: [table, column, ...]) or CMD, a JSON object {"table", "columns", "found"}, or for
  // a write (DoPut) {"table", "ttl", "cast"}.
  Result<codec::FetchTicket> Resolve(const flight::FlightDescriptor& descriptor, bool columns,
                                     bool write = false) const {
    codec::FetchTicket target;
    if (descriptor.type == flight::FlightDescriptor::PATH) {
      if (descriptor.path.empty()) {
        return Status::InvalidArgument("the descriptor path is empty; it names a table");
      }
      QUIVER_ASSIGN_OR_RETURN(target.table, catalog_.GetTable(descriptor.path[0]));
      target.columns.assign(descriptor.path.begin() + 1, descriptor.path.end());
    } else if (descriptor.type == flight::FlightDescriptor::CMD) {
      QUIVER_ASSIGN_OR_RETURN(
          target, codec::ParseFetchTicket(descriptor.cmd, FindTable(), "the descriptor's command"));
      if (target.keys) {
        return Status::InvalidArgument("this descriptor names a table and columns, not keys");
      }
    } else {
      return Status::InvalidArgument("the descriptor has no type; use a path [table]");
    }
    if (!columns && (!target.columns.empty() || target.found_column || target.with_ttl)) {
      return Status::InvalidArgument(
          "this call takes a descriptor that names only the table: path [table]");
    }
    if (!write && (target.ttl_ms != 0 || target.cast)) return TtlIsForWrites();
    return target;
  }

  Result<flight::FlightInfo> InfoFor(const Table& table) const {
    const TableStats stats = table.Stats();
    flight::FlightEndpoint endpoint;
    endpoint.ticket.ticket = Json{{"table", table.name()}}.dump();  // the whole table
    QUIVER_ASSIGN_OR_RETURN_ARROW(
        flight::FlightInfo info,
        flight::FlightInfo::Make(*table.schema().ToArrow(),
                                 flight::FlightDescriptor::Path({table.name()}), {endpoint},
                                 stats.rows, static_cast<int64_t>(stats.bytes)));
    return info;
  }

  // Every row of the ticket's table: the key and the named columns (all when none are named).
  Result<std::shared_ptr<arrow::RecordBatchReader>> ScanReader(
      const codec::FetchTicket& request) const {
    if (request.found_column) {
      return Status::InvalidArgument("\"found\" needs \"keys\": a scan returns only present rows");
    }
    if (request.with_ttl) return Status::InvalidArgument("\"with_ttl\" needs \"keys\"");
    QUIVER_ASSIGN_OR_RETURN(auto reader, request.table->Scan(kMaxBatchRows));
    if (request.columns.empty()) return reader;
    const TableSchema& schema = request.table->schema();
    // The key column(s), then those asked for (a scan's columns are in schema order).
    std::vector<int> indices = schema.key_columns();
    for (const std::string& name : request.columns) {
      const int column = schema.FindColumn(name);
      if (column < 0) {
        return Status::NotFound("table '" + request.table->name() + "' has no column '" + name +
                                "'");
      }
      if (!schema.IsKeyColumn(column)) indices.push_back(column);
    }
    arrow::FieldVector fields;
    for (int index : indices) fields.push_back(reader->schema()->field(index));
    return std::shared_ptr<arrow::RecordBatchReader>(std::make_shared<ProjectedReader>(
        std::move(reader), std::move(indices), arrow::schema(fields)));
  }

  Result<Json> RunAction(const std::string& type, std::string_view body) const {
    // An action body holds at most a schema: as many members as a table has columns. The cap
    // comes first: an ordered_json object takes time quadratic in its members.
    const std::string what = "the body of action '" + Excerpt(type, 64) + "'";
    QUIVER_RETURN_NOT_OK(CheckJsonShape(
        body, what,
        {.max_object_members = static_cast<size_t>(catalog_.options().limits.max_columns) + 8}));
    Json json = body.empty() ? Json::object() : Json::parse(body, nullptr, false);
    if (json.is_discarded() || !json.is_object()) {
      return Status::InvalidArgument("the body of action '" + type + "' is not a JSON object");
    }
    auto table_name = [&]() -> Result<std::string> {
      auto name = json.find("table");
      if (name == json.end() || !name->is_string()) {
        return Status::InvalidArgument("action '" + type + "' needs \"table\" (a string)");
      }
      return name->get<std::string>();
    };
    if (type == "create_table") {
      QUIVER_ASSIGN_OR_RETURN(std::string name, table_name());
      auto schema_json = json.find("schema");
      if (schema_json == json.end() || !schema_json->is_object()) {
        return Status::InvalidArgument("action 'create_table' needs \"schema\" (a TableSchema)");
      }
      QUIVER_ASSIGN_OR_RETURN(TableSchema schema, TableSchema::FromJson(schema_json->dump(),
                                                                        catalog_.options().limits));
      QUIVER_ASSIGN_OR_RETURN(auto table, catalog_.CreateTable(name, std::move(schema)));
      return Json::parse(table->schema().ToJson());
    }
    if (type == "drop_table") {
      QUIVER_ASSIGN_OR_RETURN(std::string name, table_name());
      QUIVER_RETURN_NOT_OK(catalog_.DropTable(name));
      return Json{{"dropped", name}};
    }
    if (type == "alter_table") {
      QUIVER_ASSIGN_OR_RETURN(std::string name, table_name());
      auto change_json = json.find("change");
      if (change_json == json.end() || !change_json->is_object()) {
        return Status::InvalidArgument(
            "action 'alter_table' needs \"change\" (an object of add, drop, rename, alter, ttl)");
      }
      QUIVER_ASSIGN_OR_RETURN(
          SchemaChange change,
          SchemaChange::FromJson(change_json->dump(), catalog_.options().limits));
      QUIVER_ASSIGN_OR_RETURN(auto table, catalog_.AlterTable(name, change));
      return Json::parse(table->schema().ToJson());
    }
    if (type == "describe_table") {
      QUIVER_ASSIGN_OR_RETURN(std::string name, table_name());
      QUIVER_ASSIGN_OR_RETURN(auto table, catalog_.GetTable(name));
      return Json::parse(codec::TableInfoToJson(*table));
    }
    if (type == "delete") {
      QUIVER_ASSIGN_OR_RETURN(std::string name, table_name());
      QUIVER_ASSIGN_OR_RETURN(auto table, catalog_.GetTable(name));
      QUIVER_ASSIGN_OR_RETURN(auto keys, codec::ParseJsonKeys(body, table->schema()));
      QUIVER_ASSIGN_OR_RETURN(int64_t deleted, table->Delete(*keys));
      return Json{{"deleted", deleted}};
    }
    if (type == "snapshot") {
      QUIVER_ASSIGN_OR_RETURN(std::vector<std::string> tables, codec::ParseSnapshotRequest(body));
      QUIVER_ASSIGN_OR_RETURN(storage::SnapshotReport report, database_.Snapshot(tables));
      return Json::parse(server::SnapshotReportToJson(report));
    }
    if (type == "stats") {
      std::vector<std::shared_ptr<Table>> tables;
      if (json.contains("table")) {
        QUIVER_ASSIGN_OR_RETURN(std::string name, table_name());
        QUIVER_ASSIGN_OR_RETURN(auto table, catalog_.GetTable(name));
        tables.push_back(std::move(table));
      } else {
        tables = catalog_.Tables();
      }
      Json list = Json::array();
      for (const auto& table : tables) {
        const TableStats stats = table->Stats();
        list.push_back({{"table", table->name()},
                        {"rows", stats.rows},
                        {"bytes", stats.bytes},
                        {"row_bytes", stats.row_bytes},
                        {"index_bytes", stats.index_bytes},
                        {"heap_bytes", stats.heap_bytes},
                        {"heap_garbage_bytes", stats.heap_garbage_bytes},
                        {"heap_compactions", stats.heap_compactions},
                        {"heap_moved_bytes", stats.heap_moved_bytes},
                        {"rows_with_ttl", stats.rows_with_ttl},
                        {"expired", stats.expired},
                        {"evicted", stats.evicted},
                        {"used_bytes", stats.used_bytes}});
      }
      return Json{{"tables", std::move(list)}};
    }
    return Status::NotImplemented("no action '" + type +
                                  "'; ListActions names them: create_table, drop_table, delete, "
                                  "stats, snapshot");
  }

  Catalog& catalog_;
  storage::Database& database_;
  MetricsRegistry& metrics_;
};

Result<std::unique_ptr<FlightServer>> FlightServer::Start(const FlightServerOptions& options,
                                                          storage::Database& database,
                                                          MetricsRegistry& metrics) {
  QUIVER_RETURN_NOT_OK(CheckPortFree(options.bind, options.port));
  auto location = flight::Location::ForGrpcTcp(options.bind, options.port);
  if (!location.ok()) {
    return Status::InvalidArgument("bind address '" + options.bind +
                                   "': " + location.status().message());
  }
  std::unique_ptr<FlightServer> server(new FlightServer());
  server->service_ = std::make_unique<Service>(database, metrics);
  arrow::Status started = server->service_->Init(flight::FlightServerOptions(*location));
  if (!started.ok()) {
    return Status::IOError("cannot listen for Arrow Flight on " + options.bind + ":" +
                           std::to_string(options.port) + ": " + started.message());
  }
  server->port_ = static_cast<uint16_t>(server->service_->port());
  return server;
}

FlightServer::~FlightServer() { Stop(); }

void FlightServer::Stop() {
  if (stopped_ || !service_) return;
  stopped_ = true;
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);
  arrow::Status status = service_->Shutdown(&deadline);
  if (status.ok()) status = service_->Wait();
  if (!status.ok()) QUIVER_LOG(kWarn, "flight shutdown", {{"error", status.message()}});
}

}  // namespace quiver::flight_server
