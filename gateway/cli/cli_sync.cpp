// `ccm-gateway sync`: pull every configured source into the state store, then evaluate the month
// from the store exactly as `evaluate` does from files (app::RunSyncCycle), once or every
// sync.intervalSeconds.
#include <csignal>
#include <ctime>

#include <fmt/format.h>

#include "fhir/client/fhir_client.h"
#include "fhir/datetime.h"
#include "fhir/json.h"
#include "gateway/app/sync_cycle.h"
#include "gateway/cli/cli_common.h"
#include "gateway/config/gateway_config.h"

namespace ccm::gateway::cli {
namespace {

using fhir::json::Value;

// Progress and events on stderr: a live line per type on a terminal; otherwise one JSON object per
// line (for log shippers). Nothing here carries patient data: counts, resource types, source
// names, and URLs without their query. --quiet leaves out what is only informational (the last
// line, which carries the exit status, always comes).
class SyncLog {
 public:
  explicit SyncLog(Console& console) : console_(console), terminal_(console.stderr_is_terminal()) {}

  void Page(const TypeSync& t) {
    if (!terminal_ || console_.quiet()) return;
    fmt::print(stderr, "\r\033[K  {:<12} {:<18} page {:>5}  {:>9}{} resource(s)  {:>8.0f}/s",
               t.source, t.type, t.pages, t.resources,
               t.total ? fmt::format(" of {}", *t.total) : "", Rate(t));
    std::fflush(stderr);
  }

  void TypeDone(const TypeSync& t) {
    std::string notes;
    if (t.older > 0 && !t.full) {
      notes += fmt::format(
          "; {} came with an older version than the one stored, which is kept (sync --full takes "
          "the server's copies)",
          t.older);
    }
    if (t.rolled_back > 0) {
      notes += fmt::format(
          "; {} replaced by the server's older version (a full pull trusts the "
          "server)",
          t.rolled_back);
    }
    if (terminal_) {
      if (t.state == PullState::kComplete) {
        if (console_.quiet() && notes.empty()) return;
        fmt::print(stderr,
                   "\r\033[K  {:<12} {:<18} {:>5} page(s) {:>9} resource(s) ({} new, {} updated, "
                   "{} unchanged{}{}) {:.1f}s{}{}{}\n",
                   t.source, t.type, t.pages, t.resources, t.inserted, t.updated, t.unchanged,
                   t.older > 0 ? fmt::format(", {} older", t.older) : "",
                   t.removed > 0 ? fmt::format(", {} removed", t.removed) : "", t.seconds,
                   t.searches > 1 ? fmt::format(" in {} searches", t.searches) : "",
                   t.full ? " [full]" : "", notes);
      } else if (t.state == PullState::kNotOffered) {
        if (console_.quiet()) return;
        fmt::print(stderr, "\r\033[K  {:<12} {:<18} not offered by the server\n", t.source, t.type);
      } else {
        fmt::print(stderr, "\r\033[K  {:<12} {:<18} {}: {}\n", t.source, t.type,
                   t.state == PullState::kIncomplete ? "INCOMPLETE" : "FAILED", t.error);
      }
      return;
    }
    std::string_view level = t.state == PullState::kFailed       ? "error"
                             : t.state == PullState::kIncomplete ? "warning"
                             : notes.empty()                     ? "info"
                                                                 : "warning";
    if (level == "info" && console_.quiet()) return;
    Value e = Event(level, "type-synced");
    e.set("source", Value::String(t.source));
    e.set("type", Value::String(t.type));
    e.set("state", Value::String(std::string(ToCode(t.state))));
    e.set("mode", Value::String(t.full ? "full" : "incremental"));
    for (auto [k, v] : {std::pair{"searches", t.searches}, std::pair{"passes", t.passes},
                        std::pair{"pages", t.pages}, std::pair{"resources", t.resources},
                        std::pair{"distinct", t.distinct}, std::pair{"inserted", t.inserted},
                        std::pair{"updated", t.updated}, std::pair{"unchanged", t.unchanged},
                        std::pair{"older", t.older}, std::pair{"rolledBack", t.rolled_back},
                        std::pair{"rejected", t.rejected}, std::pair{"recovered", t.recovered},
                        std::pair{"removed", t.removed}, std::pair{"bytes", t.bytes}}) {
      e.set(k, Value::Number(static_cast<std::int64_t>(v)));
    }
    if (t.total) e.set("total", Value::Number(static_cast<std::int64_t>(*t.total)));
    e.set("seconds", Value::Number(fmt::format("{:.3f}", t.seconds)));
    if (!t.watermark.empty()) e.set("watermark", Value::String(t.watermark));
    if (!t.error.empty() || !notes.empty()) {
      e.set("message", Value::String(t.error.empty() ? notes.substr(2) : t.error + notes));
    }
    Emit(e);
  }

