#include "engine/row_layout.h"

#include <arrow/type.h>

namespace quiver {

RowLayout::RowLayout(const TableSchema& schema) {
  columns_.resize(schema.num_columns());
  int nullable_columns = 0;
  for (const ColumnSpec& column : schema.columns()) {
    nullable_columns += column.nullable && !column.sparse ? 1 : 0;
  }
  bitmap_bytes_ = static_cast<uint32_t>((nullable_columns + 7) / 8);
  uint32_t offset = kRowHeaderBytes + bitmap_bytes_;

  // The key first: it is compared on every lookup, so it shares the first cache line with the
  // header.
  auto place = [&](int index) {
    const ColumnSpec& spec = schema.columns()[index];
    ColumnLayout& layout = columns_[index];
    const arrow::DataType& type = *spec.type;
    const Dtype& dtype = *FindDtype(type.id());  // the schema holds dtypes only
    layout.physical = dtype.physical;
    layout.width = dtype.width;
    switch (type.id()) {
      case arrow::Type::STRING:
      case arrow::Type::BINARY:
        layout.width = index == schema.key_index() ? kKeyRefBytes : kVarRefBytes;
        break;
      case arrow::Type::LIST:
        layout.width = kVarRefBytes;
        layout.element_width =
            FindDtype(static_cast<const arrow::ListType&>(type).value_type()->id())->width;
        break;
      case arrow::Type::FIXED_SIZE_LIST: {
        const auto& fsl = static_cast<const arrow::FixedSizeListType&>(type);
        layout.element_width = FindDtype(fsl.value_type()->id())->width;
        layout.width = layout.element_width * static_cast<uint32_t>(fsl.list_size());
        break;
      }
      default:  // a scalar: the registry's width
        break;
    }
    layout.offset = offset;
    offset += layout.width;
  };
  if (!schema.composite_key()) place(schema.key_index());
  int bit = 0;
  std::vector<int> sparse;
  for (int i = 0; i < schema.num_columns(); ++i) {
    if (schema.columns()[i].sparse) {
      sparse.push_back(i);
      continue;
    }
    if (i != schema.key_index()) {
      if (schema.columns()[i].nullable) columns_[i].valid_bit = bit++;
      place(i);
    }
    if (columns_[i].physical == Physical::kBytes || columns_[i].physical == Physical::kList) {
      var_slots_.push_back(columns_[i]);
    }
  }
  for (int index : schema.key_columns()) key_parts_.push_back(columns_[index]);
  if (!sparse.empty()) {
    sparse_slot_ =
        ColumnLayout{.physical = Physical::kBytes, .offset = offset, .width = kVarRefBytes};
    offset += kVarRefBytes;
    var_slots_.push_back(sparse_slot_);
    for (int index : sparse) {
      const Dtype& dtype = *FindDtype(schema.columns()[index].type->id());
      ColumnLayout& layout = columns_[index];
      layout = ColumnLayout{.physical = Physical::kSparse,
                            .offset = sparse_slot_.offset,
                            .width = kVarRefBytes,
                            .element_width = dtype.physical == Physical::kBytes ? 0 : dtype.width,
                            .sparse_id = static_cast<uint16_t>(sparse_widths_.size()),
                            .sparse_physical = dtype.physical};
      sparse_widths_.push_back(layout.element_width);
    }
  }
  row_width_ = (offset + 7) / 8 * 8;
}

}  // namespace quiver
