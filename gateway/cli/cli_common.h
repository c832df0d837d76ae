// Pieces shared by the subcommands of the command line (cli.cpp, cli_sync.cpp): exit statuses,
// the option parser, issue printing, atomic report files and the month report.
#pragma once

#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "fhir/issues.h"
#include "fhir/result.h"
#include "gateway/ccm/engine.h"
#include "gateway/ccm/engine_config.h"
#include "gateway/ingest/collect.h"
#include "gateway/io/files.h"

namespace ccm::gateway::cli {

// Exit statuses, documented in README.md.
constexpr int kExitOk = 0;
constexpr int kExitDataProblems = 1;  // input had problems; something was skipped
constexpr int kExitUsage = 2;         // bad command line or config
constexpr int kExitFatal = 3;         // could not run (missing input, I/O failure)

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Minimal, strict option parser: every flag is declared; unknown flags are errors.
class Args {
 public:
  Args(std::span<char*> argv, std::set<std::string_view> flags, std::set<std::string_view> options,
       std::set<std::string_view> repeated)
      : flags_(std::move(flags)), options_(std::move(options)), repeated_(std::move(repeated)) {
    for (std::size_t i = 0; i < argv.size(); ++i) {
      std::string_view a = argv[i];
      std::string value;
      std::string_view name = a;
      if (auto eq = a.find('='); a.starts_with("--") && eq != std::string_view::npos) {
        name = a.substr(0, eq);
        value = std::string(a.substr(eq + 1));
      }
      if (flags_.contains(name)) {
        set_flags_.insert(std::string(name));
      } else if (options_.contains(name) || repeated_.contains(name)) {
        if (value.empty()) {
          if (i + 1 >= argv.size()) throw UsageError(fmt::format("{} needs a value", name));
          value = argv[++i];
        }
        values_[std::string(name)].push_back(value);
        // `--input a b c`: further non-flag words belong to a repeated option.
        while (repeated_.contains(name) && i + 1 < argv.size() &&
               !std::string_view(argv[i + 1]).starts_with("--")) {
          values_[std::string(name)].push_back(argv[++i]);
        }
      } else {
        throw UsageError(fmt::format("unknown option {}", a));
      }
    }
    for (const auto& [k, v] : values_) {
      if (v.size() > 1 && !repeated_.contains(k))
        throw UsageError(fmt::format("{} given twice", k));
    }
  }
  bool flag(std::string_view f) const { return set_flags_.contains(std::string(f)); }
  std::optional<std::string> value(std::string_view o) const {
    auto it = values_.find(std::string(o));
    if (it == values_.end()) return std::nullopt;
    return it->second.front();
  }
  std::string required(std::string_view o) const {
    auto v = value(o);
    if (!v) throw UsageError(fmt::format("{} is required", o));
    return *v;
  }
  std::vector<std::string> all(std::string_view o) const {
    auto it = values_.find(std::string(o));
    return it == values_.end() ? std::vector<std::string>{} : it->second;
  }

 private:
  std::set<std::string_view> flags_, options_, repeated_;
  std::set<std::string> set_flags_;
  std::map<std::string, std::vector<std::string>> values_;
};

// Prints the issues as "location: path: message" lines (information included: the reader's notes
// on files it did not read), each kind's "... and K more like this" after its last stored one.
void PrintIssues(const fhir::IssueList& issues, std::FILE* out);

// Refuses (UsageError, exit 2) an output file `out` given with `option` that is one of `inputs`
// (the same file by any path or link: std::filesystem::equivalent) or would be read as input
// itself: a file with a data ending inside an input directory. Checked before anything is read
// or written.
void RefuseOutputAmongInputs(std::string_view option, const std::filesystem::path& out,
                             const std::vector<std::filesystem::path>& inputs);

// Writes `text` to stdout and flushes it; false (with errno set) when that failed.
bool WriteStdout(std::string_view text);

// Evaluates `month` over `facts` and writes the report in `format` (ndjson, csv, table) to `out`
// (stdout when absent); then prints problems and a one-line summary to stderr, as plain lines or,
// with `json_log`, as JSON log events ("report-issue", "evaluated"). `inputs` says where the
// resources came from ("from 3 file(s)"). Returns the exit status: 3 when the report could not
// be written (the message says why).
int ReportMonth(const FactStore& facts, const CollectReport& collected, const YearMonth& month,
                const EngineConfig& config, const std::string& format,
                const std::optional<std::string>& out, std::string_view command,
                std::string_view inputs, bool json_log = false);

// One JSON log line on stderr: {"time", "level", "event", "message"} (the sync's log format).
void LogEvent(std::string_view level, std::string_view event, std::string_view message);

// The current calendar month in the practice time zone.
YearMonth CurrentMonth(const EngineConfig& config);

// `ccm-gateway sync` (cli_sync.cpp).
int RunSync(const Args& args);
// `ccm-gateway bill` and `ccm-gateway ledger` (cli_bill.cpp).
int RunBill(const Args& args);
int RunLedger(const Args& args);

}  // namespace ccm::gateway::cli
