#include "gateway/app/sync_cycle.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include <fmt/format.h>

#include "fhir/json.h"
#include "gateway/store/locks.h"

namespace ccm::gateway::app {
namespace {

using fhir::json::Value;

// What the run history keeps of a cycle (the state store's runs table; read by people and
// support tools, never by the gateway).
std::string RunSummary(const SyncCycleResult& r) {
  Value summary = Value::MakeObject();
  summary.set("ok", Value::Bool(r.outcome() == SyncOutcome::kOk));
  if (r.stopped) summary.set("stopped", Value::Bool(true));
  summary.set("outcome", Value::String(r.outcome() == SyncOutcome::kOk         ? "ok"
                                       : r.outcome() == SyncOutcome::kProblems ? "problems"
                                                                               : "report-failed"));
  Value figures = SyncCycleFigures(r);
  for (fhir::json::Member& m : *figures.mutable_object()) summary.set(m.key, std::move(m.value));
  return fhir::json::Serialize(summary);
}

}  // namespace

Value SyncCycleFigures(const SyncCycleResult& r) {
  auto n = [](std::size_t v) { return Value::Number(static_cast<std::int64_t>(v)); };
  Value figures = Value::MakeObject();
  Value sources = Value::MakeArray();
  for (const SourceSync& s : r.sources) {
    Value sv = Value::MakeObject();
    sv.set("name", Value::String(s.name));
    sv.set("ok", Value::Bool(s.ok()));
    if (!s.error.empty()) sv.set("error", Value::String(s.error));
    sources.push_back(std::move(sv));
  }
  figures.set("sources", std::move(sources));
  figures.set("month", Value::String(r.month.ToString()));
  figures.set("pulled", n(r.pulled));
  figures.set("changed", n(r.changed));
  figures.set("stored", n(r.stored));
  figures.set("requests", n(r.requests));
  figures.set("retries", n(r.retries));
  figures.set("seconds", Value::Number(fmt::format("{:.3f}", r.seconds)));
  return figures;
}

SyncOutcome SyncCycleResult::outcome() const {
  if (stopped) return SyncOutcome::kProblems;
  if (!report_published) return SyncOutcome::kReportFailed;
  return pulls_ok && !report_problems ? SyncOutcome::kOk : SyncOutcome::kProblems;
}

WorkflowStatus CheckSyncConfig(const GatewayConfig& config) {
  if (config.sync.sources.empty()) {
    return Fail(ErrorKind::kInvalidSetup, "config-failed",
                fmt::format("{}: no sources configured (add a \"sources\" list; see "
                            "docs/configuration.md)",
                            config.file.string()));
  }
  if (!config.credentials_read) {
    return Fail(ErrorKind::kInvalidSetup, "config-failed",
                "the configuration was loaded without its credentials; a sync needs them");
  }
  return {};
}

WorkflowResult<SyncCycleResult> RunSyncCycle(const GatewayConfig& config, StateStore& store,
                                             const SyncCycleRequest& request,
                                             const SyncCycleObserver& observer) {
  if (auto ok = CheckSyncConfig(config); !ok) return ok.error();
  const SyncConfig& sync = config.sync;
  if (!request.source.empty() &&
      std::none_of(sync.sources.begin(), sync.sources.end(),
                   [&](const SourceConfig& s) { return s.name == request.source; })) {
    return Fail(ErrorKind::kInvalidRequest, "unknown-source",
                fmt::format("no source named \"{}\" is configured", request.source));
  }
  SyncCycleResult result;
  result.month = request.month.value_or(CurrentMonth(config.engine));
  auto started = std::chrono::steady_clock::now();
  // One sync (or bill) at a time per state file: a full pull removing what it did not see must
  // not meet rows another pull is storing (gateway/store/locks.h).
  auto lock = LockSync(sync.state_path, sync.lock_wait);
  if (!lock) {
    return Fail(lock.error().is(Errc::kConflict) ? ErrorKind::kRefused : ErrorKind::kFailed,
                "sync-locked",
                fmt::format("not synced: {}; waited {} s (sync.lockWaitSeconds)",
                            lock.error().message, sync.lock_wait.count()));
  }
  auto run = store.StartRun(RunKind::kSync);
  if (!run) return Fail(ErrorKind::kFailed, "state-failed", run.error().message);
  SyncOptions options;
  options.full = request.full;
  options.allow_mass_delete = request.allow_mass_delete;
  options.run = *run;
  options.max_clock_skew = sync.max_clock_skew;
  options.max_delete_percent = sync.max_delete_percent;
  options.stop = request.stop;
  auto stop_requested = [&request] {
    return request.stop != nullptr && request.stop->load(std::memory_order_relaxed);
  };

  for (const SourceConfig& src : sync.sources) {
    if (!request.source.empty() && src.name != request.source) continue;
    if (stop_requested()) break;
    if (observer.on_source_start) observer.on_source_start(src);
    SourceSync s = SyncSource(src, config.engine, store, options, observer.pulls);
    if (!s.error.empty() && observer.on_source_failed) observer.on_source_failed(s.error);
    result.pulls_ok = result.pulls_ok && s.ok();
    for (const TypeSync& t : s.types) {
      result.pulled += t.resources;
      result.changed += t.inserted + t.updated + t.removed + t.rolled_back + t.recovered;
      if (t.state != PullState::kComplete && t.state != PullState::kNotOffered) {
        ++result.not_complete;
      }
    }
    result.requests += s.http.requests;
    result.retries += s.http.retries;
    result.sources.push_back(std::move(s));
  }
  { FileLock released = std::move(*lock); }  // the pulls are stored; evaluating needs no lock
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (stop_requested()) {
    result.stopped = true;
    result.pulls_ok = false;
    if (Status s = store.FinishRun(*run, RunStatus::kStopped, RunSummary(result)); !s) {
      return Fail(ErrorKind::kFailed, "state-failed", s.error().message);
    }
    return result;
  }

  std::vector<std::string> source_names;
  for (const auto& s : sync.sources) source_names.push_back(s.name);
  auto report = EvaluateStoredMonth(store, result.month, config.engine, source_names);
  if (!report) return report.error();
  if (auto stored = store.CountResources("", "")) result.stored = *stored;
  result.report_problems = report->has_problems();
  result.report_published = !observer.on_report || static_cast<bool>(observer.on_report(*report));

  if (Status s = store.FinishRun(*run, result.pulls_ok ? RunStatus::kOk : RunStatus::kFailed,
                                 RunSummary(result));
      !s) {
    return Fail(ErrorKind::kFailed, "state-failed", s.error().message);
  }
  return result;
}

}  // namespace ccm::gateway::app
