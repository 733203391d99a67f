#include "common/json_shape.h"

#include <algorithm>
#include <string>

namespace quiver {

Status CheckJsonShape(std::string_view text, std::string_view what, const JsonShapeLimits& limits,
                      JsonShape* shape) {
  JsonShape counted;
  // A value starts at every '[', '{', '"' (but a member's name) and at the first character of a
  // number or literal; counted here as the containers, the strings, and the ',' and ':' that
  // separate the rest, which bounds it closely enough for an estimate.
  size_t separators = 0;
  // Per open container, outermost first: whether it is an object, and its members so far (one
  // ':' at its own level per member).
  constexpr int kMaxTracked = 256;
  const int max_depth = std::min(limits.max_depth, kMaxTracked);
  bool is_object[kMaxTracked];
  size_t members[kMaxTracked];
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, a quote included
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        ++counted.strings;
        break;
      case ',':
        ++separators;
        break;
      case '{':
      case '[':
        if (depth == max_depth) {
          return Status::InvalidArgument(std::string(what) +
                                         " nests arrays and objects more than " +
                                         std::to_string(max_depth) + " levels deep");
        }
        is_object[depth] = c == '{';
        members[depth] = 0;
        ++depth;
        ++counted.containers;
        break;
      case '}':
      case ']':
        if (depth > 0) --depth;  // unbalanced text is the parser's to refuse
        break;
      case ':':
        ++counted.members;
        if (depth > 0 && is_object[depth - 1] && limits.max_object_members != 0 &&
            ++members[depth - 1] > limits.max_object_members) {
          return Status::LimitExceeded(std::string(what) + " has an object of more than " +
                                       std::to_string(limits.max_object_members) + " members");
        }
        break;
      default:
        break;
    }
  }
  if (shape != nullptr) {
    counted.values = separators + counted.containers + 1;
    *shape = counted;
  }
  return Status::OK();
}

}  // namespace quiver
