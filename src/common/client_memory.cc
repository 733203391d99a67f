#include "common/client_memory.h"

namespace quiver {

ClientMemory& ClientMemory::Global() {
  static ClientMemory instance;
  return instance;
}

}  // namespace quiver
