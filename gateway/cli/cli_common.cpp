#include "gateway/cli/cli_common.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>
#include <unistd.h>

#include "fhir/datetime.h"
#include "fhir/json.h"
#include "fhir/reader.h"
#include "gateway/base/config_keys.h"
#include "gateway/io/files.h"

namespace ccm::gateway::cli {

std::string Wrap(std::string_view text, std::size_t indent, std::size_t width) {
  std::string out, line;
  bool first = true;
  auto flush = [&]() {
    if (!first) out += "\n" + std::string(indent, ' ');
    first = false;
    out += line;
    line.clear();
  };
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find_first_of(" \n", pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(pos, end - pos);
    if (!word.empty()) {
      if (!line.empty() && indent + line.size() + 1 + word.size() > width) flush();
      line += (line.empty() ? "" : " ") + std::string(word);
    }
    if (end < text.size() && text[end] == '\n') flush();
    pos = end + 1;
  }
  if (!line.empty()) flush();
  return out;
}

Console::Console(std::string command, Verbosity verbosity)
    : command_(std::move(command)),
      verbosity_(verbosity),
      stderr_terminal_(::isatty(::fileno(stderr)) != 0),
      stdout_terminal_(::isatty(::fileno(stdout)) != 0) {}

Console::~Console() { EndProgress(); }

void Console::Error(std::string_view message) {
  EndProgress();
  fmt::print(stderr, "ccm-gateway {}: {}\n", command_, message);
}

void Console::Info(std::string_view line) {
  if (quiet()) return;
  EndProgress();
  fmt::print(stderr, "{}\n", line);
}

void Console::Verbose(std::string_view line) {
  if (!verbose()) return;
  EndProgress();
  fmt::print(stderr, "{}\n", line);
}

void Console::Progress(std::string_view line, bool force) {
  if (!stderr_terminal_ || quiet()) return;
  auto now = std::chrono::steady_clock::now();
  if (!force && progress_shown_ && now - last_progress_ < std::chrono::milliseconds(100)) return;
  last_progress_ = now;
  progress_shown_ = true;
  fmt::print(stderr, "\r\033[K{}", line);
  std::fflush(stderr);
}

void Console::EndProgress() {
  if (!progress_shown_) return;
  progress_shown_ = false;
  fmt::print(stderr, "\r\033[K");
  std::fflush(stderr);
}

Command::Command(std::string name, std::string synopsis, std::string description,
                 std::string examples)
    : name_(std::move(name)),
      synopsis_(std::move(synopsis)),
      description_(std::move(description)),
      app_(Wrap(description_, 0, 100), "ccm-gateway " + name_) {
  // Unknown options and stray words are collected, not thrown at once, so that the error can
  // suggest the closest option (cli.cpp).
  app_.allow_extras(true);
  app_.get_formatter()->column_width(30);
  app_.get_formatter()->label("REQUIRED", "(required)");
  std::string footer = "Examples:";
  std::size_t pos = 0;
  while (pos < examples.size()) {
    std::size_t nl = examples.find('\n', pos);
    if (nl == std::string::npos) nl = examples.size();
    footer += "\n  " + examples.substr(pos, nl - pos);
    pos = nl + 1;
  }
  footer += "\n\nExit status: 0 ok, 1 data problems (see the messages), 2 usage error, 3 fatal.";
  app_.footer(footer);
  AddSwitch("--quiet", quiet_, "Only warnings and errors on stderr: no progress, notes, summary");
  AddSwitch("--verbose", verbose_, "Also say what is read and written, and how long it took");
}

Verbosity Command::verbosity() const {
  return quiet_ ? Verbosity::kQuiet : verbose_ ? Verbosity::kVerbose : Verbosity::kNormal;
}

void Command::CheckRequired() const {
  if (quiet_ && verbose_) throw UsageError("--quiet and --verbose exclude each other");
  for (const auto& [option, missing] : required_) {
    if (option->count() == 0) throw UsageError(missing);
  }
}

CLI::Option* Command::AddSwitch(const std::string& name, bool& target, const std::string& help) {
  // CLI11 turns `--flag=no` into false and `--flag=yes` into true; only true and false are
  // accepted here, so that no spelling can quietly mean something else.
  CLI::Validator strict(
      [](std::string& value) -> std::string {
        if (value == "true" || value == "false") return "";
        return fmt::format("takes no value, or =true or =false; got \"{}\"", value);
      },
      "");
  return app_.add_flag(name, target, help)->check(strict);
}

std::vector<std::unique_ptr<Command>> MakeCommands() {
  std::vector<std::unique_ptr<Command>> out;
  out.push_back(MakeCheckCommand());
  out.push_back(MakeIngestCommand());
  out.push_back(MakeEvaluateCommand());
  out.push_back(MakeSyncCommand());
  out.push_back(MakeBillCommand());
  out.push_back(MakeLedgerCommand());
  out.push_back(MakeAuditCommand());
  out.push_back(MakeServeCommand());
  out.push_back(MakeConfigCheckCommand());
  out.push_back(MakeGenerateActivityCommand());
  out.push_back(MakeVersionCommand());
  return out;
}

int ExitStatusOf(app::ErrorKind kind) {
  switch (kind) {
    case app::ErrorKind::kInvalidRequest:
    case app::ErrorKind::kInvalidSetup:
      return kExitUsage;
    case app::ErrorKind::kRefused:
      return kExitDataProblems;
    case app::ErrorKind::kFailed:
      return kExitFatal;
  }
  return kExitFatal;
}

int ReportError(Console& console, const app::WorkflowError& error) {
  console.Error(error.message);
  if (error.kind == app::ErrorKind::kInvalidRequest) {
    fmt::print(stderr, "run `ccm-gateway help {}` for usage\n", console.command());
  }
  return ExitStatusOf(error.kind);
}

YearMonth ParseMonth(const std::string& text) {
  auto month = YearMonth::Parse(text);
  if (!month) throw UsageError(fmt::format("--month: {}", month.error().message));
  return *month;
}

app::ReportFormat ChooseFormat(const std::string& format, const std::string& out,
                               bool stdout_is_terminal) {
  if (format == "ndjson") return app::ReportFormat::kNdjson;
  if (format == "csv") return app::ReportFormat::kCsv;
  if (format == "table") return app::ReportFormat::kTable;
  if (!format.empty()) {
    throw UsageError(fmt::format("--format must be ndjson, csv or table, got \"{}\"", format));
  }
  if (!out.empty()) {
    return std::filesystem::path(out).extension() == ".csv" ? app::ReportFormat::kCsv
                                                            : app::ReportFormat::kNdjson;
  }
  return stdout_is_terminal ? app::ReportFormat::kTable : app::ReportFormat::kNdjson;
}

std::vector<std::int64_t> ParseIds(const std::vector<std::string>& texts, std::string_view option,
                                   std::string_view what) {
  std::vector<std::int64_t> ids;
  for (const std::string& t : texts) {
    std::int64_t id = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), id);
    if (ec != std::errc() || end != t.data() + t.size() || id <= 0) {
      throw UsageError(fmt::format("{} takes {} ids, got \"{}\"", option, what, t));
    }
    ids.push_back(id);
  }
  return ids;
}

