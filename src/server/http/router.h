// Router: maps an HTTP request to a catalog operation and its result to a response (the routes
// of docs/http.md). Protocol concerns only: decoding, content negotiation, error mapping; the
// work is the engine's.
//
// Thread safety: Handle may be called from any number of threads at once.
#pragma once

#include <boost/beast/http.hpp>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/metrics.h"
#include "engine/catalog.h"
#include "server/http/http_errors.h"
#include "storage/database.h"
#include "sync/parquet_sync.h"

namespace quiver::http_server {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

// An error response: `status` with {"error": message, "code": code}.
HttpResponse ErrorResponse(const HttpRequest& request, boost::beast::http::status status,
                           std::string_view code, std::string_view message);
// The error response for a failed engine Status (http_errors.h maps it).
HttpResponse ErrorResponse(const HttpRequest& request, const Status& status);

// A response body produced piece by piece after the headers (an export): sent chunked.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // The next bytes; empty at the end. An error cuts the response short (its headers are gone).
  virtual Result<std::string> Next() = 0;
};

class Router {
 public:
  // `metrics`: the registry GET /metrics renders (with table and process gauges).
  // `sync`: the Parquet sources of tables (null: the source routes answer 501).
  Router(storage::Database& database, const MetricsRegistry& metrics, sync::ParquetSync* sync)
      : catalog_(database.catalog()), database_(database), metrics_(metrics), sync_(sync) {}

  // Every failure becomes an error response. *route is set to the matched route's template
  // ("/api/v1/table/{name}/fetch", ...; "unmatched" for none), a metrics label. A route that
  // streams its body (export) sets *stream; the response then holds the status and headers.
  HttpResponse Handle(const HttpRequest& request, std::string_view* route,
                      std::unique_ptr<BodyStream>* stream) const;

 private:
  // What a route's handler gets from the request's target.
  struct RouteArgs {
    std::string table;                              // the {name} segment, percent-decoded
    std::string_view query;                         // after '?'
    std::unique_ptr<BodyStream>* stream = nullptr;  // set by a route whose body is streamed
  };
  // A row of the route table (router.cc, Routes()): adding a route is adding a row.
  struct Route {
    std::string_view path;  // "/api/v1/table/{name}/fetch": the metrics label too
    boost::beast::http::verb method;
    HttpResponse (*handle)(const Router& router, const HttpRequest& request, const RouteArgs& args);
  };
  static std::span<const Route> Routes();

  HttpResponse Metrics(const HttpRequest& request) const;
  HttpResponse ListTables(const HttpRequest& request) const;
  HttpResponse GetSchema(const HttpRequest& request, std::string_view table) const;
  HttpResponse CreateTable(const HttpRequest& request, std::string_view table) const;
  HttpResponse AlterTable(const HttpRequest& request, std::string_view table) const;
  HttpResponse DescribeTable(const HttpRequest& request, std::string_view table) const;
  HttpResponse DropTable(const HttpRequest& request, std::string_view table) const;
  HttpResponse Fetch(const HttpRequest& request, std::string_view table,
                     std::string_view query) const;
  HttpResponse Write(const HttpRequest& request, std::string_view table,
                     std::string_view query) const;
  HttpResponse Delete(const HttpRequest& request, std::string_view table) const;
  HttpResponse Snapshot(const HttpRequest& request, std::string_view query) const;
  HttpResponse Source(const HttpRequest& request, std::string_view table) const;
  HttpResponse Export(const HttpRequest& request, std::string_view table, std::string_view query,
                      std::unique_ptr<BodyStream>* stream) const;

  Catalog& catalog_;
  storage::Database& database_;
  const MetricsRegistry& metrics_;
  sync::ParquetSync* const sync_;
};

}  // namespace quiver::http_server
