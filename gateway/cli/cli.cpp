#include "gateway/cli/cli.h"

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include "fhir/datatypes.h"
#include "fhir/validate.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ccm/report.h"
#include "gateway/cli/cli_common.h"
#include "gateway/ingest/collect.h"
#include "gateway/ingest/ingest.h"
#include "gateway/tools/sample_activity.h"

namespace ccm::gateway {
namespace {

using namespace cli;  // NOLINT(google-build-using-namespace): the shared CLI pieces

constexpr std::string_view kUsage = R"(usage: ccm-gateway <command> [options]

commands:
  check    --input PATH... [--strict] [--outcome FILE]
           Validate FHIR input (NDJSON, Bundles, single resources, directories, .gz) the way
           the pipeline reads it. Prints counts per resource type and every issue as
           file:line: path: message. Exit 0 only when nothing was skipped.
  ingest   --input PATH... [--strict]
           Read and de-duplicate the input and print what was taken in, per type and per patient.
  evaluate --month YYYY-MM --input PATH... [--config FILE] [--format ndjson|csv|table]
           [--out FILE] [--threads N]
           Evaluate chronic care management for the month: eligibility, consent, care plan,
           minutes, billable CPT codes and expected payment per patient, with the evidence
           (docs/ccm-rules.md). Default format: table on a terminal, else ndjson.
  sync     --config FILE [--once] [--full] [--allow-mass-delete] [--month YYYY-MM]
           [--report FILE]
           Pull the configured FHIR sources into the state store (incrementally, after the
           first run), then evaluate the month from the store exactly as `evaluate` does and
           write the records to --report (default month: the current one in the practice time
           zone). Without --once, repeats every sync.intervalSeconds until SIGINT/SIGTERM.
           --full ignores the cursors and removes what the servers no longer have (each
           removal confirmed by the server; more than sync.maxDeletePercent of a type
           needs --allow-mass-delete). Exit 1 when a type failed or is incomplete.
  bill     --month YYYY-MM --config FILE [--dry-run] [--open-month] [--allow-incomplete]
           Close the month from the state store (run `sync` first): write back CCM care plans
           (writeBack.carePlans), record every billable patient-month in the ledger exactly once
           (corrections of earlier months become adjustments or voids), and deliver ChargeItems
           (writeBack.chargeItems) and payer claim Bundles and CSV (billing.payers). Re-running
           changes nothing. --dry-run prints what would be written and writes nothing. A month
           that has not ended is refused unless --open-month. Refused while a sync runs, or when
           a needed type's last pull was not complete (--allow-incomplete bills anyway and the
           ledger records it). Voids and downward adjustments are proposed first and carried out
           after the next complete sync or an approval.
  ledger   --config FILE [--month YYYY-MM] [--all] [--acknowledge ID...] [--approve ID...]
           [--audit]
           List the billing ledger (active entries; --all includes superseded ones) with their
           deliveries, then the proposals (open ones; --all: every one); --acknowledge marks
           submitted entries as acknowledged by the payer; --approve approves proposals so that
           the next bill carries them out; --audit lists the audit log of writes to other
           systems instead.
  generate-activity --input PATH... --month YYYY-MM --out DIR [--seed N] [--utc-offset +hh:mm]
           Write deterministic synthetic care-management activity for the living patients in the
           input (see samples/activity/README.md).
  version  Print the version.
  help     Print this text.

exit status: 0 ok, 1 input problems (see the issues printed), 2 usage error, 3 fatal error.
)";

std::vector<std::filesystem::path> Inputs(const Args& args) {
  std::vector<std::filesystem::path> inputs;
  for (const std::string& s : args.all("--input")) inputs.emplace_back(s);
  if (inputs.empty()) throw UsageError("--input PATH is required (a file or directory)");
  return inputs;
}

