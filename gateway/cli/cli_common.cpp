#include "gateway/cli/cli_common.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "fhir/datetime.h"
#include "fhir/reader.h"

#include "gateway/ccm/report.h"

namespace ccm::gateway::cli {

void PrintIssues(const fhir::IssueList& issues, std::FILE* out) {
  for (const std::string& line : fhir::FormatIssueLines(issues)) fmt::print(out, "{}\n", line);
}

void RefuseOutputAmongInputs(std::string_view option, const std::filesystem::path& out,
                             const std::vector<std::filesystem::path>& inputs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::file_status st = fs::status(out, ec);
  if (!ec && fs::exists(st) && !fs::is_regular_file(st)) return;  // /dev/null, a pipe
  for (const fs::path& input : inputs) {
    if (fs::equivalent(out, input, ec) && !ec) {
      throw UsageError(
          fmt::format("{} {}: this is the input {}, which would be overwritten; "
                      "write to another file",
                      option, out.string(), input.string()));
    }
    ec.clear();
    if (!fs::is_directory(input, ec) || fhir::FormatOf(out) == fhir::FileFormat::kUnknown) continue;
    // Inside an input directory, under a name the reader reads: it would be read as input (this
    // time if it exists, next time anyway).
    fs::path dir = fs::weakly_canonical(input, ec);
    fs::path file = fs::weakly_canonical(out, ec);
    if (ec) continue;
    auto [d, f] = std::mismatch(dir.begin(), dir.end(), file.begin(), file.end());
    if (d == dir.end() && f != file.end()) {
      throw UsageError(
          fmt::format("{} {}: this is inside the input directory {} and would be "
                      "read as input; write it outside the input",
                      option, out.string(), input.string()));
    }
  }
}

void LogEvent(std::string_view level, std::string_view event, std::string_view message) {
  fhir::json::Value e = fhir::json::Value::MakeObject();
  e.set("time", fhir::json::Value::String(fhir::NowUtc()));
  e.set("level", fhir::json::Value::String(std::string(level)));
  e.set("event", fhir::json::Value::String(std::string(event)));
  e.set("message", fhir::json::Value::String(std::string(message)));
  fmt::print(stderr, "{}\n", fhir::json::Serialize(e));
}

namespace {

void PrintIssuesAs(const fhir::IssueList& issues, bool json_log) {
  if (!json_log) return PrintIssues(issues, stderr);
  for (const fhir::Issue& i : issues) {
    if (i.severity == fhir::Severity::kInformation) continue;
    LogEvent(i.is_error() ? "error" : "warning", "report-issue", fhir::FormatIssue(i));
  }
}

}  // namespace

bool WriteStdout(std::string_view text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) return false;
  return std::fflush(stdout) == 0;
}

int ReportMonth(const FactStore& facts, const CollectReport& collected, const YearMonth& month,
                const EngineConfig& config, const std::string& format,
                const std::optional<std::string>& out, std::string_view command,
                std::string_view inputs, bool json_log) {
  std::vector<PatientMonth> results = Evaluate(facts, month, config);

  std::string text = format == "csv"     ? ToCsv(results)
                     : format == "table" ? ToTable(results, config)
                                         : ToNdjson(results, config);
  if (out) {
    if (Status s = WriteFileAtomically(*out, text); !s) {
      fmt::print(stderr, "ccm-gateway {}: {}\n", command, s.error().message);
      return kExitFatal;
    }
  } else if (!WriteStdout(text)) {
    fmt::print(stderr, "ccm-gateway {}: cannot write the report to stdout: {}\n", command,
               std::strerror(errno));
    return kExitFatal;
  }

  // Problems go to stderr: unreadable input, then data problems of unattributed resources, then
  // a count of the per-patient ones (which are in the report itself).
  PrintIssuesAs(collected.read_issues, json_log);
  fhir::IssueList unattributed;
  for (const fhir::Issue& i : UnattributedIssues(facts)) {
    unattributed.Add(i.severity, i.code, i.path, i.message, i.location);
  }
  PrintIssuesAs(unattributed, json_log);
  std::size_t patient_issues = 0;
  for (const auto& r : results) patient_issues += r.issues.size();
  EvaluationSummary sum = Summarize(results);
  const FactCounts& fc = facts.counts();
  std::string summary = fmt::format(
      "evaluated {} ({}, fee schedule {}): {} patient(s), {} eligible, {} consented, {} "
      "billable, expected {} {}; {} resource(s) {}, {} unreadable line(s)/entr(ies), {} data "
      "issue(s) ({} in patient records)",
      month.ToString(), config.practice.time_zone_name, config.fee_schedule.year, sum.patients,
      sum.eligible, sum.consented, sum.billable, FormatCents(sum.expected_payment),
      config.fee_schedule.currency, fc.resources, inputs, collected.read.skipped, fc.issues,
      patient_issues);
  bool problems =
      collected.read.skipped > 0 || unattributed.has_errors() || collected.read_issues.has_errors();
  for (const auto& r : results) {
    for (const auto& i : r.issues) problems = problems || i.is_error();
  }
  if (json_log) {
    LogEvent(problems ? "warning" : "info", "evaluated", summary);
  } else {
    fmt::print(stderr, "{}\n", summary);
  }
  return problems ? kExitDataProblems : kExitOk;
}

YearMonth CurrentMonth(const EngineConfig& config) {
  auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  date::year_month_day ymd{std::chrono::floor<date::days>(now)};
  if (config.practice.time_zone != nullptr) {
    auto local = config.practice.time_zone->to_local(now);
    ymd = date::year_month_day{std::chrono::floor<date::days>(local)};
  }
  return YearMonth{static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month())};
}

}  // namespace ccm::gateway::cli
