#include "objstore/manifest.h"

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/crc32c.h"
#include "common/json_shape.h"

namespace quiver::objstore {
namespace {

constexpr std::string_view kManifestMagic = "QUIVER-MANIFEST 1 crc32c=";
constexpr std::string_view kLeaseMagic = "QUIVER-LEASE 1 crc32c=";

std::string WithHeader(std::string_view magic, const std::string& body) {
  char header[64];
  std::snprintf(header, sizeof(header), "%s%08" PRIx32 "\n", std::string(magic).c_str(),
                Crc32c(body));
  return header + body;
}

// The JSON after a checked header line, or why not.
Result<nlohmann::json> Body(std::string_view magic, std::string_view text,
                            const std::string& what) {
  const auto corrupt = [&](const std::string& why) { return Status::Corruption(what + " " + why); };
  if (!text.starts_with(magic) || text.size() < magic.size() + 9 ||
      text[magic.size() + 8] != '\n') {
    return corrupt("does not start with its header line");
  }
  uint32_t recorded = 0;
  if (std::sscanf(std::string(text.substr(magic.size(), 8)).c_str(), "%8" SCNx32, &recorded) != 1) {
    return corrupt("has an unreadable checksum");
  }
  const std::string_view body = text.substr(magic.size() + 9);
  if (Crc32c(body) != recorded) return corrupt("fails its checksum (damaged or cut short)");
  QUIVER_RETURN_NOT_OK(CheckJsonShape(body, what));
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return corrupt("is not a JSON object");
  return json;
}

std::string_view KindName(ManifestFile::Kind kind) {
  return kind == ManifestFile::Kind::kSnapshot ? "snapshot" : "wal";
}

}  // namespace

std::string Manifest::Key() const {
  char key[64];
  std::snprintf(key, sizeof(key), "manifests/%08" PRIu64 "-%012" PRIu64 ".manifest", epoch,
                sequence);
  return key;
}

bool ParseManifestKey(std::string_view key, uint64_t* epoch, uint64_t* sequence) {
  if (!key.starts_with("manifests/")) return false;
  key.remove_prefix(10);
  if (key.size() != 8 + 1 + 12 + 9 || key[8] != '-' || !key.ends_with(".manifest")) return false;
  for (size_t i : {size_t{0}, size_t{9}}) {
    const size_t n = i == 0 ? 8 : 12;
    for (size_t j = i; j < i + n; ++j) {
      if (key[j] < '0' || key[j] > '9') return false;
    }
  }
  *epoch = std::stoull(std::string(key.substr(0, 8)));
  *sequence = std::stoull(std::string(key.substr(9, 12)));
  return true;
}

std::string EncodeManifest(const Manifest& manifest) {
  nlohmann::ordered_json json;
  json["format"] = 1;
  json["epoch"] = manifest.epoch;
  json["sequence"] = manifest.sequence;
  json["instance"] = manifest.instance;
  json["created_ms"] = manifest.created_ms;
  json["lsn"] = manifest.lsn;
  json["catalog"] = manifest.catalog;
  json["files"] = nlohmann::ordered_json::array();
  for (const ManifestFile& file : manifest.files) {
    json["files"].push_back({{"kind", KindName(file.kind)},
                             {"name", file.name},
                             {"object", file.stored.key},
                             {"bytes", file.stored.bytes},
                             {"crc32c", file.stored.crc32c},
                             {"part_bytes", file.stored.part_bytes},
                             {"part_crc32c", file.stored.part_crc32c}});
  }
  return WithHeader(kManifestMagic, json.dump(1));
}

namespace {

Result<Manifest> DecodeManifestJson(const std::string& key, std::string_view text) {
  const std::string what = "manifest '" + key + "'";
  QUIVER_ASSIGN_OR_RETURN(const nlohmann::json json, Body(kManifestMagic, text, what));
  const auto bad = [&](const std::string& why) { return Status::Corruption(what + ": " + why); };
  Manifest manifest;
  if (json.value("format", 0) != 1) return bad("unknown format (this Quiver reads format 1)");
  const auto number = [&](const nlohmann::json& object, const char* field, uint64_t* out) {
    auto it = object.find(field);
    if (it == object.end() || !it->is_number_unsigned()) return false;
    *out = it->get<uint64_t>();
    return true;
  };
  uint64_t created = 0;
  if (!number(json, "epoch", &manifest.epoch) || !number(json, "sequence", &manifest.sequence) ||
      !number(json, "lsn", &manifest.lsn) || !number(json, "created_ms", &created) ||
      !json.contains("catalog") || !json["catalog"].is_string() || !json.contains("files") ||
      !json["files"].is_array()) {
    return bad("a field is missing or has the wrong type");
  }
  manifest.created_ms = static_cast<int64_t>(created);
  manifest.instance = json.value("instance", "");
  manifest.catalog = json["catalog"].get<std::string>();
  for (const nlohmann::json& entry : json["files"]) {
    if (!entry.is_object()) return bad("a file entry is not an object");
    ManifestFile file;
    const std::string kind = entry.value("kind", "");
    if (kind != "snapshot" && kind != "wal") return bad("a file has an unknown kind");
    file.kind = kind == "snapshot" ? ManifestFile::Kind::kSnapshot : ManifestFile::Kind::kWal;
    file.name = entry.value("name", "");
    file.stored.key = entry.value("object", "");
    uint64_t crc = 0;
    if (!number(entry, "bytes", &file.stored.bytes) || !number(entry, "crc32c", &crc) ||
        !number(entry, "part_bytes", &file.stored.part_bytes) || file.stored.part_bytes == 0 ||
        !entry.contains("part_crc32c") || !entry["part_crc32c"].is_array()) {
      return bad("file '" + file.name + "' has a missing or wrong field");
    }
    // Names become local paths: a plain file name only.
    if (file.name.empty() || file.name.find('/') != std::string::npos || file.name[0] == '.' ||
        file.stored.key.empty()) {
      return bad("file name '" + file.name + "' is not a plain file name");
    }
    file.stored.crc32c = static_cast<uint32_t>(crc);
    const uint64_t parts =
        file.stored.bytes == 0
            ? 1
            : (file.stored.bytes + file.stored.part_bytes - 1) / file.stored.part_bytes;
    if (entry["part_crc32c"].size() != parts) {
      return bad("file '" + file.name + "' lists the wrong number of parts");
    }
    for (const nlohmann::json& part : entry["part_crc32c"]) {
      if (!part.is_number_unsigned()) return bad("file '" + file.name + "' has a bad part CRC");
      file.stored.part_crc32c.push_back(part.get<uint32_t>());
    }
    manifest.files.push_back(std::move(file));
  }
  return manifest;
}

Result<Lease> DecodeLeaseJson(std::string_view text) {
  QUIVER_ASSIGN_OR_RETURN(const nlohmann::json json, Body(kLeaseMagic, text, "the lease object"));
  Lease lease;
  if (!json.contains("epoch") || !json["epoch"].is_number_unsigned()) {
    return Status::Corruption("the lease object has no epoch");
  }
  lease.epoch = json["epoch"].get<uint64_t>();
  lease.instance = json.value("instance", "");
  lease.host = json.value("host", "");
  lease.pid = json.value("pid", int64_t{0});
  lease.renewed_ms = json.value("renewed_ms", int64_t{0});
  lease.lease_ms = json.value("lease_ms", int64_t{0});
  return lease;
}

}  // namespace

// A field of the wrong type makes nlohmann throw: that is corruption too.
Result<Manifest> DecodeManifest(const std::string& key, std::string_view text) {
  try {
    return DecodeManifestJson(key, text);
  } catch (const nlohmann::json::exception& error) {
    return Status::Corruption("manifest '" + key + "': " + error.what());
  }
}

Result<Lease> DecodeLease(std::string_view text) {
  try {
    return DecodeLeaseJson(text);
  } catch (const nlohmann::json::exception& error) {
    return Status::Corruption(std::string("the lease object: ") + error.what());
  }
}

std::string EncodeLease(const Lease& lease) {
  nlohmann::ordered_json json;
  json["format"] = 1;
  json["epoch"] = lease.epoch;
  json["instance"] = lease.instance;
  json["host"] = lease.host;
  json["pid"] = lease.pid;
  json["renewed_ms"] = lease.renewed_ms;
  json["lease_ms"] = lease.lease_ms;
  return WithHeader(kLeaseMagic, json.dump());
}

}  // namespace quiver::objstore
