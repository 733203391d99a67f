#include "server/http/router.h"

#include <arrow/api.h>
#include <arrow/util/config.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <vector>

#include "common/arrow_status.h"
#include "common/client_memory.h"
#include "common/decode_memory.h"
#include "server/codec/codec.h"
#include "server/codec/table_export.h"
#include "server/snapshot_json.h"

namespace quiver::http_server {

HttpResponse ErrorResponse(const HttpRequest& request, boost::beast::http::status status,
                           std::string_view code, std::string_view message) {
  HttpResponse response(status, request.version());
  response.set(boost::beast::http::field::content_type, "application/json");
  response.body() = ErrorBody(code, message);
  return response;
}

HttpResponse ErrorResponse(const HttpRequest& request, const Status& status) {
  return ErrorResponse(request,
                       static_cast<boost::beast::http::status>(HttpStatusFor(status.code())),
                       StatusCodeName(status.code()), status.message());
}

using codec::FetchRequest;
using codec::kArrowStreamType;
using codec::kJsonType;
using codec::kParquetType;

// src/server/http/openapi.json, embedded by the build.
extern const std::string_view kOpenApiDocument;

namespace {

namespace http = boost::beast::http;

HttpResponse JsonResponse(const HttpRequest& request, http::status status, std::string body) {
  HttpResponse response(status, request.version());
  response.set(http::field::content_type, kJsonType);
  response.body() = std::move(body);
  return response;
}

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out += ' ';
    } else if (text[i] == '%' && i + 2 < text.size() && std::isxdigit(text[i + 1]) &&
               std::isxdigit(text[i + 2])) {
      out += static_cast<char>(std::stoi(std::string(text.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

// Values of query parameter `name`; comma-separated lists are split.
std::vector<std::string> QueryValues(std::string_view query, std::string_view name) {
  std::vector<std::string> values;
  if (query.empty()) return values;
  for (std::string_view pair : Split(query, '&')) {
    const size_t equals = pair.find('=');
    if (PercentDecode(pair.substr(0, equals)) != name || equals == std::string_view::npos) continue;
    for (std::string_view item : Split(pair.substr(equals + 1), ',')) {
      if (!item.empty()) values.push_back(PercentDecode(item));
    }
  }
  return values;
}

// The media type of a Content-Type or Accept item, without parameters, lower-case.
std::string MediaType(std::string_view value) {
  value = value.substr(0, value.find(';'));
  while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
  std::string out(value);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

enum class Format { kJson, kArrow, kNone };

// The response format from Accept: Arrow IPC when listed, JSON when listed or anything goes.
Format Negotiate(const HttpRequest& request) {
  const auto accept = request[http::field::accept];
  if (accept.empty()) return Format::kJson;
  bool json = false;
  for (std::string_view item : Split(std::string_view(accept.data(), accept.size()), ',')) {
    const std::string type = MediaType(item);
    if (type == kArrowStreamType) return Format::kArrow;
    if (type == kJsonType || type == "*/*" || type == "application/*") json = true;
  }
  return json ? Format::kJson : Format::kNone;
}

std::string RequestContentType(const HttpRequest& request) {
  const auto value = request[http::field::content_type];
  return MediaType(std::string_view(value.data(), value.size()));
}

HttpResponse UnsupportedContentType(const HttpRequest& request, std::string_view accepted) {
  return ErrorResponse(request, http::status::unsupported_media_type, "UNSUPPORTED_MEDIA_TYPE",
                       "Content-Type '" + RequestContentType(request) +
                           "' is not accepted here; use " + std::string(accepted));
}

HttpResponse MethodNotAllowed(const HttpRequest& request, std::string_view allowed) {
  HttpResponse response =
      ErrorResponse(request, http::status::method_not_allowed, "METHOD_NOT_ALLOWED",
                    std::string(request.method_string()) +
                        " is not allowed here; allowed: " + std::string(allowed));
  response.set(http::field::allow, allowed);
  return response;
}

// 411 when a body route gets neither Content-Length nor chunked encoding.
std::optional<HttpResponse> CheckLength(const HttpRequest& request, std::string_view what) {
  if (request.has_content_length() || request.chunked()) return std::nullopt;
  return ErrorResponse(request, http::status::length_required, "LENGTH_REQUIRED",
                       "a " + std::string(what) + " body needs Content-Length");
}

// 415 unless the body is JSON (or has no Content-Type).
std::optional<HttpResponse> CheckJsonBody(const HttpRequest& request) {
  const std::string content_type = RequestContentType(request);
  if (content_type.empty() || content_type == kJsonType) return std::nullopt;
  return UnsupportedContentType(request, kJsonType);
}

}  // namespace

// The routes of docs/http.md, one row each: the path template (a {name} segment is the table,
// percent-decoded, so that a name the engine refuses is named as given; the template is the
// metrics label), the method, and the handler.
std::span<const Router::Route> Router::Routes() {
  using Args = RouteArgs;
  static const Route kRoutes[] = {
      {"/health", http::verb::get,
       [](const Router&, const HttpRequest& request, const Args&) {
         HttpResponse response(http::status::ok, request.version());
         response.set(http::field::content_type, "text/plain");
         response.body() = "OK";
         return response;
       }},
      {"/openapi.json", http::verb::get,
       [](const Router&, const HttpRequest& request, const Args&) {
         return JsonResponse(request, http::status::ok, std::string(kOpenApiDocument));
       }},
      {"/metrics", http::verb::get,
       [](const Router& router, const HttpRequest& request, const Args&) {
         return router.Metrics(request);
       }},
      {"/api/v1/admin/snapshot", http::verb::post,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Snapshot(request, args.query);
       }},
      {"/api/v1/table", http::verb::get,
       [](const Router& router, const HttpRequest& request, const Args&) {
         return router.ListTables(request);
       }},
      {"/api/v1/table/{name}", http::verb::put,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.CreateTable(request, args.table);
       }},
      {"/api/v1/table/{name}", http::verb::get,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.DescribeTable(request, args.table);
       }},
      {"/api/v1/table/{name}", http::verb::patch,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.AlterTable(request, args.table);
       }},
      {"/api/v1/table/{name}", http::verb::delete_,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.DropTable(request, args.table);
       }},
      {"/api/v1/table/{name}/schema", http::verb::get,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.GetSchema(request, args.table);
       }},
      {"/api/v1/table/{name}/fetch", http::verb::post,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Fetch(request, args.table, args.query);
       }},
      {"/api/v1/table/{name}/write", http::verb::put,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Write(request, args.table, args.query);
       }},
      {"/api/v1/table/{name}/delete", http::verb::post,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Delete(request, args.table);
       }},
      {"/api/v1/table/{name}/source", http::verb::put,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Source(request, args.table);
       }},
      {"/api/v1/table/{name}/source", http::verb::get,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Source(request, args.table);
       }},
      {"/api/v1/table/{name}/source", http::verb::delete_,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Source(request, args.table);
       }},
      {"/api/v1/table/{name}/export", http::verb::get,
       [](const Router& router, const HttpRequest& request, const Args& args) {
         return router.Export(request, args.table, args.query, args.stream);
       }},
  };
  return kRoutes;
}

