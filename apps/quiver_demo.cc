// quiver-demo: the engine end to end, until the server exists (`make serve` runs it).
//
//   quiver-demo [--rows N] [--keys K] [--data-dir DIR] [--parquet FILE --key COLUMN]
//
// Loads N generated rows (8-character keys, 10 float32 features) or a Parquet file into a table,
// answers batch reads of K random keys and reports their latency, prints the table's statistics,
// and writes the whole table to DIR/<table>.arrow (an Arrow IPC file any Arrow tool can read).
#include <arrow/api.h>
#include <arrow/compute/api_vector.h>
#include <arrow/io/file.h>
#include <arrow/ipc/writer.h>
#include <parquet/arrow/reader.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "common/arrow_status.h"
#include "engine/catalog.h"

namespace quiver {
namespace {

struct Options {
  int64_t rows = 1'000'000;
  int keys = 1000;
  std::string data_dir = "./quiver-data";
  std::string parquet;
  std::string key;
};

void Usage() {
  std::cout << "usage: quiver-demo [--rows N] [--keys K] [--data-dir DIR] "
               "[--parquet FILE --key COLUMN]\n"
               "  --rows N        generated rows (default 1000000)\n"
               "  --keys K        keys per batch read (default 1000)\n"
               "  --data-dir DIR  where the table is written as Arrow IPC (default ./quiver-data)\n"
               "  --parquet FILE  load this Parquet file instead of generated data\n"
               "  --key COLUMN    the key column of the Parquet file (utf8 or int64)\n";
}

Result<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      Usage();
      std::exit(0);
    }
    if (i + 1 >= argc) return Status::InvalidArgument("flag " + flag + " needs a value");
    const std::string value = argv[++i];
    try {
      if (flag == "--rows") {
        options.rows = std::stoll(value);
      } else if (flag == "--keys") {
        options.keys = std::stoi(value);
      } else if (flag == "--data-dir") {
        options.data_dir = value;
      } else if (flag == "--parquet") {
        options.parquet = value;
      } else if (flag == "--key") {
        options.key = value;
      } else {
        return Status::InvalidArgument("unknown flag " + flag + " (see --help)");
      }
    } catch (const std::exception&) {
      return Status::InvalidArgument("flag " + flag + ": '" + value + "' is not a number");
    }
  }
  if (options.rows <= 0 || options.keys <= 0) {
    return Status::InvalidArgument("--rows and --keys must be positive");
  }
  if (!options.parquet.empty() && options.key.empty()) {
    return Status::InvalidArgument("--parquet needs --key: the name of the key column");
  }
  return options;
}

std::shared_ptr<arrow::Array> GeneratedKeys(int64_t first, int64_t count) {
  arrow::StringBuilder builder;
  char buffer[24];
  for (int64_t i = 0; i < count; ++i) {
    std::snprintf(buffer, sizeof(buffer), "%08lld", static_cast<long long>(first) + i);
    (void)builder.Append(buffer, 8);
  }
  return builder.Finish().ValueOrDie();
}

Result<std::shared_ptr<Table>> LoadGenerated(Catalog& catalog, int64_t rows) {
  std::string json = R"({"key": "key", "columns": {"key": {"dtype": "utf8"})";
  for (int c = 0; c < 10; ++c) json += R"(, "f)" + std::to_string(c) + R"(": {"dtype": "float32"})";
  QUIVER_ASSIGN_OR_RETURN(TableSchema schema, TableSchema::FromJson(json + "}}"));
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, catalog.CreateTable("features", schema));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(0, 1);
  constexpr int64_t kBatch = 1 << 20;
  double seconds = 0;
  for (int64_t first = 0; first < rows; first += kBatch) {
    const int64_t count = std::min(kBatch, rows - first);
    arrow::ArrayVector columns = {GeneratedKeys(first, count)};
    for (int c = 0; c < 10; ++c) {
      arrow::FloatBuilder builder;
      QUIVER_RETURN_NOT_OK_ARROW(builder.Reserve(count));
      for (int64_t i = 0; i < count; ++i) builder.UnsafeAppend(uniform(rng));
      QUIVER_ASSIGN_OR_RETURN_ARROW(auto array, builder.Finish());
      columns.push_back(array);
    }
    auto batch = arrow::RecordBatch::Make(schema.ToArrow(), count, columns);
    const auto start = std::chrono::steady_clock::now();
    QUIVER_RETURN_NOT_OK(table->Upsert(*batch).status());
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::printf("loaded %lld generated rows in %.2f s (%.2f M rows/s)\n",
              static_cast<long long>(rows), seconds, rows / seconds / 1e6);
  return table;
}

Result<std::shared_ptr<Table>> LoadParquet(Catalog& catalog, const Options& options) {
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto file, arrow::io::ReadableFile::Open(options.parquet));
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto reader,
                                parquet::arrow::OpenFile(file, arrow::default_memory_pool()));
  QUIVER_ASSIGN_OR_RETURN_ARROW(std::shared_ptr<arrow::Table> data, reader->ReadTable());
  QUIVER_ASSIGN_OR_RETURN(TableSchema schema, TableSchema::FromArrow(*data->schema(), options.key));
  const std::string name = std::filesystem::path(options.parquet).stem().string();
  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, catalog.CreateTable(name, schema));
  const auto start = std::chrono::steady_clock::now();
  QUIVER_ASSIGN_OR_RETURN(UpsertResult written, table->Upsert(*data));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("loaded %lld rows of %s in %.2f s\n", static_cast<long long>(written.rows_written),
              options.parquet.c_str(), seconds);
  return table;
}

