#include "gateway/ingest/store_facts.h"

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <string>

#include "fhir/json.h"

namespace ccm::gateway {

Result<CollectReport> CollectFactsFromStore(ResourceTable& store, const EngineConfig& config,
                                            const std::vector<std::string>& sources,
                                            FactStore& facts) {
  CollectReport report;
  std::string buffer, scratch;
  // Size the index once (growing a large table rehashes every entry each time).
  std::size_t wanted = 0;
  for (const auto& source : sources) {
    CCM_TRY_ASSIGN(std::size_t n, store.CountResources(source, ""));
    wanted += n;
  }
  facts.Reserve(wanted);
  CCM_TRY_ASSIGN(std::size_t stored, store.CountResources("", ""));
  if (stored > wanted) {
    CCM_TRY_ASSIGN(auto by_source, store.SourceNames());
    std::vector<std::string> others;
    for (auto& name : by_source) {
      if (std::find(sources.begin(), sources.end(), name) == sources.end()) {
        others.push_back(fmt::format("\"{}\"", name));
      }
    }
    report.read_issues.Add(
        fhir::Severity::kWarning, fhir::IssueCode::kNotSupported, "",
        fmt::format("the state store holds {} resource(s) of source(s) {} that the configuration "
                    "no longer lists; they are kept, but not evaluated or billed (nothing "
                    "refreshes them). List the source in sources[] again to use them",
                    stored - wanted, fmt::join(others, ", ")));
  }
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
  for (const auto& source : sources) CCM_TRY(store.ForEachResourceOf(source, each));
  return report;
}

}  // namespace ccm::gateway
