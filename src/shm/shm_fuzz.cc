// Fuzz target for a reader's view of a hostile or corrupt publication (docs/shm.md): a real
// published table's control block and regions, patched by the input, are mapped from memfds and
// read as TableReader does (ControlInfo::Parse, CopyManifest, CheckManifest, AssembleView,
// ReadFromView). No input may crash, hang, or make the reader read outside its mappings (which
// would fault: the regions are exactly as large as their memfds).
//
// Input: [u8 table] then patches, each [u8 region] [u16 offset, little-endian] [u8 length]
// [length bytes]. Table bit 0 picks the table: a utf8 key, or a composite key (int64 + utf8)
// with sparse columns. Region 0 is the control block (offsets scaled to reach its whole used
// part), the others the table's regions in manifest order (index, row chunks, heap chunks).
#include <arrow/api.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/fuzz_check.h"
#include "engine/catalog.h"
#include "engine/keys.h"
#include "engine/publication.h"
#include "engine/schema.h"
#include "shm/mapped_table.h"

namespace {

using quiver::ManifestEntry;

void Check(bool condition, const char* property) {
  quiver::FuzzCheck(condition, "shm_fuzz", property);
}

std::string ReadAll(int fd, size_t size) {
  std::string bytes(size, '\0');
  size_t done = 0;
  while (done < size) {
    const ssize_t n = pread(fd, bytes.data() + done, size - done, static_cast<off_t>(done));
    Check(n > 0, "a published region reads back");
    done += static_cast<size_t>(n);
  }
  return bytes;
}

// A small published table's bytes, taken once.
struct Fixture {
  std::vector<std::string> regions;  // [0]: the control block's used part; then by manifest order
  std::vector<ManifestEntry> entries;
  std::shared_ptr<arrow::Array> keys;  // as a reader gives them (a struct for a composite key)

  explicit Fixture(bool composite) {
    using namespace quiver;
    Catalog catalog(CatalogOptions{.publish = true});
    auto schema = TableSchema::FromJson(
        std::string(composite ? R"({"key": ["i", "k"], "columns": {"k": {"dtype": "utf8"},
          "i": {"dtype": "int64"}, "f": {"dtype": "float32", "sparse": true},
          "t": {"dtype": "utf8", "sparse": true},)"
                              : R"({"key": "k", "columns": {"k": {"dtype": "utf8"},
          "i": {"dtype": "int64", "nullable": true},)") +
        R"("s": {"dtype": "utf8", "nullable": true},
      "l": {"dtype": "list[float32]", "nullable": true},
      "e": {"dtype": "fixed_size_list[float16, 3]", "nullable": true},
      "b": {"dtype": "bool", "nullable": true}}})");
    Check(schema.ok(), "the schema parses");
    auto table = catalog.CreateTable("t", *schema);
    Check(table.ok(), "the table is created");
    arrow::StringBuilder k, s;
    arrow::Int64Builder i;
    arrow::ListBuilder l(arrow::default_memory_pool(), std::make_shared<arrow::FloatBuilder>());
    arrow::FixedSizeListBuilder e(arrow::default_memory_pool(),
                                  std::make_shared<arrow::HalfFloatBuilder>(), 3);
    arrow::BooleanBuilder b;
    arrow::FloatBuilder f;
    arrow::StringBuilder t;
    for (int row = 0; row < 300; ++row) {
      row % 4 ? (void)f.Append(static_cast<float>(row)) : (void)f.AppendNull();
      row % 3 ? (void)t.AppendNull() : (void)t.Append(std::string(row % 20, 't'));
      const std::string key =
          row % 2 ? "k" + std::to_string(row) : "a-long-key-number-" + std::to_string(row);
      (void)k.Append(key);
      (void)i.Append(row);
      row % 5 ? (void)s.Append(std::string(row % 40, 'x')) : (void)s.AppendNull();
      (void)l.Append();
      for (int j = 0; j < row % 6; ++j) {
        (void)static_cast<arrow::FloatBuilder*>(l.value_builder())->Append(static_cast<float>(j));
      }
      (void)e.Append();
      for (int j = 0; j < 3; ++j) {
        (void)static_cast<arrow::HalfFloatBuilder*>(e.value_builder())->Append(0x3c00);
      }
      (void)b.Append(row % 3 == 0);
    }
    std::shared_ptr<arrow::Array> ks = *k.Finish(), is = *i.Finish();
    arrow::FieldVector fields{arrow::field("k", arrow::utf8()),
                              arrow::field("i", arrow::int64()),
                              arrow::field("s", arrow::utf8()),
                              arrow::field("l", arrow::list(arrow::float32())),
                              arrow::field("e", arrow::fixed_size_list(arrow::float16(), 3)),
                              arrow::field("b", arrow::boolean())};
    arrow::ArrayVector columns{ks, is, *s.Finish(), *l.Finish(), *e.Finish(), *b.Finish()};
    keys = ks;
    if (composite) {
      fields.push_back(arrow::field("f", arrow::float32()));
      fields.push_back(arrow::field("t", arrow::utf8()));
      columns.push_back(*f.Finish());
      columns.push_back(*t.Finish());
      keys = *arrow::StructArray::Make({is, ks}, std::vector<std::string>{"i", "k"});
    }
    auto batch = arrow::RecordBatch::Make(arrow::schema(fields), 300, columns);
    Check((*table)->Upsert(*batch).ok(), "the rows are written");
    const Publication& publication = *(*table)->publication();
    const std::string control = ReadAll(publication.control_fd(), publication.control_bytes());
    const auto* header = reinterpret_cast<const ControlHeader*>(control.data());
    const uint32_t count = header->manifest_count.load();
    const uint32_t manifest_offset = header->manifest_offset;
    entries.resize(count);
    std::memcpy(entries.data(), control.data() + manifest_offset, count * sizeof(ManifestEntry));
    // The used part only, with the manifest's capacity cut to fit it.
    std::string used = control.substr(0, manifest_offset + (count + 4) * sizeof(ManifestEntry));
    const uint32_t capacity = count + 4;
    std::memcpy(used.data() + offsetof(ControlHeader, manifest_capacity), &capacity, 4);
    regions.push_back(std::move(used));
    std::vector<uint64_t> ids;
    for (const ManifestEntry& entry : entries) ids.push_back(entry.id);
    publication.WithRegionFds(ids, [&](std::span<const int> fds) {
      for (size_t n = 0; n < fds.size(); ++n) {
        Check(fds[n] >= 0, "every listed region has a descriptor");
        regions.push_back(ReadAll(fds[n], entries[n].bytes));
      }
    });
  }
};

