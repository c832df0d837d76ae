#include "gateway/ingest/store_facts.h"

#include <fmt/format.h>

#include <string>

#include "fhir/json.h"

namespace ccm::gateway {

Result<CollectReport> CollectFactsFromStore(StateStore& store, const EngineConfig& config,
                                            FactStore& facts) {
  CollectReport report;
  std::string buffer, scratch;
  // Size the index once (growing a large table rehashes every entry each time).
  CCM_TRY_ASSIGN(std::size_t stored, store.CountResources("", ""));
  facts.Reserve(stored);
  auto each = [&](std::string_view source, std::string_view type, std::string_view id,
                  std::string_view json) {
    std::string key = fmt::format("{}/{}", type, id);
    // (source, type, id) is the store's primary key: a key met twice comes from two sources.
    if (facts.Find(key) != nullptr) {
      report.read_issues.Add(
          fhir::Severity::kWarning, fhir::IssueCode::kDuplicate, "",
          fmt::format("{} is held by source \"{}\" and at least one other; the newer version is "
                      "used. Sources must not share resource ids (give each EHR its own gateway "
                      "state, or scope them apart)",
                      key, source));
    }
    // The extraction parses in place and reads a little past the end (SIMD): give it a padded,
    // writable, NUL-terminated copy.
    buffer.assign(json);
    buffer.append(fhir::json::kInsituPadding + 1, '\0');
    fhir::SourceLocation where{fmt::format("{}:{}", source, key), 0, ""};
    Result<Extracted> e = ExtractFactFromLine(buffer.data(), json.size(), where, config, &scratch);
    ++report.read.resources;
    if (!e) {
      ++report.read.skipped;
      report.read_issues.Add(fhir::Severity::kError, fhir::IssueCode::kStructure, "",
                             e.error().message, where.ToString());
      return true;
    }
    facts.Add(std::move(*e));
    return true;
  };
  CCM_TRY(store.ForEachResource("", each));
  return report;
}

}  // namespace ccm::gateway
