// The one place where engine errors become HTTP errors: a StatusCode maps to an HTTP status, and
// the body is murr's error shape {"error": "<message>", "code": "<MACHINE_CODE>"}. No Beast here
// (router.h builds responses from these).
// Thread safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace quiver::http_server {

// The HTTP status code of an engine error (200 for kOk).
unsigned HttpStatusFor(StatusCode code);

// {"error": message, "code": code}; invalid UTF-8 in the message (echoing a client's bytes) is
// replaced, never fatal.
std::string ErrorBody(std::string_view code, std::string_view message);

}  // namespace quiver::http_server