// Keys for reads: every key of the table, from a scan.
Result<std::shared_ptr<arrow::Array>> AllKeys(const Table& table) {
  QUIVER_ASSIGN_OR_RETURN(auto reader, table.Scan());
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto all, reader->ToTable());
  QUIVER_ASSIGN_OR_RETURN_ARROW(
      auto keys, arrow::Concatenate(all->GetColumnByName(table.schema().key().name)->chunks()));
  return keys;
}

Status Run(const Options& options) {
  Catalog catalog;
  std::shared_ptr<Table> table;
  if (options.parquet.empty()) {
    QUIVER_ASSIGN_OR_RETURN(table, LoadGenerated(catalog, options.rows));
  } else {
    QUIVER_ASSIGN_OR_RETURN(table, LoadParquet(catalog, options));
  }
  const TableStats stats = table->Stats();
  std::printf("table '%s': %lld rows, %.1f MiB held (%.1f bytes/row; rows %u bytes wide)\n",
              table->name().c_str(), static_cast<long long>(stats.rows), stats.bytes / 1048576.0,
              stats.rows ? static_cast<double>(stats.bytes) / stats.rows : 0.0, stats.row_width);
  if (stats.rows == 0) return Status::OK();

  QUIVER_ASSIGN_OR_RETURN(std::shared_ptr<arrow::Array> keys, AllKeys(*table));
  std::mt19937_64 rng(7);
  std::vector<double> micros;
  std::shared_ptr<arrow::RecordBatch> sample;
  for (int round = 0; round < 200; ++round) {
    arrow::Int64Builder picks;
    for (int k = 0; k < options.keys; ++k) {
      QUIVER_RETURN_NOT_OK_ARROW(picks.Append(static_cast<int64_t>(rng() % keys->length())));
    }
    QUIVER_ASSIGN_OR_RETURN_ARROW(auto indices, picks.Finish());
    QUIVER_ASSIGN_OR_RETURN_ARROW(auto chosen, arrow::compute::Take(keys, indices));
    const auto start = std::chrono::steady_clock::now();
    QUIVER_ASSIGN_OR_RETURN(ReadResult result, table->Read(*chosen.make_array()));
    micros.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
    if (result.found_count != options.keys) return Status::Internal("a stored key was not found");
    if (round == 0) {
      auto with_keys = result.batch->AddColumn(0, "key", chosen.make_array());
      if (with_keys.ok()) sample = (*with_keys)->Slice(0, 3);
    }
  }
  std::sort(micros.begin(), micros.end());
  std::printf("batch read of %d random keys x %d columns: p50 %.1f us, p99 %.1f us (200 reads)\n",
              options.keys, sample ? sample->num_columns() - 1 : 0, micros[micros.size() / 2],
              micros[micros.size() * 99 / 100]);
  if (sample) {
    std::printf("first rows of a read result:\n");
    for (int64_t row = -1; row < sample->num_rows(); ++row) {
      for (int c = 0; c < std::min(sample->num_columns(), 7); ++c) {
        std::string cell = sample->schema()->field(c)->name();
        if (row >= 0) {
          auto scalar = sample->column(c)->GetScalar(row);
          cell = scalar.ok() ? (*scalar)->ToString() : "?";
        }
        std::printf("  %-12.12s", cell.c_str());
      }
      std::printf(sample->num_columns() > 7 ? "  ...\n" : "\n");
    }
  }

  std::filesystem::create_directories(options.data_dir);
  const std::string path = options.data_dir + "/" + table->name() + ".arrow";
  QUIVER_ASSIGN_OR_RETURN(auto scan, table->Scan());
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto out, arrow::io::FileOutputStream::Open(path));
  QUIVER_ASSIGN_OR_RETURN_ARROW(auto writer, arrow::ipc::MakeFileWriter(out, scan->schema()));
  for (;;) {
    std::shared_ptr<arrow::RecordBatch> batch;
    QUIVER_RETURN_NOT_OK_ARROW(scan->ReadNext(&batch));
    if (!batch) break;
    QUIVER_RETURN_NOT_OK_ARROW(writer->WriteRecordBatch(*batch));
  }
  QUIVER_RETURN_NOT_OK_ARROW(writer->Close());
  std::printf("wrote the table to %s (Arrow IPC file: pyarrow.ipc.open_file reads it)\n",
              path.c_str());
  return Status::OK();
}

}  // namespace
}  // namespace quiver

int main(int argc, char** argv) {
  auto options = quiver::ParseOptions(argc, argv);
  if (!options.ok()) {
    std::fprintf(stderr, "quiver-demo: %s\n", options.status().message().c_str());
    return 2;
  }
  quiver::Status status = quiver::Run(*options);
  if (!status.ok()) {
    std::fprintf(stderr, "quiver-demo: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