int MemfdOf(const std::string& bytes) {
  const int fd = memfd_create("shm-fuzz", MFD_CLOEXEC);
  Check(fd >= 0, "memfd_create works");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    Check(n > 0, "a memfd takes its bytes");
    done += static_cast<size_t>(n);
  }
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace quiver;
  static const Fixture single(false), composite(true);
  if (size == 0) return 0;
  const Fixture& fixture = (data[0] & 1) != 0 ? composite : single;
  std::vector<std::string> regions = fixture.regions;
  for (size_t at = 1; at + 4 <= size;) {
    const size_t region = data[at] % regions.size();
    std::string& bytes = regions[region];
    size_t offset = data[at + 1] | size_t{data[at + 2]} << 8;
    // The control block's header and manifest matter most: offsets reach them densely.
    offset = region == 0 ? offset % bytes.size() : (offset * 64) % bytes.size();
    const size_t length = data[at + 3];
    at += 4;
    for (size_t i = 0; i < length && at < size; ++i, ++at) {
      bytes[(offset + i) % bytes.size()] = static_cast<char>(data[at]);
    }
  }
  const int control_fd = MemfdOf(regions[0]);
  auto control_mapping = shm::Mapping::Map(control_fd, regions[0].size(), 0, false);
  close(control_fd);
  if (!control_mapping.ok()) return 0;
  auto control = shm::ControlInfo::Parse(*std::move(control_mapping));
  if (!control.ok()) return 0;
  uint64_t generation;
  PublishedState state;
  std::vector<ManifestEntry> entries;
  // A mutated generation that stays odd would keep a reader trying for 2 s: a millisecond
  // shows the same give-up path.
  if (!shm::CopyManifest(*control, &generation, &state, &entries, std::chrono::milliseconds(1))) {
    return 0;
  }
  if (!shm::CheckManifest(entries, "t").ok()) return 0;
  // Each listed id's bytes: the fixture's region of that id (ids are unknown otherwise).
  std::map<uint64_t, std::shared_ptr<shm::Mapping>> mappings;
  for (const ManifestEntry& entry : entries) {
    size_t index = 0;
    while (index < fixture.entries.size() && fixture.entries[index].id != entry.id) ++index;
    if (index == fixture.entries.size()) return 0;
    const int fd = MemfdOf(regions[index + 1]);
    auto mapping = shm::Mapping::Map(fd, entry.bytes, entry.id, false);
    close(fd);
    if (!mapping.ok()) return 0;
    mappings[entry.id] = *std::move(mapping);
  }
  shm::View view;
  if (!shm::AssembleView(*control, entries, mappings, &view).ok()) return 0;
  std::vector<int> columns;
  for (int i = 0; i < control->schema->num_fields(); ++i) {
    if (!control->table_schema->IsKeyColumn(i)) columns.push_back(i);
  }
  // Keys of the key's type, whatever the block now says it is.
  std::shared_ptr<arrow::Array> keys = fixture.keys;
  if (!control->table_schema->composite_key() &&
      control->layout->key().physical == Physical::kFixed) {
    arrow::Int64Builder ints;
    for (int64_t i = 0; i < 300; ++i) (void)ints.Append(i);
    keys = *ints.Finish();
  }
  auto normalized = NormalizeKeys(*control->table_schema, *keys, "t", "read");
  if (!normalized.ok()) return 0;
  keys = *normalized;
  arrow::ArrayVector arrays;
  std::shared_ptr<arrow::Buffer> found;
  int64_t found_count = 0;
  auto read = shm::ReadFromView(*control, view, *keys, columns, "t", &arrays, &found, &found_count);
  if (read.ok() && *read) {
    Check(found_count >= 0 && found_count <= keys->length(), "found counts are within the keys");
    Check(arrays.size() == columns.size(), "every column is read");
  }
  return 0;
}
