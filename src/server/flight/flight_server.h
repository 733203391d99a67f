// FlightServer: quiverd's Arrow Flight front end (docs/flight.md), on the Flight library of the
// pinned pyarrow wheel (gRPC inside it, with its own thread pool).
//
//   ListFlights / GetFlightInfo / GetSchema   one flight per table, the table's Arrow schema
//   DoGet      murr's ticket {"table", "keys", "columns"} -> the rows, request order
//   DoPut      descriptor path [table] + batches -> each batch upserted atomically
//   DoExchange batches of keys in -> one batch of features out per batch in
//   DoAction   create_table, drop_table, delete, stats (ListActions describes them)
//
// Errors: Quiver's StatusCode becomes the Flight / gRPC code (NOT_FOUND, INVALID_ARGUMENT,
// ALREADY_EXISTS, ...) with the same message HTTP gives.
//
// Thread safety: Start and Stop from one controlling thread; RPCs run on gRPC's threads against
// the thread-safe Catalog.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/result.h"
#include "engine/catalog.h"
#include "storage/database.h"

namespace quiver::flight_server {

struct FlightServerOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 8081;  // 0: any free port (port() tells which)
};

class FlightServer {
 public:
  // Binds and starts serving; an address in use is an IOError saying so.
  static Result<std::unique_ptr<FlightServer>> Start(const FlightServerOptions& options,
                                                     storage::Database& database,
                                                     MetricsRegistry& metrics);
  ~FlightServer();
  FlightServer(const FlightServer&) = delete;
  FlightServer& operator=(const FlightServer&) = delete;

  uint16_t port() const { return port_; }
  // Stops accepting calls, lets calls in flight finish (up to 10 s), then returns.
  void Stop();

 private:
  class Service;

  FlightServer() = default;

  std::unique_ptr<Service> service_;
  uint16_t port_ = 0;
  bool stopped_ = false;
};

}  // namespace quiver::flight_server