IngestOptions MakeIngestOptions(const Args& args) {
  IngestOptions o;
  o.strict = args.flag("--strict");
  o.validate = [](const fhir::json::Value& r) { return fhir::Validate(r); };
  return o;
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

// Runs the ingest stage for a command; prints the fatal error and returns nullopt on failure.
std::optional<IngestReport> RunIngestStage(const Args& args, std::string_view command,
                                           ResourceStore& store, bool keep_resources) {
  IngestOptions options = MakeIngestOptions(args);
  options.keep_resources = keep_resources;
  Result<IngestReport> report = Ingest(Inputs(args), options, store);
  if (!report) {
    fmt::print(stderr, "ccm-gateway {}: {}\n", command, report.error().message);
    return std::nullopt;
  }
  return std::move(*report);
}

int RunCheck(const Args& args) {
  if (auto file = args.value("--outcome"))
    RefuseOutputAmongInputs("--outcome", *file, Inputs(args));
  ResourceStore store;
  // check keeps only each resource's identity and version (for duplicate counts), so its memory
  // does not grow with the size of the export.
  std::optional<IngestReport> report = RunIngestStage(args, "check", store, false);
  if (!report) return kExitFatal;
  PrintIssues(report->issues, stdout);
  if (!report->issues.empty()) fmt::print("\n");
  PrintCounts(*report, stdout);
  if (auto file = args.value("--outcome")) {
    Status written = WriteFileAtomically(
        *file, fhir::json::SerializePretty(fhir::ToOperationOutcome(report->issues)) + "\n");
    if (!written) {
      fmt::print(stderr, "ccm-gateway check: --outcome {}\n", written.error().message);
      return kExitFatal;
    }
  }
  return report->skipped() > 0 || report->stopped_early ? kExitDataProblems : kExitOk;
}

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

int RunIngest(const Args& args) {
  ResourceStore store;
  std::optional<IngestReport> report = RunIngestStage(args, "ingest", store, true);
  if (!report) return kExitFatal;
  PrintIssues(report->issues, stderr);
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

int RunGenerateActivity(const Args& args) {
  ActivityOptions o;
  o.inputs = Inputs(args);
  std::string month = args.required("--month");
  unsigned m = 0;
  int y = 0;
  if (month.size() != 7 || month[4] != '-' || std::sscanf(month.c_str(), "%4d-%2u", &y, &m) != 2 ||
      m < 1 || m > 12) {
    throw UsageError(fmt::format("--month must be YYYY-MM, got \"{}\"", month));
  }
  o.year = y;
  o.month = m;
  if (auto seed = args.value("--seed")) {
    try {
      o.seed = std::stoull(*seed);
    } catch (const std::exception&) {
      throw UsageError(fmt::format("--seed must be a non-negative integer, got \"{}\"", *seed));
    }
  }
  if (auto off = args.value("--utc-offset")) {
    auto parsed = fhir::FhirDateTime::Parse(fmt::format("2000-01-01T00:00:00{}", *off));
    if (!parsed || off->size() != 6) {
      throw UsageError(fmt::format("--utc-offset must look like -05:00, got \"{}\"", *off));
    }
    o.utc_offset = *off;
  }
  o.out_dir = args.required("--out");
  fhir::IssueList issues;
  Result<ActivitySummary> s = GenerateActivity(o, issues);
  PrintIssues(issues, stderr);
  if (!s) {
    fmt::print(stderr, "ccm-gateway generate-activity: {}\n", s.error().message);
    return kExitFatal;
  }
  fmt::print("{} patient(s): {} encounter(s), {} consent(s), {} care plan(s)\n", s->patients,
             s->encounters, s->consents, s->care_plans);
  for (const std::string& f : s->files) fmt::print("wrote {}\n", f);
  return issues.has_errors() ? kExitDataProblems : kExitOk;
}

int RunEvaluate(const Args& args) {
  auto month = YearMonth::Parse(args.required("--month"));
  if (!month) throw UsageError(fmt::format("--month: {}", month.error().message));
  std::string format =
      args.value("--format")
          .value_or(args.value("--out") || !::isatty(::fileno(stdout)) ? "ndjson" : "table");
  if (format != "ndjson" && format != "csv" && format != "table") {
    throw UsageError(fmt::format("--format must be ndjson, csv or table, got \"{}\"", format));
  }
  std::vector<std::filesystem::path> inputs = Inputs(args);
  if (auto out = args.value("--out")) RefuseOutputAmongInputs("--out", *out, inputs);
  Result<EngineConfig> config =
      args.value("--config") ? LoadEngineConfig(*args.value("--config")) : DefaultEngineConfig();
  if (!config) {
    fmt::print(stderr, "ccm-gateway evaluate: {}\n", config.error().message);
    return config.error().is(Errc::kInternal) ? kExitFatal : kExitUsage;
  }
  if (Status s = UseFeeScheduleForYear(*config, month->year); !s) {
    fmt::print(stderr, "ccm-gateway evaluate: {}\n", s.error().message);
    return kExitFatal;
  }
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  if (auto t = args.value("--threads")) {
    unsigned n = 0;
    auto [end, ec] = std::from_chars(t->data(), t->data() + t->size(), n);
    if (ec != std::errc() || end != t->data() + t->size() || n < 1 || n > 64) {
      throw UsageError(fmt::format("--threads must be a number from 1 to 64, got \"{}\"", *t));
    }
    threads = n;
  }
  FactStore facts;
  Result<CollectReport> collected = CollectFacts(inputs, *config, facts, threads);
  if (!collected) {
    fmt::print(stderr, "ccm-gateway evaluate: {}\n", collected.error().message);
    return kExitFatal;
  }
  return ReportMonth(facts, *collected, *month, *config, format, args.value("--out"), "evaluate",
                     fmt::format("from {} file(s)", collected->read.files));
}

int Dispatch(std::string_view command, std::span<char*> rest) {
  try {
    if (command == "check") {
      return RunCheck(Args(rest, {"--strict"}, {"--outcome"}, {"--input"}));
    }
    if (command == "ingest") {
      return RunIngest(Args(rest, {"--strict"}, {}, {"--input"}));
    }
    if (command == "evaluate") {
      return RunEvaluate(
          Args(rest, {}, {"--month", "--config", "--format", "--out", "--threads"}, {"--input"}));
    }
    if (command == "sync") {
      return RunSync(Args(rest, {"--once", "--full", "--allow-mass-delete"},
                          {"--config", "--month", "--report"}, {}));
    }
    if (command == "bill") {
      return RunBill(Args(rest, {"--dry-run", "--open-month", "--allow-incomplete"},
                          {"--config", "--month"}, {}));
    }
    if (command == "ledger") {
      return RunLedger(Args(rest, {"--all", "--audit"}, {"--config", "--month"},
                            {"--acknowledge", "--approve"}));
    }
    if (command == "generate-activity") {
      return RunGenerateActivity(
          Args(rest, {}, {"--month", "--out", "--seed", "--utc-offset"}, {"--input"}));
    }
    if (command == "version" || command == "--version") {
      fmt::print("ccm-gateway {}\n", CCM_VERSION);
      return kExitOk;
    }
    if (command == "help" || command == "--help" || command == "-h") {
      fmt::print("{}", kUsage);
      return kExitOk;
    }
    fmt::print(stderr, "ccm-gateway: unknown command \"{}\"\n\n{}", command, kUsage);
    return kExitUsage;
  } catch (const UsageError& e) {
    fmt::print(stderr, "ccm-gateway {}: {}\nrun `ccm-gateway help` for usage\n", command, e.what());
    return kExitUsage;
  } catch (const std::system_error& e) {
    // fmt::print throws this when stdout cannot be written (a full disk, a closed pipe).
    if (std::ferror(stdout) != 0) {
      fmt::print(stderr, "ccm-gateway {}: cannot write to stdout: {}\n", command,
                 e.code().message());
    } else {
      fmt::print(stderr, "ccm-gateway {}: {}\n", command, e.what());
    }
    return kExitFatal;
  } catch (const std::exception& e) {
    // The process boundary: anything unexpected is reported, never a crash.
    fmt::print(stderr, "ccm-gateway {}: internal error: {}\n", command, e.what());
    return kExitFatal;
  }
}

}  // namespace

int RunCli(int argc, char** argv) {
  std::span<char*> all(argv, static_cast<std::size_t>(argc));
  if (all.size() < 2) {
    fmt::print(stderr, "{}", kUsage);
    return kExitUsage;
  }
  std::string_view command = all[1];
  int status = kExitFatal;
  try {
    status = Dispatch(command, all.subspan(2));
  } catch (...) {
    return kExitFatal;  // even the error could not be written (stderr is full or closed)
  }
  // What is still buffered for stdout is written now, not at exit, where a failure (a full
  // disk: `> /dev/full`) would go unnoticed and the exit status would claim success.
  errno = 0;
  bool flushed = std::fflush(stdout) == 0;
  int err = errno;
  if ((!flushed || std::ferror(stdout) != 0) && status != kExitFatal) {  // (fatal: said already)
    // (std::fputs: if stderr cannot be written either, there is no one left to tell.)
    std::fputs(fmt::format("ccm-gateway {}: cannot write to stdout: {}\n", command,
                           !flushed && err != 0 ? std::strerror(err) : "an earlier write failed")
                   .c_str(),
               stderr);
    return kExitFatal;
  }
  return status;
}

}  // namespace ccm::gateway
