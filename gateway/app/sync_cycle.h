// RunSyncCycle: one cycle of `ccm-gateway sync` -- every configured source pulled into the state
// store, then the month evaluated from the store exactly as EvaluateMonth evaluates files.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gateway/app/evaluate_month.h"
#include "gateway/app/workflow.h"
#include "gateway/config/gateway_config.h"
#include "gateway/store/state_store.h"
#include "gateway/sync/sync.h"

namespace ccm::gateway::app {

struct SyncCycleRequest {
  std::optional<YearMonth> month;  // default: the current month in the practice time zone
  bool full = false;               // pull everything and drop what the servers deleted
  bool allow_mass_delete = false;  // beyond sync.maxDeletePercent of a type
  // Only this source (a configured name); all when empty. kInvalidRequest for an unknown name.
  std::string source;
  // Set by another thread to stop the cycle early (SyncOptions::stop): the page being stored
  // finishes, the remaining searches and sources are not started, the month is not evaluated and
  // the run is recorded as "stopped" (SyncCycleResult::stopped). Cursors stay where the last
  // complete pull left them, so the next cycle resumes.
  const std::atomic<bool>* stop = nullptr;
};

// Progress and events of a cycle. Every callback is optional (without `on_report` the report
// counts as published).
struct SyncCycleObserver {
  std::function<void(const SourceConfig&)> on_source_start;  // before a source's pull
  std::function<void(const std::string&)> on_source_failed;  // it could not be synced at all
  SyncObserver pulls;  // pages, types done, warnings (from the pull threads, one at a time)
  // The month evaluated from the store, after the pulls: the caller publishes it (writes the
  // report) and says whether that worked. Called before the run is recorded, so the record says
  // whether the report went out.
  std::function<Status(const MonthReport&)> on_report;
};

enum class SyncOutcome {
  kOk,            // every pull complete, the report published, no data problems
  kProblems,      // a source or type failed or is incomplete, the month has data problems, or
                  // the cycle was stopped
  kReportFailed,  // the report could not be published
};

struct SyncCycleResult {
  YearMonth month;
  std::vector<SourceSync> sources;
  bool pulls_ok = true;  // every source synced, every type complete or not offered
  std::size_t pulled = 0, changed = 0, requests = 0, retries = 0;
  std::size_t not_complete = 0;  // types that failed or are incomplete
  std::size_t stored = 0;        // resources in the store after the pulls
  double seconds = 0;            // from taking the lock to releasing it
  bool report_published = false;
  bool report_problems = false;  // MonthReport::has_problems
  bool stopped = false;          // request.stop was set: not every source was pulled, no report

  SyncOutcome outcome() const;
};

// The cycle's figures as one JSON object -- sources (name, ok, error), month, pulled, changed,
// stored, requests, retries, seconds -- for the run record and the last log line of `sync`.
fhir::json::Value SyncCycleFigures(const SyncCycleResult& result);

// Whether `config` can be synced: it has sources and its credentials were read. kInvalidSetup
// ("config-failed") otherwise.
WorkflowStatus CheckSyncConfig(const GatewayConfig& config);

// One cycle on `store` (opened with OpenStateStore from the same config): waits up to
// sync.lockWaitSeconds for the state file's sync lock (kRefused "sync-locked" when another sync or
// bill keeps it; kFailed when it cannot be taken), pulls every source in turn (a source or type
// that fails does not stop the others: see the result), releases the lock, evaluates the month
// from the store, hands the report to the observer and records the run. kFailed ("state-failed",
// "config-failed") when the store cannot be read or written or no fee schedule fits.
WorkflowResult<SyncCycleResult> RunSyncCycle(const GatewayConfig& config, StateStore& store,
                                             const SyncCycleRequest& request,
                                             const SyncCycleObserver& observer);

}  // namespace ccm::gateway::app
