#include "gateway/app/evaluate_month.h"

#include <utility>

#include "gateway/ccm/report.h"
#include "gateway/ingest/collect.h"
#include "gateway/ingest/store_facts.h"

namespace ccm::gateway::app {
namespace {

// The report of `facts` once they are collected: evaluated, with what was found outside the
// records. (The facts are dropped by the caller afterwards; the records keep what they need.)
MonthReport Report(const FactStore& facts, CollectReport collected, const YearMonth& month,
                   EngineConfig engine) {
  MonthReport r;
  r.month = month;
  r.records = Evaluate(facts, month, engine);
  r.engine = std::move(engine);
  r.read_issues = std::move(collected.read_issues);
  r.read = collected.read;
  for (const fhir::Issue& i : UnattributedIssues(facts)) {
    r.unattributed.Add(i.severity, i.code, i.path, i.message, i.location);
  }
  r.facts = facts.counts();
  r.summary = Summarize(r.records);
  for (const auto& record : r.records) r.patient_issues += record.issues.size();
  return r;
}

}  // namespace

bool MonthReport::has_problems() const {
  bool problems = read.skipped > 0 || unattributed.has_errors() || read_issues.has_errors();
  for (const auto& r : records) {
    for (const auto& i : r.issues) problems = problems || i.is_error();
  }
  return problems;
}

WorkflowResult<MonthReport> EvaluateMonth(EvaluateMonthRequest request) {
  if (Status s = UseFeeScheduleForYear(request.engine, request.month.year); !s) {
    return Fail(ErrorKind::kFailed, "config-failed", s.error().message);
  }
  FactStore facts;
  Result<CollectReport> collected =
      CollectFacts(request.inputs, request.engine, facts, request.threads, request.on_progress);
  if (!collected) return Fail(ErrorKind::kFailed, "input-failed", collected.error().message);
  return Report(facts, std::move(*collected), request.month, std::move(request.engine));
}

WorkflowResult<MonthReport> EvaluateStoredMonth(StateStore& store, const YearMonth& month,
                                                EngineConfig engine,
                                                const std::vector<std::string>& sources) {
  if (Status s = UseFeeScheduleForYear(engine, month.year); !s) {
    return Fail(ErrorKind::kFailed, "config-failed", s.error().message);
  }
  FactStore facts;
  Result<CollectReport> collected = CollectFactsFromStore(store, engine, sources, facts);
  if (!collected) return Fail(ErrorKind::kFailed, "state-failed", collected.error().message);
  return Report(facts, std::move(*collected), month, std::move(engine));
}

std::string_view ToCode(ReportFormat format) noexcept {
  switch (format) {
    case ReportFormat::kNdjson:
      return "ndjson";
    case ReportFormat::kCsv:
      return "csv";
    case ReportFormat::kTable:
      return "table";
  }
  return "ndjson";
}

std::string RenderMonthReport(const MonthReport& report, ReportFormat format) {
  switch (format) {
    case ReportFormat::kCsv:
      return ToCsv(report.records);
    case ReportFormat::kTable:
      return ToTable(report.records, report.engine);
    case ReportFormat::kNdjson:
      break;
  }
  return ToNdjson(report.records, report.engine);
}

}  // namespace ccm::gateway::app
