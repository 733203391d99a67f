#include "server/http/http_errors.h"

#include <nlohmann/json.hpp>

namespace quiver::http_server {

unsigned HttpStatusFor(StatusCode code) {
  switch (code) {
    case StatusCode::kOk:
      return 200;
    case StatusCode::kInvalidArgument:
      return 400;
    case StatusCode::kNotFound:
      return 404;
    case StatusCode::kAlreadyExists:
      return 409;
    case StatusCode::kLimitExceeded:
      return 413;  // payload too large
    case StatusCode::kOutOfMemory:
      return 507;  // insufficient storage
    case StatusCode::kNotImplemented:
      return 501;
    case StatusCode::kReadOnly:  // a follower: the message names its leader's store
      return 403;
    case StatusCode::kIOError:  // the disk failed a write: reads go on, writes may later succeed
      return 503;
    case StatusCode::kCorruption:
    case StatusCode::kInternal:
      return 500;
  }
  return 500;
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  nlohmann::json body = {{"error", message}, {"code", code}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace quiver::http_server
