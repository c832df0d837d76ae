// EvaluateMonth: input files -> the CCM answer for one month (what `ccm-gateway evaluate` does),
// and the same from the state store (what `sync` and `bill` evaluate).
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "fhir/issues.h"
#include "fhir/reader.h"
#include "gateway/app/workflow.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ccm/facts.h"
#include "gateway/store/state_store.h"

namespace ccm::gateway::app {

// One month evaluated: the records and everything said about the input.
struct MonthReport {
  YearMonth month;
  // The configuration the month was evaluated under (the fee schedule of the month's year, unless
  // the config chose one); rendering the records needs it.
  EngineConfig engine;
  std::vector<PatientMonth> records;  // one per patient, sorted by patient
  fhir::IssueList read_issues;        // unreadable files, lines and entries (not data problems)
  fhir::IssueList unattributed;       // data problems not attributable to a patient
  fhir::ReadCounts read;              // files read (0 from the state store), lines skipped
  FactCounts facts;                   // resources offered, data issues found
  EvaluationSummary summary;
  std::size_t patient_issues = 0;  // data issues inside the records

  // Something was skipped or is wrong: an unreadable line, an error-level data problem in a
  // record or outside one. (The command line exits 1 then.)
  bool has_problems() const;
};

struct EvaluateMonthRequest {
  std::vector<std::filesystem::path> inputs;  // files or directories (gateway/ingest/collect.h)
  YearMonth month;
  EngineConfig engine;
  unsigned threads = 1;  // NDJSON parsing threads
  // Called now and then while reading, with the resources read so far (on the calling thread).
  std::function<void(std::size_t resources)> on_progress;
};

// Reads the inputs into facts and evaluates the month. kFailed when an input cannot be read at
// all (a missing path, a directory that cannot be listed) or no fee schedule fits; problems
// inside the input are in the report.
WorkflowResult<MonthReport> EvaluateMonth(EvaluateMonthRequest request);

// The same over the resources the state store holds of `sources` (the configured source names;
// rows of a source no longer configured are not read, and a warning in read_issues says so).
// kFailed when the store cannot be read or no fee schedule fits.
WorkflowResult<MonthReport> EvaluateStoredMonth(StateStore& store, const YearMonth& month,
                                                EngineConfig engine,
                                                const std::vector<std::string>& sources);

enum class ReportFormat { kNdjson, kCsv, kTable };
// "ndjson", "csv", "table".
std::string_view ToCode(ReportFormat format) noexcept;
// The records as `evaluate` writes them (docs/ccm-rules.md, "Output of evaluate").
std::string RenderMonthReport(const MonthReport& report, ReportFormat format);

}  // namespace ccm::gateway::app
