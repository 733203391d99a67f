#include <arrow/api.h>
#include <arrow/compute/cast.h>
#include <arrow/util/bitmap_ops.h>

#include <string>

#include "common/arrow_status.h"
#include "engine/table.h"
#include "engine/table_internal.h"
#include "engine/write_cast.h"

namespace quiver {

// Table::Prepare: a write's batch checked against the schema, cast to the stored types and
// reduced to raw pointers, before anything changes.

Status Table::Prepare(const arrow::RecordBatch& batch, CastMode cast,
                      PreparedBatch* prepared) const {
  prepared->length = batch.num_rows();
  const auto& batch_schema = *batch.schema();
  std::vector<bool> seen(schema_.num_columns(), false);
  for (int c = 0; c < batch.num_columns(); ++c) {
    const std::string& column_name = batch_schema.field(c)->name();
    int index = schema_.FindColumn(column_name);
    if (index < 0) {
      return Status::NotFound("table '" + name_ + "' has no column '" + column_name + "'");
    }
    if (seen[index]) {
      return Status::InvalidArgument("table '" + name_ + "': column '" + column_name +
                                     "' appears twice in the batch");
    }
    seen[index] = true;
  }
  for (int i = 0; i < schema_.num_columns(); ++i) {
    if (!seen[i] && !schema_.columns()[i].nullable &&
        schema_.columns()[i].default_value == nullptr && prepared->missing_required.empty()) {
      prepared->missing_required = schema_.columns()[i].name;
    }
  }

  // Keys: type, nulls, size.
  {
    auto keys = KeysOfBatch(batch, "batch");
    if (!keys.ok()) return keys.status();
    prepared->keys = *keys;
    if (prepared->keys->type_id() != arrow::Type::INT64) {
      const auto& strings = static_cast<const arrow::BinaryArray&>(*prepared->keys);
      for (int64_t i = 0; i < strings.length(); ++i) {
        const int64_t size = strings.value_length(i);
        if (static_cast<size_t>(size) > limits_.max_key_bytes) {
          return Status::LimitExceeded("table '" + name_ + "' row " + std::to_string(i) +
                                       ": key of " + std::to_string(size) +
                                       " bytes is over the limit of " +
                                       std::to_string(limits_.max_key_bytes));
        }
        // A composite key's columns take their room as values.
        if (!schema_.composite_key()) prepared->AddHeapValue(static_cast<size_t>(size));
      }
    }
  }

  for (int c = 0; c < batch.num_columns(); ++c) {
    const int index = schema_.FindColumn(batch_schema.field(c)->name());
    if (index == schema_.key_index()) continue;  // a composite key's columns are stored as values
    const ColumnSpec& spec = schema_.columns()[index];
    const std::string where = "table '" + name_ + "' column '" + spec.name + "'";
    std::shared_ptr<arrow::Array> array = batch.column(c);

    // A list of the wrong length would fail the cast below without naming the row.
    if (spec.type->id() == arrow::Type::FIXED_SIZE_LIST && array->type_id() == arrow::Type::LIST) {
      const int32_t want = static_cast<const arrow::FixedSizeListType&>(*spec.type).list_size();
      const auto& list = static_cast<const arrow::ListArray&>(*array);
      for (int64_t i = 0; i < list.length(); ++i) {
        if (list.IsValid(i) && list.value_length(i) != want) {
          return Status::InvalidArgument(where + " row " + std::to_string(i) + ": embedding has " +
                                         std::to_string(list.value_length(i)) +
                                         " elements, expected " + std::to_string(want));
        }
      }
    }
    QUIVER_ASSIGN_OR_RETURN(array, CastForWrite(array, spec.type, cast, where));
    if (!spec.nullable && array->null_count() > 0) {
      return Status::InvalidArgument(where + " row " + std::to_string(FirstNull(*array)) +
                                     ": null in a non-nullable column");
    }

    QUIVER_RETURN_NOT_OK(AddInput(index, array, where, /*as_default=*/false, prepared));
    if (index == schema_.event_time_index()) {
      prepared->event_time_input = static_cast<int>(prepared->inputs.size()) - 1;
    }
  }
  // Defaults, for the new rows among the batch's: the columns it leaves out that have one.
  for (int i = 0; i < schema_.num_columns(); ++i) {
    const ColumnSpec& spec = schema_.columns()[i];
    if (seen[i] || spec.default_value == nullptr) continue;
    QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Array> value,
                                  arrow::MakeArrayFromScalar(*spec.default_value, 1));
    QUIVER_RETURN_NOT_OK(AddInput(i, value, "table '" + name_ + "' column '" + spec.name + "'",
                                  /*as_default=*/true, prepared));
  }
  return Status::OK();
}

Result<std::shared_ptr<arrow::Array>> Table::KeysOfBatch(const arrow::RecordBatch& batch,
                                                         std::string_view what) const {
  if (!schema_.composite_key()) {
    const std::shared_ptr<arrow::Array> keys = batch.GetColumnByName(schema_.key().name);
    if (keys == nullptr) {
      return Status::InvalidArgument("table '" + name_ + "': the " + std::string(what) +
                                     " has no key column '" + schema_.key().name + "'");
    }
    return NormalizeKeys(schema_, *keys, name_, what);
  }
  arrow::ArrayVector parts;
  std::vector<std::string> names;
  for (int index : schema_.key_columns()) {
    const std::string& name = schema_.columns()[index].name;
    std::shared_ptr<arrow::Array> part = batch.GetColumnByName(name);
    if (part == nullptr) {
      return Status::InvalidArgument("table '" + name_ + "': the " + std::string(what) +
                                     " has no key column '" + name + "' (the key is " +
                                     schema_.KeyNames() + ")");
    }
    parts.push_back(std::move(part));
    names.push_back(name);
  }
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::StructArray> keys,
                                arrow::StructArray::Make(parts, names));
  return NormalizeKeys(schema_, *keys, name_, what);
}

