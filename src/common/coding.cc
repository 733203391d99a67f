#include "common/coding.h"

namespace quiver {

void PutLengthPrefixed(std::string* out, std::string_view bytes) {
  PutFixed32(out, static_cast<uint32_t>(bytes.size()));
  out->append(bytes);
}

}  // namespace quiver
