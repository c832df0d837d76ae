// Pieces shared by the commands of the command line: exit statuses, the command type every
// command implements (its CLI11 options, then parse -> call the app layer -> print -> exit
// status), the console (quiet/verbose, terminal progress), option helpers and the month report.
#pragma once

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "fhir/issues.h"
#include "gateway/app/evaluate_month.h"
#include "gateway/app/workflow.h"
#include "gateway/ccm/engine.h"
#include "gateway/server/server_config.h"

namespace ccm::gateway::cli {

// Exit statuses, documented in README.md.
constexpr int kExitOk = 0;
constexpr int kExitDataProblems = 1;  // input had problems; something was skipped or held
constexpr int kExitUsage = 2;         // bad command line or config
constexpr int kExitFatal = 3;         // could not run (missing input, I/O failure)

// A command line that cannot be used; printed with a pointer to the command's help (exit 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Verbosity { kQuiet, kNormal, kVerbose };

// Where a command talks to people: stderr (stdout carries its data). Knows whether stderr and
// stdout are terminals, and what --quiet / --verbose asked for.
class Console {
 public:
  Console(std::string command, Verbosity verbosity);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  const std::string& command() const { return command_; }
  Verbosity verbosity() const { return verbosity_; }
  bool quiet() const { return verbosity_ == Verbosity::kQuiet; }
  bool verbose() const { return verbosity_ == Verbosity::kVerbose; }
  bool stderr_is_terminal() const { return stderr_terminal_; }
  bool stdout_is_terminal() const { return stdout_terminal_; }

  // "ccm-gateway <command>: <message>" (always printed).
  void Error(std::string_view message);
  // A line unless --quiet.
  void Info(std::string_view line);
  // A line with --verbose only.
  void Verbose(std::string_view line);
  // A progress line, on a terminal only and not with --quiet: drawn over the previous one, at
  // most ten times a second (`force`: now). Cleared by the next line printed or EndProgress.
  void Progress(std::string_view line, bool force = false);
  void EndProgress();

 private:
  std::string command_;
  Verbosity verbosity_;
  bool stderr_terminal_, stdout_terminal_;
  bool progress_shown_ = false;
  std::chrono::steady_clock::time_point last_progress_{};
};

// A command: its options (a CLI11 app, which also prints its --help) and what it does once they
// are parsed. Every command takes --quiet and --verbose.
class Command {
 public:
  // `name`: "evaluate", or "config check"; `synopsis`: the options in one line, for the overview;
  // `description`: what it does (a paragraph); `examples`: command lines, one per line.
  Command(std::string name, std::string synopsis, std::string description, std::string examples);
  virtual ~Command() = default;
  Command(const Command&) = delete;
  Command& operator=(const Command&) = delete;

  const std::string& name() const { return name_; }
  const std::string& synopsis() const { return synopsis_; }
  const std::string& description() const { return description_; }
  CLI::App& app() { return app_; }
  Verbosity verbosity() const;

  // After parsing: UsageError ("--month is required") for the first required option missing.
  // (Not CLI11's own check, which would come before an unknown option is named.)
  void CheckRequired() const;
  // Runs the parsed command; returns the exit status. Throws UsageError for a command line that
  // parsed but cannot be used.
  virtual int Run(Console& console) = 0;

 protected:
  // A boolean switch: no value, or =true / =false; anything else is a usage error.
  CLI::Option* AddSwitch(const std::string& name, bool& target, const std::string& help);
  // An option that must be given; `missing` is the error when it is not ("" for "<name> is
  // required").
  template <class T>
  CLI::Option* AddRequired(const std::string& name, T& target, const std::string& help,
                           std::string missing = "") {
    CLI::Option* o = app_.add_option(name, target, help + " (required)");
    required_.emplace_back(o, missing.empty() ? name + " is required" : std::move(missing));
    return o;
  }

