// The evaluate pipeline: stream the inputs into compact facts, then run the CCM engine.
// `ccm-gateway evaluate` runs it on files; the sync command (next issue) is to feed the same
// FactStore, so that a month's answer is the same whatever the source.
#pragma once

#include <filesystem>
#include <functional>
#include <vector>

#include "fhir/issues.h"
#include "fhir/reader.h"
#include "fhir/result.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ccm/facts.h"

namespace ccm::gateway {

struct CollectReport {
  fhir::ReadCounts read;
  fhir::IssueList read_issues;  // unreadable files, lines and entries (nothing else)
};

// Reads every input (files or directories: NDJSON, .gz, Bundles, single resources) into `facts`,
// building only the elements the engine reads; NDJSON is parsed on `threads` threads. Fails, before
// reading anything, only when an input path cannot be read at all (fhir::CheckInputPath). Lines,
// entries and files that are not FHIR resources (fhir::ResourceTypeProblem) are reported in
// `read_issues` and skipped, never counted as resources. `on_progress`, when set, is called on
// the calling thread with the number of resources read so far, every few thousand resources.
Result<CollectReport> CollectFacts(const std::vector<std::filesystem::path>& inputs,
                                   const EngineConfig& config, FactStore& facts,
                                   unsigned threads = 1,
                                   const std::function<void(std::size_t)>& on_progress = {});

}  // namespace ccm::gateway
