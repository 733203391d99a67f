// Router: maps an HTTP request to a catalog operation and its result to a response (the routes
// of docs/http.md). Protocol concerns only: decoding, content negotiation, error mapping; the
// work is the engine's.
//
// Thread safety: Handle may be called from any number of threads at once.
#pragma once

#include "engine/catalog.h"
#include "server/http/http_errors.h"

namespace quiver::http_server {

class Router {
 public:
  explicit Router(Catalog& catalog) : catalog_(catalog) {}

  // Never throws; every failure becomes an error response.
  HttpResponse Handle(const HttpRequest& request) const;

 private:
  HttpResponse ListTables(const HttpRequest& request) const;
  HttpResponse GetSchema(const HttpRequest& request, std::string_view table) const;
  HttpResponse CreateTable(const HttpRequest& request, std::string_view table) const;
  HttpResponse DropTable(const HttpRequest& request, std::string_view table) const;
  HttpResponse Fetch(const HttpRequest& request, std::string_view table,
                     std::string_view query) const;
  HttpResponse Write(const HttpRequest& request, std::string_view table) const;
  HttpResponse Delete(const HttpRequest& request, std::string_view table) const;

  Catalog& catalog_;
};

}  // namespace quiver::http_server