namespace {

// Whether `segments` match the path template ("/a/{name}/b"; no allocation: it runs for every
// route of every request); a {name} segment matches any one and is returned in `*name`.
bool MatchesTemplate(std::string_view path_template, const std::vector<std::string_view>& segments,
                     std::string_view* name) {
  std::string_view rest = path_template.substr(1);
  for (std::string_view segment : segments) {
    if (rest.empty()) return false;
    const size_t slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    if (part == "{name}") {
      *name = segment;
    } else if (part != segment) {
      return false;
    }
  }
  return rest.empty();
}

}  // namespace

HttpResponse Router::Handle(const HttpRequest& request, std::string_view* route,
                            std::unique_ptr<BodyStream>* stream) const {
  *route = "unmatched";
  const std::string_view target(request.target().data(), request.target().size());
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  RouteArgs args;
  args.stream = stream;
  args.query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  std::vector<std::string_view> segments = Split(path, '/');
  if (!segments.empty() && segments.front().empty()) segments.erase(segments.begin());
  if (!segments.empty() && segments.back().empty()) segments.pop_back();
  // The route whose template and method match; when only the template does, 405 naming the
  // methods its rows allow (rows of one template are one label).
  std::string allowed;
  for (const Route& candidate : Routes()) {
    std::string_view name;
    if (!MatchesTemplate(candidate.path, segments, &name)) continue;
    *route = candidate.path;
    if (candidate.method == request.method()) {
      args.table = PercentDecode(name);
      return candidate.handle(*this, request, args);
    }
    if (!allowed.empty()) allowed += ", ";
    allowed += http::to_string(candidate.method);
  }
  if (!allowed.empty()) return MethodNotAllowed(request, allowed);
  return ErrorResponse(
      request, http::status::not_found, "NOT_FOUND",
      "no route for " + std::string(request.method_string()) + " " + std::string(path));
}