Status Table::AddInput(int index, const std::shared_ptr<arrow::Array>& array,
                       const std::string& where, bool as_default, PreparedBatch* prepared) const {
  const ColumnSpec& spec = schema_.columns()[index];
  // How many rows its heap values are written for: a default's, each new row's.
  const int64_t rows = as_default ? prepared->length : 1;
  PreparedBatch::Input input;
  input.schema_index = index;
  input.layout = &layout_.column(index);
  input.array = array;
  const arrow::ArrayData& data = *array->data();
  input.offset = data.offset;
  input.validity = data.null_count != 0 && data.buffers[0] ? data.buffers[0]->data() : nullptr;
  switch (input.layout->physical) {
    case Physical::kFixed:
      if (spec.type->id() == arrow::Type::FIXED_SIZE_LIST) {
        const auto& child = *data.child_data[0];
        const uint32_t element_width = input.layout->element_width;
        const int32_t list_size =
            static_cast<const arrow::FixedSizeListType&>(*spec.type).list_size();
        if (child.GetNullCount() > 0) {
          for (int64_t i = 0; i < data.length; ++i) {
            if (!input.IsValid(i)) continue;
            int64_t first = child.offset + (data.offset + i) * list_size;
            if (arrow::internal::CountSetBits(child.buffers[0]->data(), first, list_size) !=
                list_size) {
              return Status::InvalidArgument(where + " row " + std::to_string(i) +
                                             ": embedding elements must not be null");
            }
          }
        }
        input.fixed =
            child.buffers[1]->data() + (child.offset + data.offset * list_size) * element_width;
      } else {
        input.fixed = data.buffers[1]->data() + data.offset * input.layout->width;
      }
      break;
    case Physical::kBool:
      input.fixed = data.buffers[1]->data();
      break;
    case Physical::kBytes: {
      input.offsets = data.GetValues<int32_t>(1);
      input.var = data.buffers[2] ? data.buffers[2]->data() : nullptr;
      for (int64_t i = 0; i < data.length; ++i) {
        if (!input.IsValid(i)) continue;
        const size_t size = static_cast<size_t>(input.offsets[i + 1] - input.offsets[i]);
        if (size > limits_.max_value_bytes) {
          return Status::LimitExceeded(where + " row " + std::to_string(i) + ": value of " +
                                       std::to_string(size) + " bytes is over the limit of " +
                                       std::to_string(limits_.max_value_bytes));
        }
        for (int64_t r = 0; r < rows; ++r) prepared->AddHeapValue(size);
      }
      break;
    }
    case Physical::kList: {
      const auto& child = *data.child_data[0];
      const uint32_t element_width = input.layout->element_width;
      input.offsets = data.GetValues<int32_t>(1);
      input.var =
          child.buffers[1] ? child.buffers[1]->data() + child.offset * element_width : nullptr;
      const bool child_nulls = child.GetNullCount() > 0;
      for (int64_t i = 0; i < data.length; ++i) {
        if (!input.IsValid(i)) continue;
        const int64_t elements = input.offsets[i + 1] - input.offsets[i];
        const size_t size = static_cast<size_t>(elements) * element_width;
        if (size > limits_.max_value_bytes) {
          return Status::LimitExceeded(where + " row " + std::to_string(i) + ": list of " +
                                       std::to_string(size) + " bytes is over the limit of " +
                                       std::to_string(limits_.max_value_bytes));
        }
        if (child_nulls && elements > 0 &&
            arrow::internal::CountSetBits(child.buffers[0]->data(), child.offset + input.offsets[i],
                                          elements) != elements) {
          return Status::InvalidArgument(where + " row " + std::to_string(i) +
                                         ": list elements must not be null");
        }
        for (int64_t r = 0; r < rows; ++r) prepared->AddHeapValue(size);
      }
      break;
    }
    case Physical::kSparse: {  // values go to the row's sparse blob (WriteSparse)
      const ColumnLayout& layout = *input.layout;
      if (prepared->sparse_bytes.empty()) prepared->sparse_bytes.assign(data.length, 2);
      if (layout.sparse_physical == Physical::kBytes) {
        input.offsets = data.GetValues<int32_t>(1);
        input.var = data.buffers[2] ? data.buffers[2]->data() : nullptr;
      } else {
        input.fixed = layout.sparse_physical == Physical::kBool
                          ? data.buffers[1]->data()
                          : data.buffers[1]->data() + data.offset * layout.element_width;
      }
      for (int64_t i = 0; i < data.length; ++i) {
        if (!input.IsValid(i)) continue;
        size_t size = layout.element_width;
        if (layout.sparse_physical == Physical::kBytes) {
          size = static_cast<size_t>(input.offsets[i + 1] - input.offsets[i]);
          if (size > limits_.max_value_bytes) {
            return Status::LimitExceeded(where + " row " + std::to_string(i) + ": value of " +
                                         std::to_string(size) + " bytes is over the limit of " +
                                         std::to_string(limits_.max_value_bytes));
          }
        }
        prepared->sparse_bytes[i] += SparseEntryBytes(layout.element_width, size);
      }
      const auto position = std::lower_bound(
          prepared->sparse_inputs.begin(), prepared->sparse_inputs.end(), layout.sparse_id,
          [&](int other, uint16_t id) { return prepared->inputs[other].layout->sparse_id < id; });
      prepared->sparse_inputs.insert(position, static_cast<int>(prepared->inputs.size()));
      break;
    }
  }
  (as_default ? prepared->defaults : prepared->inputs).push_back(std::move(input));
  return Status::OK();
}

}  // namespace quiver