 private:
  std::string name_, synopsis_, description_;
  CLI::App app_;
  bool quiet_ = false, verbose_ = false;
  std::vector<std::pair<const CLI::Option*, std::string>> required_;
};

// The words of `text` wrapped to `width` columns, every line but the first indented by `indent`;
// a line break in `text` starts a new line.
std::string Wrap(std::string_view text, std::size_t indent, std::size_t width);

// Every command, in the order of the overview.
std::vector<std::unique_ptr<Command>> MakeCommands();
// The commands of each file.
std::unique_ptr<Command> MakeCheckCommand();
std::unique_ptr<Command> MakeIngestCommand();
std::unique_ptr<Command> MakeEvaluateCommand();
std::unique_ptr<Command> MakeGenerateActivityCommand();
std::unique_ptr<Command> MakeSyncCommand();
std::unique_ptr<Command> MakeBillCommand();
std::unique_ptr<Command> MakeLedgerCommand();
std::unique_ptr<Command> MakeAuditCommand();
std::unique_ptr<Command> MakeServeCommand();
std::unique_ptr<Command> MakeConfigCheckCommand();
std::unique_ptr<Command> MakeVersionCommand();

// The exit status for a workflow's error kind: 2 (invalid request or setup), 1 (refused), 3.
int ExitStatusOf(app::ErrorKind kind);
// Prints the error ("ccm-gateway <command>: message", a usage hint for an invalid request) and
// returns its exit status.
int ReportError(Console& console, const app::WorkflowError& error);

// --month YYYY-MM (UsageError otherwise).
YearMonth ParseMonth(const std::string& text);
// --format ndjson|csv|table (UsageError otherwise); without it: CSV for an output file ending in
// .csv, NDJSON for any other file or a pipe, a table on a terminal.
app::ReportFormat ChooseFormat(const std::string& format, const std::string& out,
                               bool stdout_is_terminal);
// Ids given to --acknowledge / --approve: whole numbers above 0 (UsageError otherwise).
std::vector<std::int64_t> ParseIds(const std::vector<std::string>& texts, std::string_view option,
                                   std::string_view what);

// Prints the issues as "location: path: message" lines (information included unless --quiet),
// each kind's "... and K more like this" after its last stored one.
void PrintIssues(const fhir::IssueList& issues, std::FILE* out, bool with_information = true);

// Refuses (UsageError, exit 2) an output file `out` given with `option` that is one of `inputs`
// (the same file by any path or link: std::filesystem::equivalent) or would be read as input
// itself: a file with a data ending inside an input directory. Checked before anything is read
// or written.
void RefuseOutputAmongInputs(std::string_view option, const std::filesystem::path& out,
                             const std::vector<std::filesystem::path>& inputs);

// Writes `text` to stdout and flushes it; false (with errno set) when that failed.
bool WriteStdout(std::string_view text);

// One JSON log line on stderr: {"time", "level", "event", "message"} (the sync's log format).
void LogEvent(std::string_view level, std::string_view event, std::string_view message);

// Publishes an evaluated month: the records in `format` to `out` (stdout when empty), then the
// problems and a one-line summary on stderr, as plain lines or, with `json_log`, as JSON log
// events ("report-issue", "evaluated"). `inputs` says where the resources came from ("from 3
// file(s)"). Returns the exit status: 3 when the report could not be written (said why), 1 for
// problems in the data, else 0.
int PublishReport(const app::MonthReport& report, app::ReportFormat format, const std::string& out,
                  Console& console, std::string_view inputs, bool json_log = false);

// A listing (ledger, audit) to `out` (atomically) or, when `out` is empty, to stdout. Returns the
// exit status: 3 when it could not be written (said why), else 0.
int EmitListing(Console& console, const std::string& out, std::string_view text);

// The `server` section of the config file `path` (the service's own: LoadGatewayConfig does not
// read it), with the tokens of its tokensFile read too, so that a bad hash or an unreadable file is
// found by `config check` and at start-up, not by the first request. Errors name the key.
Result<server::ServerConfig> LoadServerSection(const std::string& path);

}  // namespace ccm::gateway::cli
