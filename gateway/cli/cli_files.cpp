// The commands that read files: check, ingest, evaluate, generate-activity.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "fhir/datatypes.h"
#include "fhir/validate.h"
#include "gateway/app/evaluate_month.h"
#include "gateway/cli/cli_common.h"
#include "gateway/config/gateway_config.h"
#include "gateway/ingest/ingest.h"
#include "gateway/io/files.h"
#include "gateway/tools/sample_activity.h"

namespace ccm::gateway::cli {
namespace {

std::vector<std::filesystem::path> Paths(const std::vector<std::string>& inputs) {
  std::vector<std::filesystem::path> out(inputs.begin(), inputs.end());
  if (out.empty()) throw UsageError("--input PATH is required (a file or directory)");
  return out;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void PrintCounts(const IngestReport& r, std::FILE* out) {
  fmt::print(out, "{:<24} {:>9} {:>9} {:>11}\n", "resource type", "read", "invalid", "duplicates");
  std::size_t read = 0, invalid = 0, dups = 0;
  for (const auto& [type, c] : r.per_type) {
    fmt::print(out, "{:<24} {:>9} {:>9} {:>11}\n", type, c.read, c.invalid, c.duplicates);
    read += c.read;
    invalid += c.invalid;
    dups += c.duplicates;
  }
  fmt::print(out, "{:<24} {:>9} {:>9} {:>11}\n", "total", read, invalid, dups);
  std::size_t errors = r.issues.error_count();
  std::size_t warnings = r.issues.warning_count();
  fmt::print(out,
             "\n{} file(s) read, {} file(s) not read, {} resource(s) read, {} skipped "
             "({} unreadable line/entry, {} invalid resource), {} error(s), {} warning(s){}\n",
             r.read.files, r.read.files_skipped, r.read.resources, r.skipped(), r.read.skipped,
             r.invalid, errors, warnings,
             r.stopped_early ? "; stopped at the first error (--strict)" : "");
}

// Reads and validates the inputs (check, ingest), with a progress line on a terminal. Prints the
// fatal error and returns nullopt when an input cannot be read at all.
std::optional<IngestReport> RunIngest(const std::vector<std::filesystem::path>& inputs, bool strict,
                                      bool keep_resources, Console& console, ResourceStore& store) {
  IngestOptions options;
  options.strict = strict;
  options.keep_resources = keep_resources;
  std::size_t validated = 0;
  options.validate = [&](const fhir::json::Value& r) {
    if ((++validated & 1023u) == 0) {
      console.Progress(fmt::format("read and validated {} resource(s)", validated));
    }
    return fhir::Validate(r);
  };
  auto started = std::chrono::steady_clock::now();
  Result<IngestReport> report = Ingest(inputs, options, store);
  console.EndProgress();
  if (!report) {
    console.Error(report.error().message);
    return std::nullopt;
  }
  console.Verbose(fmt::format("read {} file(s), {} resource(s) in {:.1f} s", report->read.files,
                              report->read.resources, SecondsSince(started)));
  return std::move(*report);
}

// A command that reads --input PATH...
class InputCommand : public Command {
 protected:
  using Command::Command;
  void AddInput() {
    AddRequired("--input", inputs_, "Files or directories to read (repeatable)",
                "--input PATH is required (a file or directory)")
        ->type_name("PATH");
  }
  std::vector<std::string> inputs_;
};

class CheckCommand : public InputCommand {
 public:
  CheckCommand()
      : InputCommand(
            "check", "--input PATH... [--strict] [--outcome FILE]",
            "Validate FHIR input (NDJSON, Bundles, single resources, directories, .gz) the "
            "way the pipeline reads it.\nPrints every issue as file:line: path: message, then "
            "counts per resource type. Exit 0 only when nothing was skipped.",
            "ccm-gateway check --input export/\n"
            "ccm-gateway check --input Patient.ndjson.gz Encounter.ndjson --outcome "
            "outcome.json") {
    AddInput();
    AddSwitch("--strict", strict_, "Stop at the first error");
    app()
        .add_option("--outcome", outcome_, "Also write the issues as a FHIR OperationOutcome")
        ->type_name("FILE");
  }

  int Run(Console& console) override {
    std::vector<std::filesystem::path> inputs = Paths(inputs_);
    if (!outcome_.empty()) RefuseOutputAmongInputs("--outcome", outcome_, inputs);
    ResourceStore store;
    // check keeps only each resource's identity and version (for duplicate counts), so its
    // memory does not grow with the size of the export.
    std::optional<IngestReport> report = RunIngest(inputs, strict_, false, console, store);
    if (!report) return kExitFatal;
    PrintIssues(report->issues, stdout, !console.quiet());
    if (!report->issues.empty()) fmt::print("\n");
    PrintCounts(*report, stdout);
    if (!outcome_.empty()) {
      Status written = WriteFileAtomically(
          outcome_, fhir::json::SerializePretty(fhir::ToOperationOutcome(report->issues)) + "\n");
      if (!written) {
        console.Error(fmt::format("--outcome {}", written.error().message));
        return kExitFatal;
      }
      console.Verbose(fmt::format("wrote {}", outcome_));
    }
    return report->skipped() > 0 || report->stopped_early ? kExitDataProblems : kExitOk;
  }

 private:
  bool strict_ = false;
  std::string outcome_;
};

// The patient a resource belongs to, as "Patient/id", or "" when it has none we can resolve.
std::string PatientOf(const fhir::json::Value& r) {
  std::string_view type = r["resourceType"].str();
  if (type == "Patient") return fmt::format("Patient/{}", r["id"].str());
  for (std::string_view element : {"subject", "patient", "beneficiary"}) {
    const fhir::json::Value* ref = r.find(element);
    if (ref == nullptr) continue;
    fhir::IssueList ignored;
    fhir::Reference parsed = fhir::ReadReference(*ref, element, ignored);
    if (auto key = parsed.Key(); key && key->starts_with("Patient/")) return *key;
  }
  return "";
}

class IngestCommand : public InputCommand {
 public:
  IngestCommand()
      : InputCommand(
            "ingest", "--input PATH... [--strict]",
            "Read and de-duplicate the input and print what was taken in, per type and per "
            "patient.",
            "ccm-gateway ingest --input samples/") {
    AddInput();
    AddSwitch("--strict", strict_, "Stop at the first error");
  }

  int Run(Console& console) override {
    std::vector<std::filesystem::path> inputs = Paths(inputs_);
    ResourceStore store;
    std::optional<IngestReport> report = RunIngest(inputs, strict_, true, console, store);
    if (!report) return kExitFatal;
    PrintIssues(report->issues, stderr, !console.quiet());
    PrintCounts(*report, stdout);

    // Per patient: how many resources of each type refer to them.
    std::map<std::string, std::map<std::string, std::size_t>> per_patient;
    std::set<std::string> types;
    std::size_t unattached = 0;
    store.ForEach("", [&](const StoredResource& s) {
      std::string patient = PatientOf(s.resource);
      std::string type(s.resource["resourceType"].str());
      if (patient.empty()) {
        ++unattached;
        return;
      }
      if (type != "Patient") {
        ++per_patient[patient][type];
        types.insert(type);
      } else {
        per_patient[patient];
      }
    });
    fmt::print("\n{} unique resources kept; {} patient(s):\n\n{:<46}", store.size(),
               per_patient.size(), "patient");
    for (const std::string& t : types) fmt::print(" {:>12}", t);
    fmt::print("\n");
    for (const auto& [patient, counts] : per_patient) {
      fmt::print("{:<46}", patient);
      for (const std::string& t : types) {
        auto it = counts.find(t);
        fmt::print(" {:>12}", it == counts.end() ? 0 : it->second);
      }
      fmt::print("\n");
    }
    if (unattached > 0) fmt::print("\n{} resource(s) not tied to a patient\n", unattached);
    return report->skipped() > 0 ? kExitDataProblems : kExitOk;
  }

 private:
  bool strict_ = false;
};

class EvaluateCommand : public InputCommand {
 public:
  EvaluateCommand()
      : InputCommand(
            "evaluate",
            "--month YYYY-MM --input PATH... [--config FILE] [--format ndjson|csv|table] "
            "[--out FILE] [--threads N]",
            "Evaluate chronic care management for the month: eligibility, consent, care plan, "
            "minutes, billable CPT codes and expected payment per patient, with the evidence "
            "(docs/ccm-rules.md).\nDefault format: table on a terminal, CSV for an --out file "
            "ending in .csv, else NDJSON. Problems and a one-line summary go to stderr.",
            "ccm-gateway evaluate --month 2026-10 --input samples/ --config "
            "config/sample-practice.json\n"
            "ccm-gateway evaluate --month 2026-10 --input export/ --out report-2026-10.csv") {
    AddRequired("--month", month_, "The calendar month to evaluate")->type_name("YYYY-MM");
    AddInput();
    app()
        .add_option("--config", config_,
                    "Practice, mappings, rules, fee schedule (default: built in)")
        ->type_name("FILE");
    app().add_option("--format", format_, "ndjson, csv or table")->type_name("FORMAT");
    app()
        .add_option("--out", out_, "Write the report here (atomically), not to stdout")
        ->type_name("FILE");
    app()
        .add_option("--threads", threads_, "NDJSON parsing threads, 1-64 (default: one per CPU)")
        ->type_name("N");
  }

  int Run(Console& console) override {
    YearMonth month = ParseMonth(month_);
    app::ReportFormat format = ChooseFormat(format_, out_, console.stdout_is_terminal());
    std::vector<std::filesystem::path> inputs = Paths(inputs_);
    if (!out_.empty()) RefuseOutputAmongInputs("--out", out_, inputs);
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    if (!threads_.empty()) {
      unsigned n = 0;
      auto [end, ec] = std::from_chars(threads_.data(), threads_.data() + threads_.size(), n);
      if (ec != std::errc() || end != threads_.data() + threads_.size() || n < 1 || n > 64) {
        throw UsageError(
            fmt::format("--threads must be a number from 1 to 64, got \"{}\"", threads_));
      }
      threads = n;
    }
    // The whole file is checked (every command agrees on whether a config is valid); the
    // credentials it names are not read: evaluate contacts no server.
    Result<GatewayConfig> config =
        config_.empty()
            ? DefaultGatewayConfig()
            : LoadGatewayConfig(config_, {.env = {}, .credentials = Credentials::kSkip});
    if (!config) {
      console.Error(config.error().message);
      return config.error().is(Errc::kInternal) ? kExitFatal : kExitUsage;
    }
    console.Verbose(fmt::format("config: {}", config_.empty() ? "built-in defaults" : config_));
    app::EvaluateMonthRequest request{inputs, month, std::move(config->engine), threads, {}};
    auto started = std::chrono::steady_clock::now();
    request.on_progress = [&console, started](std::size_t resources) {
      double s = SecondsSince(started);
      console.Progress(fmt::format("read {} resource(s)  {:.0f}/s", resources,
                                   s > 0 ? static_cast<double>(resources) / s : 0.0));
    };
    auto report = app::EvaluateMonth(std::move(request));
    if (!report) return ReportError(console, report.error());
    console.Verbose(fmt::format("read {} file(s), {} resource(s) and evaluated {} in {:.1f} s",
                                report->read.files, report->facts.resources,
                                report->month.ToString(), SecondsSince(started)));
    return PublishReport(*report, format, out_, console,
                         fmt::format("from {} file(s)", report->read.files));
  }

 private:
  std::string month_, config_, format_, out_, threads_;
};

class GenerateActivityCommand : public InputCommand {
 public:
  GenerateActivityCommand()
      : InputCommand(
            "generate-activity",
            "--input PATH... --month YYYY-MM --out DIR [--seed N] [--utc-offset +hh:mm]",
            "Write deterministic synthetic care-management activity for the living patients "
            "in the input (see samples/activity/README.md).",
            "ccm-gateway generate-activity --input samples/synthea-10pt --month 2026-10 "
            "--out samples/activity --utc-offset -05:00") {
    AddInput();
    AddRequired("--month", month_, "The month of the activity")->type_name("YYYY-MM");
    AddRequired("--out", out_, "The directory to write")->type_name("DIR");
    app().add_option("--seed", seed_, "Seed of the generator (default 1)")->type_name("N");
    app()
        .add_option("--utc-offset", offset_, "Offset of the times written (default +00:00)")
        ->type_name("+hh:mm");
  }

  int Run(Console& console) override {
    ActivityOptions o;
    o.inputs = Paths(inputs_);
    unsigned m = 0;
    int y = 0;
    if (month_.size() != 7 || month_[4] != '-' ||
        std::sscanf(month_.c_str(), "%4d-%2u", &y, &m) != 2 || m < 1 || m > 12) {
      throw UsageError(fmt::format("--month must be YYYY-MM, got \"{}\"", month_));
    }
    o.year = y;
    o.month = m;
    if (!seed_.empty()) {
      try {
        o.seed = std::stoull(seed_);
      } catch (const std::exception&) {
        throw UsageError(fmt::format("--seed must be a non-negative integer, got \"{}\"", seed_));
      }
    }
    if (!offset_.empty()) {
      auto parsed = fhir::FhirDateTime::Parse(fmt::format("2000-01-01T00:00:00{}", offset_));
      if (!parsed || offset_.size() != 6) {
        throw UsageError(fmt::format("--utc-offset must look like -05:00, got \"{}\"", offset_));
      }
      o.utc_offset = offset_;
    }
    o.out_dir = out_;
    fhir::IssueList issues;
    Result<ActivitySummary> s = GenerateActivity(o, issues);
    PrintIssues(issues, stderr, !console.quiet());
    if (!s) {
      console.Error(s.error().message);
      return kExitFatal;
    }
    fmt::print("{} patient(s): {} encounter(s), {} consent(s), {} care plan(s)\n", s->patients,
               s->encounters, s->consents, s->care_plans);
    for (const std::string& f : s->files) fmt::print("wrote {}\n", f);
    return issues.has_errors() ? kExitDataProblems : kExitOk;
  }

 private:
  std::string month_, out_, seed_, offset_;
};

}  // namespace

std::unique_ptr<Command> MakeCheckCommand() { return std::make_unique<CheckCommand>(); }
std::unique_ptr<Command> MakeIngestCommand() { return std::make_unique<IngestCommand>(); }
std::unique_ptr<Command> MakeEvaluateCommand() { return std::make_unique<EvaluateCommand>(); }
std::unique_ptr<Command> MakeGenerateActivityCommand() {
  return std::make_unique<GenerateActivityCommand>();
}

}  // namespace ccm::gateway::cli