  void SourceStart(const SourceConfig& src) {
    if (terminal_ && !console_.quiet()) {
      fmt::print(stderr, "{} ({})\n", src.name, fhir::RedactUrl(src.base_url));
    }
  }

  void Message(std::string_view level, std::string_view event, const std::string& message) {
    if (level == "info" && console_.quiet()) return;
    if (terminal_) {
      fmt::print(stderr, "\r\033[K{}{}\n", level == "info" ? "" : fmt::format("{}: ", level),
                 message);
      return;
    }
    Value e = Event(level, event);
    e.set("message", Value::String(message));
    Emit(e);
  }

  // The last line of a run that ends: plain on a terminal, else an event with `ok` and the exit
  // status (and `extra` members), so that the last log line and the exit status always agree.
  void Final(std::string_view event, int exit, const std::string& line, Value extra = Value()) {
    if (terminal_) {
      fmt::print(stderr, "{}\n", line);
      return;
    }
    Value e = Event(exit == kExitOk ? "info" : "error", event);
    e.set("ok", Value::Bool(exit == kExitOk));
    e.set("exitStatus", Value::Number(std::int64_t{exit}));
    if (extra.is_object()) {
      for (const auto& m : extra.object()) e.set(m.key, m.value);
    }
    e.set("message", Value::String(line));
    Emit(e);
  }

  static void Emit(const Value& e) { fmt::print(stderr, "{}\n", fhir::json::Serialize(e)); }
  static Value Event(std::string_view level, std::string_view event) {
    Value e = Value::MakeObject();
    e.set("time", Value::String(fhir::NowUtc()));
    e.set("level", Value::String(std::string(level)));
    e.set("event", Value::String(std::string(event)));
    return e;
  }
  bool terminal() const { return terminal_; }

 private:
  static double Rate(const TypeSync& t) {
    return t.seconds > 0 ? static_cast<double>(t.resources) / t.seconds : 0.0;
  }
  Console& console_;
  bool terminal_;
};

class SyncCommand : public Command {
 public:
  SyncCommand()
      : Command(
            "sync",
            "--config FILE [--once] [--full] [--allow-mass-delete] [--month YYYY-MM] "
            "[--report FILE] [--format ndjson|csv|table]",
            "Pull the configured FHIR sources into the state store (incrementally, after the "
            "first run), then evaluate the month from the store exactly as `evaluate` does and "
            "write the records to --report (default month: the current one in the practice time "
            "zone).\nWithout --once, repeats every sync.intervalSeconds until SIGINT/SIGTERM. "
            "--full ignores the cursors and removes what the servers no longer have (each removal "
            "confirmed by the server; more than sync.maxDeletePercent of a type needs "
            "--allow-mass-delete). Exit 1 when a type failed or is incomplete. Progress on a "
            "terminal, JSON log lines otherwise.",
            "ccm-gateway sync --config site.json --once --report report.ndjson\n"
            "ccm-gateway sync --config site.json --full --allow-mass-delete --once") {
    AddRequired("--config", config_, "The gateway's config (sources, state, sync)")
        ->type_name("FILE");
    AddSwitch("--once", once_, "One cycle, then exit");
    AddSwitch("--full", full_, "Pull everything again and drop what the servers deleted");
    AddSwitch("--allow-mass-delete", mass_delete_,
              "Allow --full to remove more than sync.maxDeletePercent of a type");
    app()
        .add_option("--month", month_, "The month to evaluate (default: the current one)")
        ->type_name("YYYY-MM");
    app()
        .add_option("--report", report_, "Write the records here (atomically), not to stdout")
        ->type_name("FILE");
    app()
        .add_option("--format", format_, "ndjson, csv or table (default as for evaluate)")
        ->type_name("FORMAT");
  }

