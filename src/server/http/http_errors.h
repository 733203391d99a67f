// The one place where engine errors become HTTP errors: a StatusCode maps to an HTTP status, and
// the body is murr's error shape {"error": "<message>", "code": "<MACHINE_CODE>"}.
// Thread safety: pure functions.
#pragma once

#include <boost/beast/http.hpp>
#include <string_view>

#include "common/status.h"

namespace quiver::http_server {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;

boost::beast::http::status HttpStatusFor(StatusCode code);

// An error response: `status` with {"error": message, "code": code}.
HttpResponse ErrorResponse(const HttpRequest& request, boost::beast::http::status status,
                           std::string_view code, std::string_view message);
// The error response for a failed engine Status.
HttpResponse ErrorResponse(const HttpRequest& request, const Status& status);

}  // namespace quiver::http_server
