// `ccm-gateway sync`: pull every configured source into the state store, then evaluate the month
// from the store exactly as `evaluate` does from files.
#include <csignal>
#include <ctime>

#include <fmt/format.h>
#include <unistd.h>

#include "fhir/datetime.h"
#include "gateway/cli/cli_common.h"
#include "gateway/ingest/store_facts.h"
#include "gateway/store/locks.h"
#include "gateway/store/sqlite_state_store.h"
#include "gateway/store/state_store.h"
#include "gateway/sync/sync.h"

namespace ccm::gateway::cli {
namespace {

using fhir::json::Value;

// Progress and events on stderr: a live line per type on a terminal; otherwise one JSON object per
// line (for log shippers). Nothing here carries patient data: counts, resource types, source
// names, and URLs without their query.
class SyncLog {
 public:
  explicit SyncLog(bool terminal) : terminal_(terminal) {}

  void Page(const TypeSync& t) {
    if (!terminal_) return;
    fmt::print(stderr, "\r\033[K  {:<12} {:<18} page {:>5}  {:>9} resource(s)  {:>8.0f}/s",
               t.source, t.type, t.pages, t.resources, Rate(t));
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
        fmt::print(stderr,
                   "\r\033[K  {:<12} {:<18} {:>5} page(s) {:>9} resource(s) ({} new, {} updated, "
                   "{} unchanged{}{}) {:.1f}s{}{}{}\n",
                   t.source, t.type, t.pages, t.resources, t.inserted, t.updated, t.unchanged,
                   t.older > 0 ? fmt::format(", {} older", t.older) : "",
                   t.removed > 0 ? fmt::format(", {} removed", t.removed) : "", t.seconds,
                   t.searches > 1 ? fmt::format(" in {} searches", t.searches) : "",
                   t.full ? " [full]" : "", notes);
      } else if (t.state == PullState::kNotOffered) {
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

  void Message(std::string_view level, std::string_view event, const std::string& message) {
    if (terminal_) {
      fmt::print(stderr, "\r\033[K{}{}\n", level == "info" ? "" : fmt::format("{}: ", level),
                 message);
      return;
    }
    Value e = Event(level, event);
    e.set("message", Value::String(message));
    Emit(e);
  }

  void Emit(const Value& e) { fmt::print(stderr, "{}\n", fhir::json::Serialize(e)); }
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
  bool terminal_;
};

int SyncCycle(const Args& args, EngineConfig engine, const SyncConfig& sync, StateStore& store,
              SyncLog& log) {
  YearMonth month = CurrentMonth(engine);
  if (auto m = args.value("--month")) month = *YearMonth::Parse(*m);  // checked by the caller
  auto started = std::chrono::steady_clock::now();
  // One sync (or bill) at a time per state file: a full pull removing what it did not see must
  // not meet rows another pull is storing (gateway/store/locks.h).
  auto lock = LockSync(sync.state_path, sync.lock_wait);
  if (!lock) {
    std::string line = fmt::format("not synced: {}; waited {} s (sync.lockWaitSeconds)",
                                   lock.error().message, sync.lock_wait.count());
    if (log.terminal()) {
      fmt::print(stderr, "{}\n", line);
    } else {
      Value summary = SyncLog::Event("error", "sync-finished");
      summary.set("ok", Value::Bool(false));
      summary.set("exitStatus", Value::Number(std::int64_t{kExitDataProblems}));
      summary.set("message", Value::String(line));
      log.Emit(summary);
    }
    return lock.error().is(Errc::kConflict) ? kExitDataProblems : kExitFatal;
  }
  auto run = store.StartRun("sync");
  if (!run) {
    log.Message("error", "state-failed", run.error().message);
    return kExitFatal;
  }
  SyncOptions options;
  options.full = args.flag("--full");
  options.allow_mass_delete = args.flag("--allow-mass-delete");
  options.run = *run;
  options.max_clock_skew = sync.max_clock_skew;
  options.max_delete_percent = sync.max_delete_percent;
  SyncObserver observer;
  observer.on_page = [&log](const TypeSync& t) { log.Page(t); };
  observer.on_type_done = [&log](const TypeSync& t) { log.TypeDone(t); };
  observer.on_warning = [&log](const std::string& w) { log.Message("warning", "warning", w); };

  bool all_ok = true;
  std::size_t pulled = 0, changed = 0, requests = 0, retries = 0, not_complete = 0;
  Value sources = Value::MakeArray();
  for (const SourceConfig& src : sync.sources) {
    if (log.terminal()) fmt::print(stderr, "{} ({})\n", src.name, fhir::RedactUrl(src.base_url));
    SourceSync s = SyncSource(src, engine, store, options, observer);
    if (!s.error.empty()) log.Message("error", "source-failed", s.error);
    all_ok = all_ok && s.ok();
    Value sv = Value::MakeObject();
    sv.set("name", Value::String(s.name));
    sv.set("ok", Value::Bool(s.ok()));
    if (!s.error.empty()) sv.set("error", Value::String(s.error));
    for (const TypeSync& t : s.types) {
      pulled += t.resources;
      changed += t.inserted + t.updated + t.removed + t.rolled_back + t.recovered;
      if (t.state != PullState::kComplete && t.state != PullState::kNotOffered) ++not_complete;
    }
    requests += s.http.requests;
    retries += s.http.retries;
    sources.push_back(std::move(sv));
  }
  { FileLock released = std::move(*lock); }  // the pulls are stored; evaluating needs no lock
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  if (Status s = UseFeeScheduleForYear(engine, month.year); !s) {
    log.Message("error", "config-failed", s.error().message);
    return kExitFatal;
  }
  FactStore facts;
  std::vector<std::string> source_names;
  for (const auto& s : sync.sources) source_names.push_back(s.name);
  auto collected = CollectFactsFromStore(store, engine, source_names, facts);
  if (!collected) {
    log.Message("error", "state-failed", collected.error().message);
    return kExitFatal;
  }
  auto stored = store.CountResources("", "");
  std::string format = args.value("--report") || !::isatty(::fileno(stdout)) ? "ndjson" : "table";
  int report_exit = ReportMonth(facts, *collected, month, engine, format, args.value("--report"),
                                "sync", "from the state store", !log.terminal());

  int exit = report_exit == kExitFatal          ? kExitFatal
             : all_ok && report_exit == kExitOk ? kExitOk
                                                : kExitDataProblems;
  std::string outcome =
      all_ok ? "" : fmt::format(" WITH FAILURES ({} type(s) not complete)", not_complete);
  std::string line = fmt::format(
      "synced {} source(s){} in {:.1f}s: {} resource(s) pulled, {} changed, {} stored; {} "
      "request(s), {} retried{}",
      sync.sources.size(), outcome, seconds, pulled, changed, stored ? *stored : 0, requests,
      retries, exit == kExitOk ? "" : fmt::format("; exit status {}", exit));
  Value summary = SyncLog::Event(exit == kExitOk ? "info" : "error", "sync-finished");
  summary.set("ok", Value::Bool(exit == kExitOk));
  summary.set("exitStatus", Value::Number(std::int64_t{exit}));
  summary.set("sources", std::move(sources));
  summary.set("month", Value::String(month.ToString()));
  summary.set("pulled", Value::Number(static_cast<std::int64_t>(pulled)));
  summary.set("changed", Value::Number(static_cast<std::int64_t>(changed)));
  summary.set("requests", Value::Number(static_cast<std::int64_t>(requests)));
  summary.set("retries", Value::Number(static_cast<std::int64_t>(retries)));
  summary.set("seconds", Value::Number(fmt::format("{:.3f}", seconds)));
  summary.set("message", Value::String(line));
  if (Status s = store.FinishRun(*run, all_ok ? "ok" : "failed", fhir::json::Serialize(summary));
      !s) {
    log.Message("error", "state-failed", s.error().message);
    return kExitFatal;
  }
  // Last, so that the last log line and the exit status always agree.
  if (log.terminal()) {
    fmt::print(stderr, "{}\n", line);
  } else {
    log.Emit(summary);
  }
  return exit;
}

}  // namespace

int RunSync(const Args& args) {
  std::string config_path = args.required("--config");
  if (auto m = args.value("--month"); m && !YearMonth::Parse(*m)) {
    throw UsageError(fmt::format("--month: {}", YearMonth::Parse(*m).error().message));
  }
  SyncLog log(::isatty(::fileno(stderr)) != 0);
  // Errors before the first cycle end the run: the last log line says so, as JSON in a pipe.
  auto fail = [&log](std::string_view event, const std::string& message, int exit) {
    if (log.terminal()) {
      fmt::print(stderr, "ccm-gateway sync: {}\n", message);
    } else {
      Value e = SyncLog::Event("error", event);
      e.set("ok", Value::Bool(false));
      e.set("exitStatus", Value::Number(std::int64_t{exit}));
      e.set("message", Value::String(message));
      log.Emit(e);
    }
    return exit;
  };
  auto engine = LoadEngineConfig(config_path);
  if (!engine) {
    return fail("config-failed", engine.error().message,
                engine.error().is(Errc::kInternal) ? kExitFatal : kExitUsage);
  }
  auto sync = LoadSyncConfig(config_path, ProcessEnvironment());
  if (!sync) return fail("config-failed", sync.error().message, kExitUsage);
  if (sync->sources.empty()) {
    return fail("config-failed",
                fmt::format("{}: no sources configured (add a \"sources\" list; see "
                            "docs/configuration.md)",
                            config_path),
                kExitUsage);
  }
  auto store = OpenSqliteStateStore(sync->state_path);
  if (!store) return fail("state-failed", store.error().message, kExitFatal);
  if (args.flag("--once")) return SyncCycle(args, *engine, *sync, **store, log);

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
    exit = SyncCycle(args, *engine, *sync, **store, log);
    if (exit == kExitFatal) return exit;
    log.Message("info", "sleeping",
                fmt::format("next sync in {} s (SIGINT or SIGTERM stops)", sync->interval.count()));
    timespec wait{static_cast<std::time_t>(sync->interval.count()), 0};
    int sig = sigtimedwait(&stop, nullptr, &wait);
    if (sig == SIGINT || sig == SIGTERM) {
      // The last line carries the exit status too (that of the last cycle).
      std::string message = fmt::format("stop requested; exiting with status {}", exit);
      if (log.terminal()) {
        fmt::print(stderr, "{}\n", message);
      } else {
        Value e = SyncLog::Event(exit == kExitOk ? "info" : "error", "stopping");
        e.set("ok", Value::Bool(exit == kExitOk));
        e.set("exitStatus", Value::Number(std::int64_t{exit}));
        e.set("message", Value::String(message));
        log.Emit(e);
      }
      return exit;
    }
  }
}

}  // namespace ccm::gateway::cli
