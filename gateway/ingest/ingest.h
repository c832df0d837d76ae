// The file-ingest stage of the pipeline: read, validate, de-duplicate, count.
//
// Every resource read from the inputs is validated; one with error-level issues is skipped and its
// issues reported (with file:line); the rest go into a ResourceStore that keeps one resource per
// (type, id): the newest by meta.versionId, then meta.lastUpdated, else the last seen (R4 §3.1.0.5:
// versionId is opaque but servers issue it increasing; lastUpdated is an instant). The IngestReport
// says what was read, kept, skipped and why.
//
// Not thread-safe: one Ingest per store at a time.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "fhir/issues.h"
#include "fhir/json.h"
#include "fhir/reader.h"
#include "fhir/result.h"

namespace ccm::gateway {

struct StoredResource {
  fhir::json::Value resource;
  fhir::SourceLocation where;
};

// Resources by "Type/id", newest version kept.
class ResourceStore {
 public:
  enum class PutResult { kAdded, kReplaced, kKeptExisting };

  // Adds the resource or resolves a duplicate as described above. The resource must have
  // resourceType and id (validated input always has a type; one without id is stored under a
  // generated key "Type/#n" so nothing is dropped).
  PutResult Put(fhir::json::Value resource, fhir::SourceLocation where);

  const StoredResource* Find(std::string_view type, std::string_view id) const;
  std::size_t size() const noexcept { return by_key_.size(); }
  // Visits resources of one type (or all when type is empty) in key order.
  void ForEach(std::string_view type, const std::function<void(const StoredResource&)>& fn) const;

 private:
  std::map<std::string, StoredResource, std::less<>> by_key_;
  std::size_t anonymous_ = 0;
};

// Which of two versions of the same resource is newer; true when `candidate` should replace
// `existing`. Exposed for tests.
bool IsNewerVersion(const fhir::json::Value& candidate, const fhir::json::Value& existing);

struct TypeCounts {
  std::size_t read = 0;        // delivered by the reader
  std::size_t invalid = 0;     // skipped: validation errors
  std::size_t duplicates = 0;  // same type+id seen again (one of the versions kept)
};

struct IngestReport {
  std::map<std::string, TypeCounts, std::less<>> per_type;
  fhir::IssueList issues;      // everything found, in input order
  fhir::ReadCounts read;       // reader's counts (files, lines/entries skipped for syntax)
  std::size_t invalid = 0;     // resources skipped for validation errors
  bool stopped_early = false;  // --strict stopped at the first error

  // Resources and lines not taken in: non-zero means the exit status must be non-zero.
  std::size_t skipped() const noexcept { return read.skipped + invalid; }
};

struct IngestOptions {
  bool strict = false;  // stop at the first error
  // false: the store keeps only resourceType, id and meta of each resource (enough for duplicate
  // detection), so validating a large export does not hold it in memory.
  bool keep_resources = true;
  fhir::ReadOptions read;
  // Validates one resource; the default validator is fhir::Validate. Replaceable for tests.
  std::function<fhir::IssueList(const fhir::json::Value&)> validate;
};

// Reads every input into `store`. Fails, before reading anything, only when an input path cannot
// be read at all (fhir::CheckInputPath). Objects that are not FHIR resources
// (fhir::ResourceTypeProblem) are reported and skipped by the reader, so they count in
// `read.skipped`.
Result<IngestReport> Ingest(const std::vector<std::filesystem::path>& inputs,
                            const IngestOptions& options, ResourceStore& store);

}  // namespace ccm::gateway