HttpResponse Router::Snapshot(const HttpRequest& request, std::string_view) const {
  auto tables = codec::ParseSnapshotRequest(request.body());
  if (!tables.ok()) return ErrorResponse(request, tables.status());
  auto report = database_.Snapshot(*tables);
  if (!report.ok()) return ErrorResponse(request, report.status());
  return JsonResponse(request, http::status::ok, server::SnapshotReportToJson(*report));
}

HttpResponse Router::Metrics(const HttpRequest& request) const {
  std::string body;
  metrics_.Render(&body);
  const auto tables = catalog_.Tables();
  std::vector<TableStats> stats;  // one snapshot per table for both gauges
  stats.reserve(tables.size());
  for (const auto& table : tables) stats.push_back(table->Stats());
  const struct {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const TableStats&);
  } per_table[] = {
      {"quiver_table_rows", "gauge", "Rows held (expired ones not yet reclaimed included)",
       [](const TableStats& s) { return static_cast<double>(s.rows); }},
      {"quiver_table_bytes", "gauge", "Bytes held (rows, index and heap)",
       [](const TableStats& s) { return static_cast<double>(s.bytes); }},
      {"quiver_table_rows_with_ttl", "gauge", "Rows held that carry an expiry time",
       [](const TableStats& s) { return static_cast<double>(s.rows_with_ttl); }},
      {"quiver_table_expired_rows_total", "counter",
       "Rows reclaimed because they expired, since the table was loaded",
       [](const TableStats& s) { return static_cast<double>(s.expired); }},
      {"quiver_table_evicted_rows_total", "counter",
       "Rows evicted to stay under maxmemory, since the table was loaded",
       [](const TableStats& s) { return static_cast<double>(s.evicted); }},
      {"quiver_table_used_bytes", "gauge", "Bytes counted towards maxmemory",
       [](const TableStats& s) { return static_cast<double>(s.used_bytes); }},
      // The disk tier (docs/tiering.md); zero for a table without one.
      {"quiver_table_resident_rows", "gauge", "Rows held in memory",
       [](const TableStats& s) { return static_cast<double>(s.rows - s.cold_rows); }},
      {"quiver_table_cold_rows", "gauge", "Rows held on the disk tier only",
       [](const TableStats& s) { return static_cast<double>(s.cold_rows); }},
      {"quiver_table_cold_bytes", "gauge", "Bytes of the cold rows' records on disk",
       [](const TableStats& s) { return static_cast<double>(s.cold_bytes); }},
      {"quiver_table_tier_disk_bytes", "gauge",
       "Bytes of the tier file in use (live records and garbage)",
       [](const TableStats& s) { return static_cast<double>(s.tier_disk_bytes); }},
      {"quiver_table_demoted_rows_total", "counter", "Rows moved from memory to the disk tier",
       [](const TableStats& s) { return static_cast<double>(s.demoted); }},
      {"quiver_table_promoted_rows_total", "counter", "Rows moved from the disk tier to memory",
       [](const TableStats& s) { return static_cast<double>(s.promoted); }},
      {"quiver_table_tier_reads_total", "counter", "Cold rows read from disk",
       [](const TableStats& s) { return static_cast<double>(s.cold_reads); }},
      {"quiver_table_tier_read_ios_total", "counter", "Reads issued to the tier's disk",
       [](const TableStats& s) { return static_cast<double>(s.tier_read_ios); }},
      {"quiver_table_tier_read_bytes_total", "counter", "Bytes read from the tier's disk",
       [](const TableStats& s) { return static_cast<double>(s.tier_read_bytes); }},
      {"quiver_table_tier_written_bytes_total", "counter", "Bytes written to the tier's disk",
       [](const TableStats& s) { return static_cast<double>(s.tier_written_bytes); }},
  };
  for (const auto& family : per_table) {
    AppendFamilyHeader(&body, family.name, family.type, std::string(family.help) + ", per table");
    for (size_t i = 0; i < tables.size(); ++i) {
      AppendSample(&body, family.name, {{"table", tables[i]->name()}}, family.value(stats[i]));
    }
  }
  AppendFamilyHeader(&body, "quiver_table_cold_read_seconds", "histogram",
                     "Time reads waited for cold rows from the disk tier (one observation per "
                     "batch of rows read), per table");
  for (size_t i = 0; i < tables.size(); ++i) {
    if (!stats[i].tiered) continue;
    const std::string labels = RenderLabels({{"table", tables[i]->name()}});
    const std::string_view inside = std::string_view{labels}.substr(1, labels.size() - 2);
    AppendHistogramSamples(&body, "quiver_table_cold_read_seconds", inside,
                           tables[i]->cold_read_seconds());
  }
  AppendFamilyHeader(&body, "quiver_tables", "gauge", "Tables in the catalog");
  AppendSample(&body, "quiver_tables", {}, static_cast<double>(tables.size()));
  const MemoryLimit& limit = database_.memory_limit();
  const std::tuple<const char*, const char*, const char*, double> memory[] = {
      {"quiver_memory_used_bytes", "gauge", "Bytes counted towards maxmemory (tables and keyspace)",
       static_cast<double>(limit.UsedMemory())},
      {"quiver_memory_max_bytes", "gauge", "maxmemory (0: no limit)",
       static_cast<double>(limit.MaxMemory())},
      {"quiver_evicted_keys_total", "counter",
       "Keys and table rows evicted to stay under maxmemory since the start",
       static_cast<double>(limit.Evicted())},
      {"quiver_demoted_rows_total", "counter",
       "Table rows moved to a disk tier to stay under maxmemory since the start",
       static_cast<double>(limit.Demoted())},
      {"quiver_client_memory_bytes", "gauge",
       "Bytes held in client buffers (RESP requests and replies, HTTP bodies being read)",
       static_cast<double>(ClientMemory::Global().used())},
      {"quiver_client_memory_max_bytes", "gauge", "maxmemory-clients (0: no limit)",
       static_cast<double>(ClientMemory::Global().limit())},
      {"quiver_decode_memory_bytes", "gauge",
       "Bytes held by request bodies being decoded (Arrow IPC, Parquet)",
       static_cast<double>(DecodeMemory::InFlight())}};
  for (const auto& [name, type, help, value] : memory) {
    AppendFamilyHeader(&body, name, type, help);
    AppendSample(&body, name, {}, value);
  }
  const storage::DatabaseStats durable = database_.Stats();
  const std::pair<const char*, double> counters[] = {
      {"quiver_wal_bytes_total", static_cast<double>(durable.wal_bytes)},
      {"quiver_wal_fsyncs_total", static_cast<double>(durable.wal_fsyncs)},
      {"quiver_snapshots_total", static_cast<double>(durable.snapshots)}};
  const char* counter_help[] = {"Bytes appended to the write-ahead log since the start",
                                "fsyncs of the write-ahead log since the start",
                                "Table snapshots written since the start"};
  for (size_t i = 0; i < std::size(counters); ++i) {
    AppendFamilyHeader(&body, counters[i].first, "counter", counter_help[i]);
    AppendSample(&body, counters[i].first, {}, counters[i].second);
  }
  AppendFamilyHeader(&body, "quiver_wal_last_lsn", "gauge", "LSN of the newest log record");
  AppendSample(&body, "quiver_wal_last_lsn", {}, static_cast<double>(durable.wal_last_lsn));
  AppendFamilyHeader(&body, "quiver_wal_segments", "gauge", "Write-ahead log segment files");
  AppendSample(&body, "quiver_wal_segments", {}, static_cast<double>(durable.wal_segments));
  AppendFamilyHeader(&body, "quiver_last_snapshot_timestamp_seconds", "gauge",
                     "Unix time of the last snapshot since the start (0: none)");
  AppendSample(&body, "quiver_last_snapshot_timestamp_seconds", {},
               static_cast<double>(durable.last_snapshot_unix));
  // Resident memory: the second field of /proc/self/statm, in pages.
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    unsigned long size = 0, resident = 0;
    if (std::fscanf(statm, "%lu %lu", &size, &resident) == 2) {
      AppendFamilyHeader(&body, "process_resident_memory_bytes", "gauge",
                         "Resident memory size in bytes");
      AppendSample(&body, "process_resident_memory_bytes", {},
                   static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)));
    }
    std::fclose(statm);
  }
  AppendFamilyHeader(&body, "quiver_build_info", "gauge", "Version of quiverd and of Arrow");
  AppendSample(&body, "quiver_build_info",
               {{"version", QUIVER_VERSION}, {"arrow", ARROW_VERSION_STRING}}, 1);
  HttpResponse response(http::status::ok, request.version());
  response.set(http::field::content_type, "text/plain; version=0.0.4");
  response.body() = std::move(body);
  return response;
}

