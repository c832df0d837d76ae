#include "gateway/app/close_month.h"

#include <chrono>
#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include <fmt/format.h>

#include "fhir/json.h"
#include "gateway/billing/bill_checks.h"
#include "gateway/ingest/store_facts.h"
#include "gateway/store/locks.h"
#include "gateway/sync/connection.h"
#include "gateway/writeback/billing_outputs.h"
#include "gateway/writeback/prior_billing.h"
#include "gateway/writeback/write_capabilities.h"

namespace ccm::gateway::app {
namespace {

using fhir::json::Value;

// Refuses (kInvalidSetup) when a server bill creates on says it does not support conditional
// create for what is created there (fix the server or vouch for it). A statement that cannot be
// read is a warning: the ledger and the payer files must not depend on the EHR being up, and a
// server that cannot answer GET metadata will not take the writes either (they fail per patient
// and are retried next run).
WorkflowStatus CheckWriteTargets(const WriteBackConfig& wb, fhir::FhirClient* ehr,
                                 const CloseMonthObserver& observer) {
  auto refuse = [&observer](const Error& e) -> WorkflowStatus {
    if (!e.is(Errc::kUnsupported)) {
      if (observer.on_warning) observer.on_warning(e.message);
      return {};
    }
    return Fail(ErrorKind::kInvalidSetup, "no-conditional-create",
                fmt::format("{}; nothing was written", e.message));
  };
  if (ehr != nullptr && wb.require_conditional_create) {
    std::vector<std::string> types;
    if (wb.care_plans) types.emplace_back("CarePlan");
    if (wb.charge_items) types.emplace_back("ChargeItem");
    Status s =
        CheckConditionalCreate(*ehr, types, fmt::format("writeBack.target \"{}\"", wb.target->name),
                               "writeBack.requireConditionalCreate");
    if (!s) {
      if (auto r = refuse(s.error()); !r) return r;
    }
  }
  for (std::size_t i = 0; i < wb.payers.size(); ++i) {
    const PayerConfig& payer = wb.payers[i];
    if (!payer.endpoint || !payer.require_conditional_create) continue;
    auto client = MakeFhirClient(*payer.endpoint, "billing");
    if (!client) {
      return Fail(ErrorKind::kInvalidSetup, "config-failed",
                  fmt::format("billing.payers[{}].endpoint: {}", i, client.error().message));
    }
    Status s = CheckConditionalCreate(
        **client, {"Bundle"}, fmt::format("billing.payers[{}].endpoint ({})", i, payer.name),
        fmt::format("billing.payers[{}].requireConditionalCreate", i));
    if (!s) {
      if (auto r = refuse(s.error()); !r) return r;
    }
  }
  return {};
}

// Refuses when the ledger is empty but this practice's claims already exist elsewhere: a new or
// emptied state file would bill those patient-months again. Once a bill run has finished on the
// state file, an empty ledger only means nothing was billable.
WorkflowStatus CheckNotANewLedger(StateStore& store, const SyncConfig& sync,
                                  const WriteBackConfig& wb, fhir::FhirClient* ehr) {
  // Claim files the ledger never queued: the state file is older than the claims already
  // written (a backup restored), and would bill their patient-months again.
  auto unknown = ClaimFilesUnknownToTheLedger(wb, store);
  if (!unknown) return Fail(ErrorKind::kFailed, "claims-check-failed", unknown.error().message);
  if (!unknown->empty()) {
    std::string message = fmt::format(
        "the payers' directories hold {} claim file(s) that the ledger in {} never "
        "wrote:\n",
        unknown->size(), sync.state_path.string());
    for (std::size_t i = 0; i < unknown->size() && i < 10; ++i) {
      message += fmt::format("  {}\n", (*unknown)[i]);
    }
    if (unknown->size() > 10) message += fmt::format("  ... and {} more\n", unknown->size() - 10);
    message +=
        "The state file is older than the claims already sent (was a backup restored?): billing "
        "from it could bill those patient-months again. Restore the newest state file "
        "(state.path); if these files are not this gateway's, move them out of the directory. "
        "Nothing was written.";
    return Fail(ErrorKind::kRefused, "unknown-claims", std::move(message));
  }
  auto last = store.LastRun(RunKind::kBill);
  if (!last) return Fail(ErrorKind::kFailed, "state-failed", last.error().message);
  if (*last && (*last)->status == RunStatus::kOk) return {};  // the usual case: no ledger read
  auto entries = store.LedgerEntries(LedgerQuery::AllRevisions());
  if (!entries) return Fail(ErrorKind::kFailed, "state-failed", entries.error().message);
  if (!entries->empty()) return {};
  auto found = FindPriorBilling(wb, ehr);
  if (!found) {
    return Fail(ErrorKind::kRefused, "prior-billing",
                fmt::format("the ledger in {} is empty, and whether this practice's claims "
                            "already exist could not be checked: {}; run bill again when it can be",
                            sync.state_path.string(), found.error().message));
  }
  if (found->empty()) return {};
  std::string message =
      fmt::format("the ledger in {} is empty, but this practice's claims already exist:\n",
                  sync.state_path.string());
  for (const auto& f : *found) message += fmt::format("  {}\n", f);
  message +=
      "Billing now would bill those patient-months again: the ledger that records what was "
      "billed lives in the state file. Restore the previous state file (state.path; see "
      "docs/configuration.md#statepath) from its backup and run bill again.";
  return Fail(ErrorKind::kRefused, "prior-billing", std::move(message));
}

// The charges of the month, and why every other patient is not billable (a void's reason).
void Charges(const std::vector<PatientMonth>& results, const FactStore& facts,
             const EngineConfig& engine, std::vector<Charge>& charges, ReconcileOptions& options) {
  for (const PatientMonth& r : results) {
    if (auto c = ChargeFor(r, facts, engine)) {
      charges.push_back(std::move(*c));
      continue;
    }
    std::string why;
    for (const auto& b : r.blocked_by) why += (why.empty() ? "" : ", ") + b;
    options.not_billable[r.patient] = why.empty() ? "nothing billable" : why;
  }
  // A merged record's clinical data usually move to the survivor, leaving it without a result:
  // its Patient still says why it is not billable.
  for (const auto& [key, fact] : facts.notable()) {
    const auto* p = fact->fact ? std::get_if<PatientFact>(fact->fact.get()) : nullptr;
    if (p == nullptr || (!p->replaced && !p->inactive)) continue;
    options.not_billable.try_emplace(*key, p->replaced && p->inactive ? "merged, inactive-record"
                                           : p->replaced              ? "merged"
                                                                      : "inactive-record");
  }
}

// The run's record in the state store's run history.
std::string RunSummary(const CloseMonthResult& r) {
  auto n = [](std::size_t v) { return Value::Number(static_cast<std::int64_t>(v)); };
  Value summary = Value::MakeObject();
  summary.set("month", Value::String(r.month.ToString()));
  summary.set("dryRun", Value::Bool(r.dry_run));
  if (!r.incomplete.empty()) {
    Value reasons = Value::MakeArray();
    for (const auto& g : r.incomplete) reasons.push_back(Value::String(g));
    summary.set("allowIncomplete", std::move(reasons));
  }
  Value ledger = Value::MakeObject();
  for (auto a : {LedgerAction::kNew, LedgerAction::kAdjusted, LedgerAction::kVoided,
                 LedgerAction::kWithdrawn}) {
    auto it = r.ledger_counts.find(a);
    ledger.set(ToCode(a), n(it == r.ledger_counts.end() ? 0 : it->second));
  }
  ledger.set("unchanged", n(r.ledger.unchanged));
  ledger.set("held", n(r.held()));
  Value proposals = Value::MakeObject();
  for (auto a : {ProposalAction::kProposed, ProposalAction::kHeld, ProposalAction::kConfirmed,
                 ProposalAction::kDropped}) {
    auto it = r.proposal_counts.find(a);
    proposals.set(ToCode(a), n(it == r.proposal_counts.end() ? 0 : it->second));
  }
  ledger.set("proposals", std::move(proposals));
  ledger.set("mergeHolds", n(r.ledger.merge_holds.size()));
  if (!r.ledger.batch.empty()) ledger.set("batch", Value::String(r.ledger.batch));
  summary.set("ledger", std::move(ledger));
  Value plans = Value::MakeObject();
  for (const auto& [k, v] : r.care_plan_counts) plans.set(k, n(v));
  summary.set("carePlans", std::move(plans));
  summary.set("deliveries", n(r.deliveries_done));
  summary.set("deliveryFailures", n(r.deliveries_failed));
  summary.set("billablePatientMonths", n(r.billable));
  summary.set("expectedPayment", Value::Number(FormatCents(r.amount)));
  return fhir::json::Serialize(summary);
}

}  // namespace

WorkflowResult<CloseMonthResult> CloseMonth(const GatewayConfig& config, StateStore& store,
                                            const CloseMonthRequest& request,
                                            const CloseMonthObserver& observer) {
  const SyncConfig& sync = config.sync;
  const WriteBackConfig& wb = config.write_back;
  if (!config.credentials_read) {
    return Fail(ErrorKind::kInvalidSetup, "config-failed",
                "the configuration was loaded without its credentials; bill needs them");
  }
  const YearMonth& month = request.month;
  const bool dry_run = request.dry_run;
  EngineConfig engine = config.engine;
  // CCM is billed per calendar month (docs/ccm-rules.md, rule 6): billing a month still under
  // way bills what is met so far, and the rest of the month then arrives as corrections.
  if (YearMonth now = CurrentMonth(engine); !(month < now) && !request.open_month) {
    return Fail(
        ErrorKind::kInvalidRequest, "month-not-ended",
        fmt::format("{} has not ended in {} (today is in {}); bill it once it has, or pass "
                    "--open-month to bill what is met so far (time added later then goes out as "
                    "corrected claims)",
                    month.ToString(), engine.practice.time_zone_name, now.ToString()));
  }
  if (Status s = UseFeeScheduleForYear(engine, month.year); !s) {
    return Fail(ErrorKind::kInvalidSetup, "config-failed", s.error().message);
  }
  // One bill run per state file at a time: two runs delivering the same queued ChargeItems could
  // race past a server's conditional create. The kernel drops the lock if this process dies.
  std::filesystem::path lock_path = sync.state_path;
  lock_path += ".bill-lock";
  auto lock = FileLock::TryLock(lock_path);
  if (!lock) {
    if (!lock.error().is(Errc::kConflict)) {
      return Fail(ErrorKind::kFailed, "bill-locked", lock.error().message);
    }
    return Fail(ErrorKind::kRefused, "bill-locked",
                fmt::format("another `ccm-gateway bill` is running on {} ({}); run again when it "
                            "has finished",
                            sync.state_path.string(), lock_path.string()));
  }
  // No bill while a sync runs (it would bill half-pulled data), and no sync while this bill runs:
  // the sync lock, held until this returns.
  auto sync_lock = LockSync(sync.state_path, std::chrono::milliseconds(0));
  if (!sync_lock) {
    if (!sync_lock.error().is(Errc::kConflict)) {
      return Fail(ErrorKind::kFailed, "sync-locked", sync_lock.error().message);
    }
    auto holder = SyncLockHolder(sync.state_path);
    return Fail(
        ErrorKind::kRefused, "sync-locked",
        fmt::format("a sync is running on {}{}; billing now would read half-pulled data: "
                    "run bill again when the sync has finished",
                    sync.state_path.string(), holder ? fmt::format(" (pid {})", *holder) : ""));
  }
  auto stored = store.CountResources("", "");
  if (stored && *stored == 0) {
    return Fail(ErrorKind::kInvalidSetup, "empty-state",
                fmt::format("the state store {} holds no resources; run `ccm-gateway sync "
                            "--config ... --once` first",
                            sync.state_path.string()));
  }
  // Bill only from data known to be complete: every needed type's last pull complete.
  auto statuses = store.PullStatuses();
  if (!statuses) return Fail(ErrorKind::kFailed, "state-failed", statuses.error().message);
  // A closed month is billed from pulls that started after it ended: its last days' notes are
  // often signed the next morning.
  std::optional<fhir::TimePoint> needed_from;
  if (month < CurrentMonth(engine)) needed_from = MonthEnd(month, engine);
  Completeness completeness = CheckCompleteness(*statuses, sync, engine, needed_from);
  std::vector<std::string> gaps;
  for (const auto& g : completeness.gaps) gaps.push_back(Describe(g));
  if (!gaps.empty() && !request.allow_incomplete) {
    std::string message = fmt::format(
        "refusing to bill {}: the state store does not hold a complete pull of every resource "
        "type billing needs:\n",
        month.ToString());
    for (const auto& g : gaps) message += fmt::format("  {}\n", g);
    message += fmt::format(
        "Run `ccm-gateway sync --config {} --once` and bill once it has pulled every type "
        "completely; a type that keeps failing needs its cause fixed first (the detail above, "
        "the sync's log). --allow-incomplete bills anyway and records that in the ledger.",
        config.file.string());
    return Fail(ErrorKind::kRefused, "incomplete-data", std::move(message));
  }
  CloseMonthResult result;
  result.month = month;
  result.dry_run = dry_run;
  result.currency = engine.fee_schedule.currency;
  std::string allow_incomplete;
  if (!gaps.empty()) {
    for (const auto& g : gaps) allow_incomplete += (allow_incomplete.empty() ? "" : "; ") + g;
    result.incomplete = gaps;
    if (observer.on_incomplete) observer.on_incomplete(gaps);
  }

  std::unique_ptr<fhir::FhirClient> ehr;
  if ((wb.care_plans || wb.charge_items) && wb.target) {
    auto client = MakeFhirClient(*wb.target, "write-back");
    if (!client) {
      return Fail(ErrorKind::kInvalidSetup, "config-failed",
                  fmt::format("writeBack.target {}: {}", wb.target->name, client.error().message));
    }
    ehr = std::move(*client);
  }
  // A new (or emptied) state file beside claims already made would bill every patient-month
  // again: the ledger that says what was billed lives in the state file.
  if (auto targets = CheckWriteTargets(wb, ehr.get(), observer); !targets) return targets.error();
  if (auto fresh = CheckNotANewLedger(store, sync, wb, ehr.get()); !fresh) return fresh.error();

  auto run = store.StartRun(dry_run ? RunKind::kBillDryRun : RunKind::kBill);
  if (!run) return Fail(ErrorKind::kFailed, "state-failed", run.error().message);
  FactStore facts;
  std::vector<std::string> source_names;
  for (const auto& s : sync.sources) source_names.push_back(s.name);
  auto collected = CollectFactsFromStore(store, engine, source_names, facts);
  if (!collected) return Fail(ErrorKind::kFailed, "state-failed", collected.error().message);
  std::vector<PatientMonth> results = Evaluate(facts, month, engine);
  auto checkpoint = [&observer](std::string_view step) {
    if (observer.checkpoint) observer.checkpoint(step);
  };

  // 1. Care plans.
  if (wb.care_plans) {
    std::vector<const PatientMonth*> wanted;
    for (const PatientMonth& r : results) {
      if (WantsCarePlan(r)) wanted.push_back(&r);
    }
    // A few searches for everyone (see WriteCarePlan for what happens when they fail).
    auto snapshot = ReadCarePlans(*ehr, wanted, wb);
    for (std::size_t i = 0; i < wanted.size(); ++i) {
      const PatientMonth& r = *wanted[i];
      if (observer.on_progress) observer.on_progress("care plans", i, wanted.size());
      CarePlanWrite w = WriteCarePlan(*ehr, store, r, wb, *run, dry_run, &snapshot);
      ++result.care_plan_counts[std::string(ToCode(w.action))];
      if (w.recorded_late) ++result.care_plan_counts["create-recorded-late"];
      if (w.action == CarePlanAction::kFailed) {
        // The audit record names the patient; the problem line does not (no PHI in logs).
        result.problems.push_back(fmt::format("care plan{} (audit record {}): {}",
                                              w.reference.empty() ? "" : " " + w.reference, w.audit,
                                              w.message));
      } else if (!w.provenance_error.empty()) {
        result.problems.push_back(
            fmt::format("care plan {} written, but {}", w.reference, w.provenance_error));
      }
      bool written = w.action == CarePlanAction::kCreated || w.action == CarePlanAction::kUpdated;
      result.care_plans.push_back(CarePlanOutcome{r.patient, std::move(w)});
      if (written) checkpoint("care-plan");
    }
    if (observer.on_progress) observer.on_progress("care plans", wanted.size(), wanted.size());
  }

  DeliveryContext ctx{store, wb, engine.fee_schedule.currency, *run, ehr.get(), {}, checkpoint};
  for (const auto& s : sync.sources) ctx.sources.push_back(s.name);
  auto deliver = [&]() {
    DeliveryReport d = DeliverOpen(ctx);
    auto marked = MarkDelivered(store, d.entries);
    if (!marked) d.problems.push_back(marked.error().message);
    result.deliveries_done += d.done;
    result.deliveries_failed += d.failed;
    result.files.insert(result.files.end(), d.files.begin(), d.files.end());
    result.problems.insert(result.problems.end(), d.problems.begin(), d.problems.end());
  };
  // 2. What an earlier, interrupted run left undelivered goes first, as it was decided then.
  if (!dry_run) deliver();

  // 3. The ledger.
  std::vector<Charge> charges;
  ReconcileOptions options;
  options.run = *run;
  options.dry_run = dry_run;
  // A run that bills from incomplete data confirms no proposal by the data (an approval still
  // does): what a failed pull left is exactly what a proposal waits to see confirmed.
  if (gaps.empty()) options.complete_since = completeness.full_complete_since;
  options.allow_incomplete = allow_incomplete;
  if (wb.charge_items) options.channels.emplace_back(kChargeItemChannel);
  for (const auto& p : wb.payers) options.channels.push_back(PayerChannel(p));
  Charges(results, facts, engine, charges, options);
  auto outcome = ReconcileLedger(store, month.ToString(), charges, options);
  if (!outcome) {
    static_cast<void>(store.FinishRun(*run, RunStatus::kFailed, "{}"));
    return Fail(outcome.error().is(Errc::kConflict) ? ErrorKind::kRefused : ErrorKind::kFailed,
                outcome.error().is(Errc::kConflict) ? "ledger-conflict" : "ledger-failed",
                fmt::format("ledger: {}", outcome.error().message));
  }
  checkpoint("ledger");
  result.ledger = std::move(*outcome);
  for (const auto& c : result.ledger.changes) ++result.ledger_counts[c.action];
  for (const auto& p : result.ledger.proposals) ++result.proposal_counts[p.action];

  // 4. Deliveries of this run.
  if (!dry_run) deliver();

  // Totals: what the month bills (after a real run the ledger's active entries say the same) and
  // where the ledger's entries stand.
  result.billable = charges.size();
  for (const auto& c : charges) result.amount += c.amount;
  if (auto active = store.LedgerEntries(LedgerQuery::Active(month.ToString()));
      active && !dry_run) {
    for (const auto& e : *active) {
      if (e.kind != LedgerKind::kVoid) {
        (e.status == LedgerStatus::kPending ? result.pending : result.submitted) += 1;
      }
    }
  }
  if (Status s = store.FinishRun(*run, result.ok() ? RunStatus::kOk : RunStatus::kFailed,
                                 RunSummary(result));
      !s) {
    result.unrecorded = Fail(ErrorKind::kFailed, "state-failed", s.error().message);
  }
  return result;
}

}  // namespace ccm::gateway::app
