// quiver._quiver's shared-memory reader (shm/reader.h): ShmClient (a connection to a server's
// socket), ShmTable (an attached table: Arrow reads as capsules) and ShmRows (the hot path:
// fixed-width columns of one element type read into NumPy buffers with no allocation).
//
// ShmRows takes its buffers through the buffer protocol and its keys as Python ints or strs, or
// an int64 buffer, so a one-key call costs a method call, a lookup and a copy; a composite key's
// as tuples or an Arrow struct array (encoded through TableReader::NormalizeKeys). The GIL is
// released for batches.
//
// Thread safety: the reader is thread-safe; buffers are the caller's.
#include <arrow/api.h>
#include <nanobind/nanobind.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bindings.h"
#include "engine/schema.h"
#include "shm/reader.h"

namespace quiver::python {
namespace {

// A Py_buffer released on scope exit.
class Buffer {
 public:
  Buffer(nb::handle object, int flags, const char* what) {
    if (PyObject_GetBuffer(object.ptr(), &view_, flags) != 0) {
      PyErr_Clear();
      throw nb::type_error((std::string(what) + " must be a contiguous" +
                            ((flags & PyBUF_WRITABLE) ? " writable" : "") +
                            " buffer (a NumPy array)")
                               .c_str());
    }
  }
  ~Buffer() { PyBuffer_Release(&view_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  const Py_buffer& view() const { return view_; }

 private:
  Py_buffer view_{};
};

// NumPy's view of the fixed-width element types: the buffer format, its size, its name.
struct NumpyType {
  arrow::Type::type id;
  char format;
  size_t itemsize;
  const char* name;
};
constexpr NumpyType kNumpyTypes[] = {
    {arrow::Type::HALF_FLOAT, 'e', 2, "float16"}, {arrow::Type::FLOAT, 'f', 4, "float32"},
    {arrow::Type::DOUBLE, 'd', 8, "float64"},     {arrow::Type::INT8, 'b', 1, "int8"},
    {arrow::Type::INT16, 'h', 2, "int16"},        {arrow::Type::INT32, 'i', 4, "int32"},
    {arrow::Type::INT64, 'q', 8, "int64"},        {arrow::Type::UINT8, 'B', 1, "uint8"},
    {arrow::Type::UINT16, 'H', 2, "uint16"},      {arrow::Type::UINT32, 'I', 4, "uint32"},
    {arrow::Type::UINT64, 'Q', 8, "uint64"},      {arrow::Type::DATE32, 'i', 4, "int32"},
    {arrow::Type::TIMESTAMP, 'q', 8, "int64"},    {arrow::Type::BOOL, 'B', 1, "uint8"},
};

// The NumPy format of an Arrow element type, and its size; "" when none.
std::string NumpyFormat(const arrow::DataType& type, size_t* itemsize) {
  for (const NumpyType& numpy : kNumpyTypes) {
    if (numpy.id == type.id()) {
      *itemsize = numpy.itemsize;
      return std::string(1, numpy.format);
    }
  }
  return "";
}

// The NumPy name of a buffer format ("d": float64).
std::string FormatName(const char* format) {
  std::string_view text = format == nullptr ? "B" : format;
  if (!text.empty() && (text[0] == '<' || text[0] == '=' || text[0] == '@')) text.remove_prefix(1);
  if (text == "l") return "int64";
  if (text == "L") return "uint64";
  if (text == "?") return "bool";
  for (const NumpyType& numpy : kNumpyTypes) {
    if (text.size() == 1 && text[0] == numpy.format) return numpy.name;
  }
  return "'" + std::string(text) + "'";
}

// Whether a buffer's format (struct syntax) names the same type as `format`.
bool SameFormat(const char* given, const std::string& format, size_t itemsize,
                const Py_buffer& view) {
  if (given == nullptr) return format == "B";
  std::string_view text = given;
  if (!text.empty() && (text[0] == '<' || text[0] == '=' || text[0] == '@')) text.remove_prefix(1);
  if (static_cast<size_t>(view.itemsize) != itemsize || text.size() != 1) return false;
  const char c = text[0];
  if (c == format[0]) return true;
  // 'l' / 'L' are 8 bytes here, as 'q' / 'Q'; '?' is a byte as 'B'.
  return (format == "q" && c == 'l') || (format == "Q" && c == 'L') || (format == "B" && c == '?');
}

// Builds the quiver package's exception for (code, message) (set by quiver._shm), so that the
// hot path raises quiver.TableNotFound and the like without a Python wrapper around each call.
// A strong reference never released: a static nb::object would be released after the
// interpreter finalized.
PyObject* g_error_factory = nullptr;

[[noreturn]] void RaiseQuiver(const Status& status) {
  if (g_error_factory == nullptr) Raise(status);
  nb::object error =
      nb::handle(g_error_factory)(std::string(StatusCodeName(status.code())), status.message());
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
  throw nb::python_error();
}

void RaiseQuiverIfError(const Status& status) {
  if (!status.ok()) RaiseQuiver(status);
}

class ShmTable;

// `call()` (a Result) with the GIL released; its value, or the error raised.
template <typename Call>
auto WithoutGil(Call&& call) {
  decltype(call()) result = Status::OK();
  {
    nb::gil_scoped_release release;
    result = call();
  }
  return ValueOrRaise(std::move(result));
}

class ShmClient {
 public:
  explicit ShmClient(const std::string& path)
      : client_(WithoutGil([&] { return shm::Client::Connect(path); })) {}
  std::vector<std::string> ListTables() {
    return WithoutGil([&] { return client_->ListTables(); });
  }
  std::string StatusJson() {
    return WithoutGil([&] { return client_->StatusJson(); });
  }
  std::shared_ptr<ShmTable> Attach(const std::string& name);
  const std::string& path() const { return client_->socket_path(); }

 private:
  std::shared_ptr<shm::Client> client_;
};

class ShmRows;

class ShmTable {
 public:
  explicit ShmTable(std::shared_ptr<shm::TableReader> reader) : reader_(std::move(reader)) {}
  std::string TableSchemaJson() const { return reader_->table_schema_json(); }
  nb::tuple Read(nb::handle keys_schema, nb::handle keys_array,
                 const std::vector<std::string>& columns) {
    std::shared_ptr<arrow::Array> keys = ImportKeys(keys_schema, keys_array);
    shm::ReadBatch read = WithoutGil([&] { return reader_->Read(*keys, columns); });
    return ReadReply(read.batch, read.found, read.found_count);
  }
  nb::dict Stats() const {
    const shm::ReaderStats stats = reader_->stats();
    nb::dict out;
    out["refreshes"] = stats.refreshes;
    out["reattaches"] = stats.reattaches;
    out["mapped_bytes"] = stats.mapped_bytes;
    out["generation"] = stats.generation;
    return out;
  }
  const std::shared_ptr<shm::TableReader>& reader() const { return reader_; }

 private:
  std::shared_ptr<shm::TableReader> reader_;
};

std::shared_ptr<ShmTable> ShmClient::Attach(const std::string& name) {
  return std::make_shared<ShmTable>(WithoutGil([&] { return client_->Attach(name); }));
}

// The hot path over fixed-width columns that share one element type.
class ShmRows {
 public:
  ShmRows(const ShmTable& table, const std::vector<std::string>& columns)
      : reader_(table.reader()) {
    std::vector<std::string> names = columns;
    if (names.empty()) {  // every value column
      const auto& schema = reader_->schema();
      const std::vector<std::string>& keys = reader_->key_names();
      for (const auto& field : schema->fields()) {
        if (std::find(keys.begin(), keys.end(), field->name()) == keys.end()) {
          names.push_back(field->name());
        }
      }
    }
    plan_ = PlanOrRaise(names);
    for (size_t j = 0; j < names.size(); ++j) {
      const arrow::DataType& type = *plan_.types()[j];
      const arrow::DataType& element =
          type.id() == arrow::Type::FIXED_SIZE_LIST
              ? *static_cast<const arrow::FixedSizeListType&>(type).value_type()
              : type;
      size_t itemsize = 0;
      const std::string format = NumpyFormat(element, &itemsize);
      if (j == 0) {
        format_ = format;
        itemsize_ = itemsize;
        type_name_ = DtypeName(element);
      } else if (format != format_ || DtypeName(element) != type_name_) {
        RaiseQuiver(
            Status::InvalidArgument("the columns of one row reader must share an element type: '" +
                                    names[0] + "' is " + type_name_ + ", '" + names[j] + "' is " +
                                    DtypeName(element) + " (use a reader per type)"));
      }
    }
    width_ = plan_.row_bytes() / itemsize_;
    int64_keys_ = reader_->int64_keys();
    for (const std::string& key : reader_->key_names()) {
      key_types_.push_back(reader_->schema()->GetFieldByName(key)->type());
    }
    nb::module_ numpy = nb::module_::import_("numpy");
    empty_ = numpy.attr("empty");
    dtype_ = numpy.attr("dtype")(nb::str((std::string("<") + format_).c_str()));
  }

  // Copies key's row into `out` (a buffer of width() elements; None: a new NumPy array) and
  // returns it, or None when the key is missing.
  nb::object Get(nb::handle key, nb::handle out_or_none) {
    nb::object out = out_or_none.is_none() ? empty_(width_, dtype_) : nb::borrow(out_or_none);
    Buffer buffer(out, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS, "out");
    CheckOut(buffer.view(), 1);
    uint8_t found = 0;
    Status status;
    if (reader_->composite_key()) {
      nb::object one = nb::steal(PyTuple_Pack(1, key.ptr()));
      const std::shared_ptr<arrow::Array> encoded = CompositeKeys(one);
      const std::string_view bytes = static_cast<const arrow::BinaryArray&>(*encoded).GetView(0);
      status =
          reader_->ReadInto(plan_, std::span<const std::string_view>(&bytes, 1),
                            static_cast<std::byte*>(buffer.view().buf), plan_.row_bytes(), &found);
    } else if (int64_keys_) {
      const int64_t value = IntKey(key);
      status =
          reader_->ReadInto(plan_, std::span<const int64_t>(&value, 1),
                            static_cast<std::byte*>(buffer.view().buf), plan_.row_bytes(), &found);
    } else {
      const std::string_view text = StrKey(key);
      status =
          reader_->ReadInto(plan_, std::span<const std::string_view>(&text, 1),
                            static_cast<std::byte*>(buffer.view().buf), plan_.row_bytes(), &found);
    }
    RaiseQuiverIfError(status);
    return found != 0 ? out : nb::none();
  }

  // Reads keys (an int64 array, a NumPy bytes array, or a sequence of ints or strs; a composite
  // key's: a sequence of tuples or an Arrow struct array / record batch of the key columns) into
  // `out` (n × width()) and `found` (n bools; None: a new NumPy array); returns found.
  nb::object ReadInto(nb::handle keys, nb::handle out, nb::handle found_or_none) {
    const Py_ssize_t length = PyObject_Length(keys.ptr());
    if (length < 0) throw nb::python_error();
    nb::object found = found_or_none.is_none() ? empty_(static_cast<size_t>(length), nb::str("?"))
                                               : nb::borrow(found_or_none);
    Buffer out_buffer(out, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS, "out");
    Buffer found_buffer(found, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS, "found");
    std::vector<int64_t> ints;
    std::vector<std::string_view> texts;
    std::unique_ptr<Buffer> key_buffer;
    std::span<const int64_t> int_keys;
    size_t n = 0;
    if (reader_->composite_key()) {
      const std::shared_ptr<arrow::Array> encoded = CompositeKeys(keys);
      const auto& binary = static_cast<const arrow::BinaryArray&>(*encoded);
      n = static_cast<size_t>(binary.length());
      texts.resize(n);
      for (size_t i = 0; i < n; ++i) texts[i] = binary.GetView(static_cast<int64_t>(i));
      CheckOut(out_buffer.view(), n);
      CheckFound(found_buffer.view(), n);
      Run(int_keys, texts, out_buffer, found_buffer);
      return found;
    }
    if (PyObject_CheckBuffer(keys.ptr())) {
      key_buffer = std::make_unique<Buffer>(keys, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS, "keys");
      const Py_buffer& view = key_buffer->view();
      if (int64_keys_) {
        if (!SameFormat(view.format, "q", 8, view)) {
          throw nb::type_error("keys must be an int64 array (or a sequence of ints)");
        }
        n = static_cast<size_t>(view.len / 8);
        int_keys = std::span<const int64_t>(static_cast<const int64_t*>(view.buf), n);
      } else {
        // A NumPy bytes array (dtype 'S<w>'): fixed-width keys, NUL-padded.
        const std::string_view format = view.format == nullptr ? "B" : view.format;
        if (format.empty() || format.back() != 's' || view.itemsize <= 0) {
          throw nb::type_error(
              "keys must be a NumPy bytes array (dtype 'S') or a sequence of strs");
        }
        const auto width = static_cast<size_t>(view.itemsize);
        n = static_cast<size_t>(view.len) / width;
        texts.resize(n);
        const char* base = static_cast<const char*>(view.buf);
        for (size_t i = 0; i < n; ++i) {
          size_t length = width;
          while (length > 0 && base[i * width + length - 1] == '\0') --length;
          texts[i] = std::string_view(base + i * width, length);
        }
      }
    } else {
      nb::object sequence = nb::steal(PySequence_Fast(keys.ptr(), "keys must be a sequence"));
      if (!sequence.is_valid()) throw nb::python_error();
      n = static_cast<size_t>(PySequence_Fast_GET_SIZE(sequence.ptr()));
      PyObject** items = PySequence_Fast_ITEMS(sequence.ptr());
      if (int64_keys_) {
        ints.resize(n);
        for (size_t i = 0; i < n; ++i) ints[i] = IntKey(items[i]);
        int_keys = ints;
      } else {
        texts.resize(n);
        for (size_t i = 0; i < n; ++i) texts[i] = StrKey(items[i]);
        // The strs stay alive: `sequence` holds them.
      }
      CheckOut(out_buffer.view(), n);
      CheckFound(found_buffer.view(), n);
      Run(int_keys, texts, out_buffer, found_buffer);
      return found;
    }
    CheckOut(out_buffer.view(), n);
    CheckFound(found_buffer.view(), n);
    Run(int_keys, texts, out_buffer, found_buffer);
    return found;
  }

  size_t width() const { return width_; }

 private:
  shm::FixedPlan PlanOrRaise(const std::vector<std::string>& names) {
    Result<shm::FixedPlan> plan = reader_->PlanFixed(names);
    if (!plan.ok()) RaiseQuiver(plan.status());
    return *std::move(plan);
  }

 public:
  nb::object dtype() const { return dtype_; }
  std::string element_type() const { return type_name_; }
  std::vector<std::string> columns() const { return plan_.names(); }

 private:
  void Run(std::span<const int64_t> int_keys, const std::vector<std::string_view>& texts,
           const Buffer& out, const Buffer& found) {
    auto* found_bytes = static_cast<uint8_t*>(found.view().buf);
    auto* destination = static_cast<std::byte*>(out.view().buf);
    Status status;
    {
      nb::gil_scoped_release release;
      status = int64_keys_
                   ? reader_->ReadInto(plan_, int_keys, destination, plan_.row_bytes(), found_bytes)
                   : reader_->ReadInto(plan_, texts, destination, plan_.row_bytes(), found_bytes);
    }
    RaiseQuiverIfError(status);
  }

  void CheckOut(const Py_buffer& view, size_t rows) const {
    if (!SameFormat(view.format, format_, itemsize_, view)) {
      throw nb::type_error(
          ("out must hold " + type_name_ + " values, not " + FormatName(view.format)).c_str());
    }
    if (static_cast<size_t>(view.len) != rows * plan_.row_bytes()) {
      throw nb::value_error(("out must hold " + std::to_string(rows) + " x " +
                             std::to_string(width_) + " values, not " +
                             std::to_string(view.len / (view.itemsize ? view.itemsize : 1)))
                                .c_str());
    }
  }
  static void CheckFound(const Py_buffer& view, size_t rows) {
    if (view.itemsize != 1 || static_cast<size_t>(view.len) != rows) {
      throw nb::value_error(
          ("found must be a bool or uint8 array of " + std::to_string(rows) + " entries").c_str());
    }
  }
  // A composite key's keys, encoded: from an Arrow struct array or record batch of the key
  // columns (by name), or a sequence of tuples whose parts are in key order.
  std::shared_ptr<arrow::Array> CompositeKeys(nb::handle keys) {
    std::shared_ptr<arrow::Array> structs;
    if (nb::hasattr(keys, "__arrow_c_array__")) {
      nb::tuple capsules = nb::cast<nb::tuple>(keys.attr("__arrow_c_array__")());
      structs = ImportKeys(capsules[0], capsules[1]);
    } else {
      const std::vector<std::string>& names = reader_->key_names();
      nb::object sequence = nb::steal(PySequence_Fast(
          keys.ptr(), "keys of a composite-key table must be tuples or an Arrow struct array"));
      if (!sequence.is_valid()) throw nb::python_error();
      const Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence.ptr());
      PyObject** items = PySequence_Fast_ITEMS(sequence.ptr());
      std::vector<arrow::Int64Builder> ints(names.size());
      std::vector<arrow::StringBuilder> strings(names.size());
      for (Py_ssize_t i = 0; i < n; ++i) {
        if (!PyTuple_Check(items[i]) ||
            PyTuple_GET_SIZE(items[i]) != static_cast<Py_ssize_t>(names.size())) {
          throw nb::type_error(("key " + std::to_string(i) + " must be a tuple of " +
                                std::to_string(names.size()) + " parts (" + KeyNames() + ")")
                                   .c_str());
        }
        for (size_t p = 0; p < names.size(); ++p) {
          nb::handle part = PyTuple_GET_ITEM(items[i], static_cast<Py_ssize_t>(p));
          const arrow::Status appended = key_types_[p]->id() == arrow::Type::INT64
                                             ? ints[p].Append(IntKey(part))
                                             : strings[p].Append(StrKey(part));
          if (!appended.ok()) RaiseQuiver(Status::OutOfMemory(appended.message()));
        }
      }
      arrow::ArrayVector parts;
      for (size_t p = 0; p < names.size(); ++p) {
        auto part =
            key_types_[p]->id() == arrow::Type::INT64 ? ints[p].Finish() : strings[p].Finish();
        if (!part.ok()) RaiseQuiver(Status::OutOfMemory(part.status().message()));
        parts.push_back(*std::move(part));
      }
      auto made = arrow::StructArray::Make(parts, names);
      if (!made.ok()) RaiseQuiver(Status::Internal(made.status().message()));
      structs = *std::move(made);
    }
    Result<std::shared_ptr<arrow::Array>> encoded = reader_->NormalizeKeys(*structs);
    if (!encoded.ok()) RaiseQuiver(encoded.status());
    return *std::move(encoded);
  }
  std::string KeyNames() const {
    std::string names;
    for (const std::string& name : reader_->key_names()) {
      names += (names.empty() ? "" : ", ") + name;
    }
    return names;
  }
  static int64_t IntKey(nb::handle key) {
    int overflow = 0;
    const long long value = PyLong_AsLongLongAndOverflow(key.ptr(), &overflow);
    if (overflow != 0 || (value == -1 && PyErr_Occurred())) {
      PyErr_Clear();
      throw nb::type_error("keys of this table are int64 integers");
    }
    return value;
  }
  static std::string_view StrKey(nb::handle key) {
    Py_ssize_t size = 0;
    const char* text =
        PyUnicode_Check(key.ptr()) ? PyUnicode_AsUTF8AndSize(key.ptr(), &size) : nullptr;
    if (text == nullptr) {
      PyErr_Clear();
      throw nb::type_error("keys of this table are strs");
    }
    return {text, static_cast<size_t>(size)};
  }

  std::shared_ptr<shm::TableReader> reader_;
  nb::object empty_, dtype_;  // numpy.empty, the rows' dtype
  shm::FixedPlan plan_;
  std::string format_, type_name_;
  size_t itemsize_ = 0;
  size_t width_ = 0;
  bool int64_keys_ = true;
  std::vector<std::shared_ptr<arrow::DataType>> key_types_;  // in key order
};

}  // namespace

void BindShm(nb::module_& m) {
  m.def(
      "set_error_factory",
      [](nb::object factory) {
        Py_XDECREF(g_error_factory);
        g_error_factory = factory.release().ptr();
      },
      nb::arg("factory"),
      "factory(code, message) -> exception instance: what ShmRows raises for an error.");
  nb::class_<ShmClient>(m, "ShmClient", "A connection to a quiverd's shared-memory socket.")
      .def(nb::init<const std::string&>(), nb::arg("socket_path"))
      .def("list_tables", &ShmClient::ListTables)
      .def("status", &ShmClient::StatusJson, "The server's readers, as JSON.")
      .def("attach", &ShmClient::Attach, nb::arg("name"), "Maps a table read-only.")
      .def_prop_ro("path", &ShmClient::path);
  nb::class_<ShmTable>(m, "ShmTable", "A table mapped read-only from a quiverd.")
      .def("table_schema", &ShmTable::TableSchemaJson, "Its TableSchema JSON.")
      .def("read", &ShmTable::Read, nb::arg("keys_schema"), nb::arg("keys_array"),
           nb::arg("columns"), "As Engine.read.")
      .def("stats", &ShmTable::Stats);
  nb::class_<ShmRows>(m, "ShmRows",
                      "Fixed-width columns of one element type, read into NumPy buffers.")
      .def(nb::init<const ShmTable&, const std::vector<std::string>&>(), nb::arg("table"),
           nb::arg("columns"))
      .def("get", &ShmRows::Get, nb::arg("key"), nb::arg("out") = nb::none(),
           "One key's row (a composite key: a tuple of its parts in key order) as a NumPy array "
           "(into out when given: width values of dtype), or None when the key is missing. "
           "Nulls read as NaN (floats) or 0.")
      .def("read_into", &ShmRows::ReadInto, nb::arg("keys"), nb::arg("out"),
           nb::arg("found") = nb::none(),
           "Reads keys (an int64 array, a NumPy bytes array of dtype 'S' whose NUL padding is "
           "dropped, or a sequence of ints or strs; for a composite key, a sequence of tuples "
           "in key order or an Arrow struct array / record batch of the key columns) into out, "
           "a C-contiguous "
           "(len(keys), width) array of dtype, and found (len(keys) bools; allocated when None); "
           "returns found. The GIL is released while it reads.")
      .def_prop_ro("width", &ShmRows::width, "Values per row (embeddings count their elements).")
      .def_prop_ro("dtype", &ShmRows::dtype)
      .def_prop_ro("element_type", &ShmRows::element_type)
      .def_prop_ro("columns", &ShmRows::columns);
}

}  // namespace quiver::python