HttpResponse Router::ListTables(const HttpRequest& request) const {
  std::string body = "{";
  bool first = true;
  for (const auto& table : catalog_.Tables()) {
    if (!first) body += ',';
    first = false;
    body += nlohmann::json(table->name()).dump();
    body += ':';
    body += table->schema().ToJson();
  }
  body += '}';
  return JsonResponse(request, http::status::ok, std::move(body));
}

HttpResponse Router::GetSchema(const HttpRequest& request, std::string_view name) const {
  auto table = catalog_.GetTable(name);
  if (!table.ok()) return ErrorResponse(request, table.status());
  return JsonResponse(request, http::status::ok, (*table)->schema().ToJson());
}

HttpResponse Router::CreateTable(const HttpRequest& request, std::string_view name) const {
  if (auto error = CheckLength(request, "table schema")) return *error;
  if (auto error = CheckJsonBody(request)) return *error;
  auto schema = TableSchema::FromJson(request.body(), catalog_.options().limits);
  if (!schema.ok()) return ErrorResponse(request, schema.status());
  auto table = catalog_.CreateTable(name, std::move(schema).value());
  if (!table.ok()) return ErrorResponse(request, table.status());
  return JsonResponse(request, http::status::created, (*table)->schema().ToJson());
}

HttpResponse Router::AlterTable(const HttpRequest& request, std::string_view name) const {
  if (auto error = CheckLength(request, "schema change")) return *error;
  if (auto error = CheckJsonBody(request)) return *error;
  auto change = SchemaChange::FromJson(request.body(), catalog_.options().limits);
  if (!change.ok()) return ErrorResponse(request, change.status());
  auto table = catalog_.AlterTable(name, *change);
  if (!table.ok()) return ErrorResponse(request, table.status());
  return JsonResponse(request, http::status::ok, (*table)->schema().ToJson());
}

