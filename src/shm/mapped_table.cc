#include "shm/mapped_table.h"

#include <arrow/buffer.h>
#include <arrow/io/memory.h>
#include <arrow/ipc/dictionary.h>
#include <arrow/ipc/reader.h>
#include <arrow/type.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "engine/dtype.h"

namespace quiver::shm {

Result<std::shared_ptr<Mapping>> Mapping::Map(int fd, uint64_t bytes, uint64_t id, bool populate) {
  struct stat info;
  if (fstat(fd, &info) != 0) {
    return Status::IOError(std::string("stat of a shared-memory region: ") + std::strerror(errno));
  }
  if (bytes == 0 || static_cast<uint64_t>(info.st_size) < bytes) {
    return Status::Corruption("the control block lists region " + std::to_string(id) + " as " +
                              std::to_string(bytes) + " bytes; the region has " +
                              std::to_string(info.st_size));
  }
  // Large regions at a 2 MiB boundary, advised for huge pages, as the server maps them
  // (engine/region.cc): shmem gets them where shmem_enabled allows.
  constexpr size_t kHugePage = 2 << 20;
  void* data = MAP_FAILED;
  if (bytes >= kHugePage) {
    const size_t padded = bytes + kHugePage;
    void* raw =
        mmap(nullptr, padded, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw != MAP_FAILED) {
      auto* start = static_cast<std::byte*>(raw);
      const size_t misalignment = reinterpret_cast<uintptr_t>(start) % kHugePage;
      std::byte* aligned = misalignment == 0 ? start : start + (kHugePage - misalignment);
      data = mmap(aligned, bytes, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
      if (data == MAP_FAILED) {
        munmap(raw, padded);
      } else {
        if (aligned > start) munmap(start, static_cast<size_t>(aligned - start));
        std::byte* end = aligned + bytes;
        if (start + padded > end) munmap(end, static_cast<size_t>(start + padded - end));
        madvise(aligned, bytes, MADV_HUGEPAGE);
#if defined(MADV_POPULATE_READ)
        if (populate) madvise(aligned, bytes, MADV_POPULATE_READ);  // Linux 5.14; advice only
#endif
      }
    }
  } else {
    data = mmap(nullptr, bytes, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  }
  if (data == MAP_FAILED) {
    return Status::IOError("cannot map a shared-memory region of " + std::to_string(bytes) +
                           " bytes: " + std::strerror(errno));
  }
  return std::shared_ptr<Mapping>(
      new Mapping(static_cast<const std::byte*>(data), static_cast<size_t>(bytes), id));
}

Mapping::~Mapping() { munmap(const_cast<std::byte*>(data_), size_); }

namespace {

Status Corrupt(const std::string& what) {
  return Status::Corruption("the table's shared-memory control block is invalid: " + what);
}

// Whether `offset` + `count` * `size` bytes lie within `limit`.
bool Within(uint64_t offset, uint64_t count, uint64_t size, uint64_t limit) {
  return offset <= limit && count <= (limit - offset) / (size == 0 ? 1 : size);
}

// The physical kind, row width and element width a column of `type` must have.
bool Expected(const arrow::DataType& type, bool key, ColumnLayout* out) {
  const Dtype* dtype = FindDtype(type.id());
  if (dtype == nullptr) return false;
  out->physical = dtype->physical;
  out->width = dtype->width;
  out->element_width = 0;
  switch (type.id()) {
    case arrow::Type::STRING:
    case arrow::Type::BINARY:
      out->width = key ? kKeyRefBytes : kVarRefBytes;
      return true;
    case arrow::Type::LIST: {
      const Dtype* element =
          FindDtype(static_cast<const arrow::ListType&>(type).value_type()->id());
      if (element == nullptr || !element->element) return false;
      out->width = kVarRefBytes;
      out->element_width = element->width;
      return true;
    }
    case arrow::Type::FIXED_SIZE_LIST: {
      const auto& fsl = static_cast<const arrow::FixedSizeListType&>(type);
      const Dtype* element = FindDtype(fsl.value_type()->id());
      if (element == nullptr || !element->element || fsl.list_size() <= 0) return false;
      out->element_width = element->width;
      out->width = element->width * static_cast<uint32_t>(fsl.list_size());
      return true;
    }
    default:
      return true;
  }
}

}  // namespace

Result<ControlInfo> ControlInfo::Parse(std::shared_ptr<Mapping> mapping) {
  ControlInfo info;
  const uint64_t size = mapping->size();
  if (size < sizeof(ControlHeader)) return Corrupt("shorter than its header");
  const auto* header = reinterpret_cast<const ControlHeader*>(mapping->data());
  if (header->magic != kControlMagic) return Corrupt("bad magic");
  if (header->version != kControlVersion) {
    return Status::NotImplemented("the table's control block has version " +
                                  std::to_string(header->version) + "; this reader reads " +
                                  std::to_string(kControlVersion));
  }
  if (header->header_bytes != sizeof(ControlHeader)) return Corrupt("bad header size");
  if (!Within(header->columns_offset, header->columns_count, sizeof(ColumnRecord), size) ||
      !Within(header->schema_offset, header->schema_bytes, 1, size) ||
      !Within(header->manifest_offset, header->manifest_capacity, sizeof(ManifestEntry), size) ||
      header->manifest_offset % 8 != 0) {
    return Corrupt("a section lies outside the block");
  }
  if (header->row_width < kRowHeaderBytes + 8 || header->row_width > (1u << 26) ||
      header->row_width % 8 != 0) {
    return Corrupt("row width " + std::to_string(header->row_width));
  }
  if (header->first_shift < 4 || header->large_shift > 31 ||
      header->first_shift > header->large_shift) {
    return Corrupt("row chunk sizes");
  }
  if (kRowHeaderBytes + uint64_t{header->bitmap_bytes} > header->row_width) {
    return Corrupt("validity bitmap");
  }
  auto buffer = std::make_shared<arrow::Buffer>(
      reinterpret_cast<const uint8_t*>(mapping->data() + header->schema_offset),
      header->schema_bytes);
  arrow::io::BufferReader stream(buffer);
  arrow::ipc::DictionaryMemo memo;
  auto schema = arrow::ipc::ReadSchema(&stream, &memo);
  if (!schema.ok()) return Corrupt("its schema: " + schema.status().message());
  info.schema = *schema;
  if (static_cast<uint32_t>(info.schema->num_fields()) != header->columns_count ||
      header->key_column >= header->columns_count) {
    return Corrupt("its columns do not match its schema");
  }
  const auto* records =
      reinterpret_cast<const ColumnRecord*>(mapping->data() + header->columns_offset);
  for (uint32_t i = 0; i < header->columns_count; ++i) {
    const ColumnRecord& record = records[i];
    const bool key = i == header->key_column;
    ColumnLayout expected;
    const arrow::DataType& type = *info.schema->field(static_cast<int>(i))->type();
    if (!Expected(type, key, &expected) || record.physical != static_cast<uint8_t>(expected.physical) ||
        record.width != expected.width || record.element_width != expected.element_width ||
        ((record.flags & kColumnIsKey) != 0) != key) {
      return Corrupt("column " + std::to_string(i) + " does not match its type");
    }
    if (uint64_t{record.offset} + record.width > header->row_width ||
        record.offset < kRowHeaderBytes + header->bitmap_bytes) {
      return Corrupt("column " + std::to_string(i) + " lies outside the row");
    }
    if (record.valid_bit >= static_cast<int32_t>(header->bitmap_bytes * 8) ||
        record.valid_bit < -1 || (key && record.valid_bit != -1)) {
      return Corrupt("column " + std::to_string(i) + " validity bit");
    }
    if (key && type.id() != arrow::Type::INT64 && type.id() != arrow::Type::STRING) {
      return Corrupt("the key column is neither int64 nor utf8");
    }
    expected.offset = record.offset;
    expected.valid_bit = record.valid_bit;
    info.layouts.push_back(expected);
  }
  info.header = header;
  info.table_id = header->table_id;
  info.instance_id = header->instance_id;
  info.row_width = header->row_width;
  info.bitmap_bytes = header->bitmap_bytes;
  info.geometry.first_shift = header->first_shift;
  info.geometry.large_shift = header->large_shift;
  info.key_column = header->key_column;
  info.mapping = std::move(mapping);
  return info;
}

}  // namespace quiver::shm
