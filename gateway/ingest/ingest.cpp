#include "gateway/ingest/ingest.h"

#include <fmt/format.h>

#include "gateway/base/versions.h"

namespace ccm::gateway {

using fhir::json::Value;

bool IsNewerVersion(const Value& candidate, const Value& existing) {
  return IsNewer(StampOfJson(candidate), StampOfJson(existing));
}

ResourceStore::PutResult ResourceStore::Put(Value resource, fhir::SourceLocation where) {
  std::string type(resource["resourceType"].str());
  std::string_view id = resource["id"].str();
  std::string key =
      id.empty() ? fmt::format("{}/#{}", type, ++anonymous_) : fmt::format("{}/{}", type, id);
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    by_key_.emplace(std::move(key), StoredResource{std::move(resource), std::move(where)});
    return PutResult::kAdded;
  }
  if (!IsNewerVersion(resource, it->second.resource)) return PutResult::kKeptExisting;
  it->second = StoredResource{std::move(resource), std::move(where)};
  return PutResult::kReplaced;
}

const StoredResource* ResourceStore::Find(std::string_view type, std::string_view id) const {
  auto it = by_key_.find(fmt::format("{}/{}", type, id));
  return it == by_key_.end() ? nullptr : &it->second;
}

void ResourceStore::ForEach(std::string_view type,
                            const std::function<void(const StoredResource&)>& fn) const {
  if (type.empty()) {
    for (const auto& [k, v] : by_key_) fn(v);
    return;
  }
  std::string prefix = fmt::format("{}/", type);
  for (auto it = by_key_.lower_bound(prefix); it != by_key_.end() && it->first.starts_with(prefix);
       ++it) {
    fn(it->second);
  }
}

Result<IngestReport> Ingest(const std::vector<std::filesystem::path>& inputs,
                            const IngestOptions& options, ResourceStore& store) {
  IngestReport report;
  bool stop = false;
  fhir::ResourceReader reader(
      [&](Value&& resource, const fhir::SourceLocation& where) {
        std::string type(resource["resourceType"].str());
        TypeCounts& counts = report.per_type[type.empty() ? "(no resourceType)" : type];
        ++counts.read;
        fhir::IssueList found = options.validate ? options.validate(resource) : fhir::IssueList{};
        found.SetLocation(where.ToString());
        bool invalid = found.has_errors();
        report.issues.Append(found);
        if (invalid) {
          ++counts.invalid;
          ++report.invalid;
          report.issues.Add(fhir::Severity::kError, fhir::IssueCode::kProcessing, "",
                            fmt::format("{} skipped: fix the errors above and read it again",
                                        type.empty() ? "resource" : type),
                            where.ToString());
          if (options.strict) stop = true;
          return !stop;
        }
        if (!options.keep_resources) {
          Value identity = Value::MakeObject();
          for (std::string_view k : {"resourceType", "id", "meta"}) {
            if (Value* v = resource.find(k)) identity.set(k, std::move(*v));
          }
          resource = std::move(identity);
        }
        if (store.Put(std::move(resource), where) != ResourceStore::PutResult::kAdded) {
          ++counts.duplicates;
        }
        return true;
      },
      [&](const fhir::Issue& issue) {
        report.issues.Add(issue.severity, issue.code, issue.path, issue.message, issue.location);
        if (options.strict && issue.is_error()) stop = true;
        return !stop;
      },
      options.read);
  // Every input is checked before any is read: a typo in the last one must not cost a long read.
  for (const auto& input : inputs) CCM_TRY(fhir::CheckInputPath(input));
  for (const auto& input : inputs) {
    if (stop) break;
    CCM_TRY(reader.Read(input));
  }
  report.read = reader.counts();
  report.stopped_early = stop;
  return report;
}

}  // namespace ccm::gateway
