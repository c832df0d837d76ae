#include "gateway/evaluate.h"

#include <fmt/format.h>

#include <algorithm>

namespace ccm::gateway {

Result<CollectReport> CollectFacts(const std::vector<std::filesystem::path>& inputs,
                                   const EngineConfig& config, FactStore& facts, unsigned threads) {
  for (const auto& p : inputs) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) {
      return MakeError(Errc::kNotFound, fmt::format("{}: no such file or directory", p.string()));
    }
  }
  CollectReport report;
  fhir::ReadOptions options;
  options.parse.keep_member = FactMemberNeeded;
  options.threads = std::max(1u, threads);
  fhir::ResourceReader reader(
      [&](fhir::json::Value&& resource, const fhir::SourceLocation& where) {
        facts.Add(resource, where, config);
        return true;
      },
      [&](const fhir::Issue& issue) {
        report.read_issues.Add(issue.severity, issue.code, issue.path, issue.message,
                               issue.location);
        return true;
      },
      options);
  for (const auto& p : inputs) CCM_TRY(reader.Read(p));
  report.read = reader.counts();
  return report;
}

}  // namespace ccm::gateway
