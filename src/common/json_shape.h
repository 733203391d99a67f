// A check of untrusted JSON text before a JSON library builds a document from it: how deep it
// nests and how many members one object has. nlohmann's parser and its error formatting recurse
// (a body nested ~60,000 deep overflowed the stack), and an ordered_json object takes time
// quadratic in its members (a schema of 100,000 columns cost a minute of CPU). One linear pass
// over the bytes, no recursion, no allocation.
//
// Only the shape is checked: text that passes may still be invalid JSON (the parser says so).
//
// Thread safety: pure function.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/status.h"

namespace quiver {

struct JsonShapeLimits {
  int max_depth = 64;               // arrays and objects inside one another
  size_t max_object_members = 0;    // members of one object; 0: any number
};

// The default limits of every JSON input: request bodies, Flight tickets, descriptors and action
// bodies, schemas, the catalog file.
inline constexpr JsonShapeLimits kJsonLimits{};

// OK, or InvalidArgument naming `what` ("the request body") and the limit it is over.
Status CheckJsonShape(std::string_view text, std::string_view what,
                      const JsonShapeLimits& limits = kJsonLimits);

}  // namespace quiver