HttpResponse Router::DescribeTable(const HttpRequest& request, std::string_view name) const {
  auto table = catalog_.GetTable(name);
  if (!table.ok()) return ErrorResponse(request, table.status());
  return JsonResponse(request, http::status::ok, codec::TableInfoToJson(**table));
}

namespace {

class ExportStream final : public BodyStream {
 public:
  explicit ExportStream(std::unique_ptr<codec::TableExport> exporter)
      : exporter_(std::move(exporter)) {}
  Result<std::string> Next() override { return exporter_->Next(); }

 private:
  std::unique_ptr<codec::TableExport> exporter_;
};

}  // namespace

HttpResponse Router::Export(const HttpRequest& request, std::string_view name,
                            std::string_view query, std::unique_ptr<BodyStream>* stream) const {
  codec::ExportFormat format = codec::ExportFormat::kParquet;
  const std::vector<std::string> formats = QueryValues(query, "format");
  if (!formats.empty() && !codec::ParseExportFormat(formats.back(), &format)) {
    return ErrorResponse(request, http::status::bad_request, "INVALID_ARGUMENT",
                         "format '" + formats.back() + "' is not one of parquet, arrow");
  }
  auto table = catalog_.GetTable(name);
  if (!table.ok()) return ErrorResponse(request, table.status());
  auto exporter = codec::TableExport::Make(*table, format);
  if (!exporter.ok()) return ErrorResponse(request, exporter.status());
  *stream = std::make_unique<ExportStream>(std::move(*exporter));
  HttpResponse response(http::status::ok, request.version());
  response.set(http::field::content_type, codec::ExportContentType(format));
  response.set(http::field::content_disposition, "attachment; filename=\"" + std::string(name) +
                                                     std::string(codec::ExportExtension(format)) +
                                                     "\"");
  return response;
}

