// What the parts of quiver._quiver share: error raising and the Arrow C data interface capsules.
// Call everything with the GIL held.
#pragma once

#include <arrow/api.h>
#include <arrow/c/abi.h>
#include <nanobind/nanobind.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"
#include "common/status.h"

namespace quiver::python {

namespace nb = nanobind;

extern PyObject* g_engine_error;
extern PyObject* g_kv_error;

// Raises EngineError(code, message).
[[noreturn]] void Raise(const Status& status);

inline void RaiseIfError(const Status& status) {
  if (!status.ok()) Raise(status);
}

template <typename T>
T ValueOrRaise(Result<T> result) {
  if (!result.ok()) Raise(result.status());
  return std::move(result).value();
}

// The pointer inside a capsule of the C data interface, or a TypeError naming what was expected.
template <typename T>
T* CapsulePointer(nb::handle capsule, const char* name) {
  if (!PyCapsule_CheckExact(capsule.ptr()) || !PyCapsule_IsValid(capsule.ptr(), name)) {
    throw nb::type_error((std::string("expected a PyCapsule named '") + name + "'").c_str());
  }
  return static_cast<T*>(PyCapsule_GetPointer(capsule.ptr(), name));
}

// Capsules that own an exported structure and release it unless a consumer moved it out.
nb::object SchemaCapsule(const std::shared_ptr<arrow::Schema>& schema);
// (schema capsule, array capsule) of a record batch.
nb::object ArrayCapsules(const std::shared_ptr<arrow::RecordBatch>& batch);
// quiver._quiver.cast_column: an array converted to a column's type by the write rules.
nb::object CastColumn(nb::handle array_schema, nb::handle array, nb::handle type_schema,
                      const std::string& cast, const std::string& what);
// Keys from (schema capsule, array capsule), as given by __arrow_c_array__().
std::shared_ptr<arrow::Array> ImportKeys(nb::handle schema, nb::handle array);
// A read's answer: ((schema, array) of the features, (schema, array) of "found", found_count).
nb::tuple ReadReply(const std::shared_ptr<arrow::RecordBatch>& batch,
                    const std::shared_ptr<arrow::BooleanArray>& found, int64_t found_count);

// quiver._quiver.feast_values (feast_values.cc): the columns of an 'arrow_array_stream' capsule
// as one serialized feast.types.RepeatedValue, column after column; fields[i] is the Value field
// column i fills (0: the column holds serialized Values).
nb::bytes FeastValues(nb::handle stream_capsule, const std::vector<int>& fields);
// Appends one Feast Value per row of `column` to `out` (a serialized RepeatedValue's entries);
// `field` as above; `what` names the column in errors. Needs no GIL.
Status AppendFeastValues(const arrow::Array& column, int field, std::string_view what,
                         std::string* out);

// quiver._quiver.ShmClient, ShmTable and ShmRows (shm_module.cc).
void BindShm(nb::module_& m);

}  // namespace quiver::python