void PrintIssues(const fhir::IssueList& issues, std::FILE* out, bool with_information) {
  for (const std::string& line : fhir::FormatIssueLines(issues, with_information)) {
    fmt::print(out, "{}\n", line);
  }
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

void PrintIssuesAs(const fhir::IssueList& issues, bool json_log, bool quiet) {
  if (!json_log) return PrintIssues(issues, stderr, !quiet);
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

int PublishReport(const app::MonthReport& report, app::ReportFormat format, const std::string& out,
                  Console& console, std::string_view inputs, bool json_log) {
  console.EndProgress();
  std::string text = app::RenderMonthReport(report, format);
  if (!out.empty()) {
    if (Status s = WriteFileAtomically(out, text); !s) {
      console.Error(s.error().message);
      return kExitFatal;
    }
    console.Verbose(fmt::format("wrote {} record(s) as {} to {}", report.records.size(),
                                app::ToCode(format), out));
  } else if (!WriteStdout(text)) {
    console.Error(fmt::format("cannot write the report to stdout: {}", std::strerror(errno)));
    return kExitFatal;
  }

  // Problems go to stderr: unreadable input, then data problems of unattributed resources, then
  // a count of the per-patient ones (which are in the report itself).
  PrintIssuesAs(report.read_issues, json_log, console.quiet());
  PrintIssuesAs(report.unattributed, json_log, console.quiet());
  const EngineConfig& config = report.engine;
  const EvaluationSummary& sum = report.summary;
  std::string summary = fmt::format(
      "evaluated {} ({}, fee schedule {}): {} patient(s), {} eligible, {} consented, {} "
      "billable, expected {} {}; {} resource(s) {}, {} unreadable line(s)/entr(ies), {} data "
      "issue(s) ({} in patient records)",
      report.month.ToString(), config.practice.time_zone_name, config.fee_schedule.year,
      sum.patients, sum.eligible, sum.consented, sum.billable, FormatCents(sum.expected_payment),
      config.fee_schedule.currency, report.facts.resources, inputs, report.read.skipped,
      report.facts.issues, report.patient_issues);
  bool problems = report.has_problems();
  if (json_log) {
    if (problems || !console.quiet()) {
      LogEvent(problems ? "warning" : "info", "evaluated", summary);
    }
  } else {
    console.Info(summary);
  }
  return problems ? kExitDataProblems : kExitOk;
}

int EmitListing(Console& console, const std::string& out, std::string_view text) {
  if (out.empty()) {
    if (WriteStdout(text)) return kExitOk;
    console.Error(fmt::format("cannot write the listing to stdout: {}", std::strerror(errno)));
    return kExitFatal;
  }
  if (Status s = WriteFileAtomically(out, text); !s) {
    console.Error(s.error().message);
    return kExitFatal;
  }
  console.Verbose(fmt::format("wrote {}", out));
  return kExitOk;
}

Result<server::ServerConfig> LoadServerSection(const std::string& path) {
  CCM_TRY_ASSIGN(auto root, config::ReadJsonFile(path, "config"));
  CCM_TRY_ASSIGN(auto section,
                 server::ServerConfigFromJson(root.find("server"), path,
                                              std::filesystem::path(path).parent_path()));
  CCM_TRY(server::LoadTokens(section));
  return section;
}

}  // namespace ccm::gateway::cli