  int Run(Console& console) override {
    app::SyncCycleRequest request;
    if (!month_.empty()) request.month = ParseMonth(month_);
    request.full = full_;
    request.allow_mass_delete = mass_delete_;
    format_choice_ = ChooseFormat(format_, report_, console.stdout_is_terminal());
    SyncLog log(console);
    // Errors before the first cycle end the run: the last log line says so, as JSON in a pipe.
    auto fail = [&](std::string_view event, const std::string& message, int exit) {
      if (log.terminal()) {
        console.Error(message);
      } else {
        log.Final(event, exit, message);
      }
      return exit;
    };
    auto config = LoadGatewayConfig(config_);
    if (!config) {
      return fail("config-failed", config.error().message,
                  config.error().is(Errc::kInternal) ? kExitFatal : kExitUsage);
    }
    if (auto ok = app::CheckSyncConfig(*config); !ok) {
      return fail(ok.error().code, ok.error().message, ExitStatusOf(ok.error().kind));
    }
    auto store = app::OpenStateStore(*config);
    if (!store) return fail("state-failed", store.error().message, kExitFatal);
    console.Verbose(fmt::format("state: {}", config->sync.state_path.string()));
    if (once_) return Cycle(*config, **store, request, log, console);

    // Continuous mode: SIGINT/SIGTERM are blocked here (and so in every thread started later) and
    // waited for between cycles, so a stop request never interrupts a cycle half-way (a kill does
    // no harm either: the sync resumes from its cursors).
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
    int exit = kExitOk;
    for (;;) {
      exit = Cycle(*config, **store, request, log, console);
      if (exit == kExitFatal) return exit;
      log.Message("info", "sleeping",
                  fmt::format("next sync in {} s (SIGINT or SIGTERM stops)",
                              config->sync.interval.count()));
      timespec wait{static_cast<std::time_t>(config->sync.interval.count()), 0};
      int sig = sigtimedwait(&stop, nullptr, &wait);
      if (sig == SIGINT || sig == SIGTERM) {
        // The last line carries the exit status too (that of the last cycle).
        log.Final("stopping", exit, fmt::format("stop requested; exiting with status {}", exit));
        return exit;
      }
    }
  }

 private:
  int Cycle(const GatewayConfig& config, StateStore& store, const app::SyncCycleRequest& request,
            SyncLog& log, Console& console) {
    app::SyncCycleObserver observer;
    observer.on_source_start = [&log](const SourceConfig& src) { log.SourceStart(src); };
    observer.on_source_failed = [&log](const std::string& e) {
      log.Message("error", "source-failed", e);
    };
    observer.pulls.on_page = [&log](const TypeSync& t) { log.Page(t); };
    observer.pulls.on_type_done = [&log](const TypeSync& t) { log.TypeDone(t); };
    observer.pulls.on_warning = [&log](const std::string& w) {
      log.Message("warning", "warning", w);
    };
    observer.pulls.on_progress = [&log](const std::string& p) {
      log.Message("info", "export-progress", p);
    };
    int report_exit = kExitOk;
    observer.on_report = [&](const app::MonthReport& report) -> Status {
      report_exit = PublishReport(report, format_choice_, report_, console, "from the state store",
                                  !log.terminal());
      if (report_exit == kExitFatal) return MakeError(Errc::kIo, "the report was not written");
      return {};
    };
    auto result = app::RunSyncCycle(config, store, request, observer);
    if (!result) {
      const app::WorkflowError& e = result.error();
      int exit = ExitStatusOf(e.kind);
      if (e.code == "sync-locked") {
        log.Final("sync-finished", exit, e.message);
      } else {
        log.Message("error", e.code, e.message);
      }
      return exit;
    }
    const app::SyncCycleResult& r = *result;
    int exit = r.outcome() == app::SyncOutcome::kReportFailed ? kExitFatal
               : r.outcome() == app::SyncOutcome::kOk         ? kExitOk
                                                              : kExitDataProblems;
    std::string outcome =
        r.pulls_ok ? "" : fmt::format(" WITH FAILURES ({} type(s) not complete)", r.not_complete);
    std::string line = fmt::format(
        "synced {} source(s){} in {:.1f}s: {} resource(s) pulled, {} changed, {} stored; {} "
        "request(s), {} retried{}",
        config.sync.sources.size(), outcome, r.seconds, r.pulled, r.changed, r.stored, r.requests,
        r.retries, exit == kExitOk ? "" : fmt::format("; exit status {}", exit));
    Value extra = app::SyncCycleFigures(r);
    // Last, so that the last log line and the exit status always agree.
    log.Final("sync-finished", exit, line, std::move(extra));
    return exit;
  }

  std::string config_, month_, report_, format_;
  bool once_ = false, full_ = false, mass_delete_ = false;
  app::ReportFormat format_choice_ = app::ReportFormat::kNdjson;
};

}  // namespace

std::unique_ptr<Command> MakeSyncCommand() { return std::make_unique<SyncCommand>(); }

}  // namespace ccm::gateway::cli