HttpResponse Router::Source(const HttpRequest& request, std::string_view name) const {
  if (sync_ == nullptr) {
    return ErrorResponse(request, http::status::not_implemented, "NOT_IMPLEMENTED",
                         "this server keeps no Parquet sources (it has no data directory)");
  }
  const std::string table(name);
  if (request.method() == http::verb::delete_) {
    Status unbound = sync_->Unbind(table);
    if (!unbound.ok()) return ErrorResponse(request, unbound);
    return HttpResponse(http::status::no_content, request.version());
  }
  if (request.method() == http::verb::get) {
    auto status = sync_->Describe(table);
    if (!status.ok()) return ErrorResponse(request, status.status());
    return JsonResponse(request, http::status::ok, sync::SourceStatusToJson(*status));
  }
  if (auto error = CheckLength(request, "source")) return *error;
  if (auto error = CheckJsonBody(request)) return *error;
  auto parsed = sync::ParseSourceRequest(request.body());
  if (!parsed.ok()) return ErrorResponse(request, parsed.status());
  auto status = sync_->Bind(table, parsed->uri, parsed->poll_seconds);
  if (!status.ok()) return ErrorResponse(request, status.status());
  return JsonResponse(request, http::status::ok, sync::SourceStatusToJson(*status));
}

HttpResponse Router::DropTable(const HttpRequest& request, std::string_view name) const {
  Status dropped = catalog_.DropTable(name);
  if (!dropped.ok()) return ErrorResponse(request, dropped);
  return HttpResponse(http::status::no_content, request.version());
}

HttpResponse Router::Fetch(const HttpRequest& request, std::string_view name,
                           std::string_view query) const {
  const Format format = Negotiate(request);
  if (format == Format::kNone) {
    return ErrorResponse(request, http::status::not_acceptable, "NOT_ACCEPTABLE",
                         "fetch answers application/json or " + std::string(kArrowStreamType));
  }
  if (auto error = CheckLength(request, "fetch")) return *error;
  auto table = catalog_.GetTable(name);
  if (!table.ok()) return ErrorResponse(request, table.status());
  const std::string content_type = RequestContentType(request);
  FetchRequest fetch;
  const codec::DecodeLimit limit{catalog_.options().limits.max_decode_bytes, false};
  DecodeMemory::Scope scope(limit.bytes);
  if (content_type.empty() || content_type == kJsonType) {
    auto parsed = codec::ParseJsonFetch(request.body(), (*table)->schema());
    if (!parsed.ok()) {
      return ErrorResponse(request, codec::DecodeFailure(parsed.status(), scope, limit));
    }
    fetch = std::move(parsed).value();
  } else if (content_type == kArrowStreamType) {
    auto keys = codec::ParseIpcKeys(request.body(), (*table)->schema());
    if (!keys.ok()) {
      return ErrorResponse(request, codec::DecodeFailure(keys.status(), scope, limit));
    }
    fetch.keys = std::move(keys).value();
  } else {
    return UnsupportedContentType(request,
                                  std::string(kJsonType) + " or " + std::string(kArrowStreamType));
  }
  // Columns named in the query string add to (or, for IPC bodies, make) the list.
  for (std::string& column : QueryValues(query, "columns"))
    fetch.columns.push_back(std::move(column));
  const std::vector<std::string> with_ttl = QueryValues(query, "with_ttl");
  ReadOptions options;
  options.with_ttl = !with_ttl.empty() && (with_ttl[0] == "true" || with_ttl[0] == "1");
  auto result = (*table)->Read(*fetch.keys, fetch.columns, options);
  if (!result.ok()) return ErrorResponse(request, result.status());

  HttpResponse response(http::status::ok, request.version());
  response.set("X-Quiver-Found-Count", std::to_string(result->found_count));
  if (format == Format::kJson) {
    response.set(http::field::content_type, kJsonType);
    response.body() = codec::FetchResultToJson(*result);
    return response;
  }
  const std::vector<std::string> found = QueryValues(query, "found");
  const bool found_column = !found.empty() && (found[0] == "true" || found[0] == "1");
  auto ipc = codec::FetchResultToIpc(*result, found_column);
  if (!ipc.ok()) return ErrorResponse(request, ipc.status());
  response.set(http::field::content_type, kArrowStreamType);
  response.body() = std::move(ipc).value();
  return response;
}

