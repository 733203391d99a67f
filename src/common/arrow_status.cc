#include "common/arrow_status.h"

namespace quiver {

Status FromArrow(const arrow::Status& status) {
  if (status.ok()) return Status::OK();
  StatusCode code = StatusCode::kInternal;
  switch (status.code()) {
    case arrow::StatusCode::Invalid:
    case arrow::StatusCode::TypeError:
    case arrow::StatusCode::IndexError:
    case arrow::StatusCode::SerializationError:
      code = StatusCode::kInvalidArgument;
      break;
    case arrow::StatusCode::KeyError:
      code = StatusCode::kNotFound;
      break;
    case arrow::StatusCode::AlreadyExists:
      code = StatusCode::kAlreadyExists;
      break;
    case arrow::StatusCode::OutOfMemory:
      code = StatusCode::kOutOfMemory;
      break;
    case arrow::StatusCode::CapacityError:
      code = StatusCode::kLimitExceeded;
      break;
    case arrow::StatusCode::IOError:
      code = StatusCode::kIOError;
      break;
    case arrow::StatusCode::NotImplemented:
      code = StatusCode::kNotImplemented;
      break;
    default:
      break;
  }
  return Status(code, status.message());
}

}  // namespace quiver
