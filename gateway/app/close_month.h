// CloseMonth: what `ccm-gateway bill` does -- the checks before billing, care plans written back,
// the ledger reconciled exactly once, ChargeItems and payer claims delivered (docs/ccm-rules.md
// "Billing ledger" and "Hold rules"; docs/architecture.md "Billing, ledger and write-back").
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/app/workflow.h"
#include "gateway/billing/ledger.h"
#include "gateway/ccm/engine.h"
#include "gateway/config/gateway_config.h"
#include "gateway/store/state_store.h"
#include "gateway/writeback/careplan_writeback.h"

namespace ccm::gateway::app {

struct CloseMonthRequest {
  YearMonth month;
  bool dry_run = false;           // compute the plan; write nothing anywhere
  bool open_month = false;        // bill a month that has not ended yet
  bool allow_incomplete = false;  // bill although a needed type's last pull was not complete
};

// Events of a run, as they happen. Every callback is optional.
struct CloseMonthObserver {
  // Billing goes ahead on incomplete data (allow_incomplete): the gaps, one line each. Called
  // before anything is written.
  std::function<void(const std::vector<std::string>& gaps)> on_incomplete;
  // Something to know that does not stop the run (a write target's CapabilityStatement could not
  // be read). Called before anything is written.
  std::function<void(const std::string& warning)> on_warning;
  // Progress through the care plans ("care plans", done, total).
  std::function<void(std::string_view step, std::size_t done, std::size_t total)> on_progress;
  // Test hook (the crash tests): called after each durable step -- "care-plan", "ledger",
  // "charge-item", "claims-file", "claims-endpoint".
  std::function<void(std::string_view step)> checkpoint;
};

struct CarePlanOutcome {
  std::string patient;  // "Patient/<id>"
  CarePlanWrite write;
};

struct CloseMonthResult {
  YearMonth month;
  bool dry_run = false;
  std::string currency;
  std::vector<std::string> incomplete;      // the gaps billed over (allow_incomplete), else empty
  std::vector<CarePlanOutcome> care_plans;  // every patient considered, in order
  // Care plans by action code ("created", "would-create", ..., and "create-recorded-late");
  // empty when writeBack.carePlans is off.
  std::map<std::string, std::size_t> care_plan_counts;
  LedgerOutcome ledger;  // what changed (with dry_run: what would change)
  std::map<LedgerAction, std::size_t> ledger_counts;
  std::map<ProposalAction, std::size_t> proposal_counts;
  std::size_t billable = 0;  // patient-months the month bills
  Cents amount = 0;          // and their expected payment
  // Where the month's active entries stand after the run (not counted with dry_run).
  std::size_t pending = 0, submitted = 0;
  std::size_t deliveries_done = 0, deliveries_failed = 0;
  std::vector<std::string> files;  // written or rewritten
  // Per patient or delivery, what failed or is held ("care plan (audit record 7): ...",
  // "charge-items 2026-10 ledger entry 3: ..."), without patient ids. The rest still went.
  std::vector<std::string> problems;
  // The work was done but its run could not be recorded in the state store (kFailed): report
  // what was done, then this.
  std::optional<WorkflowError> unrecorded;

  std::size_t held() const { return ledger.held() + ledger.merge_holds.size(); }
  bool ok() const { return problems.empty(); }
};

// Closes `request.month` on `store` (opened with OpenStateStore from `config`, whose credentials
// must have been read). In order, each refusing before anything is written:
// - the month has not ended in the practice time zone and !open_month: kInvalidRequest;
// - no fee schedule fits the month: kInvalidSetup;
// - another bill runs on the state file (kRefused "bill-locked"), or a sync (kRefused
//   "sync-locked"; this run then holds the sync lock until it returns);
// - the store holds no resources: kInvalidSetup ("run sync first");
// - a needed type's last pull was not complete (or, for a closed month, started before the month
//   ended) and !allow_incomplete: kRefused "incomplete-data", naming each source/type;
// - the write-back target cannot be configured: kInvalidSetup;
// - the write-back target or a payer endpoint declares no conditional create for what bill creates
//   there (and the config does not vouch for it): kInvalidSetup "no-conditional-create"; a
//   statement that cannot be read goes to observer.on_warning;
// - the payers' directories hold claim files the ledger never wrote (an older state file):
//   kRefused "unknown-claims";
// - the ledger is empty but this practice's claims exist elsewhere, or that cannot be checked:
//   kRefused "prior-billing";
// then reads only the configured sources' resources, writes care plans, delivers what an earlier
// run left, reconciles the ledger (kRefused "ledger-conflict" when another run changed it
// meanwhile; kFailed otherwise) and delivers this run's entries. Failures of single patients or
// deliveries do not stop the run: they are in `problems`. kFailed when the state store fails.
WorkflowResult<CloseMonthResult> CloseMonth(const GatewayConfig& config, StateStore& store,
                                            const CloseMonthRequest& request,
                                            const CloseMonthObserver& observer = {});

}  // namespace ccm::gateway::app
