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
  int max_depth = 64;             // arrays and objects inside one another
  size_t max_object_members = 0;  // members of one object; 0: any number
};

// What a document holds, counted by the same pass: enough to tell what parsing it costs.
struct JsonShape {
  size_t containers = 0;  // arrays and objects
  size_t values = 0;      // every value, in arrays, objects and at the top
  size_t strings = 0;     // strings, member names included
  size_t members = 0;     // object members
  // About what a DOM of it takes (nlohmann::json: a 16-byte value per item, vector slack, a
  // node per member, a heap block per string): an upper estimate for refusing early.
  uint64_t DocumentBytes() const {
    return static_cast<uint64_t>(values) * 32 + static_cast<uint64_t>(strings) * 32 +
           static_cast<uint64_t>(members) * 64 + static_cast<uint64_t>(containers) * 32;
  }
};

// The default limits of every JSON input: request bodies, Flight tickets, descriptors and action
// bodies, schemas, the catalog file.
inline constexpr JsonShapeLimits kJsonLimits{};

// OK, or InvalidArgument naming `what` ("the request body") and the limit it is over.
// With `shape`, also counts what the text holds.
Status CheckJsonShape(std::string_view text, std::string_view what,
                      const JsonShapeLimits& limits = kJsonLimits, JsonShape* shape = nullptr);

}  // namespace quiver
