#include "server/http/http_errors.h"

#include <nlohmann/json.hpp>

namespace quiver::http_server {

namespace http = boost::beast::http;

http::status HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return http::status::ok;
    case StatusCode::kInvalidArgument:
      return http::status::bad_request;
    case StatusCode::kNotFound:
      return http::status::not_found;
    case StatusCode::kAlreadyExists:
      return http::status::conflict;
    case StatusCode::kLimitExceeded:
      return http::status::payload_too_large;
    case StatusCode::kOutOfMemory:
      return http::status::insufficient_storage;
    case StatusCode::kNotImplemented:
      return http::status::not_implemented;
    case StatusCode::kIOError:  // the disk failed a write: reads go on, writes may later succeed
      return http::status::service_unavailable;
    case StatusCode::kCorruption:
    case StatusCode::kInternal:
      return http::status::internal_server_error;
  }
  return http::status::internal_server_error;
}

HttpResponse ErrorResponse(const HttpRequest& request, http::status status, std::string_view code,
                           std::string_view message) {
  HttpResponse response(status, request.version());
  response.set(http::field::content_type, "application/json");
  nlohmann::json body = {{"error", message}, {"code", code}};
  // Invalid UTF-8 in a message (echoing a client's bytes) is replaced, never fatal.
  response.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

HttpResponse ErrorResponse(const HttpRequest& request, const Status& status) {
  return ErrorResponse(request, HttpStatusFor(status.code()), StatusCodeName(status.code()),
                       status.message());
}

}  // namespace quiver::http_server