HttpResponse Router::Write(const HttpRequest& request, std::string_view name,
                           std::string_view query) const {
  if (auto error = CheckLength(request, "write")) return *error;
  WriteOptions options;
  if (const std::vector<std::string> ttl = QueryValues(query, "ttl"); !ttl.empty()) {
    auto ttl_ms = codec::ParseTtl(ttl.front());
    if (!ttl_ms.ok() || ttl.size() > 1) {
      return ErrorResponse(request, ttl.size() > 1 ? Status::InvalidArgument("ttl is given twice")
                                                   : ttl_ms.status());
    }
    options.ttl_ms = *ttl_ms;
  }
  if (const std::vector<std::string> cast = QueryValues(query, "cast"); !cast.empty()) {
    auto mode = ParseCastMode(cast.front());
    if (!mode.ok() || cast.size() > 1) {
      return ErrorResponse(request, cast.size() > 1 ? Status::InvalidArgument("cast is given twice")
                                                    : mode.status());
    }
    options.cast = *mode;
  }
  auto table = catalog_.GetTable(name);
  if (!table.ok()) return ErrorResponse(request, table.status());
  const std::string content_type = RequestContentType(request);
  if (content_type != kJsonType && content_type != kArrowStreamType &&
      content_type != kParquetType) {
    return UnsupportedContentType(request, std::string(kJsonType) + ", " +
                                               std::string(kArrowStreamType) + " or " +
                                               std::string(kParquetType));
  }
  // Bounded while it is decoded: a small compressed body may decode to gigabytes, and a JSON
  // body's document takes about ten times its text.
  const codec::DecodeLimit limit =
      codec::WriteDecodeLimit(catalog_.options().limits.max_decode_bytes, database_.memory_limit());
  DecodeMemory::Scope scope(limit.bytes);
  Result<std::shared_ptr<arrow::RecordBatch>> batch = Status::Internal("unreachable");
  if (content_type == kJsonType) {
    batch = codec::ParseJsonWrite(request.body(), (*table)->schema(), options.cast);
    if (!batch.ok() && !scope.exceeded()) {
      return ErrorResponse(request,
                           batch.status().WithContext("table '" + std::string(name) + "'"));
    }
  } else {
    auto data = content_type == kArrowStreamType ? codec::ParseIpcTable(request.body())
                                                 : codec::ParseParquetTable(request.body());
    if (!data.ok()) {
      batch = data.status();
    } else {
      auto combined = (*data)->CombineChunksToBatch(DecodeMemory::pool());
      batch = combined.ok() ? Result<std::shared_ptr<arrow::RecordBatch>>(*combined)
                            : FromArrow(combined.status());
      data = std::shared_ptr<arrow::Table>();  // the chunks go: the batch holds the rows now
    }
  }
  if (!batch.ok()) {
    return ErrorResponse(request, codec::DecodeFailure(batch.status(), scope, limit));
  }
  Result<UpsertResult> written = (*table)->Upsert(**batch, options);
  if (!written.ok()) return ErrorResponse(request, written.status());
  return JsonResponse(request, http::status::ok,
                      nlohmann::json{{"rows_written", written->rows_written},
                                     {"rows_skipped", written->rows_skipped}}
                          .dump());
}

HttpResponse Router::Delete(const HttpRequest& request, std::string_view name) const {
  if (auto error = CheckLength(request, "delete")) return *error;
  if (auto error = CheckJsonBody(request)) return *error;
  auto table = catalog_.GetTable(name);
  if (!table.ok()) return ErrorResponse(request, table.status());
  const codec::DecodeLimit limit{catalog_.options().limits.max_decode_bytes, false};
  DecodeMemory::Scope scope(limit.bytes);
  auto keys = codec::ParseJsonKeys(request.body(), (*table)->schema());
  if (!keys.ok()) {
    return ErrorResponse(request, codec::DecodeFailure(keys.status(), scope, limit));
  }
  auto deleted = (*table)->Delete(**keys);
  if (!deleted.ok()) return ErrorResponse(request, deleted.status());
  return JsonResponse(request, http::status::ok, nlohmann::json{{"deleted", *deleted}}.dump());
}

}  // namespace quiver::http_server
